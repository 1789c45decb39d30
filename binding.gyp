{
  "target_defaults": {
    "include_dirs": [
      "<!@(node -p \"require('node-addon-api').include\")",
      "native/include",
      "native/src"
    ],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions"],
    "cflags_cc": ["-std=gnu++17", "-O3", "-fexceptions", "-fno-math-errno"]
  },
  "targets": [
    {
      "target_name": "umbra_avx2",
      "type": "static_library",
      "sources": [
        "native/src/cpu/arch/avx2/elementwise_avx2.cc",
        "native/src/cpu/arch/avx2/gemm_avx2.cc",
        "native/src/cpu/arch/avx2/spmm_avx2.cc"
      ],
      "cflags_cc": ["-mavx2", "-mfma"]
    },
    {
      "target_name": "umbra_avx512",
      "type": "static_library",
      "sources": [
        "native/src/cpu/arch/avx512/elementwise_avx512.cc",
        "native/src/cpu/arch/avx512/gemm_avx512.cc",
        "native/src/cpu/arch/avx512/magnitude_scan_avx512.cc",
        "native/src/cpu/arch/avx512/spmm_avx512.cc"
      ],
      "cflags_cc": ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mfma"]
    },
    {
      "target_name": "umbra",
      "dependencies": ["umbra_avx2", "umbra_avx512"],
      "defines": ["UMBRA_HAVE_AVX2", "UMBRA_HAVE_AVX512"],
      "sources": [
        "native/binding/addon.cc",
        "native/binding/cuda_binding.cc",
        "native/binding/cuda_plan_binding.cc",
        "native/binding/json_binding.cc",
        "native/binding/kernels_binding.cc",
        "native/binding/prune_binding.cc",
        "native/binding/transport_guard.cc",
        "native/src/cpu/activation.cc",
        "native/src/cpu/cpu_features.cc",
        "native/src/cpu/gemm.cc",
        "native/src/cpu/isa.cc",
        "native/src/cpu/softmax.cc",
        "native/src/cpu/tensor_stats.cc",
        "native/src/cpu/spmm.cc",
        "native/src/cpu/thread_pool.cc",
        "native/src/json/format_numbers.cc",
        "native/src/json/infer_json.cc",
        "native/src/net/http10_head.cc",
        "native/src/net/stream_guard.cc",
        "native/src/prune/magnitude_scan.cc",
        "native/src/prune/mask_apply.cc",
        "native/src/prune/nm_prune.cc",
        "native/src/prune/rows_prune.cc",
        "native/src/prune/threshold_select.cc"
      ]
    }
  ]
}
