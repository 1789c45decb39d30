import t from 'tap';
import { Worker } from 'node:worker_threads';
import { native } from '../dist/native/addon.js';
import {
  CudaStream, cudaAvailable, cudaBiasActivation, cudaDevices, cudaGemm, cudaGemmAsync, cudaMagnitudePrune, cudaMemoryInUse,
  cudaSoftmax, cudaSpmm, cudaSpmmAsync, cudaStatus, releaseCuda, uploadCsr, uploadDense, uploadVector,
} from '../dist/native/cuda.js';
import { biasActivation, csrFromDense, denseWeights, gemm, softmax, spmm, type Activation } from '../dist/native/kernels.js';
import { applyMask, selectThreshold } from '../dist/native/prune.js';
import { UmbraError } from '../dist/errors.js';
import { seededRandom as rng } from '../dist/random.js';

// Seeded (mulberry32); never exact zeros.
function randomArray(n: number, next: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = ((next() * 2 - 1) || 0.5) * scale;
  return a;
}
const poisoned = (n: number) => new Float32Array(n).fill(Number.NaN);

// |got - want| <= tol * (|want| + scale) elementwise; NaN never passes.
function assertClose(t: Tap.Test, got: Float32Array, want: Float32Array, tol: number, what: string, scale = 1): void {
  let bad = -1;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (!Number.isFinite(g) || Math.abs(g - w) > tol * (Math.abs(w) + scale)) { bad = i; break; }
  }
  t.equal(bad, -1, bad < 0 ? what : `${what}: index ${bad} got ${got[bad]} want ${want[bad]}`);
}

const status = cudaStatus();

t.test('the addon reports what CUDA support it was built with and whether a device is usable', async (t) => {
  const backends = native().listBackends();
  t.equal(backends.includes('cuda'), status.compiled, 'listBackends agrees with cudaStatus().compiled');
  t.type(status.available, 'boolean');
  if (!status.available) {
    t.match(status.reason, status.compiled ? /^no CUDA device: / : /built without CUDA|predates/);
    t.same(cudaDevices(), []);
    t.equal(cudaAvailable(), false);
    t.equal(cudaMemoryInUse(), 0);
    let thrown: unknown;
    try { CudaStream.create(0); } catch (err) { thrown = err; }
    t.ok(thrown instanceof UmbraError, 'an UmbraError, not a crash');
    t.match((thrown as Error).message, /expected a usable CUDA device/);
    t.ok((thrown as Error).message.includes(status.reason), 'the message carries the reason');
    t.throws(() => uploadDense(denseWeights(new Float32Array(4).fill(1), 2, 2, 'kxn')), UmbraError);
    if (status.compiled) {
      // The raw binding also throws (no abort) and names the failing CUDA call and source line.
      t.throws(() => native().cudaUploadF32(new Float32Array(4), 0), /CUDA error: cudaSetDevice\(device\) failed with \w+ .* at native\/src\/cuda\/device\.cu:\d+/);
    }
  } else {
    t.equal(status.reason, '');
    t.ok(cudaDevices().length >= 1);
  }
});

t.test('the addon with its CUDA part loads inside worker threads', async (t) => {
  const url = new URL('../dist/native/cuda.js', import.meta.url).href;
  const code = `import('${url}').then(m => require('node:worker_threads').parentPort.postMessage(m.cudaStatus()));`;
  const results = await Promise.all([0, 1].map(() => new Promise<typeof status>((resolve, reject) => {
    const w = new Worker(code, { eval: true });
    w.once('message', (m: typeof status) => { resolve(m); void w.terminate(); });
    w.once('error', reject);
  })));
  for (const r of results) t.same(r, status);
});

const skip = status.available ? false : `no CUDA device: ${status.reason.replace(/^no CUDA device: /, '')}`;
const ACTS: Activation[] = ['none', 'relu', 'sigmoid', 'tanh', 'gelu'];

