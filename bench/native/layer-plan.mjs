// The per-layer sparse/dense plan a native session measures at load, with each layer's timed
// CSR / dense ratio per batch size: what decides the plan, so a plan taken on a busy host can be
// compared with one taken on a quiet host (or by another build: DIST).
// Usage: node bench/native/layer-plan.mjs MODEL.onnx [DIST]   (DIST: a build's dist/, default this one's)
import { fileURLToPath } from 'node:url';

const model = process.argv[2];
if (!model) {
  process.stderr.write('usage: node bench/native/layer-plan.mjs MODEL.onnx [DIST]\n');
  process.exit(2);
}
const dist = process.argv[3] ?? fileURLToPath(new URL('../../dist', import.meta.url));
const { openNative } = await import(`${dist}/workers/backends/native.js`);
// One kernel thread, as in a pool worker.
const session = openNative(model, 1);
const layers = session.layers();
process.stdout.write(`${layers.map((l) => `${l.format}[${(l.timings ?? []).map((t) => `b${t.batch} ${(t.csrUs / t.packedUs).toFixed(2)}`).join(' ')}]`).join(' ')}\n`);
