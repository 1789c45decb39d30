#!/usr/bin/env node
// A pruned model served by `umbra serve` on the native backend against its dense original served
// on onnxruntime, as a user would run them: a PyTorch export (bench/native_torch_stack.py),
// `umbra prune`, two servers with the default worker count, `umbra perf` over binary HTTP. Each
// round runs the CLI's perf against the dense server and then the sparse one (the order swapping
// every round) at every batch size, so load from elsewhere on the host falls on both alike;
// the figure per batch size is the median of the rounds' sparse/dense rows/s ratios.
// bench/native-pairs.mjs measures the same files in-process (no server): the difference is what
// serving costs.
//
//   node bench/native-served.mjs [--model dense.onnx] [--pruned sparse.onnx] [--sparsity 0.9]
//     [--method global] [--layers 6] [--width 4096] [--relu] [--batches 64,1] [--concurrency 2]
//     [--rounds 3] [--seconds 6] [--workers N] [--monitoring on|off] [--log-db off|URL] [--json out.json]
//     [--node-flag FLAG ...]
//
// --node-flag starts both servers as `node FLAG bin/umbra.js serve`, for V8 settings that only
// apply at process start (e.g. --initial-old-space-size=128; bench/RESULTS-sparse.md).
// --monitoring and --log-db are handed to both servers; without them each server runs as a user
// gets it: monitoring on, and the prediction log in its own state directory (SQLite). Monitoring
// runs on the core thread and the log on a thread of its own, so on a 4096-wide model both are a
// visible part of what serving costs: the CPU table below shows them under "core" and "log".
//
// Without --model the stack is exported with /usr/bin/python3 (python3-torch); without --pruned
// it is pruned with `umbra prune --sparsity S --method M`. Both files stay in a temporary folder.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from './rotating-windows.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({
  options: {
    model: { type: 'string' },
    pruned: { type: 'string' },
    sparsity: { type: 'string', default: '0.9' },
    method: { type: 'string', default: 'global' },
    layers: { type: 'string', default: '6' },
    width: { type: 'string', default: '4096' },
    relu: { type: 'boolean', default: false },
    batches: { type: 'string', default: '64,1' },
    concurrency: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '6' },
    workers: { type: 'string' },
    monitoring: { type: 'string' },
    'log-db': { type: 'string' },
    json: { type: 'string' },
    'node-flag': { type: 'string', multiple: true, default: [] },
  },
});
const BATCHES = flags.batches.split(',').map(Number);
const ROUNDS = Number(flags.rounds);
const dir = mkdtempSync(join(tmpdir(), 'umbra-served-'));
const log = (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

function run(command, args, { quiet = false } = {}) {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; if (!quiet) process.stderr.write(d); });
    child.on('exit', (code) => (code === 0 ? resolveRun(stdout) : reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.slice(-600)}`))));
  });
}

async function freePort() {
  return new Promise((resolvePort) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolvePort(port));
    });
  });
}

/** A one-model repository: NAME/1/model.onnx (a link to the file) and its config. */
function repository(name, modelPath, backend) {
  const repo = join(dir, `repo-${name}`);
  mkdirSync(join(repo, name, '1'), { recursive: true });
  symlinkSync(resolve(modelPath), join(repo, name, '1', 'model.onnx'));
  writeFileSync(join(repo, name, 'config.json'), JSON.stringify({ name, backend, max_batch_size: Math.max(...BATCHES) }, null, 2));
  return repo;
}

async function serve(name, modelPath, backend) {
  const port = await freePort();
  // gRPC port 0 and a state directory each: the two servers run side by side.
  const args = [...flags['node-flag'], 'bin/umbra.js', 'serve', '--repo', repository(name, modelPath, backend), '--port', String(port), '--grpc-port', '0', '--state-dir', join(dir, `state-${name}`)];
  if (flags['log-db']) args.push('--log-db', flags['log-db']);
  if (flags.workers) args.push('--workers', flags.workers);
  if (flags.monitoring) args.push('--monitoring', flags.monitoring);
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 600_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} server exited: ${output.slice(-600)}`);
    try {
      const res = await fetch(`${url}/v2/models/${name}/ready`);
      if (res.ok) {
        const metadata = await (await fetch(`${url}/v2/models/${name}`)).json();
        return { name, url, metadata, output: () => output, stop: () => new Promise((r) => { child.once('exit', r); child.kill('SIGTERM'); }) };
      }
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  child.kill('SIGKILL');
  throw new Error(`${name} server not ready in 10 minutes: ${output.slice(-600)}`);
}

