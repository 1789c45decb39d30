// I/O threads: `umbra serve` with each --io-threads setting side by side, measured in turn round
// after round (paired, so a host whose speed wanders moves every setting alike), with wrk as the
// generator (a C generator that takes less of a shared host than umbra perf), and where the CPU
// goes per request for each kind of thread (from the server's own umbra_thread_cpu_seconds_total)
// and for the generator (/usr/bin/time). Beside them, in the same run: bare uWebSockets.js (the
// front end's limit, one thread) and, for `--model mlp`, onnxruntime in-process at its best.
//
// Usage: node bench/io-threads.mjs [--model digits|mlp] [--io 1,2,2:off] [--rounds 5] [--seconds 4]
//        [--concurrency 64,1] [--generator wrk|perf] [--perf-threads N] [--ceiling-work US] [--out bench/results-io-threads.json]
// An --io setting may end in :on or :off, the server's --core-reads (whether the core's thread is
// one of the threads that read); without one the server picks for the host. A further suffix
// -unguarded serves it with --http-guard off (the transport guard's cost: --io=2,2-unguarded).
// --ceiling-work adds the host's ceiling for threads: bench/peers/uws-threads.mjs with as many
// threads as each --io setting, no hop, spending US µs of CPU per request (wrk only).
// --generator perf drives the same rounds with `umbra perf` (JSON over HTTP, one window of
// --seconds after a one-second warm-up) instead of wrk, as a user of the CLI measures;
// --perf-threads=N gives it N generator threads (a many-core host, where one cannot keep up).
// --io=default serves with no --io-threads at all: the setting the server picks for the host.
// --builds LABEL=DIR[;LABEL=DIR] adds other builds of Umbra (a checkout with dist/ built, e.g. a
// `git worktree` of an earlier commit) to the same rounds, each `umbra serve` with its defaults:
// a change's cost or gain measured beside the code before it, not against another day's figure.
// The mlp model is a seeded 64-1024-1024-10 MLP (bench/make-mlp.mjs) served with a 2 ms batching
// window, as the issue that asked for I/O threads measured it; --execution=inline|worker sets its
// parameters.execution (default: the server places it) and --delay-us=N its window.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, cpSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { findWrk } from './wrk.mjs';
import { umbraPerf } from './umbra-perf.mjs';
import { freePort } from './harness.mjs';

// --key=value, split at the first '=' (a --builds value holds more).
const args = Object.fromEntries(process.argv.slice(2).map((a) => /^--([^=]+)(?:=(.*))?$/s.exec(a) ?? [a, a, 'true']).map(([, k, v]) => [k, v ?? 'true']));
// Options take their values after '=': `--out FILE` would write the report to a file named "true".
for (const k of ['out', 'io', 'rounds', 'seconds', 'concurrency', 'model', 'generator', 'builds', 'ceiling-work', 'perf-threads']) {
  if (args[k] === 'true') {
    process.stderr.write(`io-threads: --${k} takes its value after '=' (--${k}=VALUE)\n`);
    process.exit(2);
  }
}
const model = args.model ?? 'digits';
// A setting may name --core-reads after a colon (2:on, 2:off); without one the server picks (auto).
const ioSettings = (args.io ?? '1,2').split(',');
for (const io of ioSettings) {
  if (io !== 'default' && !/^\d+(:(on|off))?(-unguarded)?$/.test(io)) {
    process.stderr.write(`io-threads: --io takes thread counts, each with an optional :on or :off for --core-reads and -unguarded for --http-guard off (e.g. 1,2:off,2:on,2-unguarded), not ${io}\n`);
    process.exit(2);
  }
}
const ioThreadsOf = (io) => (io === 'default' ? undefined : Number(/^\d+/.exec(io)[0]));
const coreReadsOf = (io) => /:(on|off)/.exec(io)?.[1];
const unguarded = (io) => io.endsWith('-unguarded');
const ioLabel = (io) => `${ioThreadsOf(io) ?? 'default'}${coreReadsOf(io) ? ` --core-reads ${coreReadsOf(io)}` : ''}${unguarded(io) ? ' --http-guard off' : ''}`;
const rounds = Number(args.rounds ?? 5);
const seconds = Number(args.seconds ?? 4);
const concurrencies = (args.concurrency ?? '64,1').split(',').map(Number);
const generator = args.generator ?? 'wrk';
const perfThreads = Number(args['perf-threads'] ?? 1);
if (!Number.isInteger(perfThreads) || perfThreads < 1) {
  process.stderr.write(`io-threads: --perf-threads takes a whole number of threads, not ${args['perf-threads']}\n`);
  process.exit(2);
}
if (generator !== 'wrk' && generator !== 'perf') {
  process.stderr.write(`io-threads: unknown --generator ${generator} (wrk or perf)\n`);
  process.exit(2);
}
if (generator === 'perf' && model !== 'digits') {
  // umbra perf reads the model's metadata first, and the bare uWS peer serves digits' only.
  process.stderr.write('io-threads: --generator perf measures digits only (use wrk for --model mlp)\n');
  process.exit(2);
}
const wrk = findWrk();
if (!wrk && generator === 'wrk') {
  process.stderr.write('io-threads: wrk is not installed (apt-get install -y wrk)\n');
  process.exit(2);
}

