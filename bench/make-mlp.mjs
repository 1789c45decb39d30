// Writes a seeded Gemm/Relu MLP of the given widths, for benchmarks that need a model heavier
// than the bundled examples (kept out of git: a 512-4096-4096-10 MLP is 76 MB).
// Usage: node bench/make-mlp.mjs OUT.onnx 512,4096,4096,10 [SEED]
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { mlpModel } from '../dist/onnx/build-examples.js';
import { writeModel } from '../dist/onnx/model-io.js';

const [out, widths, seed] = process.argv.slice(2);
if (!out || !widths) {
  process.stderr.write('usage: node bench/make-mlp.mjs OUT.onnx WIDTH,WIDTH,... [SEED]\n');
  process.exit(2);
}
const layers = widths.split(',').map(Number);
mkdirSync(dirname(out), { recursive: true });
writeModel(mlpModel(layers, seed ? Number(seed) : 4321, `mlp_${layers.join('_')}`), out);
