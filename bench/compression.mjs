// What HTTP compression costs the server (src/server/content-coding.ts), through `umbra serve` as
// a user runs it: one server with --response-compression on, wrk sending the same request with and
// without `Accept-Encoding: gzip` (and a gzip request body), alternating in each round. Reported:
// requests/s, the server's CPU per request (utime + stime from /proc), and bytes on the wire.
//
//   node bench/compression.mjs [--rounds 3] [--seconds 4] [--connections 16]
//
// The model is y = 2x + 1 on 256 floats a row (built here): its answers are JSON numbers, the
// kind of answer compression is asked for, at 1 row (about 2.5 KB) and 16 rows (about 40 KB).
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { parseArgs } from 'node:util';
import { ROOT, freePort, log, processTreeCpu as processCpu } from './harness.mjs';
import { findWrk, runWrk } from './wrk.mjs';
import { buildModel } from '../dist/onnx/builder.js';
import { writeModel } from '../dist/onnx/model-io.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '4' }, connections: { type: 'string', default: '16' } } });
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const WIDTH = 256;

const wrk = findWrk();
if (!wrk) {
  console.log('wrk is not installed (Debian package `wrk`): nothing measured');
  process.exit(0);
}

const work = mkdtempSync(join(tmpdir(), 'umbra-compression-'));
const repo = join(work, 'repository');
mkdirSync(join(repo, 'wide', '1'), { recursive: true });
writeModel(buildModel({
  inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', WIDTH] }],
  outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', WIDTH] }],
  nodes: [{ op: 'Mul', inputs: ['x', 'scale'], outputs: ['s'] }, { op: 'Add', inputs: ['s', 'offset'], outputs: ['y'] }],
  initializers: [{ name: 'scale', datatype: 'FP32', dims: [], values: [2] }, { name: 'offset', datatype: 'FP32', dims: [], values: [1] }],
}), join(repo, 'wide', '1', 'model.onnx'));

const port = await freePort();
const server = spawn(process.execPath, [join(ROOT, 'bin', 'umbra.js'), 'serve', '--repo', repo, '--port', String(port), '--grpc-port', '0', '--response-compression', 'on', '--monitoring', 'off', '--state-dir', join(work, 'state')], { stdio: ['ignore', 'ignore', 'inherit'] });
const url = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${url}/v2/health/ready`)).ok) break;
  } catch { /* not yet */ }
  if (i > 300 || server.exitCode !== null) throw new Error('umbra serve did not become ready');
  await new Promise((r) => setTimeout(r, 100));
}

function body(rows) {
  const data = Array.from({ length: rows * WIDTH }, () => Math.round((Math.random() * 2 - 1) * 1e4) / 1e4);
  return Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [rows, WIDTH], datatype: 'FP32', data }] }));
}

async function answerBytes(request, headers) {
  const res = await fetch(`${url}/v2/models/wide/infer`, { method: 'POST', body: request, headers: { 'content-type': 'application/json', ...headers } });
  const text = await res.text();
  return { plain: Buffer.byteLength(text), gzip: zlib.gzipSync(text, { level: 1 }).length };
}

const results = [];
for (const rows of [1, 16]) {
  const plainBody = body(rows);
  const sizes = await answerBytes(plainBody, {});
  const cases = [
    { name: 'plain', request: { body: plainBody } },
    { name: 'answer gzip', request: { body: plainBody, headers: { 'Accept-Encoding': 'gzip' } } },
    { name: 'request gzip', request: { body: zlib.gzipSync(plainBody), headers: { 'Content-Encoding': 'gzip' } } },
  ];
  for (let round = 1; round <= rounds; round++) {
    for (const c of cases) {
      const before = processCpu(server.pid);
      const r = await runWrk(wrk, { url, path: '/v2/models/wide/infer', request: c.request, connections, seconds, warmupSeconds: 1 });
      const cpu = processCpu(server.pid) - before;
      // The CPU counted covers the warm-up second too: per request over both windows' requests.
      const requests = r.throughput * (seconds + 1);
      results.push({ rows, round, case: c.name, rps: r.throughput, cpu_us: (cpu / requests) * 1e6, errors: r.errors, requestBytes: c.request.body.length, sizes });
      log(`${rows} rows, round ${round}, ${c.name}: ${r.throughput.toFixed(0)} req/s, ${((cpu / requests) * 1e6).toFixed(0)} µs CPU a request, ${r.errors} errors`);
    }
  }
}
server.kill('SIGTERM');
await new Promise((r) => server.on('exit', r));
rmSync(work, { recursive: true, force: true });

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`| rows | answer bytes (gzip) | case | req/s (median) | vs plain | server CPU per request (µs) | errors |`);
console.log(`|---:|---|---|---:|---:|---:|---:|`);
for (const rows of [1, 16]) {
  const plain = median(results.filter((r) => r.rows === rows && r.case === 'plain').map((r) => r.rps));
  for (const name of ['plain', 'answer gzip', 'request gzip']) {
    const rs = results.filter((r) => r.rows === rows && r.case === name);
    const rps = median(rs.map((r) => r.rps));
    const s = rs[0].sizes;
    console.log(`| ${rows} | ${s.plain} (${s.gzip}) | ${name}${name === 'request gzip' ? ` (${rs[0].requestBytes} bytes sent)` : ''} | ${rps.toFixed(0)} | ${(rps / plain).toFixed(2)} | ${median(rs.map((r) => r.cpu_us)).toFixed(0)} | ${rs.reduce((n, r) => n + r.errors, 0)} |`);
  }
}
