// What Triton's system shared-memory extension saves a client on the same host, through
// `umbra serve --shared-memory on` as a user runs it: the same image model asked the same way,
// its 602 KB input sent in the body (the binary tensor extension, the fastest way without shared
// memory) or written by the client into its slice of a registered /dev/shm region with the
// request naming it, alternating in each round. Reported: requests/s and p50 latency at each
// concurrency, and the server's CPU per request (utime + stime from /proc).
//
//   node bench/shared-memory.mjs [--rounds 3] [--seconds 4] [--concurrency 1,8] [--monitoring on|off]
//
// The model is bench/export_image_torch.py's (exported here from PyTorch: needs python3-torch).
// The client is Node's http with keep-alive, one connection per concurrent request, and it pays
// for what a real one does: in the shared-memory case it writes every request's image into its
// slice before sending (a pwrite of 602 KB); in the body case the kernel copies it over loopback.
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, freePort, log, processTreeCpu as processCpu } from './harness.mjs';

const { values } = parseArgs({ options: {
  rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '4' },
  concurrency: { type: 'string', default: '1,8' }, monitoring: { type: 'string', default: 'on' }, untuned: { type: 'boolean', default: false },
} });
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const levels = values.concurrency.split(',').map(Number);
const IMAGE = 3 * 224 * 224;
const BYTES = IMAGE * 4;

const work = mkdtempSync(join(tmpdir(), 'umbra-shm-bench-'));
const repo = join(work, 'repository');
mkdirSync(join(repo, 'image', '1'), { recursive: true });
execFileSync('/usr/bin/python3', [join(ROOT, 'bench', 'export_image_torch.py'), join(repo, 'image', '1', 'model.onnx')], { stdio: ['ignore', 'ignore', 'inherit'] });

const maxLevel = Math.max(...levels);
const shmName = `umbra-bench-${process.pid}`;
const shmPath = `/dev/shm/${shmName}`;
writeFileSync(shmPath, Buffer.alloc(BYTES * maxLevel));

/** `umbra serve` with `env` added, ready and with the images region registered. */
async function startServer(label, env) {
  const port = await freePort();
  const proc = spawn(process.execPath, [join(ROOT, 'bin', 'umbra.js'), 'serve', '--repo', repo, '--port', String(port), '--grpc-port', '0', '--shared-memory', 'on', '--monitoring', values.monitoring, '--state-dir', join(work, `state-${port}`)], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/v2/health/ready`)).ok) break;
    } catch { /* not yet */ }
    if (i > 600 || proc.exitCode !== null) throw new Error('umbra serve did not become ready');
    await new Promise((r) => setTimeout(r, 100));
  }
  const registered = await fetch(`${url}/v2/systemsharedmemory/region/images/register`, { method: 'POST', body: JSON.stringify({ key: `/${shmName}`, offset: 0, byte_size: BYTES * maxLevel }) });
  if (!registered.ok) throw new Error(`register: ${registered.status} ${await registered.text()}`);
  return { label, proc, url };
}

const servers = [await startServer('this build', {})];
if (values.untuned) servers.push(await startServer('malloc untuned', { MALLOC_CHECK_: '0' }));
const cleanup = () => {
  for (const s of servers) s.proc.kill('SIGTERM');
  rmSync(shmPath, { force: true });
  rmSync(work, { recursive: true, force: true });
};

const image = new Float32Array(IMAGE);
for (let i = 0; i < IMAGE; i++) image[i] = ((i * 2654435761) % 1000) / 1000;
const imageBytes = new Uint8Array(image.buffer);
const header = (parameters) => Buffer.from(JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 3, 224, 224], parameters }], outputs: [{ name: 'scores' }] }));
const binaryHeader = header({ binary_data_size: BYTES });
const binaryBody = Buffer.concat([binaryHeader, imageBytes]);
const shmFd = openSync(shmPath, 'r+');

function post(server, agent, body, headers) {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}/v2/models/image/infer`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': String(body.length), ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** One request of `mode` on loop `slot`: the image in the body, or written into the slot's slice first. */
function once(server, agent, mode, slot) {
  if (mode === 'body') return post(server, agent, binaryBody, { 'inference-header-content-length': String(binaryHeader.length) });
  writeSync(shmFd, imageBytes, 0, BYTES, slot * BYTES);
  return post(server, agent, header({ shared_memory_region: 'images', shared_memory_offset: slot * BYTES, shared_memory_byte_size: BYTES }));
}

// Both ways answer the same scores.
const check = new Agent({ keepAlive: true, maxSockets: 1 });
for (const server of servers) {
  const a = JSON.parse((await once(server, check, 'body', 0)).text).outputs[0].data;
  const b = JSON.parse((await once(server, check, 'shm', 0)).text).outputs[0].data;
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`the two ways answer differently: ${a} vs ${b}`);
}
check.destroy();

async function run(server, mode, concurrency, forSeconds) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies = [];
  let errors = 0;
  const cpu0 = processCpu(server.proc.pid);
  const start = performance.now();
  const end = start + forSeconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async (_, slot) => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const r = await once(server, agent, mode, slot);
      if (r.status !== 200) errors += 1;
      latencies.push(performance.now() - t0);
    }
  }));
  const elapsed = (performance.now() - start) / 1000;
  const cpu = processCpu(server.proc.pid) - cpu0;
  agent.destroy();
  latencies.sort((x, y) => x - y);
  return { rps: latencies.length / elapsed, p50: latencies[Math.floor(latencies.length / 2)], cpuUs: (cpu / latencies.length) * 1e6, errors };
}

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const cases = servers.flatMap((server) => ['body', 'shm'].map((mode) => ({ server, mode, key: `${server.label}/${mode}` })));
const baseline = cases[0].key;
const rows = [];
try {
  for (const c of levels) {
    const got = Object.fromEntries(cases.map((k) => [k.key, []]));
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? cases : [...cases].reverse();
      for (const k of order) {
        await run(k.server, k.mode, c, 1);
        const m = await run(k.server, k.mode, c, seconds);
        got[k.key].push(m);
        log(`c${c} round ${r + 1} ${k.key}: ${m.rps.toFixed(0)} req/s, p50 ${m.p50.toFixed(2)} ms, ${m.cpuUs.toFixed(0)} µs CPU/request, ${m.errors} errors`);
      }
    }
    for (const k of cases) {
      const ms = got[k.key];
      rows.push({ c, server: k.server.label, mode: k.mode, rps: median(ms.map((m) => m.rps)), p50: median(ms.map((m) => m.p50)), cpuUs: median(ms.map((m) => m.cpuUs)), errors: ms.reduce((s, m) => s + m.errors, 0), ratios: ms.map((m, i) => m.rps / got[baseline][i].rps) });
    }
  }
} finally {
  closeSync(shmFd);
  cleanup();
}

console.log(`\n| concurrency | server | image sent | req/s (median) | vs ${servers[0].label}, body (per round) | p50 ms | server CPU per request (µs) | errors |`);
console.log('|---:|---|---|---:|---|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.c} | ${r.server} | ${r.mode === 'body' ? 'in the body (binary, 602 KB)' : 'in shared memory'} | ${r.rps.toFixed(0)} | ${r.ratios.map((x) => x.toFixed(2)).join(', ')} | ${r.p50.toFixed(2)} | ${r.cpuUs.toFixed(0)} | ${r.errors} |`);
}
