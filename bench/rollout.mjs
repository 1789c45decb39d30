// Rollouts through the real server, as a user runs them: `umbra serve` on a copy of the bundled
// repository, digits pinned to version 1, the rollout body of docs/traffic.md, and `umbra perf`
// driving the test split of digits.csv at each concurrency until the rollout ends.
//   node bench/rollout.mjs [--concurrency 1,4,32] [--scenarios good,slow,broken,auto] [--repeat 1] [--limit-seconds 240]
// Scenarios: good = digits v2 (another training of the same MLP); slow = v1 with an extra heavy
// layer (32 -> 4096 -> 4096 -> 32, its output scaled by 1e-9, so answers agree and only latency
// differs); broken = an untrained 64-32-10 MLP; auto = a repository with "rollout": "auto" and
// --poll-seconds 1, into which v2 is dropped while perf runs.
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel } from '../dist/onnx/builder.js';
import { readModel, writeModel } from '../dist/onnx/model-io.js';
import { tensorValues } from '../dist/onnx/tensor-data.js';
import { digitsModel } from '../dist/onnx/build-examples.js';
import { seededRandom } from '../dist/random.js';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const CONCURRENCY = arg('--concurrency', '1,4,32').split(',').map(Number);
const SCENARIOS = arg('--scenarios', 'good,slow,broken,auto').split(',');
const REPEAT = Number(arg('--repeat', '1'));
const LIMIT_S = Number(arg('--limit-seconds', '240'));
const TOKEN = 'bench-token';
const ROOT = new URL('..', import.meta.url).pathname;

/** The rollout of docs/traffic.md. */
const DOCS_ROLLOUT = {
  steps: [{ shadow: true, min_requests: 200 }, { weight: 0.05, min_requests: 200, min_seconds: 0 }, { weight: 0.25, min_requests: 200 }, { weight: 0.5, min_requests: 200 }, { weight: 1, min_requests: 200 }],
  analysis: { max_error_rate: 0.01, max_latency_ratio: 1.5, min_agreement: 0.95 },
  shadow_sample: 1.0,
};

function v1Weights() {
  const model = readModel(join(ROOT, 'models/repository/digits/1/model.onnx'));
  const get = (name) => Float32Array.from(tensorValues(model.graph.initializer.find((t) => t.name === name)).data);
  return { w1: get('fc1.weight'), b1: get('fc1.bias'), w2: get('fc2.weight'), b2: get('fc2.bias') };
}

/** v1 with a 32 -> 4096 -> 4096 -> 32 block added to its hidden layer, scaled to nothing. */
function slowModel() {
  const w = v1Weights();
  const random = seededRandom(9);
  const dense = (n, scale) => Float32Array.from({ length: n }, () => (random() * 2 - 1) * scale);
  return buildModel({
    graphName: 'digits_slow',
    inputs: [{ name: 'pixels', datatype: 'FP32', dims: ['batch', 64] }],
    outputs: [{ name: 'probabilities', datatype: 'FP32', dims: ['batch', 10] }, { name: 'label', datatype: 'INT64', dims: ['batch'] }],
    initializers: [
      { name: 'pixel_scale', datatype: 'FP32', dims: [], values: [1 / 16] },
      { name: 'fc1.weight', datatype: 'FP32', dims: [32, 64], values: w.w1 },
      { name: 'fc1.bias', datatype: 'FP32', dims: [32], values: w.b1 },
      { name: 'heavy1.weight', datatype: 'FP32', dims: [4096, 32], values: dense(4096 * 32, 0.1) },
      { name: 'heavy2.weight', datatype: 'FP32', dims: [4096, 4096], values: dense(4096 * 4096, 0.02) },
      { name: 'heavy3.weight', datatype: 'FP32', dims: [32, 4096], values: dense(32 * 4096, 1e-9) },
      { name: 'fc2.weight', datatype: 'FP32', dims: [10, 32], values: w.w2 },
      { name: 'fc2.bias', datatype: 'FP32', dims: [10], values: w.b2 },
    ],
    nodes: [
      { op: 'Mul', inputs: ['pixels', 'pixel_scale'], outputs: ['scaled'] },
      { op: 'Gemm', inputs: ['scaled', 'fc1.weight', 'fc1.bias'], outputs: ['fc1'], attributes: { transB: 1 } },
      { op: 'Relu', inputs: ['fc1'], outputs: ['hidden'] },
      { op: 'Gemm', inputs: ['hidden', 'heavy1.weight'], outputs: ['h1'], attributes: { transB: 1 } },
      { op: 'Relu', inputs: ['h1'], outputs: ['r1'] },
      { op: 'Gemm', inputs: ['r1', 'heavy2.weight'], outputs: ['h2'], attributes: { transB: 1 } },
      { op: 'Relu', inputs: ['h2'], outputs: ['r2'] },
      { op: 'Gemm', inputs: ['r2', 'heavy3.weight'], outputs: ['h3'], attributes: { transB: 1 } },
      { op: 'Add', inputs: ['hidden', 'h3'], outputs: ['hidden2'] },
      { op: 'Gemm', inputs: ['hidden2', 'fc2.weight', 'fc2.bias'], outputs: ['logits'], attributes: { transB: 1 } },
      { op: 'Softmax', inputs: ['logits'], outputs: ['probabilities'], attributes: { axis: 1 } },
      { op: 'ArgMax', inputs: ['logits'], outputs: ['label'], attributes: { axis: 1, keepdims: 0 } },
    ],
  });
}

