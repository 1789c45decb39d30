#!/usr/bin/env node
// What the ops page costs serving: two `umbra serve` processes on a copy of the bundled digits
// repository with default settings, one with `--ui off`, one as shipped (the page and its time
// series on). Closed loop at concurrency 64 of single-row JSON requests over keep-alive HTTP.
// Three arms, interleaved in rotating order, every round:
//   off     the `--ui off` server
//   idle    the shipped server, nobody watching
//   watched the shipped server with one open page: an event-stream client reading every tick,
//           plus the polling the model page does (its timeline once, then traffic, rollout,
//           drift with a feature's histograms and shadow every 5 s, as src/ui/static/app.js)
// Costs are paired per round (each watched round against the idle and off rounds beside it).
// Needs `npx tsc -p tsconfig.json`.
//
//   node bench/ui-cost.mjs [--seconds 5] [--rounds 8] [--concurrency 64] [--json]
//   node bench/ui-cost.mjs --micro   the page's work on the core thread, timed in one process
//                                    without load: per request (the series hook), per step with
//                                    and without a watcher, per poll of the model page
import http from 'node:http';
// One process with the heap floor `umbra serve` gives itself (bin/serve-heap.js), so the pid read below is the server's.
import { SERVE_HEAP_FLAG } from '../bin/serve-heap.js';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median } from './rotating-windows.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
}
const SECONDS = arg('seconds', 5);
const ROUNDS = arg('rounds', 8);
const CONCURRENCY = arg('concurrency', 64);
const AS_JSON = process.argv.includes('--json');
const TOKEN = 'bench-token';
const POLL_MS = 5000;

const ROWS = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').trim().split(/\r?\n/).slice(1).map((l) => l.split(',').slice(0, 64).map(Number));
const BODIES = ROWS.slice(0, 256).map((x) => JSON.stringify({ inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: x }] }));

/** `umbra serve` as a user starts it; resolves with its port once it says it listens. */
function serve(repo, flags) {
  const child = spawn(process.execPath, [SERVE_HEAP_FLAG, join(ROOT, 'bin/umbra.js'), 'serve', '--repo', repo, '--state-dir', `${repo}.state`, '--port', '0', '--grpc-port', '0', '--admin-token', TOKEN, '--log-db', 'off', ...flags], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && /ready: true/.test(out)) resolve({ child, port: Number(m[1]) });
      else if (m) waitReady(Number(m[1])).then(() => resolve({ child, port: Number(m[1]) }), reject);
    });
    child.on('exit', (code) => reject(new Error(`umbra serve exited (${code}): ${out}`)));
  });
}

