#!/usr/bin/env node
// `npm run bench`: every benchmark of the project against its peers in one run, written to
// bench/RESULTS.md. The serving benchmarks use one load generator (umbra perf, in this process)
// against servers started as separate processes, one at a time:
//   generator ceiling   bare uWS answering fixed bytes (nothing faster can be measured here)
//   bare uWS            parses the same JSON, answers without a model (the front end's limit)
//   Umbra               the digits model (as shipped, and with batching off), HTTP/binary/WebSocket
//   node:http + ORT     what a user would build; Fastify + ORT likewise
//   FastAPI + PyTorch   what a Python team would run (Debian packages, when installed)
//   in-process ORT      the compute limit (no network)
// then batched vs unbatched Umbra on the compute-bound `wide` model, then the other engineers'
// self-contained benches (bench/native/*.mjs, bench/ws.mjs, bench/monitoring.mjs, bench/batch.mjs)
// as child processes, each writing its own bench/RESULTS-<name>.md.
//
//   node bench/run.mjs --quick     (npm run bench; about 6 minutes)
//   node bench/run.mjs --full      (npm run bench:full)
import { spawn, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, totalmem, tmpdir, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runPerf, randomPayloads, latencyThroughputSvg } from '../dist/perf/index.js';
import { findWrk, runWrk } from './wrk.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const full = process.argv.includes('--full');
/** Intra-op threads for a worker that leaves a core to the event loop and one to the generator; 0 on small hosts. */
const SPARE_THREADS = cpus().length > 4 ? cpus().length - 2 : 0;
const MODE = full ? 'full' : 'quick';
const started = Date.now();
const loadAtStart = loadavg();
const PERF = full
  ? { warmupMs: 2000, windowMs: 2000, maxWindows: 10, stabilityPct: 10 }
  : { warmupMs: 400, windowMs: 600, maxWindows: 5, stabilityPct: 15 };
const LEVELS = full ? [1, 4, 16, 64] : [1, 64];
const REPO = join(ROOT, 'models', 'repository');
const log = (line) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0)}s] ${line}\n`);

// --- helpers ---------------------------------------------------------------

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts a server process and waits until GET /v2/health/ready answers 200. */
async function startProcess(name, command, args, port, timeoutMs = 30_000) {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited: ${stderr.slice(-400)}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/health/ready`);
      if (res.ok) return { url: `http://127.0.0.1:${port}`, stop: () => stopProcess(child) };
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  stopProcess(child);
  throw new Error(`${name} was not ready within ${timeoutMs / 1000}s: ${stderr.slice(-400)}`);
}

/** The line of a failure worth showing in a table cell. */
function oneLine(text) {
  const lines = String(text).split('\n').map((l) => l.trim()).filter(Boolean);
  const line = lines.find((l) => /error|cannot|not /i.test(l)) ?? lines[lines.length - 1] ?? '';
  return line.replace(/\|/g, '/').slice(0, 200);
}

function stopProcess(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

function runChild(command, args, timeoutMs, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const DIGITS_META = { name: 'digits', inputs: [{ name: 'pixels', datatype: 'FP32', shape: [-1, 64] }], outputs: [] };
const WIDE_META = { name: 'wide', inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 256] }], outputs: [] };
const digitsPayloads = randomPayloads(DIGITS_META, 1, 16, 7);
const widePayloads = randomPayloads(WIDE_META, 1, 16, 8);

async function measure(url, model, payloads, levels, protocol = 'http') {
  return runPerf({ url, model, payloads, concurrency: levels, protocol, serverStats: true, ...PERF, log });
}

/** A copy of one model of the example repository, with an optional config.json override. */
function repoWith(model, config) {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-bench-'));
  cpSync(join(REPO, model), join(dir, model), { recursive: true });
  if (config) {
    const file = join(dir, model, 'config.json');
    const base = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
    writeFileSync(file, JSON.stringify({ ...base, ...config }, null, 2));
  }
  return dir;
}

async function withServer(name, command, args, port, fn) {
  log(`start ${name}`);
  let server;
  try {
    server = await startProcess(name, command, args, port);
  } catch (err) {
    log(`skip ${name}: ${err.message}`);
    return { skipped: oneLine(err.message) };
  }
  try {
    return await fn(server.url);
  } catch (err) {
    log(`${name} failed: ${err.message}`);
    return { skipped: `failed: ${oneLine(err.message)}` };
  } finally {
    await server.stop();
  }
}

// --- the serving suite -----------------------------------------------------

const serving = {};
const notes = [];
// Each Umbra server of a run logs to a fresh SQLite file (the default would be REPO/.umbra, which
// grows from run to run), so every run starts from the same state.
const LOG_DIR = mkdtempSync(join(tmpdir(), 'umbra-bench-log-'));
process.on('exit', () => rmSync(LOG_DIR, { recursive: true, force: true }));
const umbraArgs = (repo, port) => ['bin/umbra.js', 'serve', '--grpc-port', '0', '--repo', repo, '--port', String(port), '--log-db', `sqlite:${join(LOG_DIR, `${port}.sqlite`)}`];

