import t from 'tap';
import { Worker } from 'node:worker_threads';
import {
  alignedFloat32, biasActivation, boundGemm, boundSpmm, csrFromDense, denseWeights, gemm, gemmAsync, kernelIsa, packSparse, packWeights, softmax, spmm, spmmAsync,
  SPARSE_PANEL, sparseInputRows, spmmLanes, type Activation,
} from '../dist/native/kernels.js';
import { UmbraError } from '../dist/errors.js';
import { seededRandom as rng } from '../dist/random.js';

// Seeded generator (mulberry32) so every run sees the same inputs; never exact zeros.
function randomArray(n: number, next: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = ((next() * 2 - 1) || 0.5) * scale;
  return a;
}

function erf(x: number): number {
  // Series / continued fraction are overkill here: this rational form is accurate to 1e-7.
  const s = Math.sign(x);
  const a = Math.abs(x);
  const t = 1 / (1 + 0.5 * a);
  const y = 1 - t * Math.exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return s * y;
}
function act(x: number, a: Activation): number {
  switch (a) {
    case 'relu': return x < 0 ? 0 : x;
    case 'sigmoid': return 1 / (1 + Math.exp(-x));
    case 'tanh': return Math.tanh(x);
    case 'gelu': return 0.5 * x * (1 + erf(x / Math.SQRT2));
    default: return x;
  }
}

/** Y = act(X W + b) for W [K,N], with the sum of |terms| per entry as the error scale. */
function reference(x: Float32Array, wKN: Float32Array, bias: Float32Array | undefined, m: number, k: number, n: number, a: Activation) {
  const y = new Float64Array(m * n);
  const scale = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j]! : 0;
      let abs = Math.abs(s);
      for (let kk = 0; kk < k; kk++) {
        const p = x[i * k + kk]! * wKN[kk * n + j]!;
        s += p;
        abs += Math.abs(p);
      }
      y[i * n + j] = act(s, a);
      scale[i * n + j] = abs;
    }
  }
  return { y, scale };
}

function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

interface Asserts {
  equal(found: unknown, wanted: unknown, message?: string): boolean;
  ok(value: unknown, message?: string): boolean;
}

function assertClose(t: Asserts, got: Float32Array, want: { y: Float64Array; scale: Float64Array }, what: string) {
  let worst = 0;
  let bad = -1;
  for (let i = 0; i < want.y.length; i++) {
    const g = got[i]!;
    const err = Math.abs(g - want.y[i]!) / (2e-6 * want.scale[i]! + 1e-5);
    if (!Number.isFinite(g)) { bad = i; break; }
    if (err > worst) worst = err;
  }
  t.equal(bad, -1, `${what}: every output is finite`);
  t.ok(worst <= 1, `${what}: within tolerance (worst ratio ${worst.toFixed(3)})`);
}

t.test('the kernels report the ISA they dispatched on', async (t) => {
  t.match(kernelIsa(), /^(avx512|avx2|portable)$/);
});

t.test('gemm matches a JS reference for every layout, activation and odd shape', async (t) => {
  const next = rng(7);
  const shapes: [number, number, number][] = [[1, 1, 1], [3, 17, 33], [17, 33, 3], [8, 127, 65], [33, 300, 40]];
  for (const [m, k, n] of shapes) {
    const x = randomArray(m * k, next);
    const wKN = randomArray(k * n, next);
    const wNK = transpose(wKN, k, n);
    const bias = randomArray(n, next);
    const packed = packWeights(denseWeights(wNK, k, n, 'nxk'));
    for (const a of ['none', 'relu', 'sigmoid', 'tanh', 'gelu'] as const) {
      const want = reference(x, wKN, bias, m, k, n, a);
      for (const [label, weights] of [['kxn', denseWeights(wKN, k, n, 'kxn')], ['nxk', denseWeights(wNK, k, n, 'nxk')], ['packed', packed]] as const) {
        const out = new Float32Array(m * n).fill(NaN);
        gemm({ x, m, weights, bias, activation: a, threads: 2, out });
        assertClose(t, out, want, `gemm ${m}x${k}x${n} ${label} ${a}`);
      }
    }
  }
});

t.test('gemmAsync resolves with the same result as gemm', async (t) => {
  const next = rng(11);
  const [m, k, n] = [9, 70, 45];
  const x = randomArray(m * k, next);
  const w = denseWeights(randomArray(k * n, next), k, n, 'kxn');
  const sync = gemm({ x, m, weights: w, activation: 'relu' });
  const viaPromise = await gemmAsync({ x, m, weights: w, activation: 'relu', threads: 2 });
  t.same(Array.from(viaPromise), Array.from(sync));
});