/**
 * umbra_thread_cpu_seconds_total by thread kind (core, io, model, log) from GET /metrics, and the
 * requests the server has answered (umbra_requests_total over every label).
 */
async function threadCpu(server) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const seconds = {};
  for (const m of text.matchAll(/^umbra_thread_cpu_seconds_total\{kind="(\w+)"\} ([\d.e+-]+)$/gm)) seconds[m[1]] = Number(m[2]);
  let requests = 0;
  for (const m of text.matchAll(/^umbra_requests_total\{[^}]*\} ([\d.e+-]+)$/gm)) requests += Number(m[1]);
  return { seconds, requests };
}

/**
 * One `umbra perf` level over binary HTTP: rows/s, latency, and CPU milliseconds per request by
 * server thread kind and for the load generator (CPU time, unlike wall time, hardly depends on
 * how busy the rest of the host is).
 */
async function perf(server, batch) {
  const before = await threadCpu(server);
  const out = await run(process.execPath, [
    'bin/umbra.js', 'perf', '--url', server.url, '-m', server.name, '--protocol', 'http-binary', '-b', String(batch),
    '--concurrency', flags.concurrency, '--duration', flags.seconds, '--warmup-ms', '1500', '--json',
  ], { quiet: true });
  const [level] = JSON.parse(out);
  if (level.errors > 0) throw new Error(`${server.name} at batch ${batch}: ${level.errors} errors (${JSON.stringify(level.errors_by_status)})`);
  const after = await threadCpu(server);
  // The server's CPU between the two scrapes covers the warm-up and any unstable windows too, so
  // it is divided by every request answered between them, not by the measured window's.
  const answered = after.requests - before.requests;
  const cpuMsPerRequest = Object.fromEntries(Object.keys(after.seconds).map((kind) => [kind, ((after.seconds[kind] - (before.seconds[kind] ?? 0)) * 1000) / answered]));
  cpuMsPerRequest.client = (level.client_cpu_pct / 100) * level.duration_s * 1000 / level.completed;
  return { rowsPerSecond: level.inferences_per_s, p50Ms: level.p50_ms, computeMs: level.server_compute_ms, queueMs: level.server_queue_ms, cpuMsPerRequest };
}


