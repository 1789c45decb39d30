// The native backend (graph executor over the addon's kernels) against onnxruntime on the same
// models: the digits examples, the PyTorch MLP export, built graphs that use every supported
// operator at opsets 11, 13 and 20, pruned weights on both the dense and the CSR path, and refusal
// of unsupported operators.
import t from 'tap';
import * as ort from 'onnxruntime-node';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel, type ModelSpec } from '../dist/onnx/builder.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { openNative } from '../dist/workers/backends/native.js';
import { compileGraph, nativeRefusal } from '../dist/graph/index.js';
import { prunedMlp } from './helpers/native-models.js';
import { resolveBackend } from '../dist/execution/placement.js';

const ROOT = new URL('..', import.meta.url).pathname;
const DIGITS = (v: number) => join(ROOT, 'models', 'repository', 'digits', String(v), 'model.onnx');
const PYTORCH_MLP = join(ROOT, 'test', 'fixtures', 'pytorch', 'mlp.onnx');

const dir = mkdtempSync(join(tmpdir(), 'umbra-native-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 * scale);
}

let modelCount = 0;
function save(spec: ModelSpec | ReturnType<typeof buildModel>): string {
  const path = join(dir, `m${modelCount++}.onnx`);
  writeModel('graph' in spec ? spec : buildModel(spec), path);
  return path;
}

/** Runs both backends on the same feeds; every output must agree within a relative tolerance. */
async function agree(t: Tap.Test, path: string, feeds: Record<string, { data: Float32Array; shape: number[] }>, options: { sparseBelow?: number; tolerance?: number } = {}) {
  const native = openNative(path, 1, options.sparseBelow === undefined ? {} : { sparseBelow: options.sparseBelow });
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1 });
  t.teardown(() => session.release());
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [name, f] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor('float32', f.data, f.shape);
  const expected = await session.run(ortFeeds);
  const got = await native.run(Object.entries(feeds).map(([name, f]) => ({ name, datatype: 'FP32' as const, shape: f.shape, data: f.data.slice() })), []);
  const tolerance = options.tolerance ?? 1e-4;
  for (const out of got) {
    const ref = expected[out.name]!;
    t.same(out.shape, ref.dims.map(Number), `${out.name} shape`);
    const a = Array.from(out.data as ArrayLike<number | bigint>, Number);
    const b = Array.from(ref.data as ArrayLike<number | bigint>, Number);
    let worst = 0;
    for (let i = 0; i < b.length; i++) {
      if (!Number.isFinite(a[i]!)) worst = Infinity;
      worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
    }
    t.ok(a.length === b.length && worst <= tolerance, `${out.name}: ${a.length} values within ${tolerance} (worst ${worst.toExponential(2)})`);
  }
  return native;
}

declare namespace Tap { type Test = Parameters<Parameters<typeof t.test>[1]>[0]; }

t.test('digits v1 and v2 (Mul, Gemm, Relu, Softmax, ArgMax) equal onnxruntime', async (t) => {
  for (const v of [1, 2]) {
    for (const rows of [1, 7, 64]) {
      await agree(t, DIGITS(v), { pixels: { data: randomArray(rows * 64, 10 * v + rows, 8).map(Math.abs), shape: [rows, 64] } });
    }
  }
  const layers = openNative(DIGITS(1), 1).layers();
  t.same(layers.map((l) => [l.activation, l.bias, l.format]), [['relu', true, 'packed'], ['none', true, 'packed']], 'bias and Relu fused into the first layer');
});

t.test('the PyTorch MLP export (Constant, Div, transposed Gemm) equals onnxruntime and PyTorch', async (t) => {
  await agree(t, PYTORCH_MLP, { x: { data: randomArray(9 * 64, 3, 8), shape: [9, 64] } });
  const fixture = JSON.parse(readFileSync(join(ROOT, 'test', 'fixtures', 'pytorch', 'mlp.json'), 'utf8'));
  const native = openNative(PYTORCH_MLP, 1);
  const [logits] = await native.run([{ name: 'x', datatype: 'FP32', shape: fixture.inputs.x.shape, data: Float32Array.from(fixture.inputs.x.data) }], []);
  const expected: number[] = fixture.outputs.logits.data;
  t.ok(Array.from(logits!.data as Float32Array).every((v, i) => Math.abs(v - expected[i]!) <= 1e-4 * Math.max(1, Math.abs(expected[i]!))), 'matches the PyTorch logits');
});