t.test('boundGemm checks its weights once and then equals gemm on every X', async (t) => {
  const next = rng(12);
  const [k, n] = [33, 17];
  const bias = randomArray(n, next);
  const packed = packWeights(denseWeights(randomArray(k * n, next), k, n, 'nxk'));
  const run = boundGemm(packed, { bias, activation: 'tanh' });
  for (const m of [0, 1, 5, 64]) {
    const x = randomArray(m * k, next);
    t.same(Array.from(run(x, m)), Array.from(gemm({ x, m, weights: packed, bias, activation: 'tanh' })), `${m} rows`);
  }
  t.throws(() => run(new Float32Array(k - 1), 1), UmbraError, 'an X shorter than m rows is refused');
  t.throws(() => run(new Float32Array(k), -1), UmbraError, 'a negative row count is refused');
  t.throws(() => boundGemm(packed, { bias: new Float32Array(n - 1) }), UmbraError, 'a short bias is refused when binding');
  t.throws(() => boundGemm(packed, { activation: 'swish' as Activation }), UmbraError, 'an unknown activation is refused when binding');
});

function sparse(rows: number, cols: number, density: number, next: () => number): Float32Array {
  const w = randomArray(rows * cols, next);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) if (r % 5 === 2 || next() >= density) w[r * cols + c] = 0;
  }
  return w;
}

t.test('boundSpmm checks its weights once and then equals spmm on every X', async (t) => {
  const next = rng(13);
  const [k, n] = [600, 17];
  const bias = randomArray(n, next);
  const panels = packSparse(csrFromDense(sparse(n, k, 0.2, next), n, k));
  const run = boundSpmm(panels, { bias, activation: 'relu' });
  const rows = [0, 1, 5, 64];
  const pairs = rows.map((m) => {
    const x = randomArray(m * k, next);
    return [Array.from(run(x, m)), Array.from(spmm({ x, m, weights: panels, bias, activation: 'relu' }))];
  });
  t.same(pairs.map(([bound]) => bound), pairs.map(([, plain]) => plain), `equal for ${rows.join(', ')} rows`);
  const out = new Float32Array(2 * n).fill(Number.NaN);
  t.equal(run(randomArray(2 * k, next), 2, out), out, 'writes into a given output');
  t.ok(out.every(Number.isFinite), 'every output written');
  t.throws(() => run(new Float32Array(k - 1), 1), UmbraError, 'an X shorter than m rows is refused');
  t.throws(() => run(new Float32Array(k), 1, new Float32Array(n - 1)), UmbraError, 'a short output is refused');
  t.throws(() => boundSpmm(csrFromDense(new Float32Array(4), 2, 2) as never), UmbraError, 'CSR weights not packed into panels are refused');
  t.throws(() => boundSpmm(panels, { bias: new Float32Array(n - 1) }), UmbraError, 'a short bias is refused when binding');
});

t.test('boundSpmm.lanes chains layers on transposed activations with the row-major answers', async (t) => {
  const next = rng(14);
  const [k, n1, n2] = [600, 530, 70];
  const first = boundSpmm(packSparse(csrFromDense(sparse(n1, k, 0.2, next), n1, k)), { bias: randomArray(n1, next), activation: 'relu' });
  const second = boundSpmm(packSparse(csrFromDense(sparse(n2, n1, 0.3, next), n2, n1)), { bias: randomArray(n2, next) });
  const rows = [1, 8, 9, 64, 65];
  const results = rows.map((m) => {
    const x = randomArray(m * k, next);
    const want = second(first(x, m), m);
    const ht = alignedFloat32(sparseInputRows(n1) * spmmLanes(m));
    first.lanes(x, m, ht, { input: false, output: true });
    return [Array.from(second.lanes(ht, m, new Float32Array(m * n2), { input: true, output: false })), Array.from(want)];
  });
  t.same(results.map(([got]) => got), results.map(([, want]) => want), `equal for ${rows.join(', ')} rows`);
  const ht = alignedFloat32(sparseInputRows(n1) * spmmLanes(2));
  t.throws(() => first.lanes(randomArray(2 * k, next), 2, ht.subarray(0, n1 * spmmLanes(2) - 1), { input: false, output: true }), UmbraError, 'a transposed output short of its lanes is refused');
  t.throws(() => second.lanes(ht.subarray(8), 2, new Float32Array(2 * n2), { input: true, output: false }), UmbraError, 'a transposed input short of whole panels is refused');
});

t.test('alignedFloat32 gives zeroed storage of the asked length', async (t) => {
  const a = alignedFloat32(1000);
  t.equal(a.length, 1000);
  t.ok(a.every((v) => v === 0));
  t.equal((a.byteOffset % 4), 0);
  t.throws(() => alignedFloat32(-1), UmbraError);
});