async function servingSuite() {
  let port = await freePort();
  serving.ceiling = await withServer('generator ceiling (uWS, fixed answer)', 'node', ['bench/peers/uws-bare.mjs', String(port), '--static'], port,
    async (url) => ({ results: await measure(url, 'digits', digitsPayloads, [64]) }));

  port = await freePort();
  serving.uws = await withServer('bare uWS', 'node', ['bench/peers/uws-bare.mjs', String(port)], port,
    async (url) => ({ results: await measure(url, 'digits', digitsPayloads, LEVELS) }));

  port = await freePort();
  serving.umbra = await withServer('Umbra (digits)', 'node', umbraArgs(REPO, port), port, async (url) => {
    const out = { results: await measure(url, 'digits', digitsPayloads, LEVELS) };
    out.binary = await measure(url, 'digits', digitsPayloads, LEVELS, 'http-binary');
    try {
      out.ws = await measure(url, 'digits', digitsPayloads, LEVELS, 'ws');
    } catch (err) {
      out.wsSkipped = oneLine(err.message);
    }
    return out;
  });

  // Umbra with its monitoring off (no metrics, drift, feedback or prediction log), as bare as the
  // peers, which monitor nothing: what the serving core itself costs. The rows above are as shipped.
  port = await freePort();
  serving.umbraNoMonitoring = await withServer('Umbra (digits, monitoring off)', 'node', [...umbraArgs(REPO, port), '--monitoring', 'off'], port,
    async (url) => ({ results: await measure(url, 'digits', digitsPayloads, LEVELS) }));

  // The example digits model is served by Umbra's own kernels (`backend: auto`); the same model
  // on the onnxruntime backend, as a model auto cannot run natively (or `backend: onnxruntime`) is.
  const ortDigits = repoWith('digits', { backend: 'onnxruntime' });
  port = await freePort();
  serving.umbraOrt = await withServer('Umbra (digits, onnxruntime backend)', 'node', umbraArgs(ortDigits, port), port,
    async (url) => ({ results: await measure(url, 'digits', digitsPayloads, LEVELS) }));
  rmSync(ortDigits, { recursive: true, force: true });

  const unbatchedDigits = repoWith('digits', { dynamic_batching: false });
  port = await freePort();
  serving.umbraNoBatch = await withServer('Umbra (digits, batching off)', 'node', umbraArgs(unbatchedDigits, port), port,
    async (url) => ({ results: await measure(url, 'digits', digitsPayloads, LEVELS) }));
  rmSync(unbatchedDigits, { recursive: true, force: true });

  const digitsFile = join(REPO, 'digits', '2', 'model.onnx');
  port = await freePort();
  serving.nodeHttp = await withServer('node:http + onnxruntime-node', 'node', ['bench/peers/node-http-ort.mjs', String(port), digitsFile], port,
    async (url) => ({ results: await measure(url, 'digits', digitsPayloads, LEVELS) }));

  port = await freePort();
  serving.fastify = await withServer('Fastify + onnxruntime-node', 'node', ['bench/peers/fastify-ort.mjs', String(port), digitsFile], port,
    async (url) => ({ results: await measure(url, 'digits', digitsPayloads, LEVELS) }));

  serving.python = await pythonPeer(digitsFile);

  log('in-process onnxruntime-node (digits)');
  const inproc = await runChild('node', ['bench/inprocess-ort.mjs', digitsFile, 'pixels', '64', full ? '3' : '1', '1'], 60_000);
  serving.inprocess = inproc.code === 0 ? JSON.parse(inproc.stdout) : { skipped: oneLine(inproc.stderr) };
}

// --- paired rounds: the serving targets, measured interleaved ------------------

// This machine is shared: its speed wanders within minutes, so two servers measured a minute
// apart can differ by more than the gap a target is about. The servers the serving targets
// compare are started together (idle while another is measured) and measured in turn, round
// after round, each round starting with the next server; every target is a ratio within one
// round, and the table takes the median round. Five rounds even in quick mode: with three, one
// round in which the host stalled (bare uWS at half its rate, say) was enough to move a target
// across its line between two runs of the same code (seventh session).
const ROUNDS = full ? 7 : 5;
const paired = { rounds: [] };
const PAIRED_SERVERS = [
  ['uws', 'bare uWS', (port) => ['bench/peers/uws-bare.mjs', String(port)]],
  ['umbra', 'Umbra as shipped', (port) => umbraArgs(REPO, port)],
  ['umbraQuiet', 'Umbra, monitoring off', (port) => [...umbraArgs(REPO, port), '--monitoring', 'off']],
  ['umbraOrt', 'Umbra, onnxruntime backend', (port, dirs) => umbraArgs(dirs.ort, port)],
  ['nodeHttp', 'node:http + onnxruntime-node', (port) => ['bench/peers/node-http-ort.mjs', String(port), join(REPO, 'digits', '2', 'model.onnx')]],
];

// The paired rounds also measure the servers the headline targets compare with a second
// generator, wrk, when it is installed: it takes about two thirds of the CPU per request umbra
// perf does (digits; under half for heavy's 2 KB binary bodies) from a server on the same cores, so a target that holds with one generator and not the other
// is as much about the generator as about the server. Same request (the first digits payload)
// for every server; c64 for throughput, c1 for latency, like the umbra perf levels.
const WRK = findWrk();
const WRK_SERVERS = new Set(['uws', 'umbra', 'umbraQuiet', 'nodeHttp']);
const WRK_SECONDS = full ? 4 : 2;

/** wrk at c64 and c1 against one server, as umbra perf results ([] when wrk is not installed). */
async function measureWrk(url, model, request) {
  if (!WRK) return [];
  const out = [];
  for (const connections of [64, 1]) {
    out.push(await runWrk(WRK, { url, path: `/v2/models/${model}/infer`, request, connections, seconds: WRK_SECONDS }));
  }
  return out;
}

async function pairedSuite() {
  const running = [];
  const dirs = { ort: repoWith('digits', { backend: 'onnxruntime' }) };
  try {
    for (const [key, name, args] of PAIRED_SERVERS) {
      const port = await freePort();
      log(`paired: start ${name}`);
      running.push({ key, name, server: await startProcess(name, 'node', args(port, dirs), port) });
    }
    for (let round = 0; round < ROUNDS; round++) {
      const results = {};
      for (let i = 0; i < running.length; i++) {
        const { key, name, server } = running[(round + i) % running.length];
        log(`paired round ${round + 1}/${ROUNDS}: ${name}`);
        results[key] = await measure(server.url, 'digits', digitsPayloads, [1, 64]);
        if (WRK && WRK_SERVERS.has(key)) {
          log(`paired round ${round + 1}/${ROUNDS}: ${name} (wrk)`);
          results[`${key}:wrk`] = await measureWrk(server.url, 'digits', { body: digitsPayloads[0].json });
        }
      }
      paired.rounds.push(results);
    }
  } catch (err) {
    log(`paired rounds failed: ${err.message}`);
    paired.skipped = oneLine(err.message);
  } finally {
    await Promise.all(running.map((r) => r.server.stop()));
    rmSync(dirs.ort, { recursive: true, force: true });
  }
}

/** Per round, `value(round)`; the median round's value and the range, or undefined. */
function pairedRatio(value) {
  const values = paired.rounds.map(value).filter((v) => v !== undefined && Number.isFinite(v)).sort((a, b) => a - b);
  if (values.length === 0) return undefined;
  return { median: values[Math.floor(values.length / 2)], min: values[0], max: values[values.length - 1], n: values.length };
}

