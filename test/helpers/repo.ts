// Builds small model repositories in a temp folder, so server tests own their fixtures.
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel } from '../../dist/onnx/builder.js';
import { onnx, writeModel } from '../../dist/onnx/model-io.js';

/**
 * y = x W (x [-1, 2], W [2, 3]) with W in `data` beside the model file, after `offset` bytes of
 * padding: the external data PyTorch and onnx.save write for large models (model.onnx.data).
 * Returns W row-major.
 */
export function externalWeightsModel(dir: string, file: string, data: string, weights: ArrayLike<number> = [0.5, -1, 2, 1.5, 0.25, -0.75], offset = 0): number[] {
  const model = buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: [-1, 2] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: [-1, 3] }],
    nodes: [{ op: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] }],
    initializers: [{ name: 'w', datatype: 'FP32', dims: [2, 3], values: Array.from(weights) }],
  });
  const w = model.graph!.initializer![0]!;
  w.rawData = new Uint8Array(0);
  w.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
  w.externalData = [
    onnx.StringStringEntryProto.create({ key: 'location', value: data }),
    ...(offset > 0 ? [onnx.StringStringEntryProto.create({ key: 'offset', value: String(offset) })] : []),
    onnx.StringStringEntryProto.create({ key: 'length', value: '24' }),
  ];
  writeModel(model, join(dir, file));
  writeFileSync(join(dir, data), Buffer.concat([Buffer.alloc(offset, 7), Buffer.from(Float32Array.from(weights).buffer)]));
  return Array.from(weights);
}

/** y = x * scale + offset over [-1, 4] FP32; scale/offset tell versions apart. */
export function affineModel(scale: number, offset: number, width = 4) {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', width] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', width] }],
    nodes: [
      { op: 'Mul', inputs: ['x', 'scale'], outputs: ['scaled'] },
      { op: 'Add', inputs: ['scaled', 'offset'], outputs: ['y'] },
    ],
    initializers: [
      { name: 'scale', datatype: 'FP32', dims: [], values: [scale] },
      { name: 'offset', datatype: 'FP32', dims: [], values: [offset] },
    ],
  });
}

/** y = x * scale over [-1, -1] FP32: rows and a length each request chooses (a sequence model's shape). */
export function sequenceModel(scale: number) {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 'length'] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 'length'] }],
    nodes: [{ op: 'Mul', inputs: ['x', 'scale'], outputs: ['y'] }],
    initializers: [{ name: 'scale', datatype: 'FP32', dims: [], values: [scale] }],
  });
}

/**
 * y = x + [1, 2, 3] over x of [-1, -1]: runs at length 1 (broadcast) and 3, and refuses any other
 * length, as a model with a fixed positional table refuses sequences longer than it.
 */
export function fixedLengthModel() {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 'length'] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 3] }],
    nodes: [{ op: 'Add', inputs: ['x', 'table'], outputs: ['y'] }],
    initializers: [{ name: 'table', datatype: 'FP32', dims: [3], values: [1, 2, 3] }],
  });
}

/**
 * A GRU over x [batch, length, 2] (hidden size 3): h [batch, 1, 3], the last hidden state.
 * onnxruntime aborts the whole process (std::terminate) when such a model runs a sequence of length 0.
 */
export function gruModel() {
  const hidden = 3;
  const width = 2;
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 'length', width] }],
    outputs: [{ name: 'h', datatype: 'FP32', dims: ['batch', 1, hidden] }],
    nodes: [
      { op: 'Transpose', inputs: ['x'], outputs: ['steps'], attributes: { perm: [1, 0, 2] } },
      { op: 'GRU', inputs: ['steps', 'W', 'R'], outputs: ['', 'last'], attributes: { hidden_size: hidden } },
      { op: 'Transpose', inputs: ['last'], outputs: ['h'], attributes: { perm: [1, 0, 2] } },
    ],
    initializers: [
      { name: 'W', datatype: 'FP32', dims: [1, 3 * hidden, width], values: Array.from({ length: 3 * hidden * width }, (_, i) => ((i % 7) - 3) / 10) },
      { name: 'R', datatype: 'FP32', dims: [1, 3 * hidden, hidden], values: Array.from({ length: 3 * hidden * hidden }, (_, i) => ((i % 5) - 2) / 10) },
    ],
  });
}

/** Two inputs, two outputs: sum = a + b (FP32), count = ReduceSum-free int64 passthrough of n. */
export function pairModel() {
  return buildModel({
    inputs: [
      { name: 'a', datatype: 'FP32', dims: ['batch', 3] },
      { name: 'n', datatype: 'INT64', dims: ['batch', 2] },
    ],
    outputs: [
      { name: 'sum', datatype: 'FP32', dims: ['batch', 3] },
      { name: 'twice', datatype: 'INT64', dims: ['batch', 2] },
    ],
    nodes: [
      { op: 'Add', inputs: ['a', 'a'], outputs: ['sum'] },
      { op: 'Add', inputs: ['n', 'n'], outputs: ['twice'] },
    ],
  });
}