t.test('spmm over CSR matches the dense reference, with empty rows and odd batches', async (t) => {
  const next = rng(3);
  for (const density of [0, 0.1, 0.5, 1]) {
    const [n, k] = [33, 47];
    const wNK = sparse(n, k, density, next);
    const csr = csrFromDense(wNK, n, k);
    const nnz = wNK.filter((v) => v !== 0).length;
    t.equal(csr.values.length, nnz, `CSR keeps all ${nnz} non-zeros`);
    t.equal(csr.rowPtr[n], nnz);
    const wKN = transpose(wNK, n, k);
    const bias = randomArray(n, next);
    for (const m of [1, 2, 3, 17, 64, 65]) {
      const x = randomArray(m * k, next);
      for (const a of ['none', 'gelu'] as const) {
        const out = new Float32Array(m * n).fill(NaN);
        spmm({ x, m, weights: csr, bias, activation: a, threads: 2, out });
        assertClose(t, out, reference(x, wKN, bias, m, k, n, a), `spmm density ${density} batch ${m} ${a}`);
      }
    }
  }
  const csr = csrFromDense(sparse(8, 8, 0.5, next), 8, 8);
  const x = randomArray(16, next);
  t.same(Array.from(await spmmAsync({ x, m: 2, weights: csr })), Array.from(spmm({ x, m: 2, weights: csr })), 'async agrees');
});

t.test('spmm over weights packed into column panels matches the reference across panels', async (t) => {
  const next = rng(4);
  // k spans three panels, the last one partial; rows 2, 7, 12, ... are empty.
  const [n, k] = [13, 2 * SPARSE_PANEL + 77];
  for (const density of [0, 0.1, 1]) {
    const wNK = sparse(n, k, density, next);
    const csr = csrFromDense(wNK, n, k);
    const packed = packSparse(csr);
    t.equal(packed.panelPtr.length, 3 * (n + 1), 'one pointer run per panel');
    t.equal(packed.values.length, csr.values.length, 'every non-zero kept');
    t.ok(packed.colIdx.every((c) => c < SPARSE_PANEL), 'columns are within their panel');
    const wKN = transpose(wNK, n, k);
    const bias = randomArray(n, next);
    for (const m of [1, 2, 9, 64, 70]) {
      const x = randomArray(m * k, next);
      for (const threads of [1, 2]) {
        const out = new Float32Array(m * n).fill(NaN);
        spmm({ x, m, weights: packed, bias, activation: 'relu', threads, out });
        assertClose(t, out, reference(x, wKN, bias, m, k, n, 'relu'), `packed density ${density} batch ${m} threads ${threads}`);
      }
    }
    const x = randomArray(3 * k, next);
    t.same(Array.from(await spmmAsync({ x, m: 3, weights: packed })), Array.from(spmm({ x, m: 3, weights: csr })), 'async packed agrees with CSR');
  }
  const bad = packSparse(csrFromDense(new Float32Array([1, 0, 2, 3]), 2, 2));
  const backwards = { ...bad, panelPtr: Int32Array.from([0, 2, 1]) };
  t.throws(() => spmm({ x: new Float32Array(2), m: 1, weights: backwards }), { name: 'UmbraError', message: /non-decreasing/ });
  t.throws(() => spmm({ x: new Float32Array(2), m: 1, weights: { ...bad, colIdx: new Int32Array(3) as unknown as Uint16Array } }),
    /expected a Uint16Array for weights.colIdx/);
});

t.test('bias + activation and softmax match the reference; softmax is stable for large logits', async (t) => {
  const next = rng(5);
  const [rows, cols] = [4, 37];
  for (const a of ['none', 'relu', 'sigmoid', 'tanh', 'gelu'] as const) {
    const data = randomArray(rows * cols, next, 6);
    const bias = randomArray(cols, next);
    const input = Float32Array.from(data);
    biasActivation(data, rows, cols, { bias, activation: a });
    let worst = 0;
    for (let i = 0; i < data.length; i++) {
      const want = act(input[i]! + bias[i % cols]!, a);
      worst = Math.max(worst, Math.abs(data[i]! - want) / (1e-6 * Math.abs(want) + 1e-6));
    }
    t.ok(worst <= 1, `${a}: within tolerance (${worst.toFixed(3)})`);
  }
  const logits = randomArray(rows * cols, next, 30);
  logits[3] = 1000;
  const input = Float32Array.from(logits);
  softmax(logits, rows, cols);
  for (let r = 0; r < rows; r++) {
    const row = Array.from(input.subarray(r * cols, (r + 1) * cols));
    const max = Math.max(...row);
    const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
    let worst = 0;
    for (let c = 0; c < cols; c++) {
      const want = Math.exp(row[c]! - max) / sum;
      worst = Math.max(worst, Math.abs(logits[r * cols + c]! - want) / (1e-5 * want + 1e-8));
    }
    t.ok(worst <= 1, `softmax row ${r} within tolerance`);
  }
});

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

