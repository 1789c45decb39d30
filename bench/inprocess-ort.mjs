// Compute limit: onnxruntime-node called in-process, no network, no JSON. Sequential runs on one
// session (the latency floor) and, for a batched model, the best rows/s over batch sizes.
// With THREAD,COUNTS (default 1) every batch size is measured at each onnxruntime intra-op thread
// count, and `best` is the best of all: on a multi-core host the compute limit is not one thread.
// Usage: node bench/inprocess-ort.mjs MODEL.onnx INPUT_NAME FEATURES SECONDS_PER_POINT BATCH,SIZES [THREAD,COUNTS]
// Prints one JSON object.
import * as ort from 'onnxruntime-node';

const [file, inputName, featuresText, secondsText, batchesText, threadsText] = process.argv.slice(2);
const features = Number(featuresText);
const seconds = Number(secondsText);
const batches = batchesText.split(',').map(Number);
const threadCounts = (threadsText ?? '1').split(',').map(Number);

let seed = 12345;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const points = [];
for (const threads of threadCounts) {
const session = await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1 });
for (const batch of batches) {
  const data = Float32Array.from({ length: batch * features }, () => random() * 16);
  const feeds = { [inputName]: new ort.Tensor('float32', data, [batch, features]) };
  for (let i = 0; i < 20; i++) await session.run(feeds);
  const latencies = [];
  const start = performance.now();
  let runs = 0;
  while (performance.now() - start < seconds * 1000) {
    const t0 = performance.now();
    await session.run(feeds);
    latencies.push(performance.now() - t0);
    runs += 1;
  }
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  points.push({ batch, threads, runs_per_s: runs / elapsed, rows_per_s: (runs * batch) / elapsed, p50_ms: latencies[Math.floor(latencies.length / 2)] });
}
await session.release();
}
const best = points.reduce((a, b) => (b.rows_per_s > a.rows_per_s ? b : a));
process.stdout.write(`${JSON.stringify({ points, best })}\n`);