async function waitReady(port) {
  for (let i = 0; i < 600; i++) {
    const r = await fetch(`http://127.0.0.1:${port}/v2/health/ready`).catch(() => undefined);
    if (r?.status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server never became ready');
}

/** User + system CPU seconds of a process so far (Linux /proc; clock ticks of 10 ms). */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  // After the command: state is field 3, utime field 14, stime field 15 (1-based, see proc(5)).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function load(port, seconds) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  let done = 0;
  let errors = 0;
  const until = performance.now() + seconds * 1000;
  const one = (body) => new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v2/models/digits/infer', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
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
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  agent.destroy();
  return { rps: done / ((performance.now() - started) / 1000), errors };
}

/** One open model page: the event stream plus the page's polling. Returns its stop function and what it read. */
function openPage(port) {
  const base = `http://127.0.0.1:${port}`;
  const admin = { authorization: `Bearer ${TOKEN}` };
  const read = { ticks: 0, bytes: 0, polls: 0 };
  const controller = new AbortController();
  const stream = fetch(`${base}/v2/ops/events`, { signal: controller.signal }).then(async (res) => {
    const decoder = new TextDecoder();
    for await (const chunk of res.body) {
      const text = decoder.decode(chunk, { stream: true });
      read.bytes += chunk.byteLength;
      // Parsed as the page parses it.
      for (const block of text.split('\n\n')) {
        const data = block.split('\n').find((l) => l.startsWith('data: '));
        if (data) {
          JSON.parse(data.slice(6));
          read.ticks += 1;
        }
      }
    }
  }).catch(() => undefined);
  const poll = async () => {
    const paths = ['/v2/models/digits/traffic', '/v2/models/digits/rollout', '/v2/models/digits/drift?feature=f21', '/v2/models/digits/shadow'];
    await Promise.all(paths.map((p) => fetch(base + p, { headers: admin }).then((r) => r.arrayBuffer()).then((b) => {
      read.bytes += b.byteLength;
      read.polls += 1;
    })));
  };
  const first = fetch(`${base}/v2/models/digits/timeline`).then((r) => r.arrayBuffer()).then((b) => {
    read.bytes += b.byteLength;
  }).then(poll);
  const timer = setInterval(() => void poll(), POLL_MS);
  return {
    read,
    async close() {
      clearInterval(timer);
      await first;
      controller.abort();
      await stream;
    },
  };
}


async function main() {
  // One repository copy per server: each keeps its traffic state beside the model.
  const repos = ['off', 'on'].map(() => {
    const dir = mkdtempSync(join(tmpdir(), 'umbra-bench-ui-'));
    cpSync(join(ROOT, 'models/repository/digits'), join(dir, 'digits'), { recursive: true });
    return dir;
  });
  const servers = {};
  try {
    servers.off = await serve(repos[0], ['--ui', 'off']);
    servers.on = await serve(repos[1], []);
    // A rollout in its shadow step on both, so the page has rollout, shadow and drift to read.
    for (const s of Object.values(servers)) {
      const post = (path, body) => fetch(`http://127.0.0.1:${s.port}${path}`, { method: path.endsWith('traffic') ? 'PUT' : 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      await post('/v2/models/digits/traffic', { primary: '1' });
      await post('/v2/models/digits/rollout', { candidate: '2', steps: [{ shadow: true, min_requests: 10_000_000, max_seconds: 86_400 }], shadow_sample: 0.1, analysis: { drift: false, min_agreement: 0.5, max_latency_ratio: 100, max_error_rate: 0.5 } });
    }
    for (const name of ['off', 'on']) await load(servers[name].port, 2);
    const arms = ['off', 'idle', 'watched'];
    const runs = { off: [], idle: [], watched: [] };
    const pages = [];
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < arms.length; i++) {
        const arm = arms[(r + i) % arms.length];
        const server = arm === 'off' ? servers.off : servers.on;
        const page = arm === 'watched' ? openPage(server.port) : undefined;
        const cpuBefore = cpuSeconds(server.child.pid);
        const result = await load(server.port, SECONDS);
        // The server's CPU per answered request: steadier than req/s when other work shares the host.
        result.cpuUsPerRequest = ((cpuSeconds(server.child.pid) - cpuBefore) * 1e6) / (result.rps * SECONDS);
        if (page) {
          await page.close();
          result.page = page.read;
          pages.push(page.read);
        }
        result.round = r;
        runs[arm].push(result);
        if (!AS_JSON) process.stderr.write(`round ${r} ${arm}: ${result.rps.toFixed(0)} req/s, server CPU ${result.cpuUsPerRequest.toFixed(1)} us/req${result.errors ? ` (${result.errors} errors)` : ''}${page ? `, page read ${page.read.ticks} ticks, ${page.read.polls} polls, ${(page.read.bytes / 1024).toFixed(0)} KiB` : ''}\n`);
      }
    }
    const paired = (a, b) => median(runs[a].map((x, i) => 1 - x.rps / runs[b][i].rps));
    const pairedCpu = (a, b) => median(runs[a].map((x, i) => x.cpuUsPerRequest / runs[b][i].cpuUsPerRequest - 1));
    const summary = {
      seconds: SECONDS, rounds: ROUNDS, concurrency: CONCURRENCY,
      rps: Object.fromEntries(arms.map((a) => [a, Math.round(median(runs[a].map((x) => x.rps)))])),
      cost: {
        idle_vs_off: 1 - median(runs.idle.map((x) => x.rps)) / median(runs.off.map((x) => x.rps)),
        watched_vs_idle: 1 - median(runs.watched.map((x) => x.rps)) / median(runs.idle.map((x) => x.rps)),
        paired_idle_vs_off: paired('idle', 'off'),
        paired_watched_vs_idle: paired('watched', 'idle'),
      },
      cpu_us_per_request: Object.fromEntries(arms.map((a) => [a, Math.round(median(runs[a].map((x) => x.cpuUsPerRequest)) * 10) / 10])),
      cpu_cost: { paired_idle_vs_off: pairedCpu('idle', 'off'), paired_watched_vs_idle: pairedCpu('watched', 'idle') },
      errors: Object.fromEntries(arms.map((a) => [a, runs[a].reduce((n, x) => n + x.errors, 0)])),
      page: { ticks_per_round: median(pages.map((p) => p.ticks)), kib_per_round: median(pages.map((p) => p.bytes / 1024)) },
      runs,
    };
    if (AS_JSON) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      const { runs: _, ...short } = summary;
      process.stdout.write(`${JSON.stringify(short, null, 2)}\n`);
    }
  } finally {
    for (const s of Object.values(servers)) s.child.kill('SIGTERM');
    for (const dir of repos) for (const d of [dir, `${dir}.state`]) rmSync(d, { recursive: true, force: true });
  }
}