const servers = [];
try {
  const load0 = loadavg()[0];
  let densePath = flags.model;
  if (!densePath) {
    densePath = join(dir, 'dense.onnx');
    log(`exporting ${flags.layers} x Linear(${flags.width}, ${flags.width})${flags.relu ? ' + ReLU' : ''} with PyTorch`);
    await run('/usr/bin/python3', [join(ROOT, 'bench', 'native_torch_stack.py'), densePath, '--layers', flags.layers, '--width', flags.width, ...(flags.relu ? ['--relu'] : [])]);
  }
  let prunedPath = flags.pruned;
  if (!prunedPath) {
    prunedPath = join(dir, 'pruned.onnx');
    log(`umbra prune --sparsity ${flags.sparsity} --method ${flags.method}`);
    await run(process.execPath, ['bin/umbra.js', 'prune', densePath, prunedPath, '--sparsity', flags.sparsity, '--method', flags.method], { quiet: true });
  }
  // One server at a time while loading: the sparse one times its layers at load.
  log('starting the dense server (onnxruntime)');
  servers.push(await serve('dense', densePath, 'onnxruntime'));
  log('starting the sparse server (native)');
  servers.push(await serve('sparse', prunedPath, 'native'));
  const [dense, sparse] = servers;
  for (const l of sparse.metadata.execution?.layers ?? []) log(`  ${l.name}: ${l.format} (${l.basis}: ${l.reason})`);
  const rounds = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const batch of BATCHES) {
      const order = round % 2 === 0 ? [dense, sparse] : [sparse, dense];
      const got = {};
      for (const server of order) got[server.name] = await perf(server, batch);
      const ratio = got.sparse.rowsPerSecond / got.dense.rowsPerSecond;
      rounds.push({ round, batch, dense: got.dense, sparse: got.sparse, ratio, load: loadavg()[0] });
      const cpu = (r) => (r.cpuMsPerRequest ? ` [cpu ms/request ${Object.entries(r.cpuMsPerRequest).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}]` : '');
      log(`round ${round + 1} batch ${batch}: dense ${got.dense.rowsPerSecond.toFixed(1)} rows/s${cpu(got.dense)}, sparse ${got.sparse.rowsPerSecond.toFixed(1)} rows/s${cpu(got.sparse)}, ${ratio.toFixed(2)}x (load ${loadavg()[0].toFixed(1)})`);
    }
  }
  const summary = BATCHES.map((batch) => {
    const mine = rounds.filter((r) => r.batch === batch);
    return {
      batch,
      denseRowsPerSecond: median(mine.map((r) => r.dense.rowsPerSecond)),
      sparseRowsPerSecond: median(mine.map((r) => r.sparse.rowsPerSecond)),
      ratio: median(mine.map((r) => r.ratio)),
      ratios: mine.map((r) => r.ratio),
    };
  });
  const where = `served, workers ${flags.workers ?? 'default'}, monitoring ${flags.monitoring ?? 'default'}, log ${flags['log-db'] ?? 'default'}, concurrency ${flags.concurrency}${flags['node-flag'].length ? `, node ${flags['node-flag'].join(' ')}` : ''}`;
  const header = `${flags.model ?? `${flags.layers} x Linear(${flags.width})${flags.relu ? ' + ReLU' : ''}`}, pruned ${flags.pruned ?? `${flags.method} ${flags.sparsity}`}; `
    + `${cpus().length} cores (${cpus()[0]?.model}); ${where}; `
    + `${ROUNDS} rounds of ${flags.seconds} s; load ${load0.toFixed(1)} -> ${loadavg()[0].toFixed(1)}`;
  process.stdout.write(`${header}\n| batch | onnxruntime dense rows/s | native sparse rows/s | sparse / dense (median) | rounds |\n|---:|---:|---:|---:|---|\n`);
  for (const s of summary) {
    process.stdout.write(`| ${s.batch} | ${s.denseRowsPerSecond.toFixed(1)} | ${s.sparseRowsPerSecond.toFixed(1)} | ${s.ratio.toFixed(2)}x | ${s.ratios.map((r) => r.toFixed(2)).join(', ')} |\n`);
  }
  // CPU per request, median over rounds, by thread kind: what each side spends where.
  const kinds = [...new Set(rounds.flatMap((r) => [...Object.keys(r.dense.cpuMsPerRequest), ...Object.keys(r.sparse.cpuMsPerRequest)]))];
  process.stdout.write(`\n| batch | server | ${kinds.map((k) => `${k} CPU ms/request`).join(' | ')} | total |\n|---:|---|${kinds.map(() => '---:').join('|')}|---:|\n`);
  for (const batch of BATCHES) {
    for (const side of ['dense', 'sparse']) {
      const mine = rounds.filter((r) => r.batch === batch).map((r) => r[side].cpuMsPerRequest);
      const per = kinds.map((k) => median(mine.map((c) => c[k] ?? 0)));
      process.stdout.write(`| ${batch} | ${side} | ${per.map((v) => v.toFixed(2)).join(' | ')} | ${per.reduce((a, b) => a + b, 0).toFixed(2)} |\n`);
    }
  }
  if (flags.json) writeFileSync(flags.json, JSON.stringify({ header, layers: sparse.metadata.execution?.layers, rounds, summary }, null, 2));
} finally {
  for (const s of servers) await s.stop();
  rmSync(dir, { recursive: true, force: true });
}
