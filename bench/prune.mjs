// Global magnitude pruning throughput: one exact threshold over all weights (selectThreshold)
// plus masking in place (applyMask), on LAYERS x SIZE x SIZE fp32 weights, against
// torch.nn.utils.prune.global_unstructured on the same weights (bench/prune_torch.py) when
// Debian's python3-torch is there. Medians of repeats; each repeat starts from the same weights.
//
//   node bench/prune.mjs [--layers 6] [--size 4096] [--sparsity 0.9] [--repeats 5] [--threads 1,2] [--torch-repeats N (default: --repeats)] [--no-torch] [--json]
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { applyMask, selectThreshold } from '../dist/native/prune.js';
import { median } from './rotating-windows.mjs';

const { values: flags } = parseArgs({
  options: {
    layers: { type: 'string', default: '6' },
    size: { type: 'string', default: '4096' },
    sparsity: { type: 'string', default: '0.9' },
    seed: { type: 'string', default: '42' },
    repeats: { type: 'string', default: '5' },
    threads: { type: 'string', default: '1,2' },
    'torch-repeats': { type: 'string' },
    'no-torch': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const LAYERS = Number(flags.layers);
const SIZE = Number(flags.size);
const SPARSITY = Number(flags.sparsity);
const SEED = Number(flags.seed) >>> 0;
const REPEATS = Number(flags.repeats);
// Both sides take the median of the same number of runs unless asked otherwise.
const TORCH_REPEATS = flags['torch-repeats'] ?? flags.repeats;
const THREADS = flags.threads.split(',').map(Number);
const COUNT = SIZE * SIZE;
const TOTAL = LAYERS * COUNT;

/** mulberry32 at global index layer*COUNT+i, exactly as bench/prune_torch.py computes it. */
function layerValues(layer) {
  const out = new Float32Array(COUNT);
  for (let i = 0; i < COUNT; i++) {
    let t = (Math.imul(layer * COUNT + i + 1, 0x6d2b79f5) + SEED) >>> 0;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}


const originals = Array.from({ length: LAYERS }, (_, l) => layerValues(l));
const layers = originals.map((o, l) => ({ name: `layer${l}`, weights: o.slice() }));
const expected = Math.floor(SPARSITY * TOTAL + 0.5);
const log = (line) => { if (!flags.json) console.log(line); };
log(`weights: ${LAYERS} x ${SIZE}x${SIZE} = ${TOTAL} fp32, sparsity ${SPARSITY}, seed ${SEED}, ${REPEATS} repeats`);

const umbra = [];
for (const threads of THREADS) {
  const select = [];
  const mask = [];
  const both = [];
  const cpu = [];
  for (let r = 0; r < REPEATS; r++) {
    layers.forEach((l, i) => l.weights.set(originals[i]));
    // CPU seconds next to wall seconds: on a shared machine they say how much core time we got.
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const cuts = selectThreshold(layers, { sparsity: SPARSITY, threads });
    const t1 = performance.now();
    const zeroed = applyMask(layers, cuts, threads);
    const t2 = performance.now();
    const c1 = process.cpuUsage(c0);
    cpu.push((c1.user + c1.system) / 1e6);
    if (cuts.reduce((n, c) => n + c.pruned, 0) !== expected) throw new Error(`pruned ${zeroed}, expected ${expected}`);
    select.push((t1 - t0) / 1000);
    mask.push((t2 - t1) / 1000);
    both.push((t2 - t0) / 1000);
  }
  const s = median(both);
  const row = {
    threads, selectS: median(select), maskS: median(mask), totalS: s,
    gWeightsPerS: TOTAL / s / 1e9, gWeightsPerSPerCore: TOTAL / s / 1e9 / threads, timesS: both,
    cpuS: median(cpu), gWeightsPerCpuS: TOTAL / median(cpu) / 1e9,
  };
  umbra.push(row);
  log(`umbra  threads=${threads}: select ${row.selectS.toFixed(3)} s + mask ${row.maskS.toFixed(3)} s = ${s.toFixed(3)} s median ` +
    `-> ${row.gWeightsPerS.toFixed(2)} G weights/s, ${row.gWeightsPerSPerCore.toFixed(2)} per core; ${row.cpuS.toFixed(3)} CPU s = ${row.gWeightsPerCpuS.toFixed(2)} G weights per CPU-second (runs: ${both.map((x) => x.toFixed(3)).join(', ')})`);
}

const torch = [];
const python = '/usr/bin/python3';
if (!flags['no-torch'] && existsSync(python)) {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'prune_torch.py');
  for (const threads of THREADS) {
    try {
      const out = execFileSync(python, [script, '--layers', String(LAYERS), '--size', String(SIZE), '--sparsity', String(SPARSITY),
        '--seed', String(SEED), '--repeats', TORCH_REPEATS, '--threads', String(threads)], { encoding: 'utf8', maxBuffer: 1 << 20 });
      const result = JSON.parse(out.trim().split('\n').at(-1));
      const mine = umbra.find((u) => u.threads === threads);
      const jsSum = originals[0].reduce((s, v) => s + Math.abs(v), 0);
      result.sameWeights = Math.abs(result.checksum_first_layer - jsSum) <= 1e-6 * jsSum;
      result.speedup = result.median_s / mine.totalS;
      result.cpuSpeedup = result.median_cpu_s / mine.cpuS;
      torch.push(result);
      log(`torch  threads=${threads}: ${result.median_s.toFixed(3)} s median (runs: ${result.times_s.map((x) => x.toFixed(3)).join(', ')}), ` +
        `${result.median_cpu_s.toFixed(3)} CPU s, pruned ${result.pruned} (umbra ${expected}), same weights: ${result.sameWeights} ` +
        `-> umbra is ${result.speedup.toFixed(1)}x faster (wall), ${result.cpuSpeedup.toFixed(1)}x (CPU time)`);
    } catch (err) {
      log(`torch threads=${threads}: not measured (${String(err.message).split('\n')[0]})`);
    }
  }
} else {
  log('torch: skipped');
}
if (flags.json) console.log(JSON.stringify({ layers: LAYERS, size: SIZE, sparsity: SPARSITY, seed: SEED, weights: TOTAL, umbra, torch }, null, 2));
