#!/usr/bin/env node
// What monitoring costs in serving throughput: Umbra servers in this process on the same tiny
// model, all built by the settings resolver `umbra serve` uses (src/cli/settings.ts), so they get
// its defaults; they differ only in monitoring:
//   off      --monitoring off
//   default  what `umbra serve` does out of the box (metrics, drift, feedback join, SQLite log)
//   full     default plus --log-sample 1 --log-inputs-sample 1: every prediction logged with its inputs
//   nolog    default with --log-db off: everything but the prediction log
// Closed loop at concurrency 64 over keep-alive HTTP, rounds in rotating order in the same run.
// Needs `npx tsc -p tsconfig.json`.
//
//   node bench/monitoring.mjs [--seconds 5] [--rounds 4] [--workers N] [--concurrency 64] [--only off,default] [--json]
//   node bench/monitoring.mjs --micro    CPU per event of the hooks (serving thread) and per row of
//                                        the log writer, without HTTP: steadier on a busy machine
import http from 'node:http';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel } from '../dist/onnx/builder.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { startServer } from '../dist/index.js';
import { resolveServeSettings } from '../dist/cli/settings.js';
import { seededRandom as seeded } from '../dist/random.js';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
}
const SECONDS = arg('seconds', 5);
const ROUNDS = arg('rounds', 4);
const WORKERS = arg('workers', 0); // 0: the serve default (one per core)
const CONCURRENCY = arg('concurrency', 64);
const AS_JSON = process.argv.includes('--json');
const IN = 16;
const HIDDEN = 32;
const OUT = 4;

/** The tiny model: 16 -> 32 -> 4 with softmax scores and an INT64 argmax label. */
function tinyModel() {
  const random = seeded(3);
  const weights = (n) => Float32Array.from({ length: n }, () => (random() - 0.5) * 0.5);
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', IN] }],
    outputs: [{ name: 'scores', datatype: 'FP32', dims: ['batch', OUT] }, { name: 'label', datatype: 'INT64', dims: ['batch'] }],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w1'], outputs: ['h'] },
      { op: 'Relu', inputs: ['h'], outputs: ['a'] },
      { op: 'MatMul', inputs: ['a', 'w2'], outputs: ['logits'] },
      { op: 'Softmax', inputs: ['logits'], outputs: ['scores'], attributes: { axis: 1 } },
      { op: 'ArgMax', inputs: ['logits'], outputs: ['label'], attributes: { axis: 1, keepdims: 0 } },
    ],
    initializers: [
      { name: 'w1', datatype: 'FP32', dims: [IN, HIDDEN], values: weights(IN * HIDDEN) },
      { name: 'w2', datatype: 'FP32', dims: [HIDDEN, OUT], values: weights(HIDDEN * OUT) },
    ],
  });
}

function makeRepo() {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-bench-monitoring-'));
  mkdirSync(join(dir, 'tiny', '1'), { recursive: true });
  writeModel(tinyModel(), join(dir, 'tiny', '1', 'model.onnx'));
  // Batching as configured by default (no queue delay); only the batch bound is set.
  writeFileSync(join(dir, 'tiny', 'config.json'), JSON.stringify({ max_batch_size: 64 }));
  return dir;
}

const random = seeded(42);
const BODIES = Array.from({ length: 256 }, () => JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, IN], data: Array.from({ length: IN }, () => Math.round((random() * 4 - 2) * 1000) / 1000) }] }));

async function load(port, seconds) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  let done = 0;
  let errors = 0;
  const until = performance.now() + seconds * 1000;
  const one = (body) => new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v2/models/tiny/infer', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
    req.end(body);
  });
  let k = 0;
  const loop = async () => {
    while (performance.now() < until) {
      if (await one(BODIES[k++ % BODIES.length])) done += 1;
      else errors += 1;
    }
  };
  const started = performance.now();
  const elu = performance.eventLoopUtilization();
  const cpu = process.cpuUsage();
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  const elapsed = (performance.now() - started) / 1000;
  const busy = performance.eventLoopUtilization(elu);
  const used = process.cpuUsage(cpu);
  agent.destroy();
  // Main-thread busy time per request (server and load generator share the thread) and process
  // CPU time per request (all threads): less sensitive to other load on the machine than req/s.
  return { rps: done / elapsed, errors, busyUsPerRequest: (busy.active * 1000) / done, cpuUsPerRequest: (used.user + used.system) / done };
}

const ONLY = (() => {
  const i = process.argv.indexOf('--only');
  return i > 0 ? process.argv[i + 1].split(',') : ['off', 'default', 'full', 'nolog'];
})();

