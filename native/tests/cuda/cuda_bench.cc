// GPU benchmark (no Node.js): one JSON object per line on stdout, read by
// bench/cuda/torch_compare.py which measures PyTorch/cuBLAS on the same shapes in the same run.
// Timing: CUDA events around `reps` launches after warm-up, median of 5 such trials.
//   ./umbra_cuda_bench [--quick]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cublaslt.cuh"
#include "device.cuh"
#include "elementwise.cuh"
#include "cublaslt.cuh"
#include "gemm.cuh"
#include "mask_apply.cuh"
#include "softmax.cuh"
#include "spmm.cuh"
#include "threshold_select.cuh"

using namespace umbra::cuda;

namespace {

#define BENCH_CHECK(call)                                                                 \
  do {                                                                                    \
    cudaError_t e_ = (call);                                                              \
    if (e_ != cudaSuccess) throw CudaError(std::string(#call) + ": " + cudaGetErrorString(e_)); \
  } while (0)

// Median milliseconds per call of `fn` over 5 trials of `reps` calls.
double time_ms(Stream& s, int reps, const std::function<void()>& fn) {
  const auto st = static_cast<cudaStream_t>(s.native());
  fn();
  BENCH_CHECK(cudaStreamSynchronize(st));
  cudaEvent_t a, b;
  BENCH_CHECK(cudaEventCreate(&a));
  BENCH_CHECK(cudaEventCreate(&b));
  std::vector<double> trials;
  for (int t = 0; t < 5; ++t) {
    BENCH_CHECK(cudaEventRecord(a, st));
    for (int r = 0; r < reps; ++r) fn();
    BENCH_CHECK(cudaEventRecord(b, st));
    BENCH_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    BENCH_CHECK(cudaEventElapsedTime(&ms, a, b));
    trials.push_back(ms / reps);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(trials.begin(), trials.end());
  return trials[2];
}

void fill_random(DeviceBuffer& b, size_t n, Stream& s, unsigned seed, double zero_fraction = 0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = (zero_fraction > 0 && u(rng) < zero_fraction) ? 0.f : (d(rng) + (d(rng) < 0 ? -1e-3f : 1e-3f));
  s.stage_upload(b.data(), v.data(), n * 4);
  s.finish();
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const Availability av = cuda_availability();
  if (!av.available) {
    std::printf("{\"skip\": \"no CUDA device: %s\"}\n", av.reason.c_str());
    return 0;
  }
  try {
    const auto dev = cuda_devices()[0];
    const BlasLtInfo& lt = cublaslt_info();
    std::printf("{\"device\": \"%s\", \"cc\": \"%d.%d\", \"sms\": %d, \"runtime\": %d, \"driver\": %d, \"cublaslt\": \"%s\", \"cublaslt_version\": %zu}\n",
                dev.name.c_str(), dev.major, dev.minor, dev.multiprocessors, av.runtime_version, av.driver_version,
                lt.found ? lt.path.c_str() : "", lt.version);
    Stream s(0);
    const auto st = static_cast<cudaStream_t>(s.native());

    // Bandwidth: our copy kernel against cudaMemcpy device-to-device, 1 GiB each way.
    const size_t floats = (quick ? size_t(1) << 26 : size_t(1) << 28);
    DeviceBuffer src(0, floats * 4), dst(0, floats * 4);
    fill_random(src, floats, s, 1);
    const double bytes = 2.0 * floats * 4;
    const double memcpy_ms = time_ms(s, 10, [&] { BENCH_CHECK(cudaMemcpyAsync(dst.data(), src.data(), floats * 4, cudaMemcpyDeviceToDevice, st)); });
    const double copy_ms = time_ms(s, 10, [&] { copy_f32_cuda(dst.as<float>(), src.as<float>(), floats, s); });
    std::printf("{\"op\": \"copy\", \"bytes\": %.0f, \"memcpy_gbps\": %.1f, \"kernel_gbps\": %.1f}\n", bytes,
                bytes / memcpy_ms / 1e6, bytes / copy_ms / 1e6);
    // Memory-bound kernels against that ceiling: bias + relu in place, softmax over 1024-wide rows.
    const double bias_ms = time_ms(s, 10, [&] { bias_activation_f32_cuda(dst.as<float>(), floats / 1024, 1024, src.as<float>(), 1, s); });
    std::printf("{\"op\": \"bias_relu\", \"bytes\": %.0f, \"kernel_gbps\": %.1f}\n", bytes, bytes / bias_ms / 1e6);
    const double softmax_ms = time_ms(s, 10, [&] { softmax_f32_cuda(dst.as<float>(), floats / 1024, 1024, s); });
    std::printf("{\"op\": \"softmax\", \"bytes\": %.0f, \"kernel_gbps\": %.1f}\n", bytes, bytes / softmax_ms / 1e6);

    // Dense GEMM, 4096 x 4096 weight in PyTorch Linear layout ([N,K]), bias + relu fused.
    const size_t k = 4096, n = 4096;
    DeviceBuffer w(0, k * n * 4), bias(0, n * 4), x(0, 4096 * k * 4), y(0, 4096 * n * 4);
    fill_random(w, k * n, s, 2);
    fill_random(bias, n, s, 3);
    fill_random(x, 4096 * k, s, 4);
    const std::vector<size_t> batches = quick ? std::vector<size_t>{64, 1024} : std::vector<size_t>{64, 256, 1024, 4096};
    const char* names[] = {"fp32", "tf32", "bf16"};
    // Umbra's own kernels ("own"), and cuBLASLt where it was found ("cublaslt": fp32 and tf32).
    for (int p = 0; p < 3; ++p)
      for (const bool vendor : {false, true}) {
        if (vendor && (!lt.found || p == 2)) continue;
        for (size_t m : batches) {
          GemmCudaArgs g;
          g.x = x.as<float>(), g.w = w.as<float>(), g.bias = bias.as<float>(), g.y = y.as<float>();
          g.m = m, g.k = k, g.n = n, g.w_n_by_k = true, g.activation = 1, g.precision = static_cast<GemmPrecision>(p);
          g.vendor = vendor;
          const double ms = time_ms(s, m >= 1024 ? 5 : 20, [&] { gemm_f32_cuda(g, s); });
          std::printf("{\"op\": \"gemm\", \"impl\": \"%s\", \"precision\": \"%s\", \"m\": %zu, \"k\": %zu, \"n\": %zu, \"ms\": %.4f, \"tflops\": %.2f}\n",
                      vendor ? "cublaslt" : "own", names[p], m, k, n, ms, 2.0 * m * k * n / ms / 1e9);
        }
      }

    // Sparse at 90%: CSR of the same 4096 x 4096 weight with 90% of entries zero.
    {
      std::mt19937 rng(5);
      std::uniform_real_distribution<double> u(0, 1);
      std::uniform_real_distribution<float> d(-1.f, 1.f);
      std::vector<int32_t> rp{0}, ci;
      std::vector<float> vals;
      for (size_t r = 0; r < n; ++r) {
        for (size_t c = 0; c < k; ++c)
          if (u(rng) < 0.1) ci.push_back(static_cast<int32_t>(c)), vals.push_back(d(rng));
        rp.push_back(static_cast<int32_t>(ci.size()));
      }
      DeviceBuffer drp(0, rp.size() * 4), dci(0, ci.size() * 4), dv(0, vals.size() * 4);
      s.stage_upload(drp.data(), rp.data(), rp.size() * 4);
      s.stage_upload(dci.data(), ci.data(), ci.size() * 4);
      s.stage_upload(dv.data(), vals.data(), vals.size() * 4);
      s.finish();
      for (size_t m : batches) {
        SpmmCudaArgs a;
        a.x = x.as<float>(), a.bias = bias.as<float>(), a.y = y.as<float>(), a.m = m, a.activation = 1;
        a.w = {drp.as<int32_t>(), dci.as<int32_t>(), dv.as<float>(), n, k, ci.size()};
        const double ms = time_ms(s, m >= 1024 ? 5 : 20, [&] { spmm_csr_f32_cuda(a, s); });
        std::printf("{\"op\": \"spmm\", \"sparsity\": 0.9, \"m\": %zu, \"k\": %zu, \"n\": %zu, \"nnz\": %zu, \"ms\": %.4f}\n", m,
                    k, n, ci.size(), ms);
      }
    }

    // Pruning: global threshold at 90% over 1e8 weights (two arrays), then the mask; the data
    // is restored from a pristine copy (device-to-device, not timed) before each trial.
    {
      const size_t total = quick ? 10000000 : 100000000;
      DeviceBuffer pristine(0, total * 4), work(0, total * 4);
      fill_random(pristine, total, s, 6);
      const size_t first = total / 3;
      std::vector<umbra::WeightArray> arrays = {{work.as<float>(), first, "a"}, {work.as<float>() + first, total - first, "b"}};
      umbra::SelectOptions o;
      o.sparsity = 0.9;
      std::vector<double> trials;
      for (int t = 0; t < 7; ++t) {
        BENCH_CHECK(cudaMemcpyAsync(work.data(), pristine.data(), total * 4, cudaMemcpyDeviceToDevice, st));
        BENCH_CHECK(cudaStreamSynchronize(st));
        cudaEvent_t a, b;
        BENCH_CHECK(cudaEventCreate(&a));
        BENCH_CHECK(cudaEventCreate(&b));
        BENCH_CHECK(cudaEventRecord(a, st));
        const auto cuts = threshold_select_f32_cuda(arrays, o, s);
        mask_apply_f32_cuda(arrays, cuts, s);
        BENCH_CHECK(cudaEventRecord(b, st));
        BENCH_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        BENCH_CHECK(cudaEventElapsedTime(&ms, a, b));
        cudaEventDestroy(a);
        cudaEventDestroy(b);
        if (t > 0) trials.push_back(ms);  // the first pays for workspace allocation
      }
      std::sort(trials.begin(), trials.end());
      std::printf("{\"op\": \"prune\", \"weights\": %zu, \"sparsity\": 0.9, \"ms\": %.3f}\n", total, trials[trials.size() / 2]);
    }
  } catch (const std::exception& e) {
    std::printf("{\"error\": \"%s\"}\n", e.what());
    return 1;
  }
  return 0;
}
