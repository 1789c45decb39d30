import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, copyFileSync, existsSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildModel } from '../dist/onnx/builder.js';
import { onnx, readModel, writeModel, encodeModel } from '../dist/onnx/model-io.js';
import { tensorValues } from '../dist/onnx/tensor-data.js';
import { findPrunable, formatReport, PrunableModel, runPrune, type PruneRunOptions } from '../dist/prune/index.js';
import { Umbra } from '../dist/core/umbra.js';
import { seededRandom as rng } from '../dist/random.js';
import { property } from './helpers/property.js';

/** Nonzero random values; every fourth one quantised so there are exact magnitude ties. */
function randomValues(next: () => number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => {
    const v = (next() * 2 - 1) || 0.5;
    return i % 4 === 0 ? Math.sign(v) * (Math.round(Math.abs(v) * 8) / 8 + 0.125) : v;
  });
}

const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

/**
 * x[b,16] -MatMul w1[16,24]-> +b1 -Gemm(transB) w2[12,24]-> -Gemm w3[12,8]-> *gamma -> y
 * img[b,2,5,5] -Conv wc[4,2,3,3] + bc-> c;  `shared` is read by a MatMul and an Add, so it is not prunable.
 */
function testModel(seed: number, nanIn?: string) {
  const next = rng(seed);
  const init = (name: string, dims: number[]) => {
    const values = randomValues(next, size(dims));
    if (name === nanIn) values[5] = Number.NaN;
    return { name, datatype: 'FP32' as const, dims, values };
  };
  return buildModel({
    inputs: [
      { name: 'x', datatype: 'FP32', dims: ['batch', 16] },
      { name: 'img', datatype: 'FP32', dims: ['batch', 2, 5, 5] },
    ],
    outputs: [
      { name: 'y', datatype: 'FP32', dims: ['batch', 8] },
      { name: 'c', datatype: 'FP32', dims: ['batch', 4, 3, 3] },
      { name: 's', datatype: 'FP32', dims: ['batch', 8] },
    ],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w1'], outputs: ['h1'] },
      { op: 'Add', inputs: ['h1', 'b1'], outputs: ['h1b'] },
      { op: 'Gemm', inputs: ['h1b', 'w2', 'b2'], outputs: ['h2'], attributes: { transB: 1, alpha: { float: 1 } } },
      { op: 'Gemm', inputs: ['h2', 'w3'], outputs: ['h3'] },
      { op: 'Mul', inputs: ['h3', 'gamma'], outputs: ['y'] },
      { op: 'Conv', inputs: ['img', 'wc', 'bc'], outputs: ['c'], attributes: { kernel_shape: [3, 3] } },
      { op: 'MatMul', inputs: ['y', 'shared'], outputs: ['ys'] },
      { op: 'Add', inputs: ['shared', 'shared'], outputs: ['twice'] },
      { op: 'MatMul', inputs: ['ys', 'twice'], outputs: ['s'] },
    ],
    initializers: [
      init('w1', [16, 24]), init('b1', [24]), init('w2', [12, 24]), init('b2', [12]), init('w3', [12, 8]),
      init('gamma', [8]), init('wc', [4, 2, 3, 3]), init('bc', [4]), init('shared', [8, 8]),
    ],
  });
}

