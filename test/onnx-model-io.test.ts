import t, { type Test } from 'tap';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { UmbraError } from '../dist/errors.js';
import { buildModel } from '../dist/onnx/builder.js';
import {
  encodeModel, externalDataReferences, int64ToNumber, modelSignature, onnx, readModel, writeModel,
} from '../dist/onnx/model-io.js';
import { makeTensor, tensorValues } from '../dist/onnx/tensor-data.js';
import { seededRandom } from '../dist/onnx/train-digits.js';
import { externalWeightsModel } from './helpers/repo.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'pytorch');
const tmp = mkdtempSync(join(tmpdir(), 'umbra-onnx-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const random = seededRandom(99);
const randomArray = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => (random() * 2 - 1) * scale);

// y = Relu(0.5 * x W^T + b) ; idx = ArgMax(y) ; shifted = counts + 3 (INT64)
const W = randomArray(5 * 3);
const B = randomArray(5);
function testModel() {
  return buildModel({
    inputs: [
      { name: 'x', datatype: 'FP32', dims: ['batch', 3] },
      { name: 'counts', datatype: 'INT64', dims: [-1] },
    ],
    outputs: [
      { name: 'y', datatype: 'FP32', dims: ['batch', 5] },
      { name: 'idx', datatype: 'INT64', dims: ['batch'] },
      { name: 'shifted', datatype: 'INT64', dims: [-1] },
    ],
    initializers: [
      { name: 'W', datatype: 'FP32', dims: [5, 3], values: W },
      { name: 'B', datatype: 'FP32', dims: [5], values: B },
      { name: 'three', datatype: 'INT64', dims: [1], values: [3n] },
    ],
    nodes: [
      { op: 'Gemm', inputs: ['x', 'W', 'B'], outputs: ['g'], attributes: { transB: 1, alpha: { float: 0.5 } } },
      { op: 'Relu', inputs: ['g'], outputs: ['y'] },
      { op: 'ArgMax', inputs: ['y'], outputs: ['idx'], attributes: { axis: 1, keepdims: 0 } },
      { op: 'Add', inputs: ['counts', 'three'], outputs: ['shifted'] },
    ],
  });
}

function expectedY(x: Float32Array, rows: number): Float32Array {
  const y = new Float32Array(rows * 5);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < 5; o++) {
      let sum = 0;
      for (let i = 0; i < 3; i++) sum += x[r * 3 + i]! * W[o * 3 + i]!;
      y[r * 5 + o] = Math.max(0, 0.5 * sum + B[o]!);
    }
  }
  return y;
}

function closeTo(t: Test, actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): void {
  t.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (!Number.isFinite(a)) return void t.fail(`${what}: element ${i} is ${a}`);
    worst = Math.max(worst, Math.abs(a - e) / Math.max(1, Math.abs(e)));
  }
  t.ok(worst <= tolerance, `${what}: worst relative error ${worst} <= ${tolerance}`);
}

t.test('a built model round-trips through write and read, and onnxruntime runs it', async (t) => {
  const path = join(tmp, 'round', 'model.onnx');
  writeModel(testModel(), path);
  const loaded = readModel(path);
  t.same(encodeModel(loaded), readFileSync(path), 'decode then encode gives the same bytes');
  t.same(encodeModel(readModel(new Uint8Array(readFileSync(path)))), readFileSync(path), 'reads from bytes too');

  const sig = modelSignature(loaded);
  t.same(sig.inputs, [
    { name: 'x', datatype: 'FP32', dims: [-1, 3], shapeKnown: true },
    { name: 'counts', datatype: 'INT64', dims: [-1], shapeKnown: true },
  ]);
  t.same(sig.outputs.map((o) => [o.name, o.datatype, o.dims]), [['y', 'FP32', [-1, 5]], ['idx', 'INT64', [-1]], ['shifted', 'INT64', [-1]]]);
  t.equal(sig.opset, 13);
  t.equal(sig.irVersion, 8);

  const w = tensorValues(loaded.graph!.initializer!.find((i) => i.name === 'W')!);
  t.same(w.dims, [5, 3]);
  t.same(Array.from(w.data as Float32Array), Array.from(W), 'FP32 raw_data reads back exactly');
  t.same(Array.from(tensorValues(loaded.graph!.initializer![2]!).data as BigInt64Array), [3n]);

  const rows = 4;
  const x = randomArray(rows * 3, 2);
  const counts = BigInt64Array.from([5n, -7n, 9007199254740991n - 3n]);
  // Rewrite the loaded model to a second file: what onnxruntime runs went through read + write.
  const second = join(tmp, 'round', 'again.onnx');
  writeModel(loaded, second);
  const session = await ort.InferenceSession.create(second);
  const out = await session.run({ x: new ort.Tensor('float32', x, [rows, 3]), counts: new ort.Tensor('int64', counts, [3]) });
  closeTo(t, out.y!.data as Float32Array, expectedY(x, rows), 1e-5, 'y');
  t.same(out.y!.dims, [rows, 5]);
  const y = out.y!.data as Float32Array;
  const idx = Array.from(out.idx!.data as BigInt64Array, Number);
  for (let r = 0; r < rows; r++) {
    const row = Array.from(y.subarray(r * 5, r * 5 + 5));
    t.equal(idx[r], row.indexOf(Math.max(...row)), `argmax of row ${r}`);
  }
  t.same(Array.from(out.shifted!.data as BigInt64Array), [8n, -4n, 9007199254740991n]);
});