const root = new URL('..', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'umbra-io-bench-'));
const children = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

// The request: one digits row, or one 64-feature row for the MLP, as batch-1 JSON.
const digitsRow = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0];
let repo;
let path;
let body;
let onnxFile;
if (model === 'digits') {
  repo = join(work, 'repo');
  cpSync(join(root, 'models/repository/digits'), join(repo, 'digits'), { recursive: true });
  path = '/v2/models/digits/infer';
  body = JSON.stringify({ inputs: [{ name: 'pixels', shape: [1, 64], datatype: 'FP32', data: digitsRow }] });
} else if (model === 'mlp') {
  repo = join(work, 'repo');
  onnxFile = join(repo, 'mlp', '1', 'model.onnx');
  mkdirSync(join(repo, 'mlp', '1'), { recursive: true });
  const made = spawnSync(process.execPath, [join(root, 'bench/make-mlp.mjs'), onnxFile, args.widths ?? '64,1024,1024,10'], { stdio: 'inherit' });
  if (made.status !== 0) process.exit(1);
  const config = { max_batch_size: 64, dynamic_batching: { max_queue_delay_microseconds: 2000 } };
  if (args.execution) config.parameters = { execution: args.execution };
  if (args['delay-us']) config.dynamic_batching.max_queue_delay_microseconds = Number(args['delay-us']);
  writeFileSync(join(repo, 'mlp', 'config.json'), JSON.stringify(config));
  path = '/v2/models/mlp/infer';
  const row = Array.from({ length: 64 }, (_, i) => ((i * 37) % 17) / 4);
  body = JSON.stringify({ inputs: [{ name: 'features', shape: [1, 64], datatype: 'FP32', data: row }] });
} else {
  process.stderr.write(`io-threads: unknown --model ${model} (digits or mlp)\n`);
  process.exit(2);
}
const bodyFile = join(work, 'body.json');
writeFileSync(bodyFile, body);
const script = join(work, 'post.lua');
writeFileSync(script, `
init = function(args)
  local f = assert(io.open(args[1], "rb")); wrk.body = f:read("*a"); f:close()
  wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"us":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status, latency:percentile(50), latency:percentile(99)))
end
`);

async function waitReady(url, child) {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode})`);
    try {
      const r = await fetch(`${url}/v2/health/ready`);
      if (r.status === 200) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} never became ready`);
}

async function startUmbra(io) {
  const port = await freePort();
  const core = coreReadsOf(io) ? ['--core-reads', coreReadsOf(io)] : [];
  const guard = unguarded(io) ? ['--http-guard', 'off'] : [];
  const child = spawn(process.execPath, [join(root, 'bin/umbra.js'), 'serve', '--grpc-port', '0', '--repo', repo, '--port', String(port), ...(ioThreadsOf(io) === undefined ? [] : ['--io-threads', String(ioThreadsOf(io))]), ...core, ...guard, '--log-db', `sqlite:${join(work, `log-${io.replace(':', '-')}.sqlite`)}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child);
  return { name: `umbra --io-threads ${ioLabel(io)}`, io, url, child, metrics: true };
}

/** Another build of Umbra (--builds), served with its own defaults; gRPC off where the build has it. */
async function startBuild(label, dir) {
  const port = await freePort();
  const help = spawnSync(process.execPath, [join(dir, 'bin/umbra.js'), 'serve', '--help'], { encoding: 'utf8' }).stdout ?? '';
  const grpc = help.includes('--grpc-port') ? ['--grpc-port', '0'] : [];
  const child = spawn(process.execPath, [join(dir, 'bin/umbra.js'), 'serve', ...grpc, '--repo', repo, '--port', String(port), '--log-db', `sqlite:${join(work, `log-${label}.sqlite`)}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child);
  // A build whose /metrics has no thread CPU (before the I/O threads) reports none.
  return { name: `umbra ${label}`, url, child, metrics: true };
}

async function startBare() {
  const port = await freePort();
  const child = spawn(process.execPath, [join(root, 'bench/peers/uws-bare.mjs'), String(port)], { stdio: ['ignore', 'ignore', 'inherit'], cwd: root });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child);
  return { name: 'bare uWebSockets.js', url, child, metrics: false };
}

