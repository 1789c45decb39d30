// Synthetic OIP servers for the perf tests: node:http on loopback, on its own worker thread (its
// own event loop, so the generator's work does not delay its timers), whose answer times are
// known, plus the model metadata route the generator asks first.
import { Worker } from 'node:worker_threads';

export type DelaySpec =
  /** base + U[0, spread) ms, seeded. */
  | { kind: 'uniform'; base: number; spread: number; seed: number }
  /** Every `period` ms the server holds answers for `stall` ms; otherwise `base` ms. */
  | { kind: 'stall'; period: number; stall: number; base: number }
  /** Never answers. */
  | { kind: 'never' };

export interface SyntheticOptions {
  delay: DelaySpec;
  /** Status for every n-th request: {every: 4, status: 503} answers requests 3, 7, 11... with 503. */
  failures?: { every: number; status: number }[];
  /** Answer with chunked framing instead of Content-Length. */
  chunked?: boolean;
  /** Keep request bodies (base64) and headers. */
  keepBodies?: boolean;
  /** The model metadata the server answers (default METADATA: one FP32 input [-1, 4]). */
  metadata?: object;
  /** Log the time each request was held only between mark() and stop(). */
}

export interface SyntheticServer {
  url: string;
  /** Start recording held times afresh (call when the generator's measurement starts). */
  mark(): void;
  stop(): void;
  /** Milliseconds each answered request was held, arrival to answer, between mark() and stop(). */
  held(): Promise<number[]>;
  /** Longest delay of the server thread's event loop between mark() and stop(), in ms. */
  stallMs(): Promise<number>;
  /** Statuses answered between mark() and stop(), by status. */
  statuses(): Promise<Record<string, number>>;
  bodies(): Promise<{ headers: Record<string, string>; body: string }[]>;
  close(): Promise<void>;
}

export const METADATA = {
  name: 'synthetic',
  versions: ['1'],
  platform: 'onnxruntime_onnx',
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }],
};

const SERVER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const { monitorEventLoopDelay } = require('node:perf_hooks');
// How late this thread ran between mark() and stop(): a request read late was held longer at the
// client than 'arrived' below can see.
const loop = monitorEventLoopDelay({ resolution: 1 });
const { delay, failures = [], chunked = false, keepBodies = false, metadata } = workerData;
let a = (delay.seed || 1) >>> 0;
const random = () => {
  a = (a + 0x6d2b79f5) >>> 0;
  let x = a;
  x = Math.imul(x ^ (x >>> 15), x | 1);
  x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
  return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
};
const start = performance.now();
let n = 0;
let recording = true;
let held = [];
let statuses = {};
const bodies = [];
const answer = JSON.stringify({ model_name: 'synthetic', outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 4], data: [0.5, 0.25, 0.125, 1] }] });
const server = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  const arrived = performance.now();
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'GET' && req.url === '/v2/models/synthetic') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(metadata));
      return;
    }
    if (req.method !== 'POST' || !req.url.endsWith('/infer')) {
      res.writeHead(404).end('{"error":"not found"}');
      return;
    }
    const i = n++;
    if (keepBodies) bodies.push({ headers: req.headers, body: Buffer.concat(chunks).toString('base64') });
    let wait;
    if (delay.kind === 'never') return;
    if (delay.kind === 'uniform') wait = delay.base + delay.spread * random();
    else {
      const phase = (arrived - start) % delay.period;
      wait = phase < delay.stall ? delay.stall - phase + delay.base : delay.base;
    }
    let status = 200;
    for (const f of failures) if ((i + 1) % f.every === 0) status = f.status;
    setTimeout(() => {
      if (recording) {
        held.push(performance.now() - arrived);
        statuses[status] = (statuses[status] || 0) + 1;
      }
      const body = status === 200 ? answer : '{"error":"synthetic failure"}';
      if (chunked) {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.write(body.slice(0, 10));
        res.end(body.slice(10));
      } else res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    }, wait);
  });
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ kind: 'port', port: server.address().port }));
parentPort.on('message', (m) => {
  if (m === 'mark') { held = []; statuses = {}; recording = true; loop.reset(); loop.enable(); }
  else if (m === 'stop') { recording = false; loop.disable(); }
  else if (m === 'report') parentPort.postMessage({ kind: 'report', held, statuses, bodies, stallMs: loop.count > 0 ? loop.max / 1e6 : 0 });
  else if (m === 'close') { server.closeAllConnections(); server.close(() => process.exit(0)); }
});
`;

interface Report { kind: 'report'; held: number[]; statuses: Record<string, number>; bodies: { headers: Record<string, string>; body: string }[]; stallMs: number }

export async function startSynthetic(options: SyntheticOptions): Promise<SyntheticServer> {
  const worker = new Worker(SERVER_SOURCE, { eval: true, workerData: { metadata: METADATA, ...options } });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', (m: { port: number }) => resolve(m.port));
    worker.once('error', reject);
  });
  const report = () => new Promise<Report>((resolve) => {
    worker.once('message', (m: Report) => resolve(m));
    worker.postMessage('report');
  });
  return {
    url: `http://127.0.0.1:${port}`,
    mark: () => worker.postMessage('mark'),
    stop: () => worker.postMessage('stop'),
    held: async () => (await report()).held,
    stallMs: async () => (await report()).stallMs,
    statuses: async () => (await report()).statuses,
    bodies: async () => (await report()).bodies,
    close: async () => {
      worker.postMessage('close');
      await new Promise((resolve) => worker.once('exit', resolve));
    },
  };
}

/** Exact percentile of a sample (nearest rank), for comparing against the generator's HDR figures. */
export function exactPercentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