t.test('int64 fields: Long objects, numbers and bigints become numbers; past 2^53 is refused', async (t) => {
  t.equal(int64ToNumber(12, 'n'), 12);
  t.equal(int64ToNumber(12n, 'n'), 12);
  t.equal(int64ToNumber({ low: 5, high: 1, unsigned: false }, 'n'), 2 ** 32 + 5);
  t.equal(int64ToNumber({ low: -1, high: -1, unsigned: false }, 'n'), -1);
  t.equal(int64ToNumber({ low: -1, high: 0, unsigned: true }, 'n'), 2 ** 32 - 1);
  t.equal(int64ToNumber(null, 'n'), 0);
  t.throws(() => int64ToNumber({ low: 0, high: 0x7fffffff }, 'dim 0'), /dim 0 is .* past what Umbra handles/);

  // Decoding gives Long objects for dims (the `long` package is installed); the signature has numbers.
  const decoded = onnx.ModelProto.decode(encodeModel(buildModel({
    inputs: [{ name: 'big', datatype: 'FP32', dims: [3000000000, 'n', -1] }],
    outputs: [{ name: 'out', datatype: 'FP32', dims: [3000000000, 'n', -1] }],
    nodes: [{ op: 'Identity', inputs: ['big'], outputs: ['out'] }],
  })));
  t.equal(typeof decoded.graph!.input![0]!.type!.tensorType!.shape!.dim![0]!.dimValue, 'object', 'protobufjs returns a Long');
  t.same(modelSignature(decoded).inputs[0]!.dims, [3000000000, -1, -1]);
});

t.test('signatures skip initializers listed as inputs and refuse types with no protocol datatype', async (t) => {
  const model = buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: [2] }, { name: 'w', datatype: 'FP32', dims: [2] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: [2] }],
    initializers: [{ name: 'w', datatype: 'FP32', dims: [2], values: [1.5, -2] }],
    nodes: [{ op: 'Add', inputs: ['x', 'w'], outputs: ['y'] }],
  });
  t.same(modelSignature(model).inputs.map((i) => i.name), ['x'], 'IR<4 style: initializer w is not a served input');

  const bf16 = onnx.ModelProto.create({
    irVersion: 8,
    graph: {
      input: [{ name: 'h', type: { tensorType: { elemType: onnx.TensorProto.DataType.BFLOAT16, shape: { dim: [{ dimValue: 2 }] } } } }],
      output: [{ name: 'seq', type: { sequenceType: {} } }],
    },
  });
  t.throws(() => modelSignature(bf16), { code: 'LOAD_FAILED', message: /ONNX input "h" has type BFLOAT16, which has no protocol datatype/ });
  bf16.graph!.input = [];
  t.throws(() => modelSignature(bf16), { code: 'LOAD_FAILED', message: /the model has no tensor output to serve: output "seq" \(a sequence\) is not served/ });
  const noShape = onnx.ModelProto.create({ graph: { input: [{ name: 's', type: { tensorType: { elemType: 8 } } }] } });
  t.same(modelSignature(noShape).inputs, [{ name: 's', datatype: 'BYTES', dims: [], shapeKnown: false }]);
});

t.test('unreadable files are LOAD_FAILED naming the file', async (t) => {
  const garbage = join(tmp, 'garbage.onnx');
  writeFileSync(garbage, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]));
  t.throws(() => readModel(garbage), { code: 'LOAD_FAILED', message: new RegExp(`${garbage} is not a valid ONNX model`) });
  t.throws(() => readModel(join(tmp, 'missing.onnx')), { code: 'LOAD_FAILED', message: /cannot read ONNX model .*missing\.onnx/ });
  t.throws(() => readModel(new Uint8Array(0)), { code: 'LOAD_FAILED', message: /ONNX bytes is not a valid ONNX model: it has no graph/ });
  t.type((() => { try { readModel(garbage); } catch (err) { return err; } })(), UmbraError);
});

