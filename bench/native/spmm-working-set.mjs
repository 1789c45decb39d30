#!/usr/bin/env node
// Where the sparse kernel is bound: the same number of stored weights per panel row, with each
// row's columns confined to the first C of every 512-column panel, so the rows of Xt that one
// panel reads shrink from 512 (128 KiB at batch 64, past a 48 KiB L1) to C (C x 256 bytes).
// Stored weights, rows, panels and visits are the same for every C: only where Xt is read from
// changes. Chained layers on transposed activations (as the native backend runs a pruned stack),
// one thread, working sets alternating pass by pass; the fastest pass of each is reported.
//
//   node bench/native/spmm-working-set.mjs [--layers 6] [--width 4096] [--sparsity 0.9] [--batches 64,1] [--columns 512,256,128] [--passes 15] [--quick]
// (--quick, as npm run bench passes it: 5 passes; --full: the defaults.)
import { parseArgs } from 'node:util';
import { alignedFloat32, boundSpmm, csrFromDense, packSparse, sparseInputRows, spmmLanes } from '../../dist/native/kernels.js';
import { seededRandom } from '../../dist/random.js';

const PANEL = 512;
const { values: flags } = parseArgs({
  options: {
    layers: { type: 'string', default: '6' },
    width: { type: 'string', default: '4096' },
    sparsity: { type: 'string', default: '0.9' },
    batches: { type: 'string', default: '64,1' },
    columns: { type: 'string', default: '512,256,128' },
    passes: { type: 'string' },
    quick: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
  },
});
flags.passes ??= flags.quick ? '5' : '15';
const LAYERS = Number(flags.layers);
const WIDTH = Number(flags.width);
const KEEP = 1 - Number(flags.sparsity);
const next = seededRandom(11);

// Keeps KEEP of each row's weights in every panel, all within the panel's first `columns`.
function confinedLayer(columns) {
  const w = new Float32Array(WIDTH * WIDTH);
  const perPanel = Math.round(PANEL * KEEP);
  const slots = Array.from({ length: columns }, (_, i) => i);
  for (let r = 0; r < WIDTH; r++) {
    for (let q = 0; q * PANEL < WIDTH; q++) {
      for (let i = 0; i < perPanel; i++) {  // a partial shuffle picks perPanel distinct columns
        const pick = i + Math.floor(next() * (columns - i));
        [slots[i], slots[pick]] = [slots[pick], slots[i]];
        w[r * WIDTH + q * PANEL + slots[i]] = (next() * 2 - 1) * Math.sqrt(3 / (WIDTH * KEEP));
      }
    }
  }
  return boundSpmm(packSparse(csrFromDense(w, WIDTH, WIDTH)), { bias: new Float32Array(WIDTH) });
}

const sets = flags.columns.split(',').map(Number);
if (sets.some((c) => !(c >= Math.round(PANEL * KEEP) && c <= PANEL))) throw new Error(`--columns must lie in [${Math.round(PANEL * KEEP)}, ${PANEL}]`);
const stacks = sets.map((c) => Array.from({ length: LAYERS }, () => confinedLayer(c)));
const stored = LAYERS * WIDTH * Math.round(PANEL * KEEP) * Math.ceil(WIDTH / PANEL);
console.log(`${LAYERS} layers ${WIDTH}x${WIDTH}, ${Math.round(PANEL * KEEP)} stored weights per row per ${PANEL}-column panel, one thread, fastest of ${flags.passes} passes`);
console.log(`| batch | Xt rows per panel | Xt bytes per panel | ms/pass | ns per stored weight | vs ${sets[0]} |\n|---:|---:|---:|---:|---:|---:|`);
for (const m of flags.batches.split(',').map(Number)) {
  const x = Float32Array.from({ length: m * WIDTH }, () => next() - 0.5);
  const out = new Float32Array(m * WIDTH);
  const lanes = [alignedFloat32(sparseInputRows(WIDTH) * spmmLanes(m)), alignedFloat32(sparseInputRows(WIDTH) * spmmLanes(m))];
  const runs = stacks.map((layers) => () => layers.reduce((cur, layer, i) => {
    const last = i === layers.length - 1;
    return layer.lanes(cur, m, last ? out : lanes[i % 2], { input: i > 0, output: !last });
  }, x));
  const best = runs.map(() => Infinity);
  for (let p = 0; p < Number(flags.passes); p++) {
    for (let i = 0; i < runs.length; i++) {
      const at = (i + p) % runs.length;  // rotate the order so drift in the host's load hits all alike
      const t0 = performance.now();
      runs[at]();
      best[at] = Math.min(best[at], performance.now() - t0);
    }
  }
  sets.forEach((c, i) => console.log(`| ${m} | ${c} | ${((c * spmmLanes(m) * 4) / 1024).toFixed(0)} KiB | ${best[i].toFixed(2)} | ${((best[i] * 1e6) / stored).toFixed(2)} | ${(best[0] / best[i]).toFixed(2)}x |`));
}
