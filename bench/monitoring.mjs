#!/usr/bin/env node
// What monitoring costs in serving throughput: two Umbra servers in this process on the same tiny
// model, one with monitoring off and one with everything on (metrics, drift with a captured
// reference, feedback join, prediction log to SQLite with inputs, every request logged). Closed
// loop at concurrency 64 over keep-alive HTTP, rounds alternating ABBA in the same run.
// A third server runs monitoring without the log. Needs `npx tsc -p tsconfig.json`.
//
//   node bench/monitoring.mjs [--seconds 5] [--rounds 4] [--workers 2] [--concurrency 64] [--json]
import http from 'node:http';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel } from '../dist/onnx/builder.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { startServer } from '../dist/index.js';
import { seededRandom as seeded } from '../dist/random.js';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
}
const SECONDS = arg('seconds', 5);
const ROUNDS = arg('rounds', 4);
const WORKERS = arg('workers', 2);
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
  writeFileSync(join(dir, 'tiny', 'config.json'), JSON.stringify({ max_batch_size: 64, dynamic_batching: { max_queue_delay_microseconds: 100 } }));
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

async function main() {
  const repo = makeRepo();
  const logPath = join(repo, '.umbra', 'bench.sqlite');
  const base = { repository: repo, host: '127.0.0.1', port: 0, workers: WORKERS };
  const off = await startServer({ ...base, monitoring: false });
  const on = await startServer({ ...base, monitoring: { log: { url: `sqlite:${logPath}` } } });
  // Everything but the prediction log, to show what the log's writer thread costs on its own.
  const nolog = await startServer({ ...base, monitoring: {} });
  const servers = { off, on, nolog };
  try {
    // Warm-up, which also fills the drift reference (first 1000 rows) on the monitored server.
    await load(off.port, 1.5);
    await load(on.port, 1.5);
    await load(nolog.port, 1.5);
    const order = [];
    const rotations = [['off', 'on', 'nolog'], ['on', 'nolog', 'off'], ['nolog', 'off', 'on']];
    for (let r = 0; r < ROUNDS; r++) order.push(...rotations[r % 3]);
    const results = { off: [], on: [], nolog: [] };
    for (const name of order) {
      const r = await load(servers[name].port, SECONDS);
      results[name].push(r);
      if (!AS_JSON) process.stderr.write(`${name}: ${r.rps.toFixed(0)} req/s, main thread ${r.busyUsPerRequest.toFixed(1)} us/req, CPU ${r.cpuUsPerRequest.toFixed(1)} us/req (${r.errors} errors)\n`);
    }
    const median = (xs) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    };
    const of = (name, key) => median(results[name].map((r) => r[key]));
    const summary = {
      seconds: SECONDS, rounds: ROUNDS, workers: WORKERS, concurrency: CONCURRENCY,
      off: of('off', 'rps'), on: of('on', 'rps'), nolog: of('nolog', 'rps'),
      cpuUsNoLog: of('nolog', 'cpuUsPerRequest'),
      busyUsOff: of('off', 'busyUsPerRequest'), busyUsOn: of('on', 'busyUsPerRequest'),
      cpuUsOff: of('off', 'cpuUsPerRequest'), cpuUsOn: of('on', 'cpuUsPerRequest'),
      runs: results,
    };
    summary.cost = 1 - summary.on / summary.off;
    summary.costNoLog = 1 - summary.nolog / summary.off;
    summary.busyCost = summary.busyUsOn / summary.busyUsOff - 1;
    summary.cpuCost = summary.cpuUsOn / summary.cpuUsOff - 1;
    const served = await (await fetch(`${on.url}/metrics`)).text();
    summary.served = Number(/umbra_requests_total\{[^}]*outcome="success"\} (\d+)/.exec(served)?.[1] ?? 0);
    await on.stop(); // flushes the log
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(logPath, { readonly: true });
    summary.logged = db.prepare('SELECT count(*) AS n FROM umbra_predictions').get().n;
    db.close();
    if (AS_JSON) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      const pct = (x) => `${(x * 100).toFixed(1)}%`;
      process.stdout.write(`medians: off ${summary.off.toFixed(0)} req/s, on ${summary.on.toFixed(0)} req/s: throughput cost ${pct(summary.cost)}; without the log ${summary.nolog.toFixed(0)} req/s: ${pct(summary.costNoLog)}\n`);
      process.stdout.write(`main thread per request: off ${summary.busyUsOff.toFixed(1)} us, on ${summary.busyUsOn.toFixed(1)} us (+${pct(summary.busyCost)}); CPU per request: off ${summary.cpuUsOff.toFixed(1)} us, on ${summary.cpuUsOn.toFixed(1)} us (+${pct(summary.cpuCost)}), without the log ${summary.cpuUsNoLog.toFixed(1)} us\n`);
      process.stdout.write(`${summary.logged} of ${summary.served} monitored predictions logged\n`);
    }
  } finally {
    await off.stop();
    await on.stop();
    await nolog.stop();
    rmSync(repo, { recursive: true, force: true });
  }
}

await main();