/** A graph with every operator the backend serves, in the shapes exporters write them. */
function everyOpModel(seed: number): ModelSpec {
  const r = rng(seed);
  const values = (n: number, scale = 0.3) => Array.from({ length: n }, () => r() * 2 * scale);
  return {
    opset: 13,
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 16] }, { name: 'shift', datatype: 'FP32', dims: ['batch', 12] }],
    outputs: [
      { name: 'probs', datatype: 'FP32', dims: ['batch', 12] },
      { name: 'columns', datatype: 'FP32', dims: ['batch', 3, 4] },
      { name: 'label', datatype: 'INT64', dims: ['batch'] },
      { name: 'mixed', datatype: 'FP32', dims: ['batch', 12] },
    ],
    initializers: [
      { name: 'half_scale', datatype: 'FP32', dims: [], values: [4] },
      { name: 'w1_t', datatype: 'FP32', dims: [24, 16], values: values(24 * 16) },
      { name: 'b1', datatype: 'FP32', dims: [24], values: values(24) },
      { name: 'w2', datatype: 'FP32', dims: [24, 24], values: values(24 * 24) },
      { name: 'c2', datatype: 'FP32', dims: [24], values: values(24) },
      { name: 'w3', datatype: 'FP32', dims: [24, 12], values: values(24 * 12) },
      { name: 'c3', datatype: 'FP32', dims: [1, 12], values: values(12) },
      { name: 'sub', datatype: 'FP32', dims: [12], values: values(12) },
      { name: 'sqrt2', datatype: 'FP32', dims: [], values: [Math.SQRT2] },
      { name: 'one', datatype: 'FP32', dims: [], values: [1] },
      { name: 'half', datatype: 'FP32', dims: [], values: [0.5] },
      { name: 'shape3', datatype: 'INT64', dims: [3], values: [0n, 3n, 4n] },
      { name: 'w4', datatype: 'FP32', dims: [12, 12], values: values(144) },
    ],
    nodes: [
      // Constant-folded: divisor = Sqrt(4) * 1 = 2; w1 = Transpose(w1_t).
      { op: 'Sqrt', inputs: ['half_scale'], outputs: ['divisor'] },
      { op: 'Transpose', inputs: ['w1_t'], outputs: ['w1'] },
      { op: 'Div', inputs: ['x', 'divisor'], outputs: ['xs'] },
      { op: 'MatMul', inputs: ['xs', 'w1'], outputs: ['h1'] },
      { op: 'Add', inputs: ['b1', 'h1'], outputs: ['h1b'] },
      { op: 'Relu', inputs: ['h1b'], outputs: ['a1'] },
      { op: 'Gemm', inputs: ['a1', 'w2', 'c2'], outputs: ['h2'], attributes: { transB: 1, alpha: 0.5, beta: { float: 2 } } },
      { op: 'Sigmoid', inputs: ['h2'], outputs: ['a2'] },
      { op: 'Gemm', inputs: ['a2', 'w3', 'c3'], outputs: ['h3'], attributes: { alpha: { float: 1 }, beta: { float: 1 } } },
      { op: 'Tanh', inputs: ['h3'], outputs: ['a3'] },
      { op: 'Sub', inputs: ['a3', 'sub'], outputs: ['g_in'] },
      // PyTorch's exact GELU: x * (1 + erf(x / sqrt2)) * 0.5.
      { op: 'Div', inputs: ['g_in', 'sqrt2'], outputs: ['g_div'] },
      { op: 'Erf', inputs: ['g_div'], outputs: ['g_erf'] },
      { op: 'Add', inputs: ['g_erf', 'one'], outputs: ['g_add'] },
      { op: 'Mul', inputs: ['g_in', 'g_add'], outputs: ['g_mul'] },
      { op: 'Mul', inputs: ['g_mul', 'half'], outputs: ['gelu'] },
      { op: 'Mul', inputs: ['gelu', 'shift'], outputs: ['scaled'] },
      { op: 'Softmax', inputs: ['scaled'], outputs: ['probs'] },
      { op: 'Reshape', inputs: ['gelu', 'shape3'], outputs: ['cube'] },
      { op: 'Softmax', inputs: ['cube'], outputs: ['columns'], attributes: { axis: 1 } },
      { op: 'Flatten', inputs: ['columns'], outputs: ['flat'] },
      { op: 'Identity', inputs: ['flat'], outputs: ['flat_id'] },
      { op: 'ArgMax', inputs: ['flat_id'], outputs: ['label'], attributes: { axis: 1, keepdims: 0 } },
      // A layer without epilogue, and tensor-tensor broadcasting.
      { op: 'MatMul', inputs: ['shift', 'w4'], outputs: ['sw'] },
      { op: 'Add', inputs: ['sw', 'gelu'], outputs: ['mixed'] },
    ],
  };
}

