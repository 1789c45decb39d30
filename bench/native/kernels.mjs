// Micro-benchmark (not run by tests): Umbra's native GEMM / CSR SpMM against onnxruntime-node
// running a one-node MatMul model of the same shape in the same process, plus the throughput of
// exact global magnitude selection. Medians over repeated runs; the machine is shared and noisy.
//
//   npm run build:native && npx tsc -p tsconfig.json && node bench/native/kernels.mjs [--quick]
import pkg from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { denseWeights, gemm, packWeights, packSparse, spmm, csrFromDense, kernelIsa } from '../../dist/native/kernels.js';
import { selectThreshold } from '../../dist/native/prune.js';
import { seededRandom as rng } from '../../dist/random.js';

const { onnx } = pkg;
const quick = process.argv.includes('--quick');
const K = 4096;
const N = 4096;
const THREADS = 2;
const BATCHES = [1, 8, 64];
const SPARSITIES = [0, 0.5, 0.7, 0.9, 0.95];
const REPS = quick ? 5 : 15;

const next = rng(42);
const randomArray = (n) => Float32Array.from({ length: n }, () => (next() * 2 - 1) || 0.5);

// Runs the candidates in turn, rep by rep, so load from other processes hits all of them
// alike; returns each one's median milliseconds.
async function medians(...fns) {
  for (let i = 0; i < 3; i++) for (const fn of fns) await fn();
  const times = fns.map(() => []);
  for (let i = 0; i < REPS; i++) {
    for (const [j, fn] of fns.entries()) {
      const t0 = process.hrtime.bigint();
      await fn();
      times[j].push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  return times.map((list) => list.sort((a, b) => a - b)[Math.floor(list.length / 2)]);
}

// Y = X . W with W [K,N] as an initializer (onnxruntime prepacks it at session creation).
function matmulModel(wKN) {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'matmul',
      node: [{ opType: 'MatMul', input: ['X', 'W'], output: ['Y'] }],
      initializer: [{ name: 'W', dims: [K, N], dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(wKN.buffer) }],
      input: [{ name: 'X', type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'batch' }, { dimValue: K }] } } } }],
      output: [{ name: 'Y', type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'batch' }, { dimValue: N }] } } } }],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

const wNK = randomArray(N * K);
const wKN = new Float32Array(K * N);
for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wKN[k * N + n] = wNK[n * K + k];
const session = await ort.InferenceSession.create(matmulModel(wKN), {
  intraOpNumThreads: THREADS, interOpNumThreads: 1, graphOptimizationLevel: 'all',
});
const packed = packWeights(denseWeights(wNK, K, N, 'nxk'), THREADS);
const rows = [];
console.log(`isa ${kernelIsa()}, ${THREADS} threads, ${K}x${N} weights, median of ${REPS}`);
for (const m of BATCHES) {
  const x = randomArray(m * K);
  const out = new Float32Array(m * N);
  const feeds = { X: new ort.Tensor('float32', x, [m, K]) };
  const dense = denseWeights(wNK, K, N, 'nxk');
  const [ortMs, packedMs, unpackedMs] = await medians(
    () => session.run(feeds),
    () => gemm({ x, m, weights: packed, threads: THREADS, out }),
    () => gemm({ x, m, weights: dense, threads: THREADS, out }),
  );
  rows.push({ kernel: 'gemm packed', batch: m, sparsity: 0, ms: packedMs, ortMs, speedup: ortMs / packedMs });
  rows.push({ kernel: 'gemm unpacked', batch: m, sparsity: 0, ms: unpackedMs, ortMs, speedup: ortMs / unpackedMs });
  for (const sparsity of SPARSITIES) {
    const pruned = Float32Array.from(wNK, (v) => (next() < sparsity ? 0 : v));
    // Packed into column panels once, as the native backend does at load (like packWeights for gemm).
    const sparse = packSparse(csrFromDense(pruned, N, K));
    const [ortPairMs, spMs] = await medians(() => session.run(feeds), () => spmm({ x, m, weights: sparse, threads: THREADS, out }));
    rows.push({ kernel: 'spmm panels', batch: m, sparsity, ms: spMs, ortMs: ortPairMs, speedup: ortPairMs / spMs });
  }
}
console.table(rows.map((r) => ({ ...r, ms: r.ms.toFixed(3), ortMs: r.ortMs.toFixed(3), speedup: `${r.speedup.toFixed(2)}x` })));

// Global threshold selection over 1e8 weights in 10 layers.
const total = quick ? 2e7 : 1e8;
const layers = Array.from({ length: 10 }, (_, l) => ({ name: `layer${l}`, weights: randomArray(total / 10) }));
for (const threads of [1, THREADS]) {
  const [ms] = await medians(() => selectThreshold(layers, { sparsity: 0.9, threads }));
  const gps = total / (ms / 1e3) / 1e9;
  console.log(`threshold select, ${total.toExponential(0)} weights, ${threads} thread(s): ${ms.toFixed(1)} ms = ${gps.toFixed(2)} G weights/s (${(gps / threads).toFixed(2)} per core)`);
}