const pairedThroughput = (a, b, c) => pairedRatio((r) => ratio(at(r[a], c)?.throughput, at(r[b], c)?.throughput));
const pairedP50 = (a, b, c) => pairedRatio((r) => ratio(at(r[a], c)?.p50_ms, at(r[b], c)?.p50_ms));

/** The heavy target from its paired rounds: { median, min, max, n }, or undefined. */
function pairedBatchingRatio(key = 'umbra') {
  const values = (batching.heavy?.paired?.rounds ?? []).map((r) => ratio(r[key], r.inprocess)).filter((v) => v !== undefined).sort((a, b) => a - b);
  if (values.length === 0) return undefined;
  return { median: values[Math.floor(values.length / 2)], min: values[0], max: values[values.length - 1], n: values.length };
}

function pairedBatchingTable() {
  const p = batching.heavy?.paired;
  if (!p || p.skipped || !p.rounds) return `Paired rounds for \`heavy\`: not run${p?.skipped ? ` (${p.skipped})` : ''}.`;
  const layout = p.inprocess.sessions > 1 ? `${p.inprocess.sessions} single-thread sessions at once` : `one session of ${p.inprocess.threads} intra-op thread(s)`;
  const lines = [
    `Paired rounds for \`heavy\` (the target row): Umbra's best contender of the sweep (${p.contender}, ${p.level} in flight) and the best in-process configuration (batch ${p.inprocess.batch}, ${layout}), measured in turn, each round starting with the other.`,
    '',
    '| round | in-process rows/s | Umbra rows/s (umbra perf) | Umbra / in-process | Umbra rows/s (wrk) | Umbra (wrk) / in-process |',
    '|---:|---:|---:|---:|---:|---:|',
  ];
  const r2 = (a, b) => ratio(a, b)?.toFixed(2) ?? '-';
  p.rounds.forEach((r, i) => lines.push(`| ${i + 1} | ${f1(r.inprocess)} | ${f1(r.umbra)} | ${r2(r.umbra, r.inprocess)} | ${f1(r.umbraWrk)} | ${r2(r.umbraWrk, r.inprocess)} |`));
  if (!WRK) lines.push('', 'wrk is not installed (`apt-get install wrk`): no second-generator column.');
  return lines.join('\n');
}

function pairedTable() {
  if (paired.rounds.length === 0) return `Not run${paired.skipped ? ` (${paired.skipped})` : ''}.`;
  const cols = PAIRED_SERVERS.map(([key, name]) => [key, name]);
  const lines = [
    `| round | ${cols.map(([, n]) => `${n} c64 req/s`).join(' | ')} | ${cols.map(([, n]) => `${n} c1 p50 ms`).join(' | ')} |`,
    `|---:|${cols.map(() => '---:').join('|')}|${cols.map(() => '---:').join('|')}|`,
  ];
  paired.rounds.forEach((r, i) => {
    lines.push(`| ${i + 1} | ${cols.map(([k]) => f1(at(r[k], 64)?.throughput)).join(' | ')} | ${cols.map(([k]) => f3(at(r[k], 1)?.p50_ms)).join(' | ')} |`);
  });
  if (!WRK) {
    lines.push('', 'Second generator: wrk is not installed (`apt-get install wrk`), so these rounds ran with umbra perf only.');
    return lines.join('\n');
  }
  const wcols = cols.filter(([k]) => WRK_SERVERS.has(k));
  lines.push('', `The same rounds, the same servers, measured right after their umbra perf turn with wrk (one thread, ${WRK_SECONDS} s after 1 s of warm-up per level, the first digits request):`, '');
  lines.push(`| round | ${wcols.map(([, n]) => `${n} c64 req/s (wrk)`).join(' | ')} | ${wcols.map(([, n]) => `${n} c1 p50 ms (wrk)`).join(' | ')} |`);
  lines.push(`|---:|${wcols.map(() => '---:').join('|')}|${wcols.map(() => '---:').join('|')}|`);
  paired.rounds.forEach((r, i) => {
    lines.push(`| ${i + 1} | ${wcols.map(([k]) => f1(at(r[`${k}:wrk`], 64)?.throughput)).join(' | ')} | ${wcols.map(([k]) => f3(at(r[`${k}:wrk`], 1)?.p50_ms)).join(' | ')} |`);
  });
  return lines.join('\n');
}

async function pythonPeer(digitsFile) {
  const python = '/usr/bin/python3';
  const check = await runChild(python, ['-c', 'import fastapi, uvicorn, torch'], 20_000);
  if (check.code !== 0) {
    const missing = (/No module named '([^']+)'/.exec(check.stderr) ?? [])[1] ?? 'python3';
    return { skipped: `Python peer skipped: module ${missing} is not installed (apt-get install python3-fastapi python3-uvicorn python3-torch)` };
  }
  const weights = join(mkdtempSync(join(tmpdir(), 'umbra-bench-')), 'digits.json');
  const exported = await runChild('node', ['bench/peers/export-digits.mjs', digitsFile, weights], 30_000);
  if (exported.code !== 0) return { skipped: `could not export the digits weights: ${oneLine(exported.stderr)}` };
  const port = await freePort();
  const out = await withServer('FastAPI + PyTorch', python, ['bench/peers/fastapi_torch.py', String(port), weights], port,
    async (url) => ({ results: await measure(url, 'digits', digitsPayloads, LEVELS) }));
  rmSync(dirname(weights), { recursive: true, force: true });
  return out;
}

// --- batching on a compute-bound model ---------------------------------------

const batching = {};
// `wide` (bundled, 256-512-512-10) is light enough that per-request overhead still shows; `heavy`
// (512-4096-4096-10, 19 M multiply-adds per row, generated here, 76 MB) is compute-bound: one row
// costs far more than its HTTP request, which is the case the batching target is about.
const HEAVY_LAYERS = [512, 4096, 4096, 10];
const HEAVY_META = { name: 'heavy', inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, HEAVY_LAYERS[0]] }], outputs: [] };
const HEAVY_CONFIG = {
  name: 'heavy', backend: 'onnxruntime', max_batch_size: 64,
  input: [{ name: 'features', data_type: 'TYPE_FP32', dims: [HEAVY_LAYERS[0]] }],
  output: [{ name: 'scores', data_type: 'TYPE_FP32', dims: [HEAVY_LAYERS[HEAVY_LAYERS.length - 1]] }],
  // A compute-bound model wants full batches: wait up to 2 ms for 64 rows (Triton's usual advice).
  dynamic_batching: { max_queue_delay_microseconds: 2000, preferred_batch_size: [64], default_queue_policy: { max_queue_size: 4096 } },
};