t.test('random MLPs with every supported op equal onnxruntime (opset 13)', async (t) => {
  for (const seed of [1, 2, 3]) {
    const path = save(everyOpModel(seed));
    for (const rows of [1, 5, 33]) {
      await agree(t, path, {
        x: { data: randomArray(rows * 16, seed * 100 + rows, 3), shape: [rows, 16] },
        shift: { data: randomArray(rows * 12, seed * 200 + rows, 2), shape: [rows, 12] },
      });
    }
  }
  const steps = compileGraph(save(everyOpModel(9))).steps;
  t.notOk(steps.some((s) => s.kind === 'reference' && s.node.op === 'Erf'), 'the Erf pattern became one GELU');
  const dense = steps.filter((s) => s.kind === 'dense');
  t.same(dense.map((s) => s.kind === 'dense' && s.activation), ['relu', 'sigmoid', 'tanh', 'none'], 'activations fused into the layers');
  t.ok(dense.slice(0, 3).every((s) => s.kind === 'dense' && s.bias !== undefined), 'biases fused (Add, Gemm C with beta)');
});

t.test('a scalar Mul or Div of the input folds into the layer that alone reads it', async (t) => {
  const r = rng(31);
  const values = (n: number) => Array.from({ length: n }, () => r() * 0.6);
  const scaled = (op: 'Mul' | 'Div', inputs: string[], extra: ModelSpec['nodes'] = [], extraOutputs: ModelSpec['outputs'] = []): ModelSpec => ({
    opset: 13,
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 8] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 5] }, ...extraOutputs],
    initializers: [
      { name: 's', datatype: 'FP32', dims: [], values: [0.0625] },
      { name: 'w', datatype: 'FP32', dims: [8, 5], values: values(40) },
      { name: 'b', datatype: 'FP32', dims: [5], values: values(5) },
    ],
    nodes: [
      { op, inputs, outputs: ['xs'] },
      { op: 'Gemm', inputs: ['xs', 'w', 'b'], outputs: ['h'] },
      { op: 'Relu', inputs: ['h'], outputs: ['y'] },
      ...extra,
    ],
  });
  const feeds = (rows: number) => ({ x: { data: randomArray(rows * 8, rows, 16), shape: [rows, 8] } });
  const referenceOps = (path: string) => compileGraph(path).steps.flatMap((s) => (s.kind === 'reference' ? [s.node.op] : []));
  for (const [label, inputs, op] of [['x * s', ['x', 's'], 'Mul'], ['s * x', ['s', 'x'], 'Mul'], ['x / s', ['x', 's'], 'Div']] as const) {
    const path = save(scaled(op, [...inputs]));
    t.same(referenceOps(path), [], `${label} runs inside the layer`);
    for (const rows of [1, 6]) await agree(t, path, feeds(rows));
  }
  // s / x is no scaling of x, and a scaled input read twice must still exist on its own.
  const inverse = save(scaled('Div', ['s', 'x']));
  t.same(referenceOps(inverse), ['Div'], 's / x is left to the reference');
  await agree(t, inverse, { x: { data: randomArray(3 * 8, 5, 16).map((v) => Math.abs(v) + 1), shape: [3, 8] } });
  const shared = save(scaled('Mul', ['x', 's'], [{ op: 'Identity', inputs: ['xs'], outputs: ['xs_out'] }], [{ name: 'xs_out', datatype: 'FP32', dims: ['batch', 8] }]));
  t.same(referenceOps(shared), ['Mul', 'Identity'], 'a scaled input that is also an output stays');
  await agree(t, shared, feeds(4));
  t.same(referenceOps(DIGITS(2)), ['ArgMax'], "digits' pixel scale is folded into its first layer");
});