/**
 * The host's ceiling for I/O threads (--ceiling-work=US): bench/peers/uws-threads.mjs with N
 * threads and no hop, spending US µs of CPU per request, for each N of --io.
 */
async function startCeiling(threads, workUs) {
  const port = await freePort();
  const child = spawn(process.execPath, [join(root, 'bench/peers/uws-threads.mjs'), String(port), String(threads), String(workUs)], { stdio: ['ignore', 'ignore', 'inherit'], cwd: root });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child);
  return { name: `uWS ${threads} thread${threads > 1 ? 's' : ''}, ${workUs} µs work, no hop`, url, child, metrics: false };
}

/** CPU seconds by thread kind, from the server's /metrics. */
async function threadCpu(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = {};
  for (const m of text.matchAll(/^umbra_thread_cpu_seconds_total\{kind="(\w+)"\} ([\d.e+-]+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/** One wrk run under /usr/bin/time: its summary and its own CPU seconds. */
function runWrk(url, connections, secs) {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', 'CPU %U %S', wrk, '-t1', `-c${connections}`, `-d${secs}s`, '--timeout', '30s', '-s', script, `${url}${path}`, '--', bodyFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{"requests"'));
      const cpu = /CPU ([\d.]+) ([\d.]+)/.exec(err);
      if (code !== 0 || !line) return reject(new Error(`wrk failed: ${err.slice(-300)}`));
      const r = JSON.parse(line);
      resolve({ ...r, throughput: r.requests / (r.us / 1e6), cpu: cpu ? Number(cpu[1]) + Number(cpu[2]) : NaN });
    });
  });
}

/** One `umbra perf` level, in wrk's shape: its warm-up second is inside its CPU. */
async function runPerf(url, connections, secs) {
  const level = await umbraPerf(['--url', url, '-m', model, '--concurrency', String(connections), '--duration', String(secs), '--warmup-ms', '1000', '--input-data', bodyFile, '--threads', String(perfThreads)]);
  return { requests: level.completed, throughput: level.throughput, errors: level.errors, p50_us: level.p50_ms * 1000, p99_us: level.p99_ms * 1000, cpu: level.generatorCpu };
}