/** Server options exactly as `umbra serve --repo REPO ...flags` resolves them. */
function serveOptions(repo, flags) {
  const options = resolveServeSettings({ repo, host: '127.0.0.1', port: 0, grpcPort: 0, ...flags, ...(WORKERS > 0 ? { workers: WORKERS } : {}) }, {});
  options.port = 0;
  return options;
}

async function main() {
  const repo = makeRepo();
  const configs = {
    off: { monitoring: 'off' },
    default: {},
    full: { logSample: 1, logInputs: 'on', logInputsSample: 1, logDb: `sqlite:${join(repo, '.umbra', 'full.sqlite')}` },
    nolog: { logDb: 'off' },
  };
  const names = ONLY.filter((n) => configs[n]);
  const servers = {};
  const options = {};
  for (const name of names) {
    options[name] = serveOptions(repo, configs[name]);
    servers[name] = await startServer(options[name]);
  }
  try {
    // Warm-up, which also fills the drift reference (first 1000 rows) on the monitored servers.
    for (const name of names) await load(servers[name].port, 1.5);
    const order = [];
    for (let r = 0; r < ROUNDS; r++) for (let i = 0; i < names.length; i++) order.push(names[(r + i) % names.length]);
    const results = Object.fromEntries(names.map((n) => [n, []]));
    for (const name of order) {
      const r = await load(servers[name].port, SECONDS);
      results[name].push(r);
      if (!AS_JSON) process.stderr.write(`${name}: ${r.rps.toFixed(0)} req/s, main thread ${r.busyUsPerRequest.toFixed(1)} us/req, CPU ${r.cpuUsPerRequest.toFixed(1)} us/req (${r.errors} errors)\n`);
    }
    const median = (xs) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    };
    const summary = { seconds: SECONDS, rounds: ROUNDS, workers: options[names[0]].workers, concurrency: CONCURRENCY, servers: {}, runs: results };
    for (const name of names) {
      const of = (key) => median(results[name].map((r) => r[key]));
      const m = options[name].monitoring;
      summary.servers[name] = {
        rps: of('rps'), busyUsPerRequest: of('busyUsPerRequest'), cpuUsPerRequest: of('cpuUsPerRequest'),
        log: m && m.log ? { url: m.log.url, sample: m.log.sample ?? 'default', inputsSample: m.log.inputs === false ? 0 : m.log.inputsSample ?? 'default' } : null,
      };
    }
    const off = summary.servers.off;
    for (const name of names) {
      const s = summary.servers[name];
      if (off && name !== 'off') {
        s.cost = 1 - s.rps / off.rps;
        s.cpuCost = s.cpuUsPerRequest / off.cpuUsPerRequest - 1;
        // Paired: each rotation's round against the off round of the same rotation, so load that
        // comes and goes on a shared machine hits both sides of a pair alike; median over rounds.
        s.pairedCost = median(results[name].map((r, i) => 1 - r.rps / results.off[i].rps));
      }
    }
    for (const name of names) {
      if (!summary.servers[name].log) continue;
      const served = await (await fetch(`${servers[name].url}/metrics`)).text();
      summary.servers[name].served = [...served.matchAll(/umbra_requests_total\{[^}]*outcome="success"\} (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
      await servers[name].stop(); // flushes the log
      const { default: Database } = await import('better-sqlite3');
      const db = new Database(summary.servers[name].log.url.slice('sqlite:'.length), { readonly: true });
      summary.servers[name].logged = db.prepare('SELECT count(*) AS n FROM umbra_predictions').get().n;
      summary.servers[name].loggedWithInputs = db.prepare('SELECT count(*) AS n FROM umbra_predictions WHERE inputs IS NOT NULL').get().n;
      db.close();
    }
    if (AS_JSON) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      const pct = (x) => `${(x * 100).toFixed(1)}%`;
      for (const name of names) {
        const s = summary.servers[name];
        const cost = s.cost === undefined ? '' : `, throughput cost ${pct(s.cost)} (paired ${pct(s.pairedCost)}), CPU/request +${pct(s.cpuCost)}`;
        const logged = s.log ? `, ${s.logged} of ${s.served} predictions logged (${s.loggedWithInputs} with inputs)` : '';
        process.stdout.write(`${name}: median ${s.rps.toFixed(0)} req/s, main thread ${s.busyUsPerRequest.toFixed(1)} us/req, CPU ${s.cpuUsPerRequest.toFixed(1)} us/req${cost}${logged}\n`);
      }
    }
  } finally {
    for (const name of names) await servers[name].stop();
    rmSync(repo, { recursive: true, force: true });
  }
}