async function batchingSuite() {
  const heavyRepo = mkdtempSync(join(tmpdir(), 'umbra-bench-heavy-'));
  const heavyFile = join(heavyRepo, 'heavy', '1', 'model.onnx');
  const made = await runChild('node', ['bench/make-mlp.mjs', heavyFile, HEAVY_LAYERS.join(',')], 120_000);
  const models = [
    { key: 'wide', name: 'wide', file: join(REPO, 'wide', '1', 'model.onnx'), features: 256, payloads: widePayloads, repo: (config) => repoWith('wide', config) },
  ];
  if (made.code === 0) {
    writeFileSync(join(heavyRepo, 'heavy', 'config.json'), JSON.stringify(HEAVY_CONFIG));
    models.push({
      key: 'heavy', name: 'heavy', file: heavyFile, features: HEAVY_LAYERS[0], payloads: randomPayloads(HEAVY_META, 1, 16, 9),
      repo: (config) => {
        if (!config) return heavyRepo;
        const dir = mkdtempSync(join(tmpdir(), 'umbra-bench-'));
        cpSync(join(heavyRepo, 'heavy'), join(dir, 'heavy'), { recursive: true });
        writeFileSync(join(dir, 'heavy', 'config.json'), JSON.stringify({ ...HEAVY_CONFIG, ...config }));
        return dir;
      },
    });
  } else {
    batching.heavy = { skipped: `could not build the heavy model: ${oneLine(made.stderr)}` };
  }
  for (const model of models) {
    const entry = {};
    batching[model.key] = entry;
    log(`in-process onnxruntime-node (${model.name}, batch sizes x intra-op threads)`);
    // The best the library can do on this host: whole batches, 1 thread and one thread per core,
    // and one single-thread session per core running at once (Umbra's default layout).
    const threads = [...new Set([1, cpus().length])].join(',');
    const inproc = await runChild('node', ['bench/inprocess-ort.mjs', model.file, 'features', String(model.features), full ? '3' : '1', '1,8,16,32,64', threads, String(cpus().length)], 300_000);
    entry.inprocess = inproc.code === 0 ? JSON.parse(inproc.stdout) : { skipped: oneLine(inproc.stderr) };
    const level = [64];
    // A compute-bound model batches 64 rows at a time: with exactly 64 requests in flight the
    // model idles while a finished batch's answers go out and the next 64 requests come in. At
    // 128 in flight one batch fills while the other runs, the load a busy server actually sees.
    // With a worker per core, each worker wants one batch running and one filling: on two cores
    // that is 256 in flight (128 left a worker idle: 256 did 11-13% more rows/s in A/B runs).
    const batchedLevels = model.key === 'heavy' ? [64, 128, 256] : level;
    // Umbra as shipped (one worker per core, one intra-op thread each), and, like the in-process
    // baseline's thread sweep, one worker whose runs use every core.
    const oneWorker = ['--workers', '1', '--intra-op-threads', String(cpus().length)];
    const contenders = [
      ['batched', `Umbra (${model.name}, dynamic batching)`, undefined, [], 'http'],
      // The default layout (a worker per core) with binary tensors and no monitoring, as the in-process side.
      ['batchedBinaryQuiet', `Umbra (${model.name}, dynamic batching, binary, monitoring off)`, undefined, ['--monitoring', 'off'], 'http-binary'],
      ['batchedOne', `Umbra (${model.name}, dynamic batching, 1 worker x ${cpus().length} threads)`, undefined, oneWorker, 'http'],
      ['batchedOneBinary', `Umbra (${model.name}, dynamic batching, 1 worker x ${cpus().length} threads, binary)`, undefined, oneWorker, 'http-binary'],
      // What a compute-bound deployment that wants every core for the model would run: no
      // monitoring work on the event loop (the in-process baseline monitors nothing either).
      ['batchedOneBinaryQuiet', `Umbra (${model.name}, dynamic batching, 1 worker x ${cpus().length} threads, binary, monitoring off)`, undefined, [...oneWorker, '--monitoring', 'off'], 'http-binary'],
      ['unbatched', `Umbra (${model.name}, batching off)`, { dynamic_batching: false }, [], 'http'],
    ];
    // On a host with cores to spare, the worker's threads leave one core to the event loop and
    // one to the generator (the in-process baseline needs neither).
    if (SPARE_THREADS > 0) {
      contenders.splice(3, 0, ['batchedSpareBinary', `Umbra (${model.name}, dynamic batching, 1 worker x ${SPARE_THREADS} threads, binary)`, undefined, ['--workers', '1', '--intra-op-threads', String(SPARE_THREADS)], 'http-binary']);
    }
    for (const [key, name, config, extra, protocol] of contenders) {
      const repo = model.repo(config);
      const port = await freePort();
      entry[key] = await withServer(name, 'node', [...umbraArgs(repo, port), ...extra], port,
        async (url) => ({ results: await measure(url, model.name, model.payloads, key === 'unbatched' ? level : batchedLevels, protocol) }));
      if (repo !== heavyRepo) rmSync(repo, { recursive: true, force: true });
    }
    if (model.key === 'heavy' && entry.inprocess?.best) entry.paired = await pairedBatching(model, entry, contenders, batchedLevels);
    const port = await freePort();
    entry.nodeHttp = await withServer(`node:http + onnxruntime-node (${model.name})`, 'node', ['bench/peers/node-http-ort.mjs', String(port), model.file], port,
      async (url) => ({ results: await measure(url, model.name, model.payloads, level) }));
  }
  rmSync(heavyRepo, { recursive: true, force: true });
}

// --- the other benches, as child processes ----------------------------------