/** Median wall time of `fn` in microseconds over `n` runs (after a warm-up). */
async function timeUs(n, fn) {
  for (let i = 0; i < Math.min(20, n); i++) await fn(i);
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    times.push((performance.now() - t0) * 1000);
  }
  return median(times);
}

async function micro() {
  const { startServer } = await import('../dist/index.js');
  const { Timeline } = await import('../dist/ui/index.js');
  const repo = mkdtempSync(join(tmpdir(), 'umbra-bench-ui-'));
  cpSync(join(ROOT, 'models/repository/digits'), join(repo, 'digits'), { recursive: true });
  // The series hook on the request path: one event per answered request.
  const tl = new Timeline({ queueDepth: () => 0, shadowAgreement: () => undefined, accuracy: () => undefined, meanAbsoluteError: () => undefined, loaded: () => [] });
  const events = Array.from({ length: 1024 }, (_, i) => ({ model: 'digits', version: i % 10 === 0 ? '2' : '1', role: i % 10 === 0 ? 'shadow' : 'primary', outcome: 'success', context: {}, durationMs: 0.2 + (i % 50) / 10, timing: { queueMs: 0, computeMs: 0.1, rows: 1, batchRows: 1 + (i % 8) } }));
  const N = 2_000_000;
  for (let i = 0; i < N; i++) tl.observe(events[i & 1023]);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) tl.observe(events[i & 1023]);
  const observeNs = ((performance.now() - t0) * 1e6) / N;
  const server = await startServer({ repository: repo, stateDir: `${repo}.state`, host: '127.0.0.1', port: 0, adminToken: TOKEN, monitoring: { drift: {} }, ui: { stepMs: 3_600_000 } });
  try {
    const api = server.api;
    const call = (method, path, body) => api.handle({ method, path: path.split('?')[0], query: path.split('?')[1] ?? '', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: Buffer.from(body ? JSON.stringify(body) : '') });
    await call('PUT', '/v2/models/digits/traffic', { primary: '1' });
    await call('POST', '/v2/models/digits/rollout', { candidate: '2', steps: [{ shadow: true, min_requests: 10_000_000, max_seconds: 86_400 }], analysis: { drift: false, min_agreement: 0.5, max_latency_ratio: 100, max_error_rate: 0.5 } });
    for (let i = 0; i < 2000; i++) await call('POST', '/v2/models/digits/infer', { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: ROWS[i % ROWS.length] }] });
    const ops = server.ops;
    const stepIdle = await timeUs(300, (i) => ops.step(i));
    // One watcher: the same step builds the summary and writes the tick to it.
    const reply = await call('GET', '/v2/ops/events');
    let bytes = 0;
    const stop = reply.stream.open((chunk) => { bytes += chunk.length; }, () => undefined);
    const stepWatched = await timeUs(300, (i) => ops.step(1e6 + i));
    stop();
    const pollPaths = ['/v2/models/digits/traffic', '/v2/models/digits/rollout', '/v2/models/digits/drift?feature=f21', '/v2/models/digits/shadow'];
    const poll = await timeUs(200, () => Promise.all(pollPaths.map((p) => call('GET', p))));
    const pageOpen = await timeUs(50, () => call('GET', '/v2/models/digits/timeline'));
    const perSecondUs = stepWatched - stepIdle + poll / (POLL_MS / 1000);
    const out = {
      observe_ns_per_request: Math.round(observeNs * 10) / 10,
      step_us: { idle: Math.round(stepIdle), watched: Math.round(stepWatched), tick_bytes: Math.round(bytes / 320) },
      poll_us: Math.round(poll),
      open_timeline_us: Math.round(pageOpen),
      watched_core_us_per_second: Math.round(perSecondUs),
      watched_share_of_core_thread: perSecondUs / 1e6,
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    await server.stop();
    for (const d of [repo, `${repo}.state`]) rmSync(d, { recursive: true, force: true });
  }
}

(process.argv.includes('--micro') ? micro() : main()).catch((err) => {
  console.error(err);
  process.exit(1);
});
