#!/usr/bin/env node
// WebSocket vs HTTP keep-alive, same server, same model, same run: predictions/s and p50/p99 with
// 1 and 64 requests in flight. The server is `umbra serve` on the bundled repository (digits, as
// shipped), in its own process, so no client ever shares its event loop. Two views of it:
//
//  - generator: `umbra perf`'s load generator (raw keep-alive HTTP/1.1, one connection per request
//    in flight; or one WebSocket connection carrying every request in flight). A lean client, so
//    the figures say what the server costs per transport.
//  - Node client: what a Node application gets from the libraries it would use: node:http with a
//    keep-alive agent (maxSockets = in flight) against umbra/client over one WebSocket (JSON text
//    frames and binary frames).
//
// Rounds rotate the contenders and medians are reported. Needs `npx tsc -p tsconfig.json` first.
//
//   node bench/ws.mjs [--quick | --full] [--seconds S] [--rounds R] [--json]
import http from 'node:http';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runPerf, randomPayloads } from '../dist/perf/index.js';
import { UmbraStreamClient, streamUrl } from '../dist/client/index.js';
import { median } from './rotating-windows.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const full = process.argv.includes('--full');
function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
}
const SECONDS = arg('seconds', full ? 5 : 1);
const ROUNDS = arg('rounds', full ? 3 : 1);
const AS_JSON = process.argv.includes('--json');
const LEVELS = [1, 64];
const MODEL = 'digits';
const META = { name: MODEL, inputs: [{ name: 'pixels', datatype: 'FP32', shape: [-1, 64] }], outputs: [] };
const PAYLOADS = randomPayloads(META, 1, 16, 7);
const ROWS = PAYLOADS.map((p) => Float32Array.from(JSON.parse(Buffer.from(p.json).toString('utf8')).inputs[0].data));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startUmbra() {
  const port = await freePort();
  const child = spawn(process.execPath, ['bin/umbra.js', 'serve', '--grpc-port', '0', '--repo', 'models/repository', '--port', String(port)], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`umbra serve exited: ${stderr.slice(-400)}`);
    try {
      if ((await fetch(`${url}/v2/health/ready`)).ok) return { url, port, child };
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`umbra serve was not ready in 30 s: ${stderr.slice(-400)}`);
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Closed loop in this process: `inFlight` callers, each sending its next request when the last is answered. */
async function closedLoop(inFlight, once) {
  const warmUntil = performance.now() + 300;
  const endAt = warmUntil + SECONDS * 1000;
  const latencies = [];
  let errors = 0;
  const loop = async (k) => {
    for (let i = k; ; i++) {
      const started = performance.now();
      if (started >= endAt) return;
      try {
        await once(ROWS[i % ROWS.length]);
      } catch {
        errors++;
        continue;
      }
      const done = performance.now();
      if (started >= warmUntil && done <= endAt) latencies.push(done - started);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, (_, k) => loop(k)));
  latencies.sort((a, b) => a - b);
  return { perSecond: latencies.length / SECONDS, p50ms: percentile(latencies, 50), p99ms: percentile(latencies, 99), errors };
}

function httpOnce(agent, port) {
  return (row) => new Promise((resolve, reject) => {
    const body = JSON.stringify({ inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: Array.from(row) }] });
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: `/v2/models/${MODEL}/infer`, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`));
        else resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const CONTENDERS = [
  {
    view: 'generator', transport: 'HTTP keep-alive (JSON)', key: 'gen-http',
    run: async (server, inFlight) => generator(server, inFlight, 'http'),
  },
  {
    view: 'generator', transport: 'WebSocket, 1 connection (JSON text frames)', key: 'gen-ws',
    run: async (server, inFlight) => generator(server, inFlight, 'ws'),
  },
  {
    view: 'Node client', transport: 'node:http keep-alive agent (JSON)', key: 'node-http',
    run: async (server, inFlight) => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: inFlight });
      try {
        return await closedLoop(inFlight, httpOnce(agent, server.port));
      } finally {
        agent.destroy();
      }
    },
  },
  ...[false, true].map((binary) => ({
    view: 'Node client', transport: `umbra/client, 1 WebSocket (${binary ? 'binary' : 'JSON text'} frames)`, key: binary ? 'client-ws-binary' : 'client-ws',
    run: async (server, inFlight) => {
      const client = await UmbraStreamClient.connect(streamUrl(server.url));
      try {
        return await closedLoop(inFlight, (row) => client.infer(MODEL, { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: row }] }, { binary }));
      } finally {
        await client.close();
      }
    },
  })),
];

async function generator(server, inFlight, protocol) {
  const [r] = await runPerf({ url: server.url, model: MODEL, payloads: PAYLOADS, concurrency: [inFlight], protocol, warmupMs: 300, durationS: SECONDS });
  return { perSecond: r.throughput, p50ms: r.p50_ms, p99ms: r.p99_ms, errors: r.errors };
}


async function main() {
  const started = Date.now();
  const loadAtStart = loadavg();
  const server = await startUmbra();
  const samples = new Map();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order so no contender always runs first (or right after a heavy one).
      const order = CONTENDERS.map((_, i) => CONTENDERS[(i + round) % CONTENDERS.length]);
      for (const inFlight of LEVELS) {
        for (const c of order) {
          const r = await c.run(server, inFlight);
          const key = `${c.key}@${inFlight}`;
          if (!samples.has(key)) samples.set(key, []);
          samples.get(key).push(r);
        }
      }
    }
  } finally {
    server.child.kill('SIGTERM');
  }
  const results = [];
  for (const c of CONTENDERS) {
    for (const inFlight of LEVELS) {
      const rs = samples.get(`${c.key}@${inFlight}`) ?? [];
      results.push({
        view: c.view, transport: c.transport, key: c.key, inFlight, rounds: rs.length,
        perSecond: median(rs.map((r) => r.perSecond)), p50ms: median(rs.map((r) => r.p50ms)), p99ms: median(rs.map((r) => r.p99ms)),
        errors: rs.reduce((a, r) => a + r.errors, 0), allPerSecond: rs.map((r) => Math.round(r.perSecond)),
      });
    }
  }
  const find = (key, inFlight) => results.find((r) => r.key === key && r.inFlight === inFlight);
  const ratios = [];
  for (const inFlight of LEVELS) {
    ratios.push({ what: `generator: WebSocket / HTTP, ${inFlight} in flight`, inFlight, value: find('gen-ws', inFlight).perSecond / find('gen-http', inFlight).perSecond });
    for (const key of ['client-ws', 'client-ws-binary']) {
      ratios.push({ what: `Node client: ${find(key, inFlight).transport} / node:http, ${inFlight} in flight`, inFlight, value: find(key, inFlight).perSecond / find('node-http', inFlight).perSecond });
    }
  }
  const meta = { date: new Date().toISOString(), node: process.version, cpus: cpus().length, seconds: SECONDS, rounds: ROUNDS, loadAtStart, loadAtEnd: loadavg(), elapsedS: (Date.now() - started) / 1000 };
  if (AS_JSON) {
    process.stdout.write(`${JSON.stringify({ ...meta, results, ratios }, null, 2)}\n`);
    return;
  }
  const command = `node bench/ws.mjs${full ? ' --full' : ''}${process.argv.includes('--seconds') ? ` --seconds ${SECONDS}` : ''}${process.argv.includes('--rounds') ? ` --rounds ${ROUNDS}` : ''}`;
  const lines = [
    '# WebSocket vs HTTP keep-alive (bench/ws.mjs)',
    '',
    `- **Command:** \`npx tsc -p tsconfig.json && ${command}\` (${meta.elapsedS.toFixed(0)} s)`,
    `- **Date:** ${meta.date}`,
    `- **Machine:** ${meta.cpus} cores, Node ${meta.node}; load average at start ${loadAtStart.map((v) => v.toFixed(1)).join(' / ')}, at end ${meta.loadAtEnd.map((v) => v.toFixed(1)).join(' / ')}. The clients and the server share these cores.`,
    `- **Server:** \`umbra serve --repo models/repository\` in its own process (defaults: monitoring on, one model worker per core); model \`digits\` as shipped (64 FP32 pixels in, dynamic batching up to 32, no queue delay). Every request carries one row (16 seeded rows in rotation).`,
    `- **Method:** closed loops, ${SECONDS} s per row after 0.3 s warm-up; ${ROUNDS} round(s), contenders rotated each round; medians reported.`,
    '',
    '| view | transport | in flight | predictions/s | p50 ms | p99 ms | errors | per round |',
    '|---|---|---:|---:|---:|---:|---:|---|',
    ...results.map((r) => `| ${r.view} | ${r.transport} | ${r.inFlight} | ${r.perSecond.toFixed(0)} | ${r.p50ms.toFixed(3)} | ${r.p99ms.toFixed(3)} | ${r.errors} | ${r.allPerSecond.join(', ')} |`),
    '',
    '| ratio | value | target (64 in flight) |',
    '|---|---:|---|',
    ...ratios.map((r) => `| ${r.what} | ${r.value.toFixed(2)}x | ${r.inFlight === 64 ? (r.value >= 1.5 ? '>= 1.5x: met' : '>= 1.5x: **not met**') : '-'} |`),
    '',
    'The generator view isolates the server: its HTTP client is as lean as its WebSocket client, so the',
    'ratio is the server\'s per-request cost over HTTP against over one stream. The Node-client view adds',
    'what each client library costs, which is what an application calling Umbra from Node sees.',
    '',
  ];
  const text = lines.join('\n');
  process.stdout.write(text);
  if (!process.argv.includes('--no-write')) writeFileSync(join(ROOT, 'bench', 'RESULTS-ws.md'), text);
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
