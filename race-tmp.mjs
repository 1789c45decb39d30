import { WorkerPool } from './dist/workers/pool.js';
import { writeModel } from './dist/onnx/model-io.js';
import { buildModel } from './dist/onnx/builder.js';
let errors = 0;
process.on('uncaughtException', (e) => { errors++; if (errors === 1) console.log(e.message.slice(0, 100)); });
const m = buildModel({ inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 4] }], outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 4] }], nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }], initializers: [] });
writeModel(m, '/tmp/relu.onnx');
const spec = (key) => ({ key, modelPath: '/tmp/relu.onnx', backend: 'onnxruntime', executionProviders: [], intraOpThreads: 1 });
for (let i = 0; i < 30; i++) {
  const pool = new WorkerPool({ workers: 2 });
  await pool.warm(spec('a'));
  pool.evict('a');
  await new Promise((r) => setImmediate(r));
  for (let k = 0; k < (i % 5); k++) await Promise.resolve();
  await pool.close();
}
await new Promise((r) => setTimeout(r, 300));
console.log('uncaught errors', errors);
process.exit(0);
