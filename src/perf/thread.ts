// Runs a LoadDriver on a worker thread when one core cannot generate the load. Messages are
// typed here, both ends: the runner sends start/collect/stop, the worker answers with windows
// whose histograms travel as compressed HDR text.
import { parentPort, workerData, Worker } from 'node:worker_threads';
import { threadOptions } from '../core/threads.js';
import { LatencyHistogram } from './histogram.js';
import { LoadDriver, type LoadSpec, type WindowSample } from './load.js';

type ToWorker = { kind: 'collect' } | { kind: 'stop' };
type FromWorker =
  | { kind: 'started' }
  | { kind: 'failed'; message: string }
  | { kind: 'window'; startMs: number; endMs: number; completed: number; errors: Record<string, number>; latency: string; sendLag: string; firstError?: string };

/** The runner's view of one load thread; the same surface as LoadDriver, asynchronous. */
export interface LoadThread {
  start(): Promise<void>;
  collect(): Promise<WindowSample>;
  stop(): Promise<void>;
}

export function localThread(spec: LoadSpec): LoadThread {
  const driver = new LoadDriver(spec);
  return {
    start: () => driver.start(),
    collect: async () => driver.collect(),
    stop: async () => driver.stop(),
  };
}

export function workerThread(spec: LoadSpec): LoadThread {
  const worker = new Worker(new URL('./thread.js', import.meta.url), threadOptions({ workerData: spec }));
  let waiting: { resolve: (m: FromWorker) => void; reject: (e: Error) => void } | undefined;
  let failure: Error | undefined;
  const replies: FromWorker[] = [];
  worker.on('message', (m: FromWorker) => {
    if (waiting) {
      const w = waiting;
      waiting = undefined;
      w.resolve(m);
    } else replies.push(m);
  });
  worker.on('error', (err: Error) => {
    failure = err;
    waiting?.reject(err);
    waiting = undefined;
  });
  const next = () => new Promise<FromWorker>((resolve, reject) => {
    const queued = replies.shift();
    if (queued) resolve(queued);
    else if (failure) reject(failure);
    else waiting = { resolve, reject };
  });
  const post = (m: ToWorker) => worker.postMessage(m);
  return {
    async start() {
      const m = await next();
      if (m.kind === 'failed') throw new Error(m.message);
    },
    async collect() {
      post({ kind: 'collect' });
      const m = await next();
      if (m.kind !== 'window') throw new Error('load thread answered out of turn');
      return { ...m, latency: LatencyHistogram.decode(m.latency), sendLag: LatencyHistogram.decode(m.sendLag) };
    },
    async stop() {
      post({ kind: 'stop' });
      await worker.terminate();
    },
  };
}

if (parentPort && workerData && (workerData as { payloads?: unknown }).payloads) {
  const port = parentPort;
  const spec = workerData as LoadSpec;
  // Buffers arrive as Uint8Arrays after structured cloning.
  for (const p of spec.payloads) p.binary.body = Buffer.from(p.binary.body.buffer, p.binary.body.byteOffset, p.binary.body.byteLength);
  const driver = new LoadDriver(spec);
  driver.start().then(
    () => port.postMessage({ kind: 'started' } satisfies FromWorker),
    (err: unknown) => port.postMessage({ kind: 'failed', message: String((err as Error).message ?? err) } satisfies FromWorker),
  );
  port.on('message', (m: ToWorker) => {
    if (m.kind === 'collect') {
      const w = driver.collect();
      port.postMessage({
        kind: 'window', startMs: w.startMs, endMs: w.endMs, completed: w.completed, errors: w.errors,
        latency: w.latency.encode(), sendLag: w.sendLag.encode(), ...(w.firstError !== undefined ? { firstError: w.firstError } : {}),
      } satisfies FromWorker);
    } else driver.stop();
  });
}