const others = [];
async function otherBenches() {
  const candidates = [];
  const nativeDir = join(ROOT, 'bench', 'native');
  if (existsSync(nativeDir)) for (const f of readdirSync(nativeDir).filter((f) => f.endsWith('.mjs')).sort()) candidates.push([`native/${f}`, f.replace(/\.mjs$/, '')]);
  for (const name of ['ws', 'monitoring', 'batch']) candidates.push([`${name}.mjs`, name]);
  // Quick mode shares what is left of its 3-minute budget among the benches that exist.
  const present = candidates.filter(([file]) => existsSync(join(ROOT, 'bench', file))).length;
  let left = present;
  for (const [file, name] of candidates) {
    const path = join(ROOT, 'bench', file);
    if (!existsSync(path)) {
      others.push({ name, file, status: 'not present' });
      continue;
    }
    log(`bench/${file}`);
    const t0 = Date.now();
    const budgetMs = full ? 600_000 : Math.max(15_000, Math.min(60_000, (170_000 - (Date.now() - started)) / Math.max(1, left)));
    left -= 1;
    const r = await runChild('node', [path, full ? '--full' : '--quick'], budgetMs, { UMBRA_BENCH_MODE: MODE });
    const seconds = (Date.now() - t0) / 1000;
    const status = r.code === 0 ? 'ok' : r.signal ? `stopped at the ${MODE} budget of ${(budgetMs / 1000).toFixed(0)} s` : `exit ${r.code}`;
    const resultsFile = join(ROOT, 'bench', `RESULTS-${name}.md`);
    others.push({ name, file, status, seconds, resultsFile: existsSync(resultsFile) ? `RESULTS-${name}.md` : null, tail: r.code === 0 ? '' : oneLine(r.stderr || r.stdout) });
  }
}

/**
 * The batching target, paired: Umbra's best contender of the sweep at its best level and the best
 * in-process configuration, measured in turn (each round starting with the other), so a host that
 * slows down between the sweep's in-process points and Umbra's rows moves both sides alike.
 */
async function pairedBatching(model, entry, contenders, levels) {
  let umbraBest;
  for (const [key, , config, extra, protocol] of contenders) {
    if (key === 'unbatched') continue;
    for (const r of entry[key]?.results ?? []) {
      if (!umbraBest || r.inferences_per_s > umbraBest.rowsPerS) umbraBest = { key, config, extra, protocol, level: r.concurrency, rowsPerS: r.inferences_per_s };
    }
  }
  const best = entry.inprocess.best;
  if (!umbraBest || !levels.includes(umbraBest.level)) return { skipped: 'no Umbra batched result to pair' };
  const inprocessArgs = ['bench/inprocess-ort.mjs', model.file, 'features', String(model.features), '2', String(best.batch),
    ...((best.sessions ?? 1) > 1 ? ['-', String(best.sessions)] : [String(best.threads ?? 1), '1'])];
  const repo = model.repo(umbraBest.config);
  const port = await freePort();
  const out = await withServer(`paired: Umbra (${model.name}, ${umbraBest.key})`, 'node', [...umbraArgs(repo, port), ...umbraBest.extra], port, async (url) => {
    const rounds = [];
    for (let round = 0; round < ROUNDS; round++) {
      const result = {};
      const steps = [
        async () => {
          log(`paired batching round ${round + 1}/${ROUNDS}: in-process`);
          const r = await runChild('node', inprocessArgs, 120_000);
          result.inprocess = r.code === 0 ? JSON.parse(r.stdout).best.rows_per_s : undefined;
        },
        async () => {
          log(`paired batching round ${round + 1}/${ROUNDS}: Umbra`);
          result.umbra = at(await measure(url, model.name, model.payloads, [umbraBest.level], umbraBest.protocol), umbraBest.level)?.inferences_per_s;
          if (!WRK) return;
          log(`paired batching round ${round + 1}/${ROUNDS}: Umbra (wrk)`);
          const p = model.payloads[0];
          const request = umbraBest.protocol === 'http-binary' ? { body: p.binary.body, headerLength: p.binary.headerLength } : { body: p.json };
          // One row per request, so requests/s is rows/s.
          result.umbraWrk = (await runWrk(WRK, { url, path: `/v2/models/${model.name}/infer`, request, connections: umbraBest.level, seconds: WRK_SECONDS + 1 })).throughput;
        },
      ];
      for (const step of round % 2 === 0 ? steps : steps.reverse()) await step();
      rounds.push(result);
    }
    return { contender: umbraBest.key, level: umbraBest.level, inprocess: { batch: best.batch, threads: best.threads ?? 1, sessions: best.sessions ?? 1 }, rounds };
  });
  if (repo !== model.repo()) rmSync(repo, { recursive: true, force: true });
  return out;
}

// --- the report --------------------------------------------------------------

const f1 = (v) => (v === undefined || v === null ? '-' : Number(v).toFixed(1));
const f3 = (v) => (v === undefined || v === null ? '-' : Number(v).toFixed(3));
const at = (results, c) => results?.find((r) => r.concurrency === c);

function machine() {
  const cpu = cpus();
  let gpu = 'none';
  try {
    gpu = execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || 'none';
  } catch { /* no NVIDIA driver */ }
  return `${cpu.length} x ${cpu[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}, Node ${process.version}, GPU: ${gpu}`;
}

function servingTable() {
  const rows = [
    ['bare uWS (front-end limit)', serving.uws],
    ['**Umbra** digits, HTTP JSON', serving.umbra],
    ['**Umbra** digits, HTTP binary', serving.umbra?.binary ? { results: serving.umbra.binary } : { skipped: 'not run' }],
    ['**Umbra** digits, WebSocket', serving.umbra?.ws ? { results: serving.umbra.ws } : { skipped: serving.umbra?.wsSkipped ?? 'not run' }],
    ['**Umbra** digits, monitoring off, HTTP JSON', serving.umbraNoMonitoring],
    ['**Umbra** digits, batching off, HTTP JSON', serving.umbraNoBatch],
    ['**Umbra** digits, backend: onnxruntime, HTTP JSON', serving.umbraOrt],
    ['node:http + onnxruntime-node', serving.nodeHttp],
    ['Fastify + onnxruntime-node', serving.fastify],
    ['FastAPI + PyTorch (Python)', serving.python],
  ];
  const lines = ['| server | concurrency | req/s | p50 ms | p99 ms | errors | server queue ms | server compute ms | generator CPU | stable |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|'];
  for (const [name, entry] of rows) {
    if (!entry || entry.skipped) {
      lines.push(`| ${name} | - | skipped: ${entry?.skipped ?? 'not run'} | | | | | | | |`);
      continue;
    }
    for (const r of entry.results) {
      lines.push(`| ${name} | ${r.concurrency} | ${f1(r.throughput)} | ${f3(r.p50_ms)} | ${f3(r.p99_ms)} | ${r.errors} | ${f3(r.server_queue_ms)} | ${f3(r.server_compute_ms)} | ${f1(r.client_cpu_pct)}% | ${r.stable ? 'yes' : 'no'} |`);
    }
  }
  return lines.join('\n');
}