t.test('bad arguments throw UmbraError with the house wording and never crash', async (t) => {
  const w = denseWeights(new Float32Array(6).fill(1), 2, 3, 'kxn');
  t.throws(() => gemm({ x: new Float32Array(3), m: 2, weights: w }), { code: 'INVALID_ARGUMENT', message: /expected a Float32Array of at least 4 elements for x but received one of 3/ });
  t.throws(() => gemm({ x: new Float32Array(4), m: 2, weights: w, activation: 'swish' as Activation }), /expected one of none, relu, sigmoid, tanh, gelu for activation but received the string "swish"/);
  t.throws(() => gemm({ x: new Float32Array(4), m: -1, weights: w }), /expected an integer in \[0, 2\^31\) for m but received number -1/);
  t.throws(() => gemm({ x: new Float32Array(4), m: 2, weights: w, threads: 0 }), /for threads/);
  t.throws(() => denseWeights(new Float32Array(5), 2, 3, 'kxn'), /expected a Float32Array of 6 elements for weights/);
  const bad = { rows: 1, cols: 4, rowPtr: new Int32Array([0, 1]), colIdx: new Int32Array([9]), values: new Float32Array([1]) };
  t.throws(() => spmm({ x: new Float32Array(4), m: 1, weights: bad }), { name: 'UmbraError', message: /column index/ });
  t.type(catchError(() => spmm({ x: new Float32Array(4), m: 1, weights: bad })), UmbraError);
  await t.rejects(spmmAsync({ x: new Float32Array(4), m: 1, weights: bad }), /column index/);
  const backwards = { rows: 2, cols: 4, rowPtr: new Int32Array([0, 2, 1]), colIdx: new Int32Array([0, 1]), values: new Float32Array([1, 1]) };
  t.throws(() => spmm({ x: new Float32Array(4), m: 1, weights: backwards }), /non-decreasing/);
});

t.test('the kernels run inside a worker thread', async (t) => {
  const url = new URL('../dist/native/kernels.js', import.meta.url).href;
  const code = `import('${url}').then(m => {
    const w = m.denseWeights(new Float32Array([1, 2, 3, 4]), 2, 2, 'kxn');
    const y = m.gemm({ x: new Float32Array([1, 1]), m: 1, weights: w });
    require('node:worker_threads').parentPort.postMessage(Array.from(y));
  });`;
  const result = await new Promise<number[]>((resolve, reject) => {
    const worker = new Worker(code, { eval: true });
    worker.once('message', (m: number[]) => { resolve(m); void worker.terminate(); });
    worker.once('error', reject);
  });
  t.same(result, [4, 6]);
});

/** erfc in double, accurate in relative terms in the tail: series below 2, continued fraction above. */
function erfcRef(z: number): number {
  if (z < 2) {
    // erf(z) = 2/sqrt(pi) sum (-1)^n z^(2n+1) / (n! (2n+1))
    let term = z;
    let sum = z;
    for (let n = 1; n < 80; n++) {
      term *= -z * z / n;
      sum += term / (2 * n + 1);
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(z) = exp(-z^2)/sqrt(pi) / (z + 1/2 / (z + 1 / (z + 3/2 / (z + 2 / ...)))), evaluated from the tail.
  let f = z;
  for (let n = 200; n >= 1; n--) f = z + (n / 2) / f;
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
}

t.test('gelu keeps its relative accuracy in the negative tail (outputs down to 1e-19)', async (t) => {
  const x = Float32Array.from({ length: 1801 }, (_, i) => -9 + i * 0.01);
  const got = x.slice();
  biasActivation(got, 1, x.length, { activation: 'gelu' });
  let worst = 0;
  let at = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    const want = v >= 0 ? 0.5 * v * (2 - erfcRef(v / Math.SQRT2)) : 0.5 * v * erfcRef(-v / Math.SQRT2);
    const rel = want === 0 ? Math.abs(got[i]!) : Math.abs(got[i]! - want) / Math.abs(want);
    if (rel > worst) [worst, at] = [rel, v];
  }
  t.ok(worst < 1e-5, `worst relative error ${worst.toExponential(2)} at x = ${at.toFixed(2)} (${kernelIsa()})`);
});
