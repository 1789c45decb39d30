#!/usr/bin/env bash
# GPU serving in one go, on a lent GPU host (#24, #29 item 5): one MLP (1024-4096-4096-4096-10,
# seeded, bench/make-mlp.mjs) three ways in the same run:
#   1. served by `umbra serve` with {"backend": "native", "device": "cuda"} and defaults otherwise,
#      batch-1 binary HTTP requests from `umbra perf` at c256 (8 generator threads);
#   2. in-process, `umbra bench-model --device cuda` at batch 1, 64 and 256 (with where a run goes);
#   3. PyTorch eager fp32 on the same widths (its own seeded weights), the input copied to the GPU
#      and the output back each run, as a PyTorch user serving it in-process would.
# Needs `node` with this tree built (dist/, build/Release) and, for 3, python3 with torch.
# DEVICE=cpu runs 1 and 2 on the CPU (a smoke test of the script on a host without a GPU).
#
#   bash bench/cuda/serve-gpu.sh            # logs and a summary under $OUT (default ./device-out)
set -u
OUT=${OUT:-$PWD/device-out}
DEVICE=${DEVICE:-cuda}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-256}
WIDTHS=${WIDTHS:-1024,4096,4096,4096,10}
mkdir -p "$OUT"
summary="$OUT/serve-gpu-summary.txt"
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }
work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2> /dev/null; wait 2> /dev/null; rm -rf "$work"; }
trap cleanup EXIT

node bench/make-mlp.mjs "$work/repo/mlp/1/model.onnx" "$WIDTHS" > /dev/null || { say "make-mlp: failed"; exit 1; }
echo "{\"backend\": \"native\", \"device\": \"$DEVICE\"}" > "$work/repo/mlp/config.json"
say "host: $(nproc) cores; GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2> /dev/null || echo none); load $(cut -d' ' -f1-3 /proc/loadavg)"
say "model: MLP $WIDTHS on device $DEVICE"

# 1. Served.
port=$((20000 + RANDOM % 20000))
node bin/umbra.js serve --repo "$work/repo" --port "$port" --grpc-port 0 --log-db "sqlite:$work/predictions.sqlite" > "$OUT/serve-gpu-server.log" 2>&1 &
server=$!
for _ in $(seq 240); do
  curl -sf "http://127.0.0.1:$port/v2/models/mlp/ready" > /dev/null && break
  kill -0 "$server" 2> /dev/null || break
  sleep 0.5
done
if ! curl -sf "http://127.0.0.1:$port/v2/models/mlp/ready" > /dev/null; then
  tail -20 "$OUT/serve-gpu-server.log"
  say "serve: the model did not become ready"
  exit 1
fi
grep -E "listening|CUDA|queue bound" "$OUT/serve-gpu-server.log" | tee -a "$summary"
node bin/umbra.js perf --url "http://127.0.0.1:$port" -m mlp --protocol http-binary --concurrency "$CONCURRENCY" \
  --threads 8 --duration "$DURATION" --json > "$OUT/serve-gpu-perf.json" 2> "$OUT/serve-gpu-perf.log"
served=$(node -e 'const l = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[0]; console.log(l.throughput.toFixed(0) + " rows/s, p50 " + l.p50_ms + " ms, p99 " + l.p99_ms + " ms, " + l.errors + " errors")' "$OUT/serve-gpu-perf.json" 2> /dev/null)
say "served (HTTP binary, batch-1 requests, c$CONCURRENCY): ${served:-see serve-gpu-perf.log}"
curl -s "http://127.0.0.1:$port/v2/models/mlp/stats" > "$OUT/serve-gpu-stats.json"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^umbra_thread_cpu_seconds_total' > "$OUT/serve-gpu-thread-cpu.txt"
kill "$server" 2> /dev/null
wait "$server" 2> /dev/null
server=

# 2. In-process.
node bin/umbra.js bench-model "$work/repo/mlp/1/model.onnx" --device "$DEVICE" --batch 1,64,256 --seconds 3 > "$OUT/serve-gpu-bench-model.txt" 2>&1
say "in-process (bench-model --device $DEVICE):"
sed -n '/^batch/,$p' "$OUT/serve-gpu-bench-model.txt" | tee -a "$summary"

# 3. PyTorch eager.
if [ "$DEVICE" = cuda ] && python3 -c 'import torch' 2> /dev/null; then
  WIDTHS="$WIDTHS" python3 - << 'PY' 2>&1 | tee -a "$summary"
import os, time, torch
widths = [int(w) for w in os.environ["WIDTHS"].split(",")]
torch.manual_seed(7)
layers = []
for i in range(len(widths) - 1):
    layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
    if i < len(widths) - 2:
        layers.append(torch.nn.ReLU())
model = torch.nn.Sequential(*layers).cuda().eval()
print(f"PyTorch {torch.__version__} eager fp32, input copied in and output out each run:")
with torch.inference_mode():
    for batch in (1, 64, 256):
        x = torch.randn(batch, widths[0])
        for _ in range(20):
            model(x.cuda()).cpu()
        torch.cuda.synchronize()
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < 3:
            model(x.cuda()).cpu()
            runs += 1
        took = time.perf_counter() - start
        print(f"  batch {batch:4d}: {runs * batch / took:12.1f} rows/s, {took / runs * 1e6:9.1f} us per run")
PY
else
  say "PyTorch: skipped (device $DEVICE, or no torch)"
fi
