// A long hostile run against `umbra serve` on default settings, as a user would start it:
//   1. a PyTorch export with no config (its queue bound is derived at load);
//   2. capacity: the most the server answers (closed loop of --capacity-clients, then an open-loop
//      probe at three times that, whichever answered more);
//   3. rounds of: unloaded latency (one client), then 2x overload in open loop (requests sent on a
//      fixed schedule at twice that capacity, on as many connections as they need), with RSS
//      sampled, then one request sent when the load stops;
//   4. during every overload, a hostile stream beside it: mutated raw requests, requests split at
//      random offsets, three requests pipelined in one write (answered in order), repeated framing
//      headers, bad WebSocket frames, admin calls through a proxy header; and interleaved valid
//      requests whose answers are checked exactly.
// Prints one JSON object; bench/RESULTS-robustness.md records it with the command.
//
// With --baseline, a second server serves the same export with `max_queue_size: 0` (an unbounded
// queue, Triton's default and Umbra's before the derived bound), and each round runs the same
// overload against it right after the defaults' (paired rounds on one host).
//
// With --server-cpus LIST the servers run under `taskset -c LIST` (their defaults then follow the
// CPUs they are given, as in a container with a cpuset); run the bench itself under `taskset -c`
// on the other CPUs, so the generator keeps its schedule without taking the server's CPU:
//   taskset -c 0 node bench/hostile-soak.mjs --server-cpus 1
//
// Usage: node bench/hostile-soak.mjs [--rounds 3] [--overload-s 20] [--io-threads N] [--seed 23] [--hidden 4096] [--capacity-clients 256] [--monitoring on|off] [--server-cpus LIST] [--overload-rate R] [--baseline]
import { spawn, execFileSync } from 'node:child_process';
// One process with the heap floor `umbra serve` gives itself (bin/serve-heap.js), so the pid read below is the server's.
import { SERVE_HEAP_FLAG } from '../bin/serve-heap.js';
import { cpSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import http from 'node:http';
import WebSocket from 'ws';
import { seededRandom } from '../dist/random.js';
import { HttpConnection, encodeHttpRequest } from '../dist/perf/http-connection.js';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1] === undefined || all[i + 1].startsWith('--') ? 'yes' : all[i + 1]]] : pairs), []));
const baseline = args.baseline === 'yes';
const rounds = Number(args.rounds ?? 3);
const overloadS = Number(args['overload-s'] ?? 20);
const ioThreads = args['io-threads'];
const random = seededRandom(Number(args.seed ?? 23));
const WIDTH = 256;
// Wide enough that the model, not the HTTP path, is what saturates: a JavaScript load generator on
// the same two cores can then send twice the capacity on schedule (with 2048 it fell behind).
const HIDDEN = Number(args.hidden ?? 4096);
const capacityClients = Number(args['capacity-clients'] ?? 256);
// Monitoring (drift, the prediction log, metrics) is on by default, as `umbra serve` starts.
const monitoring = args.monitoring ?? 'on';
const serverCpus = args['server-cpus'];
// A fixed overload rate (requests/s) instead of twice the measured capacity: pairs runs of two builds at one schedule.
const overloadRate = args['overload-rate'] === undefined ? undefined : Number(args['overload-rate']);

function exportModel(dir) {
  mkdirSync(join(dir, 'mlp', '1'), { recursive: true });
  execFileSync('/usr/bin/python3', ['-c', `
import torch
torch.manual_seed(7)
m = torch.nn.Sequential(torch.nn.Linear(${WIDTH}, ${HIDDEN}), torch.nn.ReLU(), torch.nn.Linear(${HIDDEN}, ${HIDDEN}), torch.nn.ReLU(), torch.nn.Linear(${HIDDEN}, 10)).eval()
torch.onnx.export(m, torch.randn(1, ${WIDTH}), '${join(dir, 'mlp', '1', 'model.onnx')}', input_names=['x'], output_names=['y'], dynamic_axes={'x': {0: 'b'}, 'y': {0: 'b'}}, opset_version=13)
`], { stdio: 'inherit' });
}