async function measure(target, connections) {
  if (generator === 'wrk') await runWrk(target.url, connections, 1); // warm-up, not counted (perf warms up itself)
  const before = target.metrics ? await threadCpu(target.url) : {};
  const r = generator === 'wrk' ? await runWrk(target.url, connections, seconds) : await runPerf(target.url, connections, seconds);
  const after = target.metrics ? await threadCpu(target.url) : {};
  // A rate of failures is no rate: stop rather than report it.
  if (r.errors > 0.01 * r.requests) throw new Error(`${target.name} at c${connections}: ${r.errors} of ${r.requests} requests failed`);
  const perRequestUs = {};
  for (const kind of Object.keys(after)) perRequestUs[kind] = ((after[kind] - (before[kind] ?? 0)) * 1e6) / r.requests;
  perRequestUs.generator = (r.cpu * 1e6) / (r.requests + r.requests / seconds); // warm-up second included in its CPU
  return { throughput: r.throughput, p50_ms: r.p50_us / 1000, p99_ms: r.p99_us / 1000, errors: r.errors, cpu_us_per_request: perRequestUs };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const ceilingWork = args['ceiling-work'] === undefined ? undefined : Number(args['ceiling-work']);
const ceilings = generator === 'wrk' && ceilingWork !== undefined ? await Promise.all(ioSettings.filter((io) => ioThreadsOf(io) !== undefined).map((io) => startCeiling(ioThreadsOf(io), ceilingWork))) : [];
const builds = (args.builds ?? '').split(';').filter(Boolean).map((spec) => spec.split('='));
const others = [];
for (const [label, dir] of builds) others.push(await startBuild(label, dir));
const targets = [await startBare(), ...(await Promise.all(ioSettings.map(startUmbra))), ...others, ...ceilings];
const results = {};
for (let round = 0; round < rounds; round++) {
  for (const c of concurrencies) {
    for (const target of targets) {
      const key = `${target.name} c${c}`;
      (results[key] ??= []).push(await measure(target, c));
    }
  }
  process.stderr.write(`round ${round + 1}/${rounds} done\n`);
}

let inProcess;
if (onnxFile) {
  const run = spawnSync(process.execPath, [join(root, 'bench/inprocess-ort.mjs'), onnxFile, 'features', '64', String(Math.max(2, seconds / 2)), '1,16,64,256', '1,2', String(availableParallelism())], { encoding: 'utf8', cwd: root });
  if (run.status === 0) inProcess = JSON.parse(run.stdout.trim().split('\n').pop());
}

const summary = {};
for (const [key, runs] of Object.entries(results)) {
  const kinds = Object.keys(runs[0].cpu_us_per_request);
  summary[key] = {
    throughput: median(runs.map((r) => r.throughput)),
    p50_ms: median(runs.map((r) => r.p50_ms)),
    p99_ms: median(runs.map((r) => r.p99_ms)),
    errors: runs.reduce((a, r) => a + r.errors, 0),
    cpu_us_per_request: Object.fromEntries(kinds.map((k) => [k, median(runs.map((r) => r.cpu_us_per_request[k]))])),
    throughput_each_round: runs.map((r) => Math.round(r.throughput)),
  };
}
// Ratios within each round, then their median: the settings were measured minutes apart at most.
const ratios = {};
for (const c of concurrencies) {
  const base = results[`umbra --io-threads ${ioLabel(ioSettings[0])} c${c}`];
  const bare = results[`bare uWebSockets.js c${c}`];
  for (const io of ioSettings.slice(1)) {
    const other = results[`umbra --io-threads ${ioLabel(io)} c${c}`];
    ratios[`c${c}: --io-threads ${ioLabel(io)} / --io-threads ${ioLabel(ioSettings[0])} req/s`] = median(other.map((r, i) => r.throughput / base[i].throughput));
  }
  if (ceilings.length > 1) {
    const one = results[`${ceilings[0].name} c${c}`];
    for (const t of ceilings.slice(1)) ratios[`c${c}: ${t.name} / ${ceilings[0].name} req/s (the host's ceiling)`] = median(results[`${t.name} c${c}`].map((r, i) => r.throughput / one[i].throughput));
  }
  for (const io of ioSettings) {
    if (!bare) break;
    const mine = results[`umbra --io-threads ${ioLabel(io)} c${c}`];
    ratios[`c${c}: --io-threads ${ioLabel(io)} / bare uWS req/s`] = median(mine.map((r, i) => r.throughput / bare[i].throughput));
    ratios[`c${c}: --io-threads ${ioLabel(io)} p50 / bare uWS p50`] = median(mine.map((r, i) => r.p50_ms / bare[i].p50_ms));
  }
  for (const t of others) {
    const theirs = results[`${t.name} c${c}`];
    ratios[`c${c}: ${t.name} p50 / bare uWS p50`] = median(theirs.map((r, i) => r.p50_ms / bare[i].p50_ms));
    ratios[`c${c}: ${t.name} / bare uWS req/s`] = median(theirs.map((r, i) => r.throughput / bare[i].throughput));
    ratios[`c${c}: --io-threads ${ioLabel(ioSettings[0])} p50 - ${t.name} p50, µs`] = median(base.map((r, i) => (r.p50_ms - theirs[i].p50_ms) * 1000));
  }
}
if (inProcess) {
  const best = inProcess.best?.rows_per_s ?? inProcess.best;
  for (const io of ioSettings) {
    const mine = results[`umbra --io-threads ${ioLabel(io)} c64`];
    const bare = results['bare uWebSockets.js c64'];
    if (!mine || !bare || !best) continue;
    ratios[`c64: --io-threads ${ioLabel(io)} / min(in-process onnxruntime best rows/s, bare uWS req/s)`] = median(mine.map((r, i) => r.throughput / Math.min(best, bare[i].throughput)));
  }
}
const report = { model, generator, rounds, seconds, cores: availableParallelism(), load_at_end: readFileSync('/proc/loadavg', 'utf8').trim(), summary, ratios, in_process: inProcess };
if (args.out) writeFileSync(args.out, JSON.stringify(report, null, 2));
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
process.exit(0);