t.test('opset 11 exports: legacy Softmax axis, x.view(x.size(0), -1), Dropout; opset 20 Gelu', async (t) => {
  const r = rng(77);
  const values = (n: number) => Array.from({ length: n }, () => r() * 0.6);
  const legacy = save({
    opset: 11,
    inputs: [{ name: 'image', datatype: 'FP32', dims: ['batch', 4, 4] }],
    outputs: [{ name: 'probs', datatype: 'FP32', dims: ['batch', 6] }],
    initializers: [
      { name: 'zero', datatype: 'INT64', dims: [], values: [0n] },
      { name: 'minus_one', datatype: 'INT64', dims: [1], values: [-1n] },
      { name: 'w', datatype: 'FP32', dims: [6, 16], values: values(96) },
      { name: 'b', datatype: 'FP32', dims: [6], values: values(6) },
    ],
    nodes: [
      { op: 'Shape', inputs: ['image'], outputs: ['shape'] },
      { op: 'Gather', inputs: ['shape', 'zero'], outputs: ['batch'], attributes: { axis: 0 } },
      { op: 'Unsqueeze', inputs: ['batch'], outputs: ['batch1'], attributes: { axes: [0] } },
      { op: 'Concat', inputs: ['batch1', 'minus_one'], outputs: ['flat_shape'], attributes: { axis: 0 } },
      { op: 'Reshape', inputs: ['image', 'flat_shape'], outputs: ['flat'] },
      { op: 'Gemm', inputs: ['flat', 'w', 'b'], outputs: ['logits'], attributes: { transB: 1 } },
      { op: 'Dropout', inputs: ['logits'], outputs: ['kept'] },
      { op: 'Softmax', inputs: ['kept'], outputs: ['probs'] },
    ],
  });
  await agree(t, legacy, { image: { data: randomArray(3 * 16, 5), shape: [3, 4, 4] } });
  const gelu20 = save({
    opset: 20,
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 8] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 8] }, { name: 'z', datatype: 'FP32', dims: ['batch', 8] }],
    initializers: [{ name: 'w', datatype: 'FP32', dims: [8, 8], values: values(64) }],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w'], outputs: ['h'] },
      { op: 'Gelu', inputs: ['h'], outputs: ['y'] },
      { op: 'Gelu', inputs: ['h'], outputs: ['z'], attributes: { approximate: 'tanh' } },
    ],
  });
  await agree(t, gelu20, { x: { data: randomArray(4 * 8, 6, 3), shape: [4, 8] } });
});

t.test('pruned weights give the same answers on the packed and the CSR paths', async (t) => {
  const path = save(await prunedMlp(0.9, 11));
  const feeds = (rows: number) => ({ x: { data: randomArray(rows * 48, 40 + rows, 2), shape: [rows, 48] } });
  for (const rows of [1, 8, 64]) {
    const measured = await agree(t, path, feeds(rows));
    t.ok(measured.layers().every((l) => Math.abs(l.density - 0.1) < 0.01), 'density measured at load');
    await agree(t, path, feeds(rows), { sparseBelow: 2 });
    await agree(t, path, feeds(rows), { sparseBelow: 0 });
  }
  t.same(openNative(path, 1, { sparseBelow: 2 }).layers().map((l) => l.format), ['csr', 'csr', 'csr']);
  t.same(openNative(path, 1, { sparseBelow: 0 }).layers().map((l) => l.format), ['packed', 'packed', 'packed']);
});

