// Compute limit: onnxruntime-node called in-process, no network, no JSON. Sequential runs on one
// session (the latency floor) and, for a batched model, the best rows/s over batch sizes.
// With THREAD,COUNTS (default 1) every batch size is measured at each onnxruntime intra-op thread
// count, and `best` is the best of all: on a multi-core host the compute limit is not one thread.
// With SESSIONS > 1, every batch size is also measured on that many sessions of 1 intra-op thread,
// each running in its own worker thread at once (what a server with a worker per core does); their
// rows/s add up. `best` is the best of every point.
// THREAD,COUNTS '-' skips the one-session points (only the parallel sessions run).
// Usage: node bench/inprocess-ort.mjs MODEL.onnx INPUT_NAME FEATURES SECONDS_PER_POINT BATCH,SIZES [THREAD,COUNTS] [SESSIONS]
// Prints one JSON object.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

/** Runs `batch`-row batches on `session` for `seconds`; rows/s and the median run time. */
async function timeRuns(session, inputName, features, batch, seconds, seed) {
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
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
  return { runs_per_s: runs / elapsed, rows_per_s: (runs * batch) / elapsed, p50_ms: latencies[Math.floor(latencies.length / 2)] };
}

if (!isMainThread) {
  // One of SESSIONS parallel sessions: open, wait for the start signal, time, report.
  const { file, inputName, features, batch, seconds, seed } = workerData;
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  parentPort.postMessage('ready');
  parentPort.once('message', async () => {
    parentPort.postMessage(await timeRuns(session, inputName, features, batch, seconds, seed));
    await session.release();
  });
} else {
  const [file, inputName, featuresText, secondsText, batchesText, threadsText, sessionsText] = process.argv.slice(2);
  const features = Number(featuresText);
  const seconds = Number(secondsText);
  const batches = batchesText.split(',').map(Number);
  const threadCounts = threadsText === '-' ? [] : (threadsText ?? '1').split(',').map(Number);
  const sessions = Number(sessionsText ?? 1);
  const points = [];
  for (const threads of threadCounts) {
    const session = await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1 });
    for (const batch of batches) points.push({ batch, threads, ...(await timeRuns(session, inputName, features, batch, seconds, 12345)) });
    await session.release();
  }
  if (sessions > 1) {
    for (const batch of batches) {
      const workers = Array.from({ length: sessions }, (_, i) => new Worker(new URL(import.meta.url), { workerData: { file, inputName, features, batch, seconds, seed: 12345 + i } }));
      const next = (w) => new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
      await Promise.all(workers.map(next));
      const results = await Promise.all(workers.map((w) => { const r = next(w); w.postMessage('go'); return r; }));
      await Promise.all(workers.map((w) => w.terminate()));
      points.push({
        batch, threads: 1, sessions,
        runs_per_s: results.reduce((a, r) => a + r.runs_per_s, 0),
        rows_per_s: results.reduce((a, r) => a + r.rows_per_s, 0),
        p50_ms: results.map((r) => r.p50_ms).sort((a, b) => a - b)[Math.floor(sessions / 2)],
      });
    }
  }
  const best = points.reduce((a, b) => (b.rows_per_s > a.rows_per_s ? b : a));
  process.stdout.write(`${JSON.stringify({ points, best })}\n`);
}