function ratio(a, b) {
  return a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
}

function targetsTable() {
  const umbra = serving.umbra?.results;
  const uws = serving.uws?.results;
  const nodeHttp = serving.nodeHttp?.results;
  const noBatch = serving.umbraNoBatch?.results;
  const noMonitoring = serving.umbraNoMonitoring?.results;
  // Umbra's best configuration against onnxruntime's best, as the in-process side is its best too.
  const umbraBest = (key) => Math.max(...['batched', 'batchedBinaryQuiet', 'batchedOne', 'batchedOneBinary', 'batchedOneBinaryQuiet', 'batchedSpareBinary'].flatMap((c) => (batching[key]?.[c]?.results ?? []).map((r) => r.inferences_per_s ?? 0)), 0);
  const batchedShare = (key) => ratio(umbraBest(key) || undefined, batching[key]?.inprocess?.best?.rows_per_s);
  const rows = [
    // The rows that compare Umbra with bare uWS and the node:http peer come from the paired rounds
    // (median round; the range beside it) when they ran, else from the sweep above.
    ['Umbra / bare uWS throughput, concurrency 64', pairedThroughput('umbra', 'uws', 64) ?? ratio(at(umbra, 64)?.throughput, at(uws, 64)?.throughput), '>= 0.60', (v) => v >= 0.6],
    ['Umbra / node:http peer throughput, concurrency 64', pairedThroughput('umbra', 'nodeHttp', 64) ?? ratio(at(umbra, 64)?.throughput, at(nodeHttp, 64)?.throughput), '>= 2.0', (v) => v >= 2],
    ['Umbra p50 / bare uWS p50, concurrency 1 (digits as shipped: dynamic batching, no queue delay)', pairedP50('umbra', 'uws', 1) ?? ratio(at(umbra, 1)?.p50_ms, at(uws, 1)?.p50_ms), '<= 1.5', (v) => v <= 1.5],
    ['Umbra, monitoring off / bare uWS throughput, concurrency 64', pairedThroughput('umbraQuiet', 'uws', 64) ?? ratio(at(noMonitoring, 64)?.throughput, at(uws, 64)?.throughput), '>= 0.60', (v) => v >= 0.6],
    ['Umbra, monitoring off / node:http peer throughput, concurrency 64', pairedThroughput('umbraQuiet', 'nodeHttp', 64) ?? ratio(at(noMonitoring, 64)?.throughput, at(nodeHttp, 64)?.throughput), '>= 2.0', (v) => v >= 2],
    ['Umbra, monitoring off: p50 / bare uWS p50, concurrency 1', pairedP50('umbraQuiet', 'uws', 1) ?? ratio(at(noMonitoring, 1)?.p50_ms, at(uws, 1)?.p50_ms), '<= 1.5', (v) => v <= 1.5],
    ['Umbra p50 / bare uWS p50, concurrency 1 (digits, batching off)', ratio(at(noBatch, 1)?.p50_ms, at(uws, 1)?.p50_ms), '<= 1.5', (v) => v <= 1.5],
    ['Umbra p50 / bare uWS p50, concurrency 1 (digits on the onnxruntime backend)', pairedP50('umbraOrt', 'uws', 1) ?? ratio(at(serving.umbraOrt?.results, 1)?.p50_ms, at(uws, 1)?.p50_ms), '<= 1.5', (v) => v <= 1.5],
    ['Umbra (digits on the onnxruntime backend) / bare uWS throughput, concurrency 64', pairedThroughput('umbraOrt', 'uws', 64) ?? ratio(at(serving.umbraOrt?.results, 64)?.throughput, at(uws, 64)?.throughput), '>= 0.60', (v) => v >= 0.6],
    ['Umbra (digits on the onnxruntime backend) / node:http peer throughput, concurrency 64', pairedThroughput('umbraOrt', 'nodeHttp', 64) ?? ratio(at(serving.umbraOrt?.results, 64)?.throughput, at(nodeHttp, 64)?.throughput), '>= 2.0', (v) => v >= 2],
    ['Umbra batched, best configuration (heavy, compute-bound) / best in-process onnxruntime rows/s', pairedBatchingRatio() ?? batchedShare('heavy'), '>= 0.80', (v) => v >= 0.8],
    // The same targets with the second generator (wrk), where it ran.
    ...(WRK ? [
      ['wrk: Umbra / bare uWS throughput, concurrency 64', pairedThroughput('umbra:wrk', 'uws:wrk', 64), '>= 0.60', (v) => v >= 0.6],
      ['wrk: Umbra / node:http peer throughput, concurrency 64', pairedThroughput('umbra:wrk', 'nodeHttp:wrk', 64), '>= 2.0', (v) => v >= 2],
      ['wrk: Umbra p50 / bare uWS p50, concurrency 1', pairedP50('umbra:wrk', 'uws:wrk', 1), '<= 1.5', (v) => v <= 1.5],
      ['wrk: Umbra, monitoring off / bare uWS throughput, concurrency 64', pairedThroughput('umbraQuiet:wrk', 'uws:wrk', 64), '>= 0.60', (v) => v >= 0.6],
      ['wrk: Umbra, monitoring off / node:http peer throughput, concurrency 64', pairedThroughput('umbraQuiet:wrk', 'nodeHttp:wrk', 64), '>= 2.0', (v) => v >= 2],
      ['wrk: Umbra, monitoring off: p50 / bare uWS p50, concurrency 1', pairedP50('umbraQuiet:wrk', 'uws:wrk', 1), '<= 1.5', (v) => v <= 1.5],
      ['wrk: Umbra batched, best configuration (heavy) / best in-process onnxruntime rows/s', pairedBatchingRatio('umbraWrk'), '>= 0.80', (v) => v >= 0.8],
    ] : []),
    ['Umbra batched, best configuration (wide: per-request cost still shows) / best in-process onnxruntime rows/s', batchedShare('wide'), '(not the target case)', () => true],
  ];
  const lines = ['| target | measured | wanted | met |', '|---|---:|---:|:-:|'];
  for (const [name, measured, wanted, ok] of rows) {
    // A paired figure is { median, min, max, n }; a sweep figure a plain number.
    const value = typeof measured === 'object' ? measured.median : measured;
    const shown = value === undefined ? '-' : typeof measured === 'object'
      ? `${value.toFixed(2)} (paired, median of ${measured.n} rounds; ${measured.min.toFixed(2)}-${measured.max.toFixed(2)})` : value.toFixed(2);
    lines.push(`| ${name} | ${shown} | ${wanted} | ${value === undefined ? 'not measured' : ok(value) ? 'yes' : '**no**'} |`);
  }
  return lines.join('\n');
}

