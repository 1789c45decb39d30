#!/usr/bin/env bash
# #29 on a lent GPU machine, in one call: builds the standalone CUDA checks and benchmarks
# (no Node needed), runs them with cuBLASLt (PyTorch's own, found below) and without, compares
# with PyTorch, and, where a `node` is on PATH with this tree built (dist/, build/Release), runs the
# Node-side CUDA tests and bench-model at each precision. Logs go under $OUT; a short summary last.
#
#   bash bench/cuda/device-check.sh [--quick]
set -u
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
QUICK=${1:-}
summary="$OUT/summary.txt"
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

# The cuBLASLt this PyTorch loads (its nvidia wheel), unless one is named already.
if [ -z "${UMBRA_CUBLASLT_PATH:-}" ]; then
  UMBRA_CUBLASLT_PATH=$(python3 - <<'PY'
import glob, os, site
try:
    import torch
    roots = site.getsitepackages() + [os.path.dirname(os.path.dirname(torch.__file__))]
except Exception:
    roots = site.getsitepackages()
for root in roots:
    found = sorted(glob.glob(os.path.join(root, "nvidia/*/lib/libcublasLt.so*")), reverse=True)
    if found:
        print(found[0])
        break
PY
)
fi
export UMBRA_CUBLASLT_PATH
say "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"
say "cuBLASLt: ${UMBRA_CUBLASLT_PATH:-none found}"

if ! { cmake -S . -B build-tests -DUMBRA_BUILD_CUDA_TESTS=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 &&
       cmake --build build-tests -j "$(nproc)" --target umbra_cuda_tests umbra_cuda_bench umbra_cuda_plan_tests umbra_cuda_plan_bench; } > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  say "build: FAILED (see build.log)"
  exit 1
fi
say "build: ok"

run() { # name, command...: runs it, keeps its output, records its exit status
  local name=$1; shift
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  say "$name: exit $rc ($(grep -c -i 'fail' "$OUT/$name.log") lines mention a failure)"
}
run kernel-tests-cublaslt ./build-tests/umbra_cuda_tests
UMBRA_CUBLASLT=off run kernel-tests-own ./build-tests/umbra_cuda_tests
run plan-tests ./build-tests/umbra_cuda_plan_tests
python3 bench/cuda/torch_compare.py --bench build-tests/umbra_cuda_bench $QUICK > "$OUT/torch_compare.md" 2>&1
say "torch_compare: exit $? (table in torch_compare.md)"
run plan-bench ./build-tests/umbra_cuda_plan_bench

if command -v node > /dev/null && [ -f build/Release/umbra.node ] && [ -d dist ]; then
  # The tests run compiled (scripts/build-tests.js writes them into .test/).
  node scripts/build-tests.js > "$OUT/build-tests.log" 2>&1
  run tap-cuda node node_modules/.bin/tap .test/native-cuda.test.js .test/native-cuda-backend.test.js .test/native-cuda-blas.test.js
  node bench/make-mlp.mjs "$OUT/mlp4096.onnx" 1024,4096,4096,4096,10 > /dev/null 2>&1
  for p in fp32 tf32 bf16; do
    node bin/umbra.js bench-model "$OUT/mlp4096.onnx" --device cuda --precision "$p" --batch 1,64,256 --json > "$OUT/bench-model-$p.json" 2>&1
    # #29 item 3: the same run as a table, with where a run's time goes (host clocks per stage).
    node bin/umbra.js bench-model "$OUT/mlp4096.onnx" --device cuda --precision "$p" --batch 1,64 --seconds 2 > "$OUT/bench-model-$p.txt" 2>&1
    say "bench-model $p: exit $?"
  done
  # #29 item 4: a 90%-pruned copy on the GPU, each layer's format measured at load; it must not
  # be slower than the dense model at any batch size (the layer reports give the timings).
  node bin/umbra.js prune "$OUT/mlp4096.onnx" "$OUT/mlp4096-p90.onnx" --sparsity 0.9 > "$OUT/prune-p90.log" 2>&1
  node bin/umbra.js bench-model "$OUT/mlp4096-p90.onnx" --device cuda --batch 1,64,256 --json > "$OUT/bench-model-p90.json" 2>&1
  say "bench-model pruned 90%: exit $?"
  # #29 item 2: accuracy per precision on the digits test split, dense and pruned.
  node bin/umbra.js prune models/repository/digits/1/model.onnx "$OUT/digits-p50.onnx" --sparsity 0.5 --eval models/digits.csv --label label --eval-filter split=test --precision fp32,tf32,bf16 > "$OUT/prune-precisions.txt" 2>&1
  say "prune --precision: exit $?"
  # #29 item 5 / #24: the MLP served over HTTP on the GPU, in-process, and PyTorch eager, same run.
  OUT="$OUT" bash bench/cuda/serve-gpu.sh > "$OUT/serve-gpu.txt" 2>&1
  say "serve-gpu: exit $? ($(grep -m1 '^served' "$OUT/serve-gpu.txt" || echo 'no figure'))"
  # #24: digits over HTTP with every --io-threads setting on this host's cores (bench/many-core.sh).
  OUT="$OUT" bash bench/many-core.sh > "$OUT/many-core.txt" 2>&1
  say "many-core: exit $? ($(grep -m1 'default / --io-threads 1' "$OUT/many-core.txt" || echo 'no figure'))"
else
  say "node: not here (carry node, node_modules, dist and build/Release for the Node-side checks)"
fi

echo
tail -n 30 "$OUT/torch_compare.md"
echo
cat "$summary"
