#!/usr/bin/env bash
# #24's many-core figures on a lent host with many cores (the GPU machine has 16), in one call:
# bundled digits, batch-1 JSON, `umbra serve` with --io-threads 1, the default the server picks for
# the host, and 4 and 8, measured in turn in each round with `umbra perf` (PERF_THREADS generator
# threads, default a quarter of the cores) at c64 and c256, beside bare uWebSockets.js (one thread).
# The targets: default >= 6x the --io-threads 1 rate, and >= 100k req/s.
# Needs `node` with this tree built (dist/, build/Release) and node_modules.
#
#   bash bench/many-core.sh            # JSON and a summary under $OUT (default ./device-out)
set -u
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
cores=$(nproc)
threads=${PERF_THREADS:-$(( cores / 4 > 0 ? cores / 4 : 1 ))}
summary="$OUT/many-core-summary.txt"
{
  echo "host: $cores cores; load $(cut -d' ' -f1-3 /proc/loadavg); generator: umbra perf, $threads threads"
} > "$summary"
node bench/io-threads.mjs --generator=perf --perf-threads="$threads" --io=1,default,4,8 \
  --rounds="${ROUNDS:-2}" --seconds="${SECONDS_EACH:-4}" --concurrency=64,256 --out="$OUT/many-core.json" > "$OUT/many-core.log" 2>&1
rc=$?
echo "io-threads bench: exit $rc" >> "$summary"
if [ -f "$OUT/many-core.json" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    for (const [k, v] of Object.entries(r.summary)) console.log(`${k}: ${Math.round(v.throughput)} req/s, p50 ${v.p50_ms} ms, rounds ${v.throughput_each_round.join(" ")}`);
    for (const [k, v] of Object.entries(r.ratios)) console.log(`${k}: ${v.toFixed(2)}`);
  ' "$OUT/many-core.json" >> "$summary"
fi
cat "$summary"
