// gRPC against HTTP on the bundled digits model: one `umbra serve` (default settings) measured over
// HTTP binary, gRPC ModelInfer and gRPC ModelStreamInfer with `umbra perf` at one concurrency,
// and beside it bare @grpc/grpc-js answering fixed bytes (bench/peers/grpc-echo.mjs), the ceiling
// of the library, and bare node:http2 speaking gRPC with the same fixed bytes
// (bench/peers/grpc-http2-echo.mjs), the ceiling of any gRPC server written on Node's HTTP/2. Rounds are paired and interleaved (each round measures every contender, starting
// with the next one), so a host whose speed wanders moves them alike; a target is a ratio within a
// round, the table takes the median round. Where the time goes: CPU per request of the server
// process, of Umbra's core thread (umbra_thread_cpu_seconds_total) and of the generator.
//
// With --h2load, each round also drives Umbra with h2load (Debian's nghttp2-client, a C generator
// that is nobody's code here): HTTP binary over HTTP/1.1 on `concurrency` connections and gRPC
// ModelInfer on HTTP/2 (16 streams a connection, as umbra perf), the same request bytes umbra perf
// sends. h2load reads HTTP statuses only, so a gRPC call counts as served by the model's own
// success count (the statistics route) over the same window.
//
// Usage: node bench/grpc.mjs [--rounds=5] [--seconds=4] [--concurrency=64] [--h2load] [--out=FILE] [--quick]
import { spawn } from 'node:child_process';
// One process with the heap floor `umbra serve` gives itself (bin/serve-heap.js), so the pid read below is the server's.
import { SERVE_HEAP_FLAG } from '../bin/serve-heap.js';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { umbraPerf } from './umbra-perf.mjs';
import { randomPayloads, fetchModelMetadata } from '../dist/perf/payload.js';
import { grpcRequest } from '../dist/perf/grpc-connection.js';
import { frameMessage } from '../dist/client/grpc-channel.js';
import { freePort } from './harness.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')).map(([k, v]) => [k, v ?? 'true']));
// --quick (npm run bench's other benches): one short round; --full: the defaults.
const quick = args.quick === 'true';
const rounds = Number(args.rounds ?? (quick ? 1 : 5));
const seconds = Number(args.seconds ?? (quick ? 2 : 4));
const concurrency = Number(args.concurrency ?? 64);
const root = new URL('..', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'umbra-grpc-bench-'));
const children = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(1));