t.test('external-data initializers: metadata, values, and onnxruntime agrees', async (t) => {
  const dir = join(tmp, 'external');
  mkdirSync(dir, { recursive: true });
  const weights = externalWeightsModel(dir, 'model.onnx', 'weights.bin', randomArray(6), 16);

  const loaded = readModel(join(dir, 'model.onnx'));
  t.same(externalDataReferences(loaded), [{ tensor: 'w', location: 'weights.bin', offset: 16, length: 24 }]);
  t.same(modelSignature(loaded).inputs.map((i) => i.name), ['x']);
  t.throws(() => tensorValues(loaded.graph!.initializer![0]!), /stored externally; its model folder is needed/);
  const values = tensorValues(loaded.graph!.initializer![0]!, { dir });
  t.same(Array.from(values.data as Float32Array), Array.from(weights));

  const session = await ort.InferenceSession.create(join(dir, 'model.onnx'));
  const x = randomArray(2 * 2);
  const out = await session.run({ x: new ort.Tensor('float32', x, [2, 2]) });
  const expected = Array.from({ length: 6 }, (_, k) => {
    const r = Math.floor(k / 3);
    const c = k % 3;
    return x[r * 2]! * weights[c]! + x[r * 2 + 1]! * weights[3 + c]!;
  });
  closeTo(t, out.y!.data as Float32Array, expected, 1e-5, 'external-weights MatMul');

  const w = loaded.graph!.initializer![0]!;
  w.externalData = [onnx.StringStringEntryProto.create({ key: 'location', value: '../../etc/passwd' })];
  t.throws(() => tensorValues(w, { dir }), /is not inside the model folder/);
  // A data file that is a link out of the folder: the weights would be any file the server can read.
  const outside = mkdtempSync(join(tmpdir(), 'umbra-secret-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  writeFileSync(join(outside, 'secret'), Buffer.from(Float32Array.from([42, 43, 44, 45, 46, 47]).buffer));
  symlinkSync(join(outside, 'secret'), join(dir, 'linked.data'));
  w.externalData = [onnx.StringStringEntryProto.create({ key: 'location', value: 'linked.data' }), onnx.StringStringEntryProto.create({ key: 'length', value: '24' })];
  t.throws(() => tensorValues(w, { dir }), /links out of the model folder/);
  copyFileSync(join(outside, 'secret'), join(dir, 'inside.data'));
  symlinkSync('inside.data', join(dir, 'inside-link.data'));
  w.externalData = [onnx.StringStringEntryProto.create({ key: 'location', value: 'inside-link.data' }), onnx.StringStringEntryProto.create({ key: 'length', value: '24' })];
  t.same(Array.from(tensorValues(w, { dir }).data as Float32Array), [42, 43, 44, 45, 46, 47], 'a link inside the folder is followed');
  // A model file linked in from elsewhere (as Umbra links KServe's /mnt/models/model.onnx and the
  // data beside it): the data may lie beside the file's real location.
  w.externalData = [onnx.StringStringEntryProto.create({ key: 'location', value: 'linked.data' }), onnx.StringStringEntryProto.create({ key: 'length', value: '24' })];
  t.same(Array.from(tensorValues(w, { dir, realDir: outside }).data as Float32Array), [42, 43, 44, 45, 46, 47], 'a link to beside the model file\'s real location is followed');
});

t.test('typed-field tensors (float_data, int64_data) read as well as raw_data', async (t) => {
  const floats = onnx.TensorProto.create({ name: 'f', dims: [2], dataType: onnx.TensorProto.DataType.FLOAT, floatData: [0.25, -3] });
  t.same(Array.from(tensorValues(floats).data as Float32Array), [0.25, -3]);
  const ints = onnx.TensorProto.decode(onnx.TensorProto.encode(onnx.TensorProto.create({
    name: 'i', dims: [3], dataType: onnx.TensorProto.DataType.INT64, int64Data: [1, -2, 2 ** 40],
  })).finish());
  t.same(Array.from(tensorValues(ints).data as BigInt64Array), [1n, -2n, 2n ** 40n]);
  const short = onnx.TensorProto.create({ name: 's', dims: [3], dataType: onnx.TensorProto.DataType.FLOAT, floatData: [1] });
  t.throws(() => tensorValues(short), /should hold 3 values but holds 1/);
});

t.test('PyTorch-exported fixtures: signature and outputs match PyTorch', async (t) => {
  for (const name of ['mlp', 'cnn']) {
    const fixture = JSON.parse(readFileSync(join(fixtures, `${name}.json`), 'utf8')) as {
      inputs: Record<string, { shape: number[]; data: number[] }>;
      outputs: Record<string, { shape: number[]; data: number[] }>;
    };
    const path = join(fixtures, `${name}.onnx`);
    const sig = modelSignature(readModel(path));
    const [inputName, input] = Object.entries(fixture.inputs)[0]!;
    t.same(sig.inputs.map((i) => [i.name, i.datatype, i.dims[0]]), [[inputName, 'FP32', -1]], `${name}: dynamic batch axis`);
    t.same(sig.outputs.map((o) => [o.name, o.dims]), [['logits', [-1, 10]]]);
    t.not(input.data.every((v) => v === 0), true, 'fixture inputs are not all zeros');
    const session = await ort.InferenceSession.create(path);
    const out = await session.run({ [inputName]: new ort.Tensor('float32', Float32Array.from(input.data), input.shape) });
    t.same(out.logits!.dims, fixture.outputs.logits!.shape);
    closeTo(t, out.logits!.data as Float32Array, fixture.outputs.logits!.data, 1e-4, `${name} logits vs PyTorch`);
  }
});