t.test('GPU kernels against the CPU kernels', { skip }, async (t) => {
  const stream = CudaStream.create(0);
  const next = rng(7);
  const before = cudaMemoryInUse();

  t.test('gemm: fp32 close to the CPU, tf32/bf16 within their rounding, both layouts, awkward sizes', async (t) => {
    for (const [m, k, n] of [[1, 1, 1], [3, 5, 7], [17, 33, 65], [64, 130, 67], [129, 600, 100], [64, 1536, 96]] as const) {
      for (const layout of ['kxn', 'nxk'] as const) {
        const w = denseWeights(randomArray(k * n, next), k, n, layout);
        const bias = randomArray(n, next);
        const x = randomArray(m * k, next);
        const dw = uploadDense(w);
        const db = uploadVector(bias);
        t.equal(dw.bytes, k * n * 4);
        // 'auto' runs through cuBLASLt where it was found; 'own' is always Umbra's kernels.
        for (const kernels of ['auto', 'own'] as const) {
          for (const activation of ACTS) {
            const want = gemm({ x, m, weights: w, bias, activation });
            assertClose(t, cudaGemm(stream, { x, m, weights: dw, bias: db, activation, kernels, out: poisoned(m * n) }), want, 1e-4,
              `fp32 ${kernels} ${m}x${k}x${n} ${layout} ${activation}`, Math.sqrt(k) * 0.05);
          }
          assertClose(t, cudaGemm(stream, { x, m, weights: dw, activation: 'relu', kernels, out: poisoned(m * n) }), gemm({ x, m, weights: w, activation: 'relu' }), 1e-4,
            `fp32 ${kernels} ${m}x${k}x${n} ${layout} relu without bias`, Math.sqrt(k) * 0.05);
          assertClose(t, cudaGemm(stream, { x, m, weights: dw, bias: db, precision: 'tf32', kernels, out: poisoned(m * n) }),
            gemm({ x, m, weights: w, bias }), 5e-3, `tf32 ${kernels} ${m}x${k}x${n} ${layout}`, Math.sqrt(k));
        }
        assertClose(t, await cudaGemmAsync(stream, { x, m, weights: dw, bias: db, precision: 'bf16', activation: 'relu', out: poisoned(m * n) }),
          gemm({ x, m, weights: w, bias, activation: 'relu' }), 2e-2, `bf16 ${m}x${k}x${n} ${layout}`, Math.sqrt(k));
        t.equal(releaseCuda(dw), k * n * 4);
        releaseCuda(db);
        t.equal(dw.bytes, 0, 'a released upload holds nothing');
      }
    }
  });

  t.test('spmm at several sparsities against the CPU CSR kernel', async (t) => {
    for (const [m, k, n, density] of [[1, 1, 1, 1], [5, 33, 17, 0.3], [9, 1000, 300, 0.1], [64, 2500, 257, 0.1], [70, 4100, 33, 0.05]] as const) {
      const dense = randomArray(n * k, next);
      for (let i = 0; i < dense.length; i++) if (next() > density) dense[i] = 0;
      const csr = csrFromDense(dense, n, k);
      const x = randomArray(m * k, next);
      const bias = randomArray(n, next);
      const dw = uploadCsr(csr);
      const db = uploadVector(bias);
      for (const activation of ACTS) {
        assertClose(t, cudaSpmm(stream, { x, m, weights: dw, bias: db, activation, out: poisoned(m * n) }),
          spmm({ x, m, weights: csr, bias, activation }), 1e-4, `spmm ${m}x${k}x${n} ${activation}`, 0.1);
      }
      assertClose(t, await cudaSpmmAsync(stream, { x, m, weights: dw, out: poisoned(m * n) }), spmm({ x, m, weights: csr }), 1e-4, 'async', 0.1);
      releaseCuda(dw);
      releaseCuda(db);
    }
    const bad = { rows: 1, cols: 4, rowPtr: Int32Array.of(0, 1), colIdx: Int32Array.of(9), values: Float32Array.of(1) };
    t.throws(() => uploadCsr(bad), /outside \[0, 4\)/, 'an out-of-range column is refused before it reaches the device');
  });

  t.test('softmax and bias + activation', async (t) => {
    for (const [rows, cols] of [[1, 1], [7, 3], [33, 1000], [5, 4099]] as const) {
      const data = randomArray(rows * cols, next, 8);
      const want = data.slice();
      softmax(want, rows, cols);
      const got = data.slice();
      cudaSoftmax(stream, got, rows, cols);
      assertClose(t, got, want, 1e-5, `softmax ${rows}x${cols}`, 1e-6);
      const bias = randomArray(cols, next);
      for (const activation of ACTS) {
        const w2 = data.slice();
        biasActivation(w2, rows, cols, { bias, activation });
        const g2 = data.slice();
        cudaBiasActivation(stream, g2, rows, cols, { bias, activation });
        assertClose(t, g2, w2, 1e-5, `bias ${activation} ${rows}x${cols}`, 1e-6);
      }
    }
  });

  t.test('magnitude pruning: the same cuts and masks as the CPU, ties included', async (t) => {
    for (const perLayer of [false, true]) {
      for (const sparsity of [0, 0.3, 0.5, 0.9, 1]) {
        const sizes = [1, 70000, 131073, 513];
        // Quantised so many weights tie at the threshold.
        const layers = sizes.map((size, i) => ({ name: `layer${i}`, weights: randomArray(size, next).map((v) => Math.round(v * 512) / 512 + Math.sign(v) / 1024) }));
        const gpuArrays = layers.map((l) => ({ name: l.name, data: l.weights.slice() }));
        const cpuCuts = selectThreshold(layers, { sparsity, perLayer });
        applyMask(layers, cpuCuts);
        const { cuts, zeroed } = cudaMagnitudePrune(stream, gpuArrays, { sparsity, perLayer });
        t.same(cuts.map((c) => [c.thresholdKey, c.ties, c.pruned]), cpuCuts.map((c) => [c.thresholdKey, c.ties, c.pruned]),
          `cuts at ${sparsity} perLayer=${perLayer}`);
        t.equal(zeroed, cpuCuts.reduce((s, c) => s + c.pruned, 0));
        t.ok(gpuArrays.every((a, i) => Buffer.compare(Buffer.from(a.data.buffer), Buffer.from(layers[i]!.weights.buffer)) === 0), 'masked arrays equal');
      }
    }
    const withNan = randomArray(100000, next);
    withNan[77777] = Number.NaN;
    t.throws(() => cudaMagnitudePrune(stream, [{ name: 'fc1', data: withNan }], { sparsity: 0.5 }), /"fc1" has NaN at index 77777/);
  });

  t.test('device memory is accounted and released', async (t) => {
    const w = uploadDense(denseWeights(randomArray(1000, next), 10, 100, 'kxn'));
    t.ok(cudaMemoryInUse() >= before + 4000);
    releaseCuda(w);
    t.equal(releaseCuda(w), 0, 'releasing twice frees nothing more');
  });
});
