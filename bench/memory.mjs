// Memory of `umbra serve` as a user sees it (the process's RSS, /proc), and the time to ready, in
// three situations: many small models; one model reloaded again and again (admin loads, as
// --poll-seconds and rollouts do); one large embedding model (a recommendation model's table),
// served from a shared, memory-mapped copy of its weights and from its own file
// (parameters.share_weights: "false"). --builds adds another build of Umbra (a checkout with dist/
// built) to the first two, measured in the same run: a change's effect beside the code before it.
//
// Usage: node bench/memory.mjs [--models 100] [--reloads 80] [--rows 1000000] [--builds LABEL=DIR;...]
//        [--out bench/results-memory.json]
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel } from '../dist/onnx/builder.js';
import { mlpModel } from '../dist/onnx/build-examples.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { freePort } from './harness.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a) => /^--([^=]+)(?:=(.*))?$/s.exec(a) ?? [a, a, 'true']).map(([, k, v]) => [k, v ?? 'true']));
const modelCount = Number(args.models ?? 100);
const reloads = Number(args.reloads ?? 80);
const tableRows = Number(args.rows ?? 1_000_000);
const root = new URL('..', import.meta.url).pathname;
const builds = [['this build', root], ...(args.builds ? args.builds.split(';').map((b) => b.split('=')) : [])];
const work = mkdtempSync(join(tmpdir(), 'umbra-memory-bench-'));
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

/** Starts `umbra serve` of `dir` on `repo`; resolves once ready, with the ms it took. */
async function serve(dir, repo, stateDir) {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [join(dir, 'bin/umbra.js'), 'serve', '--repo', repo, '--port', String(port), '--grpc-port', '0', '--state-dir', stateDir, '--log-db', `sqlite:${join(stateDir, 'log.sqlite')}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.add(child);
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode})`);
    const ok = await fetch(`${url}/v2/health/ready`).then((r) => r.status === 200, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const readyMs = performance.now() - started;
  // bin/umbra.js runs `umbra serve` in a child with the serving heap's flags: that child's RSS.
  const pid = serverPid(child.pid);
  return {
    url, readyMs,
    rssMb: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      children.delete(child);
    },
  };
}

function serverPid(pid) {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    return kids.length > 0 ? Number(kids[0]) : pid;
  } catch {
    return pid;
  }
}

const post = (url, path, body) => fetch(`${url}${path}`, { method: 'POST', body: JSON.stringify(body) }).then((r) => r.text());
const settle = () => new Promise((r) => setTimeout(r, 1500));

// 1. Many small models: a seeded 64-512-512-10 MLP (1.2 MB) in each folder.
const many = join(work, 'many');
const mlp = join(work, 'mlp.onnx');
writeModel(mlpModel([64, 512, 512, 10], 4321, 'mlp'), mlp);
for (let i = 1; i <= modelCount; i++) {
  mkdirSync(join(many, `m${i}`, '1'), { recursive: true });
  cpSync(mlp, join(many, `m${i}`, '1', 'model.onnx'));
}
const row = { inputs: [{ name: 'features', shape: [1, 64], datatype: 'FP32', data: Array.from({ length: 64 }, (_, i) => i / 64) }] };
const results = { host: { cores: (await import('node:os')).availableParallelism() }, many: {}, reloads: {}, embedding: {} };
for (const [label, dir] of builds) {
  const s = await serve(dir, many, join(work, `state-many-${results.many ? Object.keys(results.many).length : 0}`));
  await settle();
  const atReady = s.rssMb();
  for (let i = 1; i <= modelCount; i++) await post(s.url, `/v2/models/m${i}/infer`, row);
  await settle();
  results.many[label] = { models: modelCount, ready_ms: Math.round(s.readyMs), rss_mb_at_ready: Math.round(atReady), rss_mb_after_one_request_each: Math.round(s.rssMb()) };
  await s.stop();
  process.stderr.write(`many (${label}): ${JSON.stringify(results.many[label])}\n`);
}

// 2. One model reloaded again and again (admin load from loopback: no token needed).
const one = join(work, 'one');
mkdirSync(join(one, 'm', '1'), { recursive: true });
cpSync(mlp, join(one, 'm', '1', 'model.onnx'));
for (const [label, dir] of builds) {
  const s = await serve(dir, one, join(work, `state-one-${Object.keys(results.reloads).length}`));
  await settle();
  const before = s.rssMb();
  const marks = [];
  for (let i = 1; i <= reloads; i++) {
    await post(s.url, '/v2/repository/models/m/load', {});
    if (i % (reloads / 4) === 0) marks.push(Math.round(s.rssMb()));
  }
  await settle();
  results.reloads[label] = { reloads, rss_mb_before: Math.round(before), rss_mb_each_quarter: marks, rss_mb_after: Math.round(s.rssMb()) };
  await s.stop();
  process.stderr.write(`reloads (${label}): ${JSON.stringify(results.reloads[label])}\n`);
}

// 3. A large embedding model: ids [batch, 4] -> rows of a [rows, 64] table (256 MB at 1M rows).
const table = new Float32Array(tableRows * 64);
for (let i = 0; i < table.length; i++) table[i] = ((i * 2654435761) % 1000) / 1000;
const embedding = buildModel({
  inputs: [{ name: 'ids', datatype: 'INT64', dims: ['batch', 4] }],
  outputs: [{ name: 'e', datatype: 'FP32', dims: ['batch', 4, 64] }],
  nodes: [{ op: 'Gather', inputs: ['table', 'ids'], outputs: ['e'], attributes: { axis: 0 } }],
  initializers: [{ name: 'table', datatype: 'FP32', dims: [tableRows, 64], values: table }],
});
const big = join(work, 'big');
mkdirSync(join(big, 'rec', '1'), { recursive: true });
writeModel(embedding, join(big, 'rec', '1', 'model.onnx'));
const bigState = join(work, 'state-big');
const ids = { inputs: [{ name: 'ids', shape: [1, 4], datatype: 'INT64', data: [1, 2, 3, 4] }] };
for (const [label, config] of [['shared copy, first start (writes it)', {}], ['shared copy, next start', {}], ['own file (share_weights false)', { parameters: { share_weights: 'false' } }]]) {
  writeFileSync(join(big, 'rec', 'config.json'), JSON.stringify({ backend: 'onnxruntime', ...config }));
  const s = await serve(root, big, bigState);
  for (let i = 0; i < 20; i++) await post(s.url, '/v2/models/rec/infer', ids);
  await settle();
  results.embedding[label] = { table_mb: Math.round(table.byteLength / 2 ** 20), ready_ms: Math.round(s.readyMs), rss_mb: Math.round(s.rssMb()) };
  await s.stop();
  process.stderr.write(`embedding (${label}): ${JSON.stringify(results.embedding[label])}\n`);
}
const text = `${JSON.stringify(results, null, 2)}\n`;
if (args.out) writeFileSync(args.out, text);
process.stdout.write(text);
