// Records the queue + compute latency of every answer `umbra serve` gives the bundled digits
// model under `umbra perf` load, for the rollout simulation test (test/traffic-simulation.test.ts).
//   node bench/rollout-record.mjs [--concurrency 4] [--seconds 5] [--keep 4000] [--out test/fixtures/rollout-latency-digits.json]
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { startServer } from '../dist/index.js';
import { seededRandom } from '../dist/random.js';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const concurrency = Number(arg('--concurrency', '4'));
const seconds = Number(arg('--seconds', '5'));
const keep = Number(arg('--keep', '4000'));
const out = arg('--out', 'test/fixtures/rollout-latency-digits.json');

const server = await startServer({ repository: 'models/repository', port: 0, monitoring: false });
const latencies = [];
server.umbra.hooks.use({ onResult: (e) => { if (e.outcome === 'success' && e.timing) latencies.push(e.timing.queueMs + e.timing.computeMs); } });
const perf = spawn(process.execPath, ['bin/umbra.js', 'perf', '--url', server.url, '-m', 'digits', '--concurrency', String(concurrency), '--duration', String(seconds), '--warmup-ms', '0'], { stdio: ['ignore', 'inherit', 'inherit'] });
await new Promise((resolve) => perf.on('exit', resolve));
await server.stop();
// A uniform sample, in arrival order kept out: the simulation draws from it at random.
const random = seededRandom(1);
const sample = latencies.length <= keep ? latencies : Array.from({ length: keep }, () => latencies[Math.floor(random() * latencies.length)]);
const sorted = [...sample].sort((a, b) => a - b);
const q = (p) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
writeFileSync(out, `${JSON.stringify({
  note: `queue + compute (ms) of digits answers under umbra serve, umbra perf --concurrency ${concurrency} for ${seconds} s, no warm-up excluded; ${sample.length} of ${latencies.length} answers sampled uniformly; recorded by bench/rollout-record.mjs`,
  p50: q(0.5), p99: q(0.99), max: sorted.at(-1),
  latency_ms: sample.map((v) => Number(v.toFixed(5))),
})}\n`);
console.log(`wrote ${out}: ${sample.length} latencies, p50 ${q(0.5).toFixed(4)} ms, p99 ${q(0.99).toFixed(4)} ms, max ${sorted.at(-1).toFixed(3)} ms`);