/**
 * hits = the [row, column] of every x > 0.5 (NonZero, one row per hit, INT64), y = x + 1: every
 * dim dynamic first, as a batching model's are, but `hits` has a row per hit, not per batch row.
 */
export function hitsModel() {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 4] }],
    outputs: [
      { name: 'hits', datatype: 'INT64', dims: ['count', 2] },
      { name: 'y', datatype: 'FP32', dims: ['batch', 4] },
    ],
    nodes: [
      { op: 'Greater', inputs: ['x', 'half'], outputs: ['over'] },
      { op: 'NonZero', inputs: ['over'], outputs: ['where'] },
      { op: 'Transpose', inputs: ['where'], outputs: ['hits'], attributes: { perm: [1, 0] } },
      { op: 'Add', inputs: ['x', 'one'], outputs: ['y'] },
    ],
    initializers: [
      { name: 'half', datatype: 'FP32', dims: [], values: [0.5] },
      { name: 'one', datatype: 'FP32', dims: [], values: [1] },
    ],
  });
}

/** total = the column sums of x [batch, 4]: an answer of 4 values, whatever the rows. */
export function totalModel() {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 4] }],
    outputs: [{ name: 'total', datatype: 'FP32', dims: [4] }],
    nodes: [{ op: 'ReduceSum', inputs: ['x', 'rows'], outputs: ['total'], attributes: { keepdims: 0 } }],
    initializers: [{ name: 'rows', datatype: 'INT64', dims: [1], values: [0] }],
  });
}

/**
 * blank = the index of every row of x [batch, 3] that sums to 0, one row each ([count, 1], INT64).
 * On zeros (the warm-up's inputs) that is every row, so it looks like a batching model at load;
 * on other rows it has fewer rows than its batch.
 */
export function blankRowsModel() {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 3] }],
    outputs: [{ name: 'blank', datatype: 'INT64', dims: ['count', 1] }],
    nodes: [
      { op: 'ReduceSum', inputs: ['x', 'columns'], outputs: ['sums'], attributes: { keepdims: 0 } },
      { op: 'Equal', inputs: ['sums', 'zero'], outputs: ['empty'] },
      { op: 'NonZero', inputs: ['empty'], outputs: ['where'] },
      { op: 'Transpose', inputs: ['where'], outputs: ['blank'], attributes: { perm: [1, 0] } },
    ],
    initializers: [
      { name: 'columns', datatype: 'INT64', dims: [1], values: [1] },
      { name: 'zero', datatype: 'FP32', dims: [], values: [0] },
    ],
  });
}

/**
 * A classifier as skl2onnx exports one by default: LinearClassifier (3 classes over 4 features,
 * softmax) gives `label` and `probability_tensor`, and ZipMap turns the probabilities into
 * `output_probability`, a sequence of {class: probability} maps. `zipMap: false` stops at the
 * tensor, as skl2onnx's `options={'zipmap': False}` does. `sequence`: an extra output `rows`, a
 * sequence of the input's rows (SplitToSequence), which no tensor stands for.
 */
export function zipMapClassifierModel(options: { zipMap?: boolean; sequence?: boolean } = {}) {
  const zipMap = options.zipMap ?? true;
  const outputs: { name: string; datatype: 'INT64' | 'FP32'; dims: (string | number)[] }[] = [{ name: 'label', datatype: 'INT64', dims: ['N'] }];
  outputs.push(zipMap ? { name: 'output_probability', datatype: 'FP32', dims: [] } : { name: 'probability_tensor', datatype: 'FP32', dims: ['N', 3] });
  if (options.sequence) outputs.push({ name: 'rows', datatype: 'FP32', dims: [] });
  const model = buildModel({
    inputs: [{ name: 'float_input', datatype: 'FP32', dims: ['N', 4] }],
    outputs,
    nodes: [
      { op: 'LinearClassifier', domain: 'ai.onnx.ml', inputs: ['float_input'], outputs: ['label', 'probability_tensor'], attributes: {
        classlabels_ints: [0, 1, 2], coefficients: { floats: [0.5, -0.2, 0.1, 0.3, -0.4, 0.2, 0.6, -0.1, 0.05, 0.1, -0.3, 0.2] },
        intercepts: { floats: [0.1, -0.1, 0] }, multi_class: 1, post_transform: 'SOFTMAX',
      } },
      ...(zipMap ? [{ op: 'ZipMap', domain: 'ai.onnx.ml', inputs: ['probability_tensor'], outputs: ['output_probability'], attributes: { classlabels_int64s: [0, 1, 2] } }] : []),
      ...(options.sequence ? [{ op: 'SplitToSequence', inputs: ['float_input'], outputs: ['rows'], attributes: { keepdims: 0 } }] : []),
    ],
  });
  model.opsetImport.push({ domain: 'ai.onnx.ml', version: 1 } as (typeof model.opsetImport)[number]);
  for (const value of model.graph!.output!) {
    if (value.name === 'output_probability') value.type = { sequenceType: { elemType: { mapType: { keyType: 7, valueType: { tensorType: { elemType: 1 } } } } } };
    if (value.name === 'rows') value.type = { sequenceType: { elemType: { tensorType: { elemType: 1 } } } };
  }
  return model;
}