function batchingTable() {
  const lines = ['| model | configuration | requests in flight | rows/s | p50 ms | p99 ms | errors |', '|---|---|---:|---:|---:|---:|---:|'];
  for (const key of ['wide', 'heavy']) {
    const entry = batching[key];
    if (!entry || entry.skipped) {
      lines.push(`| ${key} | - | - | skipped: ${entry?.skipped ?? 'not run'} | | | |`);
      continue;
    }
    const cores = cpus().length;
    for (const [name, e] of [['Umbra, dynamic batching (defaults: a worker per core)', entry.batched], ['Umbra, dynamic batching (a worker per core), binary tensors, monitoring off', entry.batchedBinaryQuiet], [`Umbra, dynamic batching, 1 worker x ${cores} intra-op threads`, entry.batchedOne], [`Umbra, dynamic batching, 1 worker x ${cores} intra-op threads, binary tensors`, entry.batchedOneBinary], [`Umbra, dynamic batching, 1 worker x ${cores} intra-op threads, binary tensors, monitoring off`, entry.batchedOneBinaryQuiet], ...(entry.batchedSpareBinary ? [[`Umbra, dynamic batching, 1 worker x ${SPARE_THREADS} intra-op threads, binary tensors`, entry.batchedSpareBinary]] : []), ['Umbra, batching off', entry.unbatched], ['node:http + onnxruntime-node', entry.nodeHttp]]) {
      if (!e || e.skipped) {
        lines.push(`| ${key} | ${name} | - | skipped: ${e?.skipped ?? 'not run'} | | | |`);
        continue;
      }
      for (const r of e.results) lines.push(`| ${key} | ${name} | ${r.concurrency} | ${f1(r.inferences_per_s)} | ${f3(r.p50_ms)} | ${f3(r.p99_ms)} | ${r.errors} |`);
    }
    if (entry.inprocess?.points) {
      for (const p of entry.inprocess.points) {
        const b = entry.inprocess.best;
        const best = b && p.batch === b.batch && (p.threads ?? 1) === (b.threads ?? 1) && (p.sessions ?? 1) === (b.sessions ?? 1) ? ' **(best)**' : '';
        const layout = (p.sessions ?? 1) > 1 ? `${p.sessions} sessions at once, 1 intra-op thread each` : `${p.threads ?? 1} intra-op thread${(p.threads ?? 1) > 1 ? 's' : ''}`;
        lines.push(`| ${key} | in-process onnxruntime-node, batch ${p.batch}, ${layout}${best} | - | ${f1(p.rows_per_s)} | ${f3(p.p50_ms)} | - | 0 |`);
      }
    } else if (entry.inprocess?.skipped) {
      lines.push(`| ${key} | in-process onnxruntime-node | - | skipped: ${entry.inprocess.skipped} | | | |`);
    }
  }
  return lines.join('\n');
}