async function startServer(repo, port) {
  const flags = [SERVE_HEAP_FLAG, 'bin/umbra.js', 'serve', '--grpc-port', '0', '--repo', repo, '--port', String(port), '--log-db', `sqlite:${join(repo, 'predictions.sqlite')}`];
  if (monitoring === 'off') flags.push('--monitoring', 'off');
  if (ioThreads) flags.push('--io-threads', ioThreads);
  const child = serverCpus
    ? spawn('taskset', ['-c', serverCpus, process.execPath, ...flags], { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(process.execPath, flags, { stdio: ['ignore', 'pipe', 'inherit'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v2/health/ready`);
      if (r.status === 200) return { child, log: () => log };
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('the server did not become ready');
}

const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN);
const row = (i) => Array.from({ length: WIDTH }, (_, j) => ((i * 31 + j * 7) % 17) / 4 - 2);

// Bounded, so an overload that the server answers slowly cannot run the client out of descriptors;
// a request waiting here for a socket still counts its wait (latency runs from when it was due).
// With a timeout, so the agent honours the server's Keep-Alive hint: without one, Node's Agent
// keeps an idle socket until the server closes it, and the capacity phase's 256 sockets, idle
// through the unloaded phase, were being closed by the server just as the overload reused them.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1024, timeout: 60_000 });
/** Request bodies encoded once: the generator shares the host's two cores with the server it measures. */
const BODIES = Array.from({ length: 64 }, (_, i) => JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], data: row(i) }] }));
const bodyOf = (i) => BODIES[((i % 64) + 64) % 64];

/** `ms` from the call, `serverMs` from when the request got its socket (the generator's own queue excluded). */
function infer(port, body, via = agent) {
  return new Promise((resolve) => {
    const started = performance.now();
    let sent = started;
    const req = http.request({ host: '127.0.0.1', port, path: '/v2/models/mlp/infer', method: 'POST', agent: via, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const now = performance.now();
        resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'], type: res.headers['content-type'], body: Buffer.concat(chunks).toString(), ms: now - started, serverMs: now - sent });
      });
    });
    req.on('socket', () => { sent = performance.now(); });
    req.on('error', (err) => resolve({ status: 0, error: err.code, reusedSocket: req.reusedSocket, ms: performance.now() - started, serverMs: performance.now() - sent }));
    req.end(body);
  });
}

async function closedLoop(port, clients, seconds) {
  const latencies = [];
  const until = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; performance.now() < until; i++) {
      const r = await infer(port, bodyOf(c * 1000 + i));
      if (r.status === 200) latencies.push(r.ms);
      done += 1;
    }
  }));
  latencies.sort((a, b) => a - b);
  // Capacity is what the server answers, not what it refuses.
  return { rate: latencies.length / seconds, refused: done - latencies.length, clients, p50: pct(latencies, 0.5), p99: pct(latencies, 0.99) };
}

/** Request bytes for the lean connections, encoded once. */
const RAW_BODIES = BODIES.map((b) => encodeHttpRequest('127.0.0.1', '/v2/models/mlp/infer', Buffer.from(b), { 'content-type': 'application/json' }));
/** One request in SAMPLE_EVERY goes through node:http, whose answers are checked whole (Retry-After, JSON). */
const SAMPLE_EVERY = 50;
const MAX_CONNECTIONS = 1024;

/**
 * Requests on a fixed schedule; each one's latency counts from when it was due (the generator's
 * own lag included), and separately from when it went out on a socket (the server's part).
 * The schedule is kept by pre-encoded requests on lean keep-alive connections (src/perf's, as
 * `umbra perf` sends them: node:http's client alone could not send 4,000 requests/s on a core of
 * its own); every SAMPLE_EVERY-th request goes through node:http and its whole answer is checked.
 */
async function openLoop(port, rate, seconds, pid) {
  const statuses = {};
  const admitted = [];
  const admittedServer = [];
  let retryAfterMissing = 0;
  let nonJsonErrors = 0;
  let checkedAnswers = 0;
  const rssSamples = [rss(pid)];
  const sampler = setInterval(() => rssSamples.push(rss(pid)), 500);
  const start = performance.now();
  const total = Math.round(rate * seconds);
  const pending = [];
  let lateSends = 0;
  const idle = [];
  let opened = 0;
  // A request with no answer at all (status 0) is counted with why: the connection's error.
  const failures = {};
  const record = (status, due, sent, error) => {
    const now = performance.now();
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status === 0) failures[error ?? 'unknown'] = (failures[error ?? 'unknown'] ?? 0) + 1;
    if (status === 200) {
      admitted.push(now - due);
      admittedServer.push(now - sent);
    }
  };
  // At most MAX_CONNECTIONS open, as node:http's agent here: past that a request waits for a
  // connection in the generator (its latency from due still counts that wait).
  let live = 0;
  const waiting = [];
  // The first few requests with no answer, with what their connection had done: enough to tell a
  // keep-alive race (an idle connection reused) from a reset in the middle of a busy one.
  const failed = [];
  const sendOn = (conn, i, due, resolve) => {
    const sent = performance.now();
    const idleMs = conn.lastDone === undefined ? null : sent - conn.lastDone;
    conn.opened ??= sent;
    conn.requests = (conn.requests ?? 0) + 1;
    conn.send(RAW_BODIES[((i % 64) + 64) % 64], (status, error) => {
      const now = performance.now();
      conn.lastDone = now;
      if (status === 0 && failed.length < 20) failed.push({ via: 'lean', error, atS: (now - start) / 1000, waitedMs: now - sent, idleBeforeMs: idleMs, requestOnConnection: conn.requests, connectionAgeMs: now - conn.opened });
      record(status, due, sent, error);
      resolve();
      const next = conn.idle ? waiting.shift() : undefined;
      if (next) sendOn(conn, ...next);
      else if (conn.idle) idle.push(conn);
    }, sent);
  };
  const sendLean = (i, due) => new Promise((resolve) => {
    let c = idle.pop();
    const now = performance.now();
    while (c && !c.reusable(now)) c = idle.pop();
    if (!c && live >= MAX_CONNECTIONS) {
      waiting.push([i, due, resolve]);
      return;
    }
    if (!c) {
      opened += 1;
      live += 1;
      c = new HttpConnection('127.0.0.1', port, () => {
        live -= 1;
        // A connection that died frees its place for a request that waits for one.
        const next = waiting.shift();
        if (next) sendLean(next[0], next[1]).then(next[2]);
      });
    }
    sendOn(c, i, due, resolve);
  });
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    else if (wait < -100) lateSends += 1;
    if (i % SAMPLE_EVERY !== 0) {
      pending.push(sendLean(i, due));
      continue;
    }
    pending.push(infer(port, bodyOf(i)).then((r) => {
      record(r.status, due, performance.now() - r.serverMs, r.error);
      if (r.status === 0 && failed.length < 20) failed.push({ via: 'node:http', error: r.error, atS: (performance.now() - start) / 1000, waitedMs: r.serverMs, reusedSocket: r.reusedSocket });
      checkedAnswers += 1;
      if (r.status === 503 && r.retryAfter === undefined) retryAfterMissing += 1;
      if (r.status >= 400 && !/application\/json/.test(r.type ?? '')) nonJsonErrors += 1;
    }));
  }
  // Sent when the schedule ends on a connection of its own, behind whatever the overload left queued in the server.
  const afterLoad = await infer(port, bodyOf(-1), new http.Agent({ keepAlive: false }));
  await Promise.all(pending);
  for (const c of idle) c.close();
  clearInterval(sampler);
  admitted.sort((a, b) => a - b);
  admittedServer.sort((a, b) => a - b);
  return {
    rate, sent: total, sentOverTs: (performance.now() - start) / 1000, lateSends, statuses, failures, failed, checkedAnswers, retryAfterMissing, nonJsonErrors, connectionsOpened: opened,
    admittedP50: pct(admitted, 0.5), admittedP99: pct(admitted, 0.99),
    admittedServerP50: pct(admittedServer, 0.5), admittedServerP99: pct(admittedServer, 0.99),
    rssStartMb: rssSamples[0], rssPeakMb: Math.max(...rssSamples), rssEndMb: rssSamples[rssSamples.length - 1],
    afterLoadMs: afterLoad.ms, afterLoadStatus: afterLoad.status,
  };
}

function raw(port, parts, gapMs = 3) {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let out = Buffer.alloc(0);
    const done = () => { s.destroy(); resolve(out.toString('latin1')); };
    const timer = setTimeout(done, 3000);
    s.on('data', (d) => { out = Buffer.concat([out, d]); });
    s.on('close', () => { clearTimeout(timer); resolve(out.toString('latin1')); });
    s.on('error', () => undefined);
    s.on('connect', async () => {
      for (const p of parts) { s.write(p); await new Promise((r) => setTimeout(r, gapMs)); }
      setTimeout(done, 1000);
    });
  });
}

/** Hostile traffic beside the overload; counts what Umbra answered that it should not have. */
async function hostile(port, untilMs) {
  const counts = { raw: 0, splits: 0, pipelined: 0, framing: 0, ws: 0, wsNotUtf8: 0, wsNotUtf8Not1007: 0, admin: 0, exactChecks: 0, wrongAnswers: 0, umbra5xx: 0, umbraNonJson: 0, libraryPages: 0, smuggled: 0 };
  const body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], data: row(7) }] });
  const valid = `POST /v2/models/mlp/infer HTTP/1.1\r\nHost: umbra\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const reference = JSON.parse((await infer(port, body)).body).outputs[0].data;
  // Pipelined: three requests for three rows in one write, whose answers must come in order.
  const rows = [11, 12, 13];
  const pipelinedBodies = rows.map((r) => JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], data: row(r) }] }));
  const pipelined = pipelinedBodies.map((b) => `POST /v2/models/mlp/infer HTTP/1.1\r\nHost: umbra\r\nContent-Length: ${b.length}\r\n\r\n${b}`).join('');
  const pipelinedReferences = [];
  for (const b of pipelinedBodies) {
    // The overload is already running: ask again until admitted.
    let r = await infer(port, b);
    while (r.status !== 200) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      r = await infer(port, b);
    }
    pipelinedReferences.push(JSON.stringify(JSON.parse(r.body).outputs[0].data));
  }
  const judge = (text) => {
    for (const m of text.matchAll(/HTTP\/1\.1 (\d{3})[^\r]*\r\n((?:[^\r]+\r\n)*)\r\n/g)) {
      const status = Number(m[1]);
      const headers = m[2].toLowerCase();
      if (status >= 500 && ![501, 503, 505].includes(status)) counts.umbra5xx += 1;
      if (status >= 400 && !headers.includes('application/json')) {
        if (text.includes('uWebSockets/20 Server')) counts.libraryPages += 1;
        else counts.umbraNonJson += 1;
      }
    }
  };
  const pick = (n) => Math.floor(random() * n);
  while (performance.now() < untilMs) {
    const kind = pick(6);
    if (kind === 0) {
      const b = Buffer.from(valid, 'latin1');
      for (let k = 0; k < 1 + pick(5); k++) b[pick(b.length)] = pick(256);
      judge(await raw(port, [b]));
      counts.raw += 1;
    } else if (kind === 1) {
      // Split anywhere, inside the request line too (the HTTP guard hands the library a cut line whole).
      const at = 1 + pick(valid.length - 1);
      const text = await raw(port, [valid.slice(0, at), valid.slice(at)]);
      judge(text);
      const answer = /\r\n\r\n(\{.*\})$/s.exec(text)?.[1];
      counts.exactChecks += 1;
      if (text.startsWith('HTTP/1.1 200')) {
        if (JSON.stringify(JSON.parse(answer).outputs[0].data) !== JSON.stringify(reference)) counts.wrongAnswers += 1;
      } else if (!text.startsWith('HTTP/1.1 503')) counts.wrongAnswers += 1;
      counts.splits += 1;
    } else if (kind === 2) {
      const smuggled = 'POST /v2/repository/models/mlp/unload HTTP/1.1\r\nHost: umbra\r\nContent-Length: 0\r\n\r\n';
      const text = await raw(port, [`POST /v2/models/mlp/infer HTTP/1.1\r\nHost: umbra\r\nContent-Length: 2\r\nContent-Length: ${2 + smuggled.length}\r\n\r\n{}${smuggled}`]);
      judge(text);
      if ((text.match(/HTTP\/1\.1/g) ?? []).length > 1) counts.smuggled += 1;
      counts.framing += 1;
    } else if (kind === 3) {
      await new Promise((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/v2/models/mlp/stream`);
        const which = pick(4);
        let done = false;
        // The fourth: a text frame that is not UTF-8, which must close with 1007 (an error or no
        // close within the 2 s counts against it).
        const end = (code) => {
          if (done) return;
          done = true;
          if (which === 3) {
            counts.wsNotUtf8 += 1;
            if (code !== 1007) counts.wsNotUtf8Not1007 += 1;
          }
          ws.terminate();
          resolve();
        };
        ws.on('open', () => ws.send(['{"inputs": [', '[1]', Buffer.from([0xff, 0xff, 0, 0, 1]), Buffer.from([0x7b, 0xff, 0x7d])][which], { binary: which === 2 }));
        ws.on('close', (code) => end(code));
        ws.on('error', () => end(0));
        setTimeout(() => end(0), 2000);
      });
      counts.ws += 1;
    } else if (kind === 5) {
      // Each answer its own row's, in order, or a 503 refusal; every one of the three answered.
      const text = await raw(port, [pipelined]);
      judge(text);
      const answers = [...text.matchAll(/HTTP\/1\.1 (\d{3})[^\r]*\r\n(?:[^\r]+\r\n)*\r\n(\{[^\r]*?\})(?=HTTP\/1\.1 |$)/gs)];
      counts.pipelined += 1;
      counts.exactChecks += 3;
      if (answers.length !== 3) counts.wrongAnswers += 3 - Math.min(3, answers.length);
      answers.slice(0, 3).forEach((m, k) => {
        if (m[1] === '503') return;
        if (m[1] !== '200' || JSON.stringify(JSON.parse(m[2]).outputs[0].data) !== pipelinedReferences[k]) counts.wrongAnswers += 1;
      });
    } else {
      const r = await new Promise((resolve) => {
        const req = http.request({ host: '127.0.0.1', port, path: '/v2/repository/models/mlp/unload', method: 'POST', headers: { 'x-forwarded-for': '198.51.100.7', 'content-length': 0 } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
        req.on('error', () => resolve(0));
        req.end();
      });
      if (r !== 401) counts.smuggled += 1;
      counts.admin += 1;
    }
  }
  return counts;
}

const dir = mkdtempSync(join(tmpdir(), 'umbra-hostile-'));
try {
  exportModel(dir);
  const port = 20000 + Math.floor(random() * 20000);
  const server = await startServer(dir, port);
  const pid = server.child.pid;
  // Enough clients to fill every batch of both slots twice over: with 64 the batches stayed small,
  // and open-loop arrivals (which fill them) were answered at about twice that "capacity".
  const closed = await closedLoop(port, capacityClients, 10);
  // Closed-loop clients that are refused ask again at once, and the storm of refusals takes CPU
  // from the model: with the derived queue bound, 256 of them measured half of what the server
  // answers when requests come on a schedule. So capacity is the most the server answers of an
  // open-loop probe at three times that figure, or the closed-loop figure if higher.
  const probe = await openLoop(port, 3 * closed.rate, 5, pid);
  const answered = (probe.statuses[200] ?? 0) / probe.sentOverTs;
  const capacity = { rate: Math.max(closed.rate, answered), closedLoop: closed, probe: { rate: probe.rate, answeredPerS: answered, statuses: probe.statuses, lateSends: probe.lateSends } };
  let unbounded;
  if (baseline) {
    const other = join(dir, 'unbounded');
    cpSync(join(dir, 'mlp'), join(other, 'mlp'), { recursive: true });
    writeFileSync(join(other, 'mlp', 'config.json'), JSON.stringify({ dynamic_batching: { max_queue_size: 0 } }));
    unbounded = await startServer(other, port + 1);
  }
  const results = { command: `node bench/hostile-soak.mjs ${process.argv.slice(2).join(' ')}`.trim(), queueLine: server.log().split('\n').find((l) => l.includes('queue bound')), serverCpus: serverCpus ?? 'all', clientCpus: execFileSync('taskset', ['-cp', String(process.pid)]).toString().trim().split(': ')[1], capacity, rounds: [] };
  for (let r = 0; r < rounds; r++) {
    const unloaded = await closedLoop(port, 1, 8);
    const stopHostile = performance.now() + overloadS * 1000;
    const [overload, hostileCounts] = await Promise.all([openLoop(port, (overloadRate ?? 2 * capacity.rate), overloadS, pid), hostile(port, stopHostile)]);
    const ready = await fetch(`http://127.0.0.1:${port}/v2/models/mlp/ready`);
    const round = { unloaded, overload, p99Ratio: overload.admittedP99 / unloaded.p99, serverP99Ratio: overload.admittedServerP99 / unloaded.p99, hostile: hostileCounts, modelStillLoaded: ready.status === 200 };
    process.stderr.write(`round ${r + 1}: unloaded p99 ${unloaded.p99.toFixed(1)} ms, overload admitted p99 ${overload.admittedP99.toFixed(1)} ms from due (${(overload.admittedP99 / unloaded.p99).toFixed(1)}x), ${overload.admittedServerP99.toFixed(1)} ms from sending (${(overload.admittedServerP99 / unloaded.p99).toFixed(1)}x), late sends ${overload.lateSends}, statuses ${JSON.stringify(overload.statuses)}, RSS ${overload.rssStartMb.toFixed(0)}->${overload.rssPeakMb.toFixed(0)} MB, after the load ${overload.afterLoadMs.toFixed(0)} ms\n`);
    if (unbounded) {
      // The same schedule against the unbounded queue, right after (no hostile stream beside it).
      const base = await openLoop(port + 1, (overloadRate ?? 2 * capacity.rate), overloadS, unbounded.child.pid);
      round.unbounded = { overload: base, p99Ratio: base.admittedP99 / unloaded.p99, serverP99Ratio: base.admittedServerP99 / unloaded.p99 };
      process.stderr.write(`round ${r + 1} unbounded: admitted p99 ${base.admittedP99.toFixed(1)} ms from due (${(base.admittedP99 / unloaded.p99).toFixed(1)}x), ${base.admittedServerP99.toFixed(1)} ms from sending (${(base.admittedServerP99 / unloaded.p99).toFixed(1)}x), late sends ${base.lateSends}, statuses ${JSON.stringify(base.statuses)}, RSS ${base.rssStartMb.toFixed(0)}->${base.rssPeakMb.toFixed(0)} MB, after the load ${base.afterLoadMs.toFixed(0)} ms\n`);
    }
    results.rounds.push(round);
  }
  if (unbounded) {
    unbounded.child.kill('SIGTERM');
    await new Promise((resolve) => unbounded.child.on('exit', resolve));
  }
  server.child.kill('SIGTERM');
  const code = await new Promise((resolve) => server.child.on('exit', resolve));
  results.drainExitCode = code;
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
} finally {
  agent.destroy();
  rmSync(dir, { recursive: true, force: true });
}
