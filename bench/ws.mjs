#!/usr/bin/env node
// WebSocket vs HTTP keep-alive, same server, same model, same run: predictions/s and p50/p99
// latency with 1 and 64 requests in flight. Self-contained: builds a small model in a temp
// repository, starts Umbra in-process, and drives it with umbra/client (WebSocket) and a
// node:http keep-alive agent (HTTP). Needs `npx tsc -p tsconfig.json` first (imports dist/).
//
//   node bench/ws.mjs [--seconds 5] [--width 16] [--workers 1] [--json]
import http from 'node:http';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { buildModel } from '../dist/onnx/builder.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { startServer } from '../dist/server/server.js';
import { UmbraStreamClient, streamUrl } from '../dist/client/index.js';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
}
const SECONDS = arg('seconds', 5);
const WIDTH = arg('width', 16);
const WORKERS = arg('workers', 1);
const AS_JSON = process.argv.includes('--json');

function makeRepo() {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-bench-ws-'));
  const model = buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', WIDTH] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', WIDTH] }],
    nodes: [
      { op: 'Mul', inputs: ['x', 'scale'], outputs: ['scaled'] },
      { op: 'Add', inputs: ['scaled', 'offset'], outputs: ['y'] },
    ],
    initializers: [
      { name: 'scale', datatype: 'FP32', dims: [], values: [2] },
      { name: 'offset', datatype: 'FP32', dims: [], values: [1] },
    ],
  });
  mkdirSync(join(dir, 'affine', '1'), { recursive: true });
  writeModel(model, join(dir, 'affine', '1', 'model.onnx'));
  // Dynamic batching with no added delay: concurrent requests share runs on both transports.
  writeFileSync(join(dir, 'affine', 'config.json'), JSON.stringify({ max_batch_size: 64, dynamic_batching: {} }));
  return dir;
}

// Seeded inputs, one row per request, never all zeros.
let seed = 12345;
function nextRow() {
  const row = new Float32Array(WIDTH);
  for (let i = 0; i < WIDTH; i++) {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    row[i] = seed / 2 ** 32 - 0.5;
  }
  return row;
}
const ROWS = Array.from({ length: 256 }, nextRow);

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Closed loop: `inFlight` callers, each sending its next request when the last is answered. */
async function measure(label, inFlight, once) {
  const warmUntil = performance.now() + 500;
  const endAt = warmUntil + SECONDS * 1000;
  const latencies = [];
  let count = 0;
  let errors = 0;
  const loop = async (k) => {
    let i = k;
    for (;;) {
      const started = performance.now();
      if (started >= endAt) return;
      try {
        await once(ROWS[i++ % ROWS.length]);
      } catch {
        errors++;
        continue;
      }
      const done = performance.now();
      if (started >= warmUntil && done <= endAt) {
        latencies.push(done - started);
        count++;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, (_, k) => loop(k)));
  latencies.sort((a, b) => a - b);
  return {
    transport: label, inFlight, seconds: SECONDS, predictions: count, errors,
    perSecond: count / SECONDS, p50ms: percentile(latencies, 50), p99ms: percentile(latencies, 99),
  };
}

function httpOnce(agent, port) {
  return (row) => new Promise((resolve, reject) => {
    const body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], data: Array.from(row) }] });
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v2/models/affine/infer', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
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

function wsOnce(client, binary) {
  return (row) => client.infer('affine', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], data: row }] }, { binary });
}

async function main() {
  const repository = makeRepo();
  const server = await startServer({ repository, host: '127.0.0.1', port: 0, workers: WORKERS });
  const results = [];
  try {
    for (const inFlight of [1, 64]) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: inFlight });
      results.push(await measure('http keep-alive (JSON)', inFlight, httpOnce(agent, server.port)));
      agent.destroy();
      const client = await UmbraStreamClient.connect(streamUrl(server.url));
      results.push(await measure('websocket (JSON text frames)', inFlight, wsOnce(client, false)));
      results.push(await measure('websocket (binary frames)', inFlight, wsOnce(client, true)));
      await client.close();
    }
  } finally {
    await server.stop();
    rmSync(repository, { recursive: true, force: true });
  }
  if (AS_JSON) {
    process.stdout.write(`${JSON.stringify({ node: process.version, cpus: cpus().length, width: WIDTH, workers: WORKERS, results }, null, 2)}\n`);
    return;
  }
  process.stdout.write(`node ${process.version}, ${cpus().length} CPUs, model y = 2x + 1 over [1, ${WIDTH}] FP32, ${WORKERS} worker(s), ${SECONDS}s per row after 0.5s warm-up\n\n`);
  process.stdout.write('| transport | in flight | predictions/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|\n');
  for (const r of results) {
    process.stdout.write(`| ${r.transport} | ${r.inFlight} | ${r.perSecond.toFixed(0)} | ${r.p50ms.toFixed(3)} | ${r.p99ms.toFixed(3)} | ${r.errors} |\n`);
  }
  for (const inFlight of [1, 64]) {
    const h = results.find((r) => r.inFlight === inFlight && r.transport.startsWith('http'));
    const w = results.filter((r) => r.inFlight === inFlight && r.transport.startsWith('websocket'));
    for (const r of w) process.stdout.write(`\n${r.transport} / http at ${inFlight} in flight: ${(r.perSecond / h.perSecond).toFixed(2)}x`);
  }
  process.stdout.write('\n');
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