/** score [batch, 1] = a LabelEncoder's value for each text [batch, 1] (BYTES in): good 0.9, bad 0.1, meh 0.5, else 0.3. */
export function textScoreModel() {
  const model = buildModel({
    inputs: [{ name: 'text', datatype: 'BYTES', dims: ['N', 1] }],
    outputs: [{ name: 'score', datatype: 'FP32', dims: ['N', 1] }],
    nodes: [{ op: 'LabelEncoder', domain: 'ai.onnx.ml', inputs: ['text'], outputs: ['score'], attributes: { values_floats: { floats: [0.9, 0.1, 0.5] }, default_float: { float: 0.3 } } }],
  });
  model.opsetImport.push({ domain: 'ai.onnx.ml', version: 2 } as (typeof model.opsetImport)[number]);
  const keys = onnx.AttributeProto.create({ name: 'keys_strings', type: onnx.AttributeProto.AttributeType.STRINGS, strings: ['good', 'bad', 'meh'].map((k) => new TextEncoder().encode(k)) });
  model.graph!.node![0]!.attribute!.push(keys);
  return model;
}

/** e = the rows of `table` that `ids` [batch, 4] name: table row i holds i, i + 0.5, ... (`width` values). */
export function embeddingModel(rows = 1024, width = 16) {
  const table = new Float32Array(rows * width);
  for (let i = 0; i < rows; i++) for (let j = 0; j < width; j++) table[i * width + j] = i + j / 2;
  return buildModel({
    inputs: [{ name: 'ids', datatype: 'INT64', dims: ['batch', 4] }],
    outputs: [{ name: 'e', datatype: 'FP32', dims: ['batch', 4, width] }],
    nodes: [{ op: 'Gather', inputs: ['table', 'ids'], outputs: ['e'], attributes: { axis: 0 } }],
    initializers: [{ name: 'table', datatype: 'FP32', dims: [rows, width], values: table }],
  });
}

export interface TempRepo {
  dir: string;
  addVersion(model: string, version: number, proto: ReturnType<typeof buildModel>): void;
  writeConfig(model: string, config: unknown): void;
  remove(): void;
}

export function tempRepo(): TempRepo {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-repo-'));
  return {
    dir,
    addVersion(model, version, proto) {
      mkdirSync(join(dir, model, String(version)), { recursive: true });
      writeModel(proto, join(dir, model, String(version), 'model.onnx'));
    },
    writeConfig(model, config) {
      mkdirSync(join(dir, model), { recursive: true });
      writeFileSync(join(dir, model, 'config.json'), JSON.stringify(config));
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * y = x · I · I · ... (`depth` MatMuls by a width x width identity): the output equals the input,
 * but every call really does depth·width² multiply-adds per row, so requests queue up behind it.
 */
export function slowModel(width = 512, depth = 160) {
  const identity = new Float32Array(width * width);
  for (let i = 0; i < width; i++) identity[i * width + i] = 1;
  const nodes = Array.from({ length: depth }, (_, i) => ({
    op: 'MatMul',
    inputs: [i === 0 ? 'x' : `h${i}`, 'w'],
    outputs: [i === depth - 1 ? 'y' : `h${i + 1}`],
  }));
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', width] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', width] }],
    nodes,
    initializers: [{ name: 'w', datatype: 'FP32', dims: [width, width], values: identity }],
  });
}

/** Polls a condition once per event-loop turn (no timers): for state the test cannot await. */
export async function until(condition: () => boolean | Promise<boolean>, what: string, limitMs = 20_000): Promise<void> {
  const deadline = performance.now() + limitMs;
  while (performance.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`condition never held within ${limitMs} ms: ${what}`);
}

/**
 * Holds every batch a model version dispatches until the test releases it, so "one running, one
 * queued" is a state the test sets up rather than a window it races. Test instrumentation only:
 * it wraps the version's executor on this thread (the batcher still counts the held batch as in
 * flight, exactly as it would a slow one). `held` counts batches that reached the gate.
 */
export function holdExecution(mv: { execution: unknown }) {
  const executor = mv.execution as { execute: (...args: unknown[]) => Promise<unknown> };
  const original = executor.execute;
  if (typeof original !== 'function') throw new Error('holdExecution: the version has no executor to hold');
  let open!: () => void;
  const gate = new Promise<void>((resolve) => { open = resolve; });
  let held = 0;
  executor.execute = async function (this: unknown, ...args: unknown[]) {
    held++;
    await gate;
    return original.apply(this, args);
  };
  return {
    get held() { return held; },
    /** Lets held and later batches run; the executor is itself again from here on. */
    release() { executor.execute = original; open(); },
  };
}