function report(command) {
  const ceiling = serving.ceiling?.results?.[0];
  const inproc = serving.inprocess?.points?.[0];
  const share = (r) => {
    const v = ratio(r.throughput, at(serving.uws?.results, r.concurrency)?.throughput);
    return v === undefined ? '-' : `${(v * 100).toFixed(0)}%`;
  };
  const ratiosUws = (entry) => (entry?.results ? entry.results.map((r) => `concurrency ${r.concurrency}: ${share(r)}`).join(', ') : '-');
  const out = [
    '# Umbra benchmarks',
    '',
    `- **Date:** ${new Date().toISOString()}`,
    `- **Command:** \`${command}\` (${MODE} mode; ${((Date.now() - started) / 1000).toFixed(0)} s)`,
    `- **Machine:** ${machine()}`,
    `- **Load average** (1/5/15 min) at start: ${loadAtStart.map((v) => v.toFixed(1)).join(' / ')}; at end: ${loadavg().map((v) => v.toFixed(1)).join(' / ')}. Other work on the machine during the run moves these figures; compare rows of one run, not runs.`,
    `- **Load generator:** \`umbra perf\` (src/perf), closed loop, one thread, raw keep-alive HTTP/1.1; levels ${LEVELS.join(', ')}; warm-up ${PERF.warmupMs} ms, windows of ${PERF.windowMs} ms until the last 3 agree within ${PERF.stabilityPct}% (at most ${PERF.maxWindows}); figures are the last 3 windows.`,
    `- **Second generator:** ${WRK ? `wrk (${WRK}, C, one thread) in the paired rounds, for the servers the headline targets compare (bench/wrk.mjs); its rows in the targets table start with "wrk:". On this shared host each generator's CPU is taken from the server it loads; against bare uWS answering fixed bytes at c64, wrk used 13.5 µs of CPU per request and umbra perf 21 µs (tenth session; for the heavy model's 2 KB binary requests about 17 against 40).` : 'wrk is not installed (`apt-get install wrk`): umbra perf only.'}`,
    `- **Generator ceiling:** ${ceiling ? `${f1(ceiling.throughput)} req/s at concurrency 64 against bare uWS answering fixed bytes (generator CPU ${f1(ceiling.client_cpu_pct)}% of one core)` : `not measured (${serving.ceiling?.skipped})`}. The generator and every server share the same ${cpus().length} cores, so no server figure here can exceed this, and servers near it are limited by the shared machine as much as by themselves.`,
    '- Every server runs as its own process, started and measured one at a time, with the same generator and the same 16 seeded random digits requests (64 FP32 pixels each).',
    '',
    '## Serving: requests/s and latency',
    '',
    servingTable(),
    '',
    `Share of the bare uWS figure: Umbra HTTP ${ratiosUws(serving.umbra)}; node:http peer ${ratiosUws(serving.nodeHttp)}.`,
    '',
    `In-process onnxruntime-node on digits (compute limit, no network): ${inproc ? `${f1(inproc.runs_per_s)} sequential runs/s, p50 ${f3(inproc.p50_ms)} ms per run` : `not measured (${serving.inprocess?.skipped})`}.`,
    '',
    '## Paired rounds (the serving targets)',
    '',
    `The servers the serving targets compare, started together and measured in turn (${ROUNDS} rounds, each starting with the next server; levels 1 and 64, same windows as above). A target is a ratio within one round; the targets table takes the median round.`,
    '',
    pairedTable(),
    '',
    '## Targets (foundation issue)',
    '',
    targetsTable(),
    '',
    '## Batching: `heavy` (512-4096-4096-10 MLP, generated at run time; compute-bound) and `wide` (256-512-512-10, bundled)',
    '',
    'Clients send one row per request (JSON); the server may batch them. The batched `heavy` rows run at 64, 128 and 256 requests in flight (at 64, a 64-row batch leaves the model idle while its answers go out and the next requests arrive; at 128 one batch fills while another runs; at 256 each of two workers has one running and one filling); the target row takes the best. Rows/s is requests/s x rows per request. The in-process rows are onnxruntime-node with whole batches handed to it: one session at 1 intra-op thread and at one thread per core, and one single-thread session per core, each in its own thread, all running at once; the best of them is the compute limit the target compares with. Umbra runs `umbra serve` defaults (one model worker per core, 1 intra-op thread each; each worker runs a batch at once), also with binary tensors and monitoring off; `heavy` has max_batch_size 64 and waits up to 2 ms for a batch of 64. Umbra also runs as one worker using every core per run (`--workers 1 --intra-op-threads N`), with JSON and with binary tensors (and binary with its monitoring off, as the in-process baseline monitors nothing), and, on hosts of more than 4 cores, as one worker of N - 2 threads with binary tensors (a core left to the event loop and one to the generator); the target row takes Umbra\'s best configuration, as the in-process side takes its best.',
    '',
    batchingTable(),
    '',
    pairedBatchingTable(),
    '',
    '## Other benchmarks (their own files)',
    '',
    '| bench | status | seconds | results |',
    '|---|---|---:|---|',
    ...others.map((o) => `| bench/${o.file} | ${o.status}${o.tail ? ` (${o.tail})` : ''} | ${o.seconds === undefined ? '-' : o.seconds.toFixed(0)} | ${o.resultsFile ? `[${o.resultsFile}](${o.resultsFile})` : '-'} |`),
    '',
    '## Notes',
    '',
    ...notes.map((n) => `- ${n}`),
    '- Peers: `bench/peers/uws-bare.mjs` (parses the request JSON, answers a digits-shaped response without a model), `bench/peers/node-http-ort.mjs` and `bench/peers/fastify-ort.mjs` (keep-alive, one onnxruntime-node session created at start, `session.run` per request on the event loop), `bench/peers/fastapi_torch.py` (FastAPI + PyTorch, Debian packages), `bench/inprocess-ort.mjs` (onnxruntime-node in-process).',
    '- Umbra runs `umbra serve` with its defaults (one model worker per core; monitoring on: metrics, drift, feedback joins and a SQLite prediction log of every request) on the example repository, whose digits model has `"backend": "auto"` in its config.json and so runs on Umbra\'s native kernels (outputs equal onnxruntime\'s within 1e-5, test/native-backend*.test.ts). "backend: onnxruntime" is the same model with `"backend": "onnxruntime"`. "monitoring off" is `--monitoring off`, which leaves Umbra doing what the peers do; the targets table gives both. "batching off" is the same model with `"dynamic_batching": false` in its config.json.',
    '- Server queue/compute times come from the server\'s statistics endpoint (`GET /v2/models/{m}/stats`) where it has one; "-" where it does not.',
    '- Earlier runs of these targets, and the 16-core host: [RESULTS-history.md](RESULTS-history.md) (kept by hand; this file is rewritten by every run).',
    '',
  ];
  return out.join('\n');
}

// --- main --------------------------------------------------------------------

const command = `npm run ${full ? 'bench:full' : 'bench'}  (node bench/run.mjs --${MODE})`;
if (!existsSync(join(ROOT, 'dist', 'perf', 'index.js'))) {
  process.stderr.write('bench: build first (npx tsc -p tsconfig.json)\n');
  process.exit(1);
}
notes.push(`The machine has ${cpus().length} cores shared by the generator and the server under test; nothing is pinned.`);
// --only=serving,paired,batching,others runs a subset (serving includes paired) (for iterating on one target; the recorded
// RESULTS.md comes from a whole run). --serving-only is the older spelling of --only=serving,batching.
const onlyArg = process.argv.find((a) => a.startsWith('--only='));
const suites = new Set(onlyArg ? onlyArg.slice('--only='.length).split(',') : process.argv.includes('--serving-only') ? ['serving', 'batching'] : ['serving', 'batching', 'others']);
if (suites.has('serving')) await servingSuite();
if (suites.has('serving') || suites.has('paired')) await pairedSuite();
if (suites.has('batching')) await batchingSuite();
if (suites.has('others')) await otherBenches();
const svg = latencyThroughputSvg([
  ['bare uWS', serving.uws], ['Umbra', serving.umbra], ['node:http+ORT', serving.nodeHttp], ['Fastify+ORT', serving.fastify],
].filter(([, e]) => e?.results).map(([label, e]) => ({ label, results: e.results })), `digits: latency vs throughput (${MODE})`);
writeFileSync(join(ROOT, 'bench', 'serving.svg'), svg);
notes.push('Plot of the serving sweep: [serving.svg](serving.svg).');
writeFileSync(join(ROOT, 'bench', 'RESULTS.md'), report(command));
writeFileSync(join(ROOT, 'bench', `results-${MODE}.json`), `${JSON.stringify({ serving, paired, batching, others }, null, 2)}\n`);
log(`wrote bench/RESULTS.md in ${((Date.now() - started) / 1000).toFixed(0)} s`);
