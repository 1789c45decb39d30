#!/usr/bin/env node
// Garbage-collector soak: one `umbra serve` process on the example repository under a closed loop
// of 64 keep-alive clients for a while, with V8's GC trace on; reports what its main thread's
// collector did: young and full collections, bytes promoted to the old generation (per request:
// the figure that matters, as a per-request object promoted is copied twice and then only found
// dead by a full collection) and total GC pause. Long enough runs show states that short
// benchmarks miss (a server that promotes nothing for 30 s and then ~1.5 MB per young collection).
// Needs `npx tsc -p tsconfig.json`.
//
//   node bench/gc-soak.mjs [--seconds 40] [--concurrency 64] [--model digits] [--repo models/repository]
//                          [--node-flags "--flag ..."] [--json] [-- SERVE ARGS...]
//
// Everything after `--` goes to `umbra serve` (e.g. `-- --monitoring off`); --node-flags go to the
// server's node (e.g. "--separate-gc-phases" to see whether a V8 setting changes the picture).
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { runPerf } from '../dist/perf/index.js';

const argv = process.argv.slice(2);
const split = argv.indexOf('--');
const own = split >= 0 ? argv.slice(0, split) : argv;
const serveArgs = split >= 0 ? argv.slice(split + 1) : [];
function option(name, fallback) {
  const i = own.indexOf(`--${name}`);
  return i >= 0 && own[i + 1] !== undefined ? own[i + 1] : fallback;
}
const SECONDS = Number(option('seconds', '40'));
const CONCURRENCY = Number(option('concurrency', '64'));
const MODEL = option('model', 'digits');
const REPO = option('repo', 'models/repository');
const NODE_FLAGS = option('node-flags', '').split(/\s+/).filter(Boolean);
const AS_JSON = own.includes('--json');
if (!(SECONDS > 0) || !(CONCURRENCY > 0)) {
  process.stderr.write('gc-soak: --seconds and --concurrency take positive numbers (e.g. --seconds 40 --concurrency 64)\n');
  process.exit(2);
}

const port = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port: p } = probe.address();
    probe.close(() => resolve(p));
  });
});
const server = spawn('node', [...NODE_FLAGS, '--trace-gc-nvp', 'bin/umbra.js', 'serve', '--grpc-port', '0', '--repo', REPO, '--port', String(port), ...serveArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
let trace = '';
server.stdout.setEncoding('utf8');
server.stdout.on('data', (text) => { trace += text; });
const exited = new Promise((resolve) => server.once('exit', resolve));

async function ready() {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v2/health/ready`);
      if (r.ok) return;
    } catch { /* not listening yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the server did not become ready in 20 s');
}

let result;
try {
  await ready();
  const marker = trace.length;
  const [level] = await runPerf({ url: `http://127.0.0.1:${port}`, model: MODEL, concurrency: [CONCURRENCY], durationS: SECONDS, warmupMs: 1000, serverStats: false, log: () => {} });
  result = { level, lines: trace.slice(marker).split('\n') };
} finally {
  server.kill('SIGTERM');
  await exited;
}

// One line per collection per isolate: "[pid:0xISOLATE] N ms: pause=... gc=s ... promoted=...".
// The main thread's isolate is the one with the most young collections (workers have their own).
const isolates = new Map();
for (const line of result.lines) {
  const m = /^\[\d+:(0x[0-9a-f]+)\]/.exec(line);
  const kind = / gc=(\w+)/.exec(line)?.[1];
  if (!m || !kind) continue;
  const s = isolates.get(m[1]) ?? { young: 0, full: 0, promotedBytes: 0, pauseMs: 0 };
  if (kind === 's' || kind === 'mmc') s.young += 1;
  else s.full += 1;
  s.promotedBytes += Number(/ promoted=(\d+)/.exec(line)?.[1] ?? 0);
  s.pauseMs += Number(/ pause=([\d.]+)/.exec(line)?.[1] ?? 0);
  isolates.set(m[1], s);
}
if (process.env.GC_SOAK_ISOLATES) for (const [k, v] of isolates) process.stderr.write(`${k} ${JSON.stringify(v)}\n`);
const main = [...isolates.values()].sort((a, b) => b.young - a.young)[0] ?? { young: 0, full: 0, promotedBytes: 0, pauseMs: 0 };
const requests = result.level.throughput * SECONDS;
const report = {
  seconds: SECONDS, concurrency: CONCURRENCY, model: MODEL, serveArgs, nodeFlags: NODE_FLAGS,
  throughput: Math.round(result.level.throughput), errors: result.level.errors,
  youngCollections: main.young, fullCollections: main.full,
  promotedMB: Number((main.promotedBytes / 1e6).toFixed(1)),
  promotedBytesPerRequest: Math.round(main.promotedBytes / Math.max(1, requests)),
  gcPauseMs: Math.round(main.pauseMs),
};
if (AS_JSON) process.stdout.write(`${JSON.stringify(report)}\n`);
else {
  process.stdout.write(`${report.throughput} req/s (${report.errors} errors) over ${SECONDS} s at concurrency ${CONCURRENCY} on ${MODEL}; main thread: ${report.youngCollections} young and ${report.fullCollections} full collections, ${report.promotedMB} MB promoted (${report.promotedBytesPerRequest} B per request), ${report.gcPauseMs} ms in GC pauses\n`);
}