const dir = mkdtempSync(join(tmpdir(), 'umbra-prune-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let fileCount = 0;
function writeInput(model = testModel(7)): string {
  const path = join(dir, `in-${fileCount++}.onnx`);
  writeModel(model, path);
  return path;
}

function weightsOf(path: string): Map<string, { dims: number[]; data: Float32Array }> {
  const model = readModel(path);
  const out = new Map<string, { dims: number[]; data: Float32Array }>();
  for (const tensor of model.graph!.initializer ?? []) {
    const v = tensorValues(tensor, { dir: join(path, '..') });
    out.set(tensor.name!, { dims: v.dims, data: v.data as Float32Array });
  }
  return out;
}

const zeros = (a: Float32Array) => a.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);
const PRUNABLE = ['w1', 'w2', 'w3', 'wc'];

async function prune(options: Omit<PruneRunOptions, 'input' | 'output'>, input = writeInput()) {
  const output = join(dir, `out-${fileCount++}.onnx`);
  const report = await runPrune({ input, output, threads: 2, ...options });
  return { input, output, report, before: weightsOf(input), after: weightsOf(output) };
}

/** Every initializer but `pruned` encodes to the same bytes, and every node is the same. */
type Checks = { same(a: unknown, b: unknown, msg?: string): unknown; strictSame(a: unknown, b: unknown, msg?: string): boolean };
function assertRestUntouched(t: Checks, input: string, output: string, pruned: string[]) {
  const a = readModel(input);
  const b = readModel(output);
  const enc = (m: unknown, type: { encode(m: unknown): { finish(): Uint8Array } }) => Buffer.from(type.encode(m).finish()).toString('hex');
  t.same((b.graph!.node ?? []).map((n) => enc(n, onnx.NodeProto)), (a.graph!.node ?? []).map((n) => enc(n, onnx.NodeProto)), 'nodes and attributes identical');
  const before = new Map((a.graph!.initializer ?? []).map((x) => [x.name, enc(x, onnx.TensorProto)]));
  const identical = property('every initializer not pruned is bit-identical');
  for (const x of b.graph!.initializer ?? []) {
    if (!pruned.includes(x.name!)) identical.check(enc(x, onnx.TensorProto) === before.get(x.name), () => `${x.name} changed`);
  }
  identical.assert(t);
  t.same(Buffer.from(encodeModel({ ...b, graph: { ...b.graph, initializer: [] } })), Buffer.from(encodeModel({ ...a, graph: { ...a.graph, initializer: [] } })), 'everything but initializers identical');
}

async function runOrt(path: string) {
  const session = await ort.InferenceSession.create(path);
  const next = rng(99);
  const x = new ort.Tensor('float32', Float32Array.from({ length: 2 * 16 }, () => next() - 0.5), [2, 16]);
  const img = new ort.Tensor('float32', Float32Array.from({ length: 2 * 50 }, () => next() - 0.5), [2, 2, 5, 5]);
  const out = await session.run({ x, img });
  await session.release();
  return out;
}

t.test('finds MatMul/Gemm/Conv weights with their input axis, and leaves biases, norms and shared tensors alone', async (t) => {
  const { prunable, skipped } = findPrunable(readModel(writeInput()));
  t.same(prunable.map((w) => [w.name, w.op, w.layout, w.rows, w.cols]), [
    ['w1', 'MatMul', 'kxn', 16, 24], ['w2', 'Gemm', 'nxk', 12, 24], ['w3', 'Gemm', 'kxn', 12, 8], ['wc', 'Conv', 'nxk', 4, 18],
  ]);
  t.same(skipped.map((s) => s.name).sort(), ['b1', 'b2', 'bc', 'gamma', 'shared']);
  t.match(skipped.find((s) => s.name === 'shared')!.reason, /also read as input 0 of Add/);
});

t.test('global pruning: exact total count over all prunable weights, only raw_data bytes change', async (t) => {
  for (const sparsity of [0, 0.3, 0.75, 1]) {
    const { input, output, report, after } = await prune({ method: 'global', sparsity });
    const total = PRUNABLE.reduce((n, name) => n + after.get(name)!.data.length, 0);
    t.equal(PRUNABLE.reduce((n, name) => n + zeros(after.get(name)!.data), 0), Math.floor(sparsity * total + 0.5), `count at ${sparsity}`);
    t.equal(report.totals!.zerosAfter, Math.floor(sparsity * total + 0.5));
    assertRestUntouched(t, input, output, PRUNABLE);
    t.equal(readFileSync(output).length, readFileSync(input).length, 'same file length: pruned bytes overwritten in place');
    await runOrt(output);
  }
});

t.test('the kept weights are the largest magnitudes, unchanged', async (t) => {
  const { before, after } = await prune({ method: 'global', sparsity: 0.6 });
  let maxPruned = 0;
  let minKept = Infinity;
  const unchanged = property('every kept weight is unchanged');
  for (const name of PRUNABLE) {
    const b = before.get(name)!.data;
    const a = after.get(name)!.data;
    a.forEach((v, i) => {
      if (v === 0) maxPruned = Math.max(maxPruned, Math.abs(b[i]!));
      else {
        minKept = Math.min(minKept, Math.abs(v));
        unchanged.check(v === b[i], () => `${name}[${i}] changed from ${b[i]} to ${v}`);
      }
    });
  }
  unchanged.assert(t);
  t.ok(maxPruned <= minKept, `pruned magnitudes (max ${maxPruned}) are not above kept ones (min ${minKept})`);
});

t.test('per-layer pruning, per-layer targets by glob, exclusions', async (t) => {
  const { report, before, after, input, output } = await prune({
    method: 'layer', sparsity: 0.5, layers: [{ pattern: 'w?', sparsity: 0.25 }, { pattern: 'gemm_*', sparsity: 0.8 }], exclude: ['w1'],
  });
  // w2/w3 match the later node glob; wc matches 'w?'.
  const expect: Record<string, number> = { w2: 0.8, w3: 0.8, wc: 0.25 };
  for (const [name, s] of Object.entries(expect)) {
    t.equal(zeros(after.get(name)!.data), Math.floor(s * after.get(name)!.data.length + 0.5), `${name} at ${s}`);
  }
  t.same(after.get('w1')!.data, before.get('w1')!.data, 'excluded weight untouched');
  t.equal(report.layers.find((l) => l.name === 'w1')!.status, 'excluded');
  assertRestUntouched(t, input, output, ['w2', 'w3', 'wc']);
});

t.test('global with a per-layer target and min/max bounds', async (t) => {
  const { after, report } = await prune({ method: 'global', sparsity: 0.6, layers: [{ pattern: 'wc', sparsity: 0.1 }], minLayerSparsity: 0.4, maxLayerSparsity: 0.7 });
  t.equal(zeros(after.get('wc')!.data), Math.floor(0.1 * 72 + 0.5), 'wc pruned to its own target');
  const rest = ['w1', 'w2', 'w3'];
  const total = rest.reduce((n, name) => n + after.get(name)!.data.length, 0);
  t.equal(rest.reduce((n, name) => n + zeros(after.get(name)!.data), 0), Math.floor(0.6 * total + 0.5), 'the global threshold covers the rest exactly');
  for (const name of rest) {
    const s = report.layers.find((l) => l.name === name)!.sparsityAfter;
    t.ok(s >= 0.4 - 1e-9 && s <= 0.7 + 1e-9, `${name} within bounds (${s})`);
  }
});

t.test('N:M keeps N of every M along the input dimension of each layout', async (t) => {
  const { after, before, report } = await prune({ method: 'nm', sparsity: 0, nm: { n: 2, m: 4 } });
  const check = (name: string, rows: number, cols: number, kAlongRow: boolean) => {
    const a = after.get(name)!.data;
    const b = before.get(name)!.data;
    const outputs = kAlongRow ? rows : cols;
    const k = kAlongRow ? cols : rows;
    let bad = 0;
    for (let o = 0; o < outputs; o++) {
      for (let g = 0; g < k; g += 4) {
        const idx = Array.from({ length: Math.min(4, k - g) }, (_, j) => (kAlongRow ? o * cols + g + j : (g + j) * cols + o));
        const kept = idx.filter((i) => a[i] !== 0);
        const want = Math.min(2, idx.length);
        const smallestKept = Math.min(...kept.map((i) => Math.abs(b[i]!)));
        const largestPruned = Math.max(0, ...idx.filter((i) => a[i] === 0).map((i) => Math.abs(b[i]!)));
        if (kept.length !== want || largestPruned > smallestKept) bad++;
      }
    }
    t.equal(bad, 0, `${name}: every group keeps its ${2} largest`);
  };
  check('w1', 16, 24, false);
  check('w2', 12, 24, true);
  check('w3', 12, 8, false);
  check('wc', 4, 18, true);
  t.equal(report.layers.find((l) => l.name === 'w1')!.sparsityAfter, 0.5);
});

t.test('structured pruning zeroes whole output units with the smallest norm', async (t) => {
  for (const norm of ['l1', 'l2'] as const) {
    const { after, before, input, output } = await prune({ method: 'structured', sparsity: 0.5, norm, includeOutputLayer: true });
    const kept = property(`${norm}: every kept weight is unchanged`);
    const whole = property(`${norm}: every output unit is zeroed whole or not at all`);
    const units = (name: string, rows: number, cols: number, outputsAreRows: boolean) => {
      const a = after.get(name)!.data;
      const b = before.get(name)!.data;
      const outputs = outputsAreRows ? rows : cols;
      const k = outputsAreRows ? cols : rows;
      const at = (o: number, j: number) => (outputsAreRows ? o * cols + j : j * cols + o);
      const zeroed: number[] = [];
      const norms: number[] = [];
      for (let o = 0; o < outputs; o++) {
        let z = 0;
        let s = 0;
        for (let j = 0; j < k; j++) {
          if (a[at(o, j)] === 0) z++;
          else kept.check(a[at(o, j)] === b[at(o, j)], () => `${name} unit ${o} weight ${j} changed`);
          s += norm === 'l1' ? Math.abs(b[at(o, j)]!) : b[at(o, j)]! ** 2;
        }
        whole.check(z === 0 || z === k, () => `${name} unit ${o}: ${z} of ${k} zero`);
        if (z === k) zeroed.push(o);
        norms.push(s);
      }
      t.equal(zeroed.length, Math.floor(0.5 * outputs + 0.5), `${name}: count of zeroed units`);
      const maxZeroed = Math.max(...zeroed.map((o) => norms[o]!));
      const minKept = Math.min(...norms.filter((_, o) => !zeroed.includes(o)));
      t.ok(maxZeroed <= minKept, `${name}: zeroed units have the smallest ${norm}`);
    };
    units('w1', 16, 24, false);
    units('w2', 12, 24, true);
    units('w3', 12, 8, false);
    units('wc', 4, 18, true);
    kept.assert(t);
    whole.assert(t);
    assertRestUntouched(t, input, output, PRUNABLE);
  }
});

t.test('structured pruning leaves output layers dense unless asked', async (t) => {
  // w3 (-> Mul -> y) and wc (-> c) reach graph outputs without another MatMul/Gemm/Conv; w1 and w2 feed w3.
  const model = PrunableModel.open(writeInput());
  t.same(Object.fromEntries(model.weights.map((w) => [w.name, w.outputLayer])), { w1: false, w2: false, w3: true, wc: true });
  const kept = await prune({ method: 'structured', sparsity: 0.5 });
  for (const name of ['w3', 'wc']) {
    t.same(kept.after.get(name)!.data, kept.before.get(name)!.data, `${name} untouched`);
    t.match(kept.report.layers.find((l) => l.name === name), { status: 'excluded', excludedBy: 'output-layer', sparsityAfter: 0 });
  }
  for (const name of ['w1', 'w2']) t.equal(kept.report.layers.find((l) => l.name === name)!.sparsityAfter, 0.5, `${name} pruned`);
  t.match(formatReport(kept.report), /kept dense: w3, wc, the output layers: .*--include-output-layer/);
  const named = await prune({ method: 'structured', sparsity: 0.5, layers: [{ pattern: 'w3', sparsity: 0.25 }] });
  t.equal(named.report.layers.find((l) => l.name === 'w3')!.sparsityAfter, 0.25, 'a --layer target naming an output layer asks for it');
  t.equal(named.report.layers.find((l) => l.name === 'wc')!.excludedBy, 'output-layer');
  const unstructured = await prune({ method: 'layer', sparsity: 0.5 });
  t.equal(unstructured.report.layers.find((l) => l.name === 'w3')!.sparsityAfter, 0.5, 'other methods prune output layers as before');
});

t.test('NaN weights are rejected naming the tensor, for every method', async (t) => {
  const input = writeInput(testModel(3, 'w2'));
  for (const method of ['global', 'layer', 'nm', 'structured'] as const) {
    await t.rejects(runPrune({ input, output: join(dir, 'nan.onnx'), method, sparsity: 0.5, nm: { n: 2, m: 4 } }), /"w2".*NaN|NaN.*w2/, method);
  }
  t.notOk(existsSync(join(dir, 'nan.onnx')), 'no output written');
});

/** Moves every initializer of `path` into `weights.bin` next to it (ONNX external data). */
function externalize(path: string): void {
  const model = readModel(path);
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const tensor of model.graph!.initializer ?? []) {
    const raw = Buffer.from(tensor.rawData!);
    tensor.externalData = [
      onnx.StringStringEntryProto.create({ key: 'location', value: 'weights.bin' }),
      onnx.StringStringEntryProto.create({ key: 'offset', value: String(offset) }),
      onnx.StringStringEntryProto.create({ key: 'length', value: String(raw.length) }),
    ];
    tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    tensor.rawData = new Uint8Array(0);
    chunks.push(raw, Buffer.alloc(3));
    offset += raw.length + 3;
  }
  writeFileSync(join(path, '..', 'weights.bin'), Buffer.concat(chunks));
  writeModel(model, path);
}