/** The hooks alone: a synthetic answered event per request, emitted into a running server's hooks. */
async function microHooks(repo, flags) {
  const server = await startServer(serveOptions(repo, flags));
  const mv = server.umbra.manager.get('tiny');
  const events = (n, first) => Array.from({ length: n }, (_, i) => {
    const request = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, IN], data: Float32Array.from({ length: IN }, () => random() * 4 - 2) }] };
    server.umbra.hooks.prepare(mv, request, {});
    const response = { model_name: 'tiny', model_version: '1', id: request.id, outputs: [{ name: 'scores', datatype: 'FP32', shape: [1, OUT], data: Float32Array.from({ length: OUT }, () => random()) }, { name: 'label', datatype: 'INT64', shape: [1], data: BigInt64Array.of(BigInt((first + i) % OUT)) }] };
    return { model: 'tiny', version: '1', role: 'primary', outcome: 'success', context: {}, request, response, timing: { queueMs: 0.01, computeMs: 0.02, rows: 1, batchRows: 8 }, durationMs: 0.1 };
  });
  const perRound = [];
  for (let round = 0; round < 5; round++) {
    const list = events(100_000, round * 100_000);
    let busy = 0;
    // In chunks of 1000 with a turn of the event loop between, so the log flushes as it would.
    // Wall time of the emit loop (process CPU would add the writer thread's work meanwhile).
    for (let i = 0; i < list.length; i += 1000) {
      const t0 = performance.now();
      for (let k = i; k < i + 1000; k++) server.umbra.hooks.emit(list[k]);
      busy += performance.now() - t0;
      await new Promise((resolve) => setImmediate(resolve));
    }
    perRound.push((busy * 1000) / list.length);
  }
  await server.stop();
  return Math.min(...perRound.slice(1)); // best warm round: least disturbed by other load
}

/** The log writer's work per row (encode + insert + commit), on this thread, batches of 1000. */
async function microWriter(repo, inputs) {
  const { openLogStore } = await import('../dist/monitor/log-store.js');
  const { PredictionPacker, packedColumns } = await import('../dist/monitor/log-packing.js');
  const store = await openLogStore(`sqlite:${join(repo, '.umbra', `writer-${inputs}.sqlite`)}`);
  const packer = new PredictionPacker();
  let seq = 0;
  let cpu = 0;
  const batches = 300;
  for (let b = 0; b < batches; b++) {
    for (let i = 0; i < 1000; i++) {
      packer.add({ id: `0123456789abcdef-${seq++}`, model: 'tiny', version: '1', role: 'primary', timeMs: Date.now(), latencyMs: 0.3,
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, IN], data: Float32Array.from({ length: IN }, () => random()) }],
        outputs: [{ name: 'scores', datatype: 'FP32', shape: [1, OUT], data: Float32Array.from({ length: OUT }, () => random()) }, { name: 'label', datatype: 'INT64', shape: [1], data: BigInt64Array.of(1n) }] }, random() < inputs);
    }
    const packed = packer.take();
    const c0 = process.cpuUsage();
    await store.insert(packedColumns(packed), []);
    const c = process.cpuUsage(c0);
    if (b >= 50) cpu += c.user + c.system;
  }
  await store.close();
  return cpu / ((batches - 50) * 1000);
}

async function micro() {
  const repo = makeRepo();
  try {
    await microHooks(repo, { logDb: `sqlite:${join(repo, '.umbra', 'micro-warm-up.sqlite')}` }); // compiles the hot code first, for all
    const hooks = {
      default: await microHooks(repo, {}),
      full: await microHooks(repo, { logInputsSample: 1, logDb: `sqlite:${join(repo, '.umbra', 'micro-full.sqlite')}` }),
      nolog: await microHooks(repo, { logDb: 'off' }),
    };
    const writer = { default: await microWriter(repo, 0.1), full: await microWriter(repo, 1) };
    if (AS_JSON) process.stdout.write(`${JSON.stringify({ hooksUsPerEvent: hooks, writerUsPerRow: writer }, null, 2)}\n`);
    else {
      for (const [name, us] of Object.entries(hooks)) process.stdout.write(`hooks, ${name}: ${us.toFixed(2)} us per request on the serving thread\n`);
      for (const [name, us] of Object.entries(writer)) process.stdout.write(`log writer, ${name}: ${us.toFixed(2)} us CPU per row (encode + insert + commit)\n`);
    }
  } finally {
    rmSync(repo, { recursive: true, force: true });
  }
}

if (process.argv.includes('--micro')) await micro();
else await main();