t.test('unsupported operators are refused at load, naming the node and op', async (t) => {
  const path = save({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 4] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 4] }],
    nodes: [
      { op: 'Relu', inputs: ['x'], outputs: ['h'] },
      { op: 'Exp', inputs: ['h'], outputs: ['y'], name: 'the_exp' },
    ],
  });
  t.throws(() => openNative(path, 1), { code: 'LOAD_FAILED', message: /node "the_exp" \(Exp\).*onnxruntime/ });
  t.match(nativeRefusal(path), /the_exp.*Exp/);
  t.equal(nativeRefusal(DIGITS(1)), null, 'digits is fully supported');
  const intInput = save({
    inputs: [{ name: 'n', datatype: 'INT64', dims: ['batch', 2] }],
    outputs: [{ name: 'm', datatype: 'INT64', dims: ['batch', 2] }],
    nodes: [{ op: 'Identity', inputs: ['n'], outputs: ['m'] }],
  });
  t.throws(() => openNative(intInput, 1), /FP32 inputs only/);
});

t.test('MatMul and Gemm with a run-time right-hand side', async (t) => {
  const path = save({
    inputs: [{ name: 'a', datatype: 'FP32', dims: [2, 3] }, { name: 'b', datatype: 'FP32', dims: [3, 4] }, { name: 'bt', datatype: 'FP32', dims: [4, 3] }],
    outputs: [{ name: 'ab', datatype: 'FP32', dims: [2, 4] }, { name: 'gemm', datatype: 'FP32', dims: [2, 4] }],
    initializers: [{ name: 'c', datatype: 'FP32', dims: [2, 4], values: [1, 2, 3, 4, 5, 6, 7, 8] }],
    nodes: [
      { op: 'MatMul', inputs: ['a', 'b'], outputs: ['ab'] },
      { op: 'Gemm', inputs: ['a', 'bt', 'c'], outputs: ['gemm'], attributes: { transB: 1, alpha: 1.5, beta: 0.25 } },
    ],
  });
  await agree(t, path, {
    a: { data: randomArray(6, 1), shape: [2, 3] },
    b: { data: randomArray(12, 2), shape: [3, 4] },
    bt: { data: randomArray(12, 3), shape: [4, 3] },
  });
});

t.test('a batched MatMul of two run-time tensors is refused at load, so auto serves it on onnxruntime', async (t) => {
  // PyTorch's outer product h.unsqueeze(2) @ h.unsqueeze(1): [b, 4, 1] @ [b, 1, 4]. It compiled,
  // then every run failed (400, blaming the request), and auto picked native for it: the model
  // was UNAVAILABLE where onnxruntime serves it.
  const path = save({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 4] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 16] }],
    initializers: [{ name: 'two', datatype: 'INT64', dims: [1], values: [2n] }, { name: 'one', datatype: 'INT64', dims: [1], values: [1n] }],
    nodes: [
      { op: 'Unsqueeze', inputs: ['x', 'two'], outputs: ['col'] },
      { op: 'Unsqueeze', inputs: ['x', 'one'], outputs: ['row'] },
      { op: 'MatMul', inputs: ['col', 'row'], outputs: ['outer'], name: 'outer' },
      { op: 'Flatten', inputs: ['outer'], outputs: ['y'] },
    ],
  });
  t.throws(() => compileGraph(path), { code: 'LOAD_FAILED', message: /^node "outer" \(MatMul\) multiplies by a run-time 3-D right-hand side \(a batched MatMul\); .*use backend: onnxruntime \(or auto\)/ });
  t.equal(resolveBackend('auto', path), 'onnxruntime', 'auto picks onnxruntime');
});