async function until(what, check, child) {
  for (let i = 0; i < 1200; i++) {
    if (child.exitCode !== null) throw new Error(`${what}: the process exited (${child.exitCode})`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} never became ready`);
}

/** utime + stime of a process, in seconds (from /proc). */
function processCpu(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function threadCpu(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = {};
  for (const m of text.matchAll(/^umbra_thread_cpu_seconds_total\{kind="(\w+)"\} ([\d.e+-]+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

async function startUmbra() {
  const repo = join(work, 'repo');
  cpSync(join(root, 'models/repository/digits'), join(repo, 'digits'), { recursive: true });
  const [port, grpcPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [SERVE_HEAP_FLAG, join(root, 'bin/umbra.js'), 'serve', '--repo', repo, '--port', String(port), '--grpc-port', String(grpcPort)], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await until('umbra serve', async () => (await fetch(`${url}/v2/health/ready`)).status === 200, child);
  return { child, url, grpc: `127.0.0.1:${grpcPort}` };
}

async function startEcho(script) {
  const port = await freePort();
  const child = spawn(process.execPath, [join(root, 'bench/peers', script), String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  await until(script, async () => out.includes('listening'), child);
  return { child, grpc: `127.0.0.1:${port}` };
}

/** One `umbra perf` run (its own process, under /usr/bin/time for its CPU). */
function perf(url, protocol, secs) {
  return umbraPerf(['--url', url, '-m', 'digits', '--protocol', protocol, '--concurrency', String(concurrency), '--duration', String(secs), '--warmup-ms', '1000']);
}

/** Successful inferences of the model so far (the statistics extension). */
async function successes(url) {
  const stats = await (await fetch(`${url}/v2/models/digits/stats`)).json();
  return stats.model_stats.reduce((sum, m) => sum + Number(m.inference_stats.success.count), 0);
}

/** One h2load run: --warm-up-time 1 s, then `secs`; req/s from its own summary. */
function h2load(args) {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', 'CPU %U %S', 'h2load', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => {
      const rate = /finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(out);
      const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
      const lat = /time for request:\s+([\d.]+)(us|ms)\s+([\d.]+)(us|ms)\s+([\d.]+)(us|ms)/.exec(out);
      const cpu = /CPU ([\d.]+) ([\d.]+)/.exec(err);
      if (code !== 0 || !rate || !counts) return reject(new Error(`h2load failed (${code}): ${out.slice(-400)} ${err.slice(-400)}`));
      const ms = (v, unit) => Number(v) / (unit === 'us' ? 1000 : 1);
      resolve({ throughput: Number(rate[1]), done: Number(counts[3]), failed: Number(counts[5]) + Number(counts[6]), mean_ms: lat ? ms(lat[5], lat[6]) : NaN, generatorCpu: cpu ? Number(cpu[1]) + Number(cpu[2]) : NaN });
    });
  });
}

async function measureH2load(contender) {
  const { target, protocol } = contender;
  const file = protocol === 'grpc' ? h2loadBodies.grpc : h2loadBodies.binary;
  const common = ['-D', String(seconds), '--warm-up-time', '1', '-d', file, '-t', '1'];
  const args = protocol === 'grpc'
    ? [...common, '-c', String(Math.ceil(concurrency / 16)), '-m', '16', '-H', 'content-type: application/grpc', '-H', 'te: trailers', `http://${target.grpc}/inference.GRPCInferenceService/ModelInfer`]
    : [...common, '--h1', '-c', String(concurrency), '-m', '1', '-H', 'content-type: application/octet-stream', '-H', `inference-header-content-length: ${h2loadBodies.headerLength}`, `${target.url}/v2/models/digits/infer`];
  const cpuBefore = processCpu(target.child.pid);
  const okBefore = await successes(target.url);
  const r = await h2load(args);
  const served = (await successes(target.url)) - okBefore;
  const requests = r.throughput * (seconds + 1);
  const us = (s) => Math.round((s * 1e6) / requests * 10) / 10;
  // Every request h2load finished (warm-up included) must be a success the model counted.
  const errors = Math.max(0, r.done - served) + r.failed;
  return { throughput: r.throughput, mean_ms: r.mean_ms, errors, cpu_us_per_request: { server: us(processCpu(target.child.pid) - cpuBefore), generator: us(r.generatorCpu) } };
}

async function measure(contender) {
  if (contender.generator === 'h2load') return measureH2load(contender);
  const { target, protocol } = contender;
  const url = protocol.startsWith('grpc') ? target.grpc : target.url;
  const cpuBefore = processCpu(target.child.pid);
  const threadsBefore = target.url ? await threadCpu(target.url) : {};
  const r = await perf(url, protocol, seconds);
  const threadsAfter = target.url ? await threadCpu(target.url) : {};
  // The window the figures come from is the last `seconds`; CPU is counted over warm-up and
  // measurement alike, so it is divided by every request of both (throughput x their length).
  const requests = r.throughput * (seconds + 1);
  const us = (s) => Math.round((s * 1e6) / requests * 10) / 10;
  const cpu = { server: us(processCpu(target.child.pid) - cpuBefore), generator: us(r.generatorCpu) };
  for (const kind of Object.keys(threadsAfter)) cpu[kind] = us(threadsAfter[kind] - (threadsBefore[kind] ?? 0));
  return { throughput: r.throughput, p50_ms: r.p50_ms, p99_ms: r.p99_ms, errors: r.errors, cpu_us_per_request: cpu };
}

function median(xs) {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const loadStart = loadavg();
const umbra = await startUmbra();
const echo = await startEcho('grpc-echo.mjs');
const http2Echo = await startEcho('grpc-http2-echo.mjs');
const contenders = [
  { name: 'Umbra HTTP binary', target: umbra, protocol: 'http-binary' },
  { name: 'Umbra gRPC ModelInfer', target: umbra, protocol: 'grpc' },
  { name: 'Umbra gRPC ModelStreamInfer', target: umbra, protocol: 'grpc-stream' },
  { name: 'bare grpc-js ModelInfer', target: echo, protocol: 'grpc' },
  { name: 'bare grpc-js ModelStreamInfer', target: echo, protocol: 'grpc-stream' },
  { name: 'bare node:http2 ModelInfer', target: http2Echo, protocol: 'grpc' },
  { name: 'bare node:http2 ModelStreamInfer', target: http2Echo, protocol: 'grpc-stream' },
];
const h2loadBodies = {};
if (args.h2load === 'true') {
  // The request bytes umbra perf sends (its first payload), written once for h2load's -d.
  const [payload] = randomPayloads(await fetchModelMetadata(umbra.url, 'digits'), 1, 1, 1);
  h2loadBodies.binary = join(work, 'binary.body');
  h2loadBodies.headerLength = payload.binary.headerLength;
  writeFileSync(h2loadBodies.binary, payload.binary.body);
  h2loadBodies.grpc = join(work, 'grpc.body');
  writeFileSync(h2loadBodies.grpc, frameMessage(grpcRequest(payload, 'digits', undefined)));
  contenders.push(
    { name: 'h2load: Umbra HTTP binary', target: umbra, protocol: 'http-binary', generator: 'h2load' },
    { name: 'h2load: Umbra gRPC ModelInfer', target: umbra, protocol: 'grpc', generator: 'h2load' },
  );
}
const results = [];
for (let round = 0; round < rounds; round++) {
  const row = {};
  for (let k = 0; k < contenders.length; k++) {
    const c = contenders[(round + k) % contenders.length];
    row[c.name] = await measure(c);
    process.stderr.write(`round ${round + 1} ${c.name}: ${row[c.name].throughput} req/s, cpu ${JSON.stringify(row[c.name].cpu_us_per_request)}\n`);
  }
  results.push(row);
}
const loadEnd = loadavg();
const ratio = (a, b) => results.map((r) => r[a].throughput / r[b].throughput);
const targets = {
  grpc_over_http_binary: ratio('Umbra gRPC ModelInfer', 'Umbra HTTP binary'),
  stream_over_http_binary: ratio('Umbra gRPC ModelStreamInfer', 'Umbra HTTP binary'),
  grpc_over_bare_grpc_js: ratio('Umbra gRPC ModelInfer', 'bare grpc-js ModelInfer'),
  grpc_over_bare_http2: ratio('Umbra gRPC ModelInfer', 'bare node:http2 ModelInfer'),
  bare_grpc_js_over_http_binary: ratio('bare grpc-js ModelInfer', 'Umbra HTTP binary'),
  bare_http2_over_http_binary: ratio('bare node:http2 ModelInfer', 'Umbra HTTP binary'),
};
if (h2loadBodies.grpc) targets.h2load_grpc_over_http_binary = ratio('h2load: Umbra gRPC ModelInfer', 'h2load: Umbra HTTP binary');
const summary = {
  date: new Date().toISOString(),
  command: `node bench/grpc.mjs --rounds=${rounds} --seconds=${seconds} --concurrency=${concurrency}${h2loadBodies.grpc ? ' --h2load' : ''}`,
  load: { start: loadStart.map((x) => x.toFixed(1)), end: loadEnd.map((x) => x.toFixed(1)) },
  rounds: results,
  medians: Object.fromEntries(Object.entries(targets).map(([k, v]) => [k, { median: Math.round(median(v) * 100) / 100, min: Math.round(Math.min(...v) * 100) / 100, max: Math.round(Math.max(...v) * 100) / 100 }])),
};
if (args.out) writeFileSync(args.out, JSON.stringify(summary, null, 1));
process.stdout.write(`${JSON.stringify(summary, null, 1)}\n`);
for (const c of children) c.kill('SIGTERM');
process.exit(0);