/** A 64-32-10 MLP never trained: Glorot-uniform weights, digits' signature. */
function brokenModel() {
  const random = seededRandom(17);
  const u = (n, limit) => Float64Array.from({ length: n }, () => (random() * 2 - 1) * limit);
  return digitsModel({ hidden: 32, w1: u(32 * 64, Math.sqrt(6 / 96)), b1: new Float64Array(32), w2: u(10 * 32, Math.sqrt(6 / 42)), b2: new Float64Array(10) }, 'untrained digits MLP (bench/rollout.mjs)');
}

/** The test split of digits.csv as perf input: one request per row. */
function inputFile(dir) {
  const rows = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').trim().split(/\r?\n/).slice(1).map((l) => l.split(',')).filter((c) => c[65] === 'test');
  const path = join(dir, 'digits-test.json');
  writeFileSync(path, JSON.stringify(rows.map((c) => ({ inputs: [{ name: 'pixels', shape: [1, 64], datatype: 'FP32', data: c.slice(0, 64).map(Number) }] }))));
  return path;
}

function repoFor(scenario) {
  const dir = mkdtempSync(join(tmpdir(), `umbra-rollout-${scenario}-`));
  cpSync(join(ROOT, 'models/repository/digits'), join(dir, 'digits'), { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, 'digits/config.json'), 'utf8'));
  if (scenario === 'slow' || scenario === 'broken') {
    writeModel(scenario === 'slow' ? slowModel() : brokenModel(), join(dir, 'digits/3/model.onnx'));
    config.version_policy = { specific: { versions: [1, 3] } };
  }
  if (scenario === 'auto') {
    rmSync(join(dir, 'digits/2'), { recursive: true });
    config.version_policy = { all: {} };
    config.rollout = 'auto';
  }
  writeFileSync(join(dir, 'digits/config.json'), JSON.stringify(config, null, 2));
  return dir;
}

function serve(repo, extra = []) {
  const port = 20000 + Math.floor(Math.random() * 20000);
  // Each scenario's traffic state and log in its own state directory, beside its repository copy.
  const child = spawn(process.execPath, [join(ROOT, 'bin/umbra.js'), 'serve', '--grpc-port', '0', '--repo', repo, '--state-dir', `${repo}.state`, '--port', String(port), '--admin-token', TOKEN, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  child.stdout.on('data', (d) => log.push(...d.toString().split('\n').filter(Boolean)));
  child.stderr.on('data', (d) => log.push(...d.toString().split('\n').filter(Boolean)));
  return { url: `http://127.0.0.1:${port}`, child, log };
}

async function call(url, method = 'GET', body) {
  const init = { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(url, init);
  return { status: r.status, json: await r.json().catch(() => null) };
}

async function ready(url) {
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${url}/v2/health/ready`)).status === 200) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} never became ready`);
}

function perf(url, concurrency, input, seconds) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/umbra.js'), 'perf', '--url', url, '-m', 'digits', '--concurrency', String(concurrency), '--duration', String(seconds), '--warmup-ms', '0', '--input-data', input, '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', () => {
      try {
        const level = JSON.parse(out)[0];
        resolve({ requests: Math.round(level.throughput * seconds), throughput: level.throughput });
      } catch {
        resolve({ requests: 0, throughput: 0 });
      }
    });
  });
}

