// Writes the digits model's weights as JSON for the PyTorch peer (which rebuilds the same MLP
// in torch, as a Python team would hold it). Usage: node bench/peers/export-digits.mjs MODEL.onnx OUT.json
import { writeFileSync } from 'node:fs';
import { readModel } from '../../dist/onnx/model-io.js';

const [file, out] = process.argv.slice(2);
const model = readModel(file);
const weights = {};
for (const t of model.graph.initializer) {
  const raw = t.rawData;
  const data = Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)));
  weights[t.name] = { dims: t.dims.map(Number), data };
}
writeFileSync(out, JSON.stringify(weights));
