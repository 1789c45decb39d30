#!/usr/bin/env node
// What chaining sparse layers on transposed activations saves: the same pruned stack run layer by
// layer row-major (each layer transposes X in and Y out) and as one chain (BoundSpmm.lanes: each
// layer's Yt is the next one's Xt), one thread, the two alternating pass by pass; the fastest pass
// of each is reported, as the slower ones include time the thread was preempted.
//
//   node bench/native/sparse-chain.mjs [--layers 6] [--width 4096] [--sparsity 0.9] [--batches 1,8,64] [--passes 21] [--quick]
// (--quick, as npm run bench passes it: 5 passes; --full: the defaults.)
import { parseArgs } from 'node:util';
import { alignedFloat32, boundSpmm, csrFromDense, packSparse, sparseInputRows, spmmLanes } from '../../dist/native/kernels.js';
import { seededRandom } from '../../dist/random.js';

const { values: flags } = parseArgs({
  options: {
    layers: { type: 'string', default: '6' },
    width: { type: 'string', default: '4096' },
    sparsity: { type: 'string', default: '0.9' },
    batches: { type: 'string', default: '1,8,64' },
    passes: { type: 'string' },
    quick: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
  },
});
flags.passes ??= flags.quick ? '5' : '21';
const LAYERS = Number(flags.layers);
const WIDTH = Number(flags.width);
const KEEP = 1 - Number(flags.sparsity);
const next = seededRandom(7);
const layers = Array.from({ length: LAYERS }, () => {
  const w = new Float32Array(WIDTH * WIDTH);
  for (let i = 0; i < w.length; i++) if (next() < KEEP) w[i] = next() * 2 - 1;
  return boundSpmm(packSparse(csrFromDense(w, WIDTH, WIDTH)), { bias: Float32Array.from({ length: WIDTH }, () => next() - 0.5) });
});

console.log(`${LAYERS} layers ${WIDTH}x${WIDTH}, ${(KEEP * 100).toFixed(0)}% non-zero, one thread, fastest of ${flags.passes} passes each`);
console.log('| batch | row-major ms/pass | chained ms/pass | row-major / chained |\n|---:|---:|---:|---:|');
for (const m of flags.batches.split(',').map(Number)) {
  const x = Float32Array.from({ length: m * WIDTH }, () => next() - 0.5);
  const rows = [new Float32Array(m * WIDTH), new Float32Array(m * WIDTH)];
  const lanes = [alignedFloat32(sparseInputRows(WIDTH) * spmmLanes(m)), alignedFloat32(sparseInputRows(WIDTH) * spmmLanes(m))];
  const rowMajor = () => layers.reduce((cur, layer, i) => layer(cur, m, rows[i % 2]), x);
  const chained = () => layers.reduce((cur, layer, i) => {
    const last = i === layers.length - 1;
    return layer.lanes(cur, m, last ? rows[0] : lanes[i % 2], { input: i > 0, output: !last });
  }, x);
  const want = rowMajor().slice();
  const got = chained();
  if (!got.every((v, i) => v === want[i])) throw new Error(`batch ${m}: the chain's answers differ from the row-major ones`);
  const best = { rowMajor: Infinity, chained: Infinity };
  for (let p = 0; p < Number(flags.passes); p++) {
    for (const [name, run] of p % 2 === 0 ? [['rowMajor', rowMajor], ['chained', chained]] : [['chained', chained], ['rowMajor', rowMajor]]) {
      const t0 = performance.now();
      run();
      best[name] = Math.min(best[name], performance.now() - t0);
    }
  }
  console.log(`| ${m} | ${best.rowMajor.toFixed(2)} | ${best.chained.toFixed(2)} | ${(best.rowMajor / best.chained).toFixed(2)}x |`);
}
