// Peer: the ceiling of I/O threads on this host. N uWebSockets.js apps, each on its own thread,
// share one port; each parses the OIP JSON body, spends WORK_US of CPU on it (standing in for a
// model server's own per-request work: routing, batching, the model, monitoring) and answers on
// the next turn, as a server that batches does. No hop between threads at all: what N threads gain
// here is the most any threaded design can gain on this host with its load generator beside it.
// Usage: node bench/peers/uws-threads.mjs PORT THREADS WORK_US   (THREADS 1: the main thread alone)
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import * as uws from 'uWebSockets.js';

function serve(port, workUs, onListen) {
  const answer = JSON.stringify({
    model_name: 'digits', model_version: '1',
    outputs: [
      { name: 'probabilities', datatype: 'FP32', shape: [1, 10], data: [0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.15, 0.2, 0.25, 0.15] },
      { name: 'label', datatype: 'INT64', shape: [1], data: [8] },
    ],
  });
  const app = uws.App()
    .get('/v2/health/ready', (res) => res.end('{"ready":true}'))
    .post('/v2/models/:model/infer', (res) => {
      let aborted = false;
      res.onAborted(() => { aborted = true; });
      const chunks = [];
      res.onData((chunk, last) => {
        chunks.push(Buffer.from(chunk.slice(0)));
        if (!last) return;
        const body = JSON.parse(Buffer.concat(chunks).toString());
        if (!Array.isArray(body.inputs)) throw new Error('no inputs');
        const until = performance.now() + workUs / 1000;
        while (performance.now() < until) { /* the server's own work */ }
        setImmediate(() => {
          if (!aborted) res.cork(() => res.writeHeader('content-type', 'application/json').end(answer));
        });
      });
    });
  app.listen('127.0.0.1', port, (s) => onListen(Boolean(s)));
}

if (isMainThread) {
  const [port, threads, workUs] = process.argv.slice(2).map(Number);
  if (threads <= 1) serve(port, workUs, (ok) => { if (!ok) process.exit(1); });
  else for (let i = 0; i < threads; i++) new Worker(new URL(import.meta.url), { workerData: { port, workUs } });
} else {
  serve(workerData.port, workerData.workUs, (ok) => { if (!ok) process.exit(1); });
}