async function run(scenario, concurrency, input) {
  const repo = repoFor(scenario);
  const server = serve(repo, scenario === 'auto' ? ['--poll-seconds', '1'] : []);
  const started = Date.now();
  let requests = 0;
  try {
    await ready(server.url);
    if (scenario === 'auto') {
      // The first load pins v1; v2 dropped in starts the configured rollout by itself.
      await perf(server.url, concurrency, input, 1);
      cpSync(join(ROOT, 'models/repository/digits/2'), join(repo, 'digits/2'), { recursive: true });
      for (let i = 0; i < 100 && (await call(`${server.url}/v2/models/digits/rollout`)).status !== 200; i++) requests += (await perf(server.url, concurrency, input, 1)).requests;
    } else {
      await call(`${server.url}/v2/models/digits/traffic`, 'PUT', { primary: '1' });
      const start = await call(`${server.url}/v2/models/digits/rollout`, 'POST', { candidate: scenario === 'good' ? '2' : '3', ...DOCS_ROLLOUT });
      if (start.status !== 201) throw new Error(`rollout refused: ${JSON.stringify(start.json)}`);
    }
    const t0 = Date.now();
    let doc;
    for (;;) {
      requests += (await perf(server.url, concurrency, input, 2)).requests;
      doc = (await call(`${server.url}/v2/models/digits/rollout`)).json;
      if (doc.state !== 'running' || Date.now() - t0 > LIMIT_S * 1000) break;
    }
    const last = doc.history.at(-1);
    const rollbackRules = last.action === 'rollback' ? (last.evidence?.rules ?? []).filter((r) => r.verdict === 'fail').map((r) => r.rule).join('+') : '';
    const judged = doc.history.filter((d) => d.evidence);
    const candidateAnswers = judged.reduce((n, d) => n + (d.evidence.candidate?.requests ?? 0), 0);
    const latency = judged.map((d) => d.evidence.rules.find((r) => r.rule === 'latency')?.value ?? '-').join(' ');
    return {
      scenario, concurrency, state: doc.state, step: last.step, seconds: Math.round((Date.now() - t0) / 100) / 10, requests, candidateAnswers, latency,
      actions: doc.history.map((d) => (d.action === 'advance' ? `a${d.step}` : d.action)).join(' '),
      failed: rollbackRules, reason: last.reason,
      logLines: server.log.filter((l) => l.includes(' rollout of ')).length,
    };
  } finally {
    server.child.kill('SIGTERM');
    await new Promise((r) => server.child.on('exit', r));
    rmSync(repo, { recursive: true, force: true });
    rmSync(`${repo}.state`, { recursive: true, force: true });
  }
}

const scratch = mkdtempSync(join(tmpdir(), 'umbra-rollout-input-'));
const input = inputFile(scratch);
const results = [];
for (let r = 0; r < REPEAT; r++) {
  for (const scenario of SCENARIOS) {
    for (const c of CONCURRENCY) {
      const res = await run(scenario, c, input);
      results.push(res);
      console.log(JSON.stringify(res));
    }
  }
}
rmSync(scratch, { recursive: true, force: true });
console.log('\n| scenario | clients | outcome | at step | seconds | perf requests | candidate answers judged | decisions | latency ratio per decision | failed rule | log lines |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const x of results) console.log(`| ${x.scenario} | ${x.concurrency} | ${x.state} | ${x.step} | ${x.seconds} | ${x.requests} | ${x.candidateAnswers} | ${x.actions} | ${x.latency} | ${x.failed || '-'} | ${x.logLines} |`);