t.test('external data round trip: OUT.data next to OUT, loads in onnxruntime and equals the inline result', async (t) => {
  const inline = await prune({ method: 'global', sparsity: 0.7 });
  const extDir = join(dir, 'ext');
  mkdirSync(extDir);
  const extInput = join(extDir, 'model.onnx');
  copyFileSync(inline.input, extInput);
  externalize(extInput);
  t.ok(readFileSync(extInput).length < readFileSync(inline.input).length - 3000, 'the input really keeps its weights outside');
  const outDir = join(dir, 'ext-out');
  const output = join(outDir, 'pruned.onnx');
  const report = await runPrune({ input: extInput, output, method: 'global', sparsity: 0.7, threads: 2 });
  t.same(report.files, [output, `${output}.data`].map((p) => join(p)), 'model and its data file');
  const ext = weightsOf(output);
  for (const [name, v] of inline.after) t.same(ext.get(name)!.data, v.data, `${name} equals the inline result`);
  const a = await runOrt(inline.output);
  const b = await runOrt(output);
  t.same(b.y!.data, a.y!.data, 'onnxruntime output equal');
  t.same(b.c!.data, a.c!.data);
});

t.test('OUT whose data file is the input data file, or OUT equal to IN, is refused', async (t) => {
  const d = join(dir, 'clash');
  mkdirSync(d);
  const input = join(d, 'm.onnx');
  writeModel(testModel(5), input);
  externalize(input);
  await t.rejects(runPrune({ input, output: input, method: 'global', sparsity: 0.5 }), /other than the input/);
  // OUT naming the input's own data file: the model would be written over the input's weights.
  const weights = readFileSync(join(d, 'weights.bin'));
  await t.rejects(runPrune({ input, output: join(d, 'weights.bin'), method: 'global', sparsity: 0.5 }),
    /^expected an output path other than the input's external data for OUT but received \S+weights\.bin, which holds the weights of \S+m\.onnx; write the pruned model to another path$/);
  t.same(readFileSync(join(d, 'weights.bin')), weights, 'the input\'s data file is untouched');
  t.notOk(existsSync(join(d, 'weights.bin.data')), 'nothing written');
  // OUT a symlink to the input (a repository's "current" link): writing through it overwrote IN.
  const model = readFileSync(input);
  symlinkSync('m.onnx', join(d, 'current.onnx'));
  await t.rejects(runPrune({ input, output: join(d, 'current.onnx'), method: 'global', sparsity: 0.5 }), /other than the input for OUT/, 'a symlink to IN');
  t.same(readFileSync(input), model, 'the input model is untouched');
  copyFileSync(join(d, 'weights.bin'), join(d, 'w.onnx.data'));
  const m = readModel(input);
  for (const tensor of m.graph!.initializer ?? []) tensor.externalData!.find((e) => e.key === 'location')!.value = 'w.onnx.data';
  writeModel(m, input);
  await t.rejects(runPrune({ input, output: join(d, 'w.onnx'), method: 'global', sparsity: 0.5 }), /data file/);
});

t.test('a pruned model serves through Umbra', async (t) => {
  const { output } = await prune({ method: 'global', sparsity: 0.5 });
  const repo = mkdtempSync(join(tmpdir(), 'umbra-prune-repo-'));
  t.teardown(() => rmSync(repo, { recursive: true, force: true }));
  mkdirSync(join(repo, 'pruned', '1'), { recursive: true });
  copyFileSync(output, join(repo, 'pruned', '1', 'model.onnx'));
  const umbra = await Umbra.open({ repository: repo, workers: 1 });
  t.teardown(() => umbra.close());
  const next = rng(99);
  const x = Array.from({ length: 2 * 16 }, () => next() - 0.5);
  const img = Array.from({ length: 2 * 50 }, () => next() - 0.5);
  const response = await umbra.predict('pruned', { x: { data: x, shape: [2, 16] }, img: { data: img, shape: [2, 2, 5, 5] } });
  const expected = await runOrt(output);
  const y = response.outputs.find((o) => o.name === 'y')!;
  t.same(Array.from(y.data as Float32Array), Array.from(expected.y!.data as Float32Array), 'Umbra answers as onnxruntime does on the pruned model');
});
