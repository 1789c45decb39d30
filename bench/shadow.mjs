#!/usr/bin/env node
// What a 100% shadow costs the primary: Umbra runs in a child process (`umbra serve`) on a
// temporary repository with two versions of a small MLP. First the saturation throughput is
// measured (closed loop), then half of it is offered open-loop (fixed arrival schedule; latency
// counted from the scheduled send time, so stalls are not hidden) with no shadow and with a
// 100% shadow of version 2, alternating, all in the same run. Needs `npx tsc -p tsconfig.json`.
//
//   node bench/shadow.mjs [--seconds 6] [--rounds 4] [--workers 2] [--json]
import http from 'node:http';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { buildModel } from '../dist/onnx/builder.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { seededRandom as seeded } from '../dist/random.js';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
}
const SECONDS = arg('seconds', 6);
const ROUNDS = arg('rounds', 4);
const WORKERS = arg('workers', 2);
const AS_JSON = process.argv.includes('--json');
const TOKEN = 'bench-token';
const IN = 64;
const HIDDEN = 256;
const OUT = 10;

function mlp(seed) {
  const random = seeded(seed);
  const weights = (n) => Float32Array.from({ length: n }, () => (random() - 0.5) * 0.2);
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', IN] }],
    outputs: [{ name: 'probabilities', datatype: 'FP32', dims: ['batch', OUT] }],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w1'], outputs: ['h1'] },
      { op: 'Relu', inputs: ['h1'], outputs: ['a1'] },
      { op: 'MatMul', inputs: ['a1', 'w2'], outputs: ['h2'] },
      { op: 'Relu', inputs: ['h2'], outputs: ['a2'] },
      { op: 'MatMul', inputs: ['a2', 'w3'], outputs: ['logits'] },
      { op: 'Softmax', inputs: ['logits'], outputs: ['probabilities'], attributes: { axis: 1 } },
    ],
    initializers: [
      { name: 'w1', datatype: 'FP32', dims: [IN, HIDDEN], values: weights(IN * HIDDEN) },
      { name: 'w2', datatype: 'FP32', dims: [HIDDEN, HIDDEN], values: weights(HIDDEN * HIDDEN) },
      { name: 'w3', datatype: 'FP32', dims: [HIDDEN, OUT], values: weights(HIDDEN * OUT) },
    ],
  });
}

function makeRepo() {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-bench-shadow-'));
  for (const [v, seed] of [[1, 1], [2, 2]]) {
    mkdirSync(join(dir, 'mlp', String(v)), { recursive: true });
    writeModel(mlp(seed), join(dir, 'mlp', String(v), 'model.onnx'));
  }
  const config = { version_policy: { all: {} }, max_batch_size: 16, dynamic_batching: { max_queue_delay_microseconds: 200 } };
  writeFileSync(join(dir, 'mlp', 'config.json'), JSON.stringify(config));
  return dir;
}

async function startUmbra(dir, port) {
  const child = spawn(process.execPath, ['bin/umbra.js', 'serve', '--grpc-port', '0', '--repo', dir, '--port', String(port), '--workers', String(WORKERS), '--admin-token', TOKEN, '--monitoring', 'off'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (/listening on/.test(out)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`umbra exited with ${code}: ${out}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    const r = await fetch(`${base}/v2/health/ready`).catch(() => undefined);
    if (r?.status === 200) break;
    await new Promise((r2) => setTimeout(r2, 50));
  }
  return { child, base };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const random = seeded(42);
const BODIES = Array.from({ length: 32 }, () => Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, IN], data: Array.from({ length: IN }, () => Math.round(random() * 1000) / 1000) }] })));

function post(port, i) {
  return new Promise((resolve) => {
    const body = BODIES[i % BODIES.length];
    const req = http.request({ host: '127.0.0.1', port, path: '/v2/models/mlp/infer', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
    req.end(body);
  });
}

async function saturation(port, seconds) {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  let i = 0;
  const loop = async () => {
    while (performance.now() < end) {
      if (await post(port, i++)) done += 1;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: 32 }, loop));
  return done / ((performance.now() - start) / 1000);
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

async function openLoop(port, rate, seconds) {
  const latencies = [];
  let errors = 0;
  const interval = 1000 / rate;
  const total = Math.floor(rate * seconds);
  const start = performance.now();
  const inflight = [];
  for (let k = 0; k < total; k++) {
    const due = start + k * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inflight.push(post(port, k).then((ok) => {
      if (ok) latencies.push(performance.now() - due);
      else errors += 1;
    }));
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { requests: total, errors, throughput: latencies.length / elapsed, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) };
}

async function setShadow(base, sample) {
  const policy = { primary: '1', canary: null, shadows: sample > 0 ? [{ version: '2', sample }] : [] };
  const r = await fetch(`${base}/v2/models/mlp/traffic`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(policy) });
  if (r.status !== 200) throw new Error(`PUT traffic: ${r.status} ${await r.text()}`);
}

async function main() {
  const dir = makeRepo();
  const port = 20000 + Math.floor(Math.random() * 20000);
  const { child, base } = await startUmbra(dir, port);
  try {
    await setShadow(base, 0);
    await saturation(port, 1); // warm-up
    const saturated = await saturation(port, 3);
    const rate = Math.max(10, Math.floor(saturated / 2));
    const runs = [];
    for (let round = 0; round < ROUNDS; round++) {
      // ABBA order, so drift in the machine's load does not favour one side.
      for (const sample of round % 2 === 0 ? [0, 1] : [1, 0]) {
        await setShadow(base, sample);
        const r = await openLoop(port, rate, SECONDS);
        const shadow = await (await fetch(`${base}/v2/models/mlp/shadow`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
        runs.push({ round, shadow: sample, ...r, shadowStats: shadow.versions['2'] ?? null });
      }
    }
    const summary = (sample) => {
      const rs = runs.filter((r) => r.shadow === sample);
      const mean = (k) => rs.reduce((a, r) => a + r[k], 0) / rs.length;
      return { p50: mean('p50'), p99: mean('p99'), throughput: mean('throughput'), errors: rs.reduce((a, r) => a + r.errors, 0) };
    };
    const off = summary(0);
    const on = summary(1);
    const last = runs.filter((r) => r.shadow === 1).at(-1).shadowStats;
    const result = { machine: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`, node: process.version, workers: WORKERS, saturatedRps: saturated, offeredRps: rate, seconds: SECONDS, rounds: ROUNDS, off, on, p99Ratio: on.p99 / off.p99, shadowTotals: last, runs };
    if (AS_JSON) {
      console.log(JSON.stringify(result, null, 2));
    } else {
      console.log(`saturation ${saturated.toFixed(0)} req/s (closed loop, 32 in flight); offered ${rate} req/s open-loop, ${SECONDS}s x ${ROUNDS} rounds each`);
      console.log('| shadow | primary p50 ms | primary p99 ms | throughput req/s | errors |');
      console.log('|---|---:|---:|---:|---:|');
      for (const [name, s] of [['0%', off], ['100%', on]]) console.log(`| ${name} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(3)} | ${s.throughput.toFixed(0)} | ${s.errors} |`);
      console.log(`p99 with shadow / without: ${(on.p99 / off.p99).toFixed(3)} (target <= 1.25)`);
      console.log(`shadow v2 totals: ${JSON.stringify({ requests: last?.requests, dropped: last?.dropped, agreement: last?.agreement, mean_abs_diff: last?.mean_abs_diff })}`);
    }
  } finally {
    child.kill('SIGTERM');
    agent.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
