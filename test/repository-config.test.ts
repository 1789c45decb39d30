import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UmbraError } from '../dist/errors.js';
import type { OnnxSignature, OnnxTensorInfo } from '../dist/onnx/model-io.js';
import { parsePbtxt, asArray } from '../dist/repository/pbtxt.js';
import {
  DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_QUEUE_DELAY_US, readModelConfig, resolveModelConfig, toTritonConfig,
} from '../dist/repository/config.js';
import {
  listModels, listVersions, modelDir, parseVersion, selectVersions, validateModelName,
} from '../dist/repository/layout.js';

const tmpRoot = mkdtempSync(join(tmpdir(), 'umbra-config-'));
t.teardown(() => rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;

/** A fresh model folder named `name` holding the given config files. */
function modelFolder(name: string, files: Record<string, string> = {}): string {
  const dir = join(tmpRoot, String(dirCount++), name);
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
  return dir;
}

const tensor = (name: string, dims: number[], datatype: OnnxTensorInfo['datatype'] = 'FP32'): OnnxTensorInfo => ({ name, datatype, dims, shapeKnown: true });
const signature = (inputs: OnnxTensorInfo[], outputs: OnnxTensorInfo[]): OnnxSignature => ({ inputs, outputs, outputNotes: [], opset: 13, irVersion: 8, producer: 'test' });

/** Two batched inputs (like models/repository/pair). */
const PAIR_SIG = signature(
  [tensor('a', [-1, 4]), tensor('b', [-1, 4])],
  [tensor('sum', [-1, 4]), tensor('scaled', [-1, 3])],
);
const FIXED_SIG = signature([tensor('x', [1, 3, 8, 8])], [tensor('y', [1, 10])]);

function rejects(t: Test, fn: () => unknown, pattern: RegExp, code = 'INVALID_ARGUMENT'): void {
  try {
    fn();
    t.fail(`expected an error matching ${pattern}`);
  } catch (err) {
    t.type(err, UmbraError);
    t.equal((err as UmbraError).code, code);
    t.match((err as Error).message, pattern);
  }
}

t.test('pbtxt: messages, repeated fields, lists, strings, numbers, enums, comments', async (t) => {
  const msg = parsePbtxt(`
    # leading comment
    name: "m" 'x'   # adjacent strings concatenate
    max_batch_size: 8
    input [ { name: "a", data_type: TYPE_FP32, dims: [ 4, -1 ] }, { name: "b" data_type: TYPE_INT64 dims: 2 } ]
    output { name: "out\\n\\"q\\"" dims: [] }
    output < name: 'second' >
    dynamic_batching: { max_queue_delay_microseconds: 100; preferred_batch_size: 4 preferred_batch_size: 8 }
    flags: true
    off: false
    ratio: -1.5e-3
    hex: 0x1F
    tail: 2.5f
  `);
  t.equal(msg.name, 'mx');
  t.equal(msg.max_batch_size, 8);
  const inputs = asArray(msg.input) as Record<string, unknown>[];
  t.same(inputs.map((i) => i.name), ['a', 'b']);
  t.same(inputs[0]!.dims, [4, -1]);
  t.equal(inputs[0]!.data_type, 'TYPE_FP32');
  t.same(asArray(inputs[1]!.dims), [2]);
  const outputs = msg.output as Record<string, unknown>[];
  t.equal(outputs.length, 2);
  t.equal(outputs[0]!.name, 'out\n"q"');
  t.same(outputs[0]!.dims, []);
  t.equal(outputs[1]!.name, 'second');
  t.same((msg.dynamic_batching as Record<string, unknown>).preferred_batch_size, [4, 8]);
  t.equal(msg.flags, true);
  t.equal(msg.off, false);
  t.equal(msg.ratio, -0.0015);
  t.equal(msg.hex, 31);
  t.equal(msg.tail, 2.5);
});

t.test('pbtxt: syntax errors name the file, line and column', async (t) => {
  const cases: [string, RegExp][] = [
    ['name: "m"\nmax_batch_size 8\n', /cfg\.pbtxt:2:16: expected ":" or "\{" after field max_batch_size but found "8"/],
    ['input {\n  name: "a"\n', /cfg\.pbtxt:3:1: expected a field name or "\}" but found the end of the file/],
    ['name: "abc\n', /cfg\.pbtxt:1:7: unterminated string/],
    ['dims: [1, 2\nname: "x"', /cfg\.pbtxt:2:1: expected "\]" but found "name"/],
    ['a: 1\n}\n', /cfg\.pbtxt:2:1: expected a field name but found "\}"/],
    ['a: @', /cfg\.pbtxt:1:4: unexpected character "@"/],
    ['a: 1.2.3', /cfg\.pbtxt:1:4: expected a number but found "1\.2\.3"/],
    ['a: "\\q"', /cfg\.pbtxt:1:\d+: unknown escape \\q/],
  ];
  for (const [text, pattern] of cases) rejects(t, () => parsePbtxt(text, 'cfg.pbtxt'), pattern);
});

t.test('config.json: every field is read and converted', async (t) => {
  const dir = modelFolder('pair', {
    'config.json': JSON.stringify({
      name: 'pair',
      platform: 'onnxruntime_onnx',
      backend: 'native',
      max_batch_size: 16,
      input: [{ name: 'a', data_type: 'TYPE_FP32', dims: [4] }, { name: 'b', data_type: 'TYPE_FP32', dims: ['-1'] }],
      output: [{ name: 'scaled', data_type: 'TYPE_FP32', dims: [3] }],
      dynamic_batching: {
        max_queue_delay_microseconds: '250',
        preferred_batch_size: [8, 4, 8],
        priority_levels: 3,
        default_priority_level: 2,
        default_queue_policy: { max_queue_size: 100, default_timeout_microseconds: 5000 },
      },
      version_policy: { specific: { versions: [3, 1] } },
      instance_group: [{ count: 2, kind: 'KIND_CPU' }, { kind: 'KIND_CPU' }],
      execution_providers: ['cuda', 'cpu'],
      parameters: { threads: { string_value: '2' }, mode: 'fast' },
      default_model_filename: 'net.onnx',
      model_warmup: [],
    }),
  });
  const config = resolveModelConfig(dir, PAIR_SIG);
  t.equal(config.name, 'pair');
  t.equal(config.backend, 'native');
  t.equal(config.maxBatchSize, 16);
  t.same(config.inputs, [{ name: 'a', datatype: 'FP32', dims: [4] }, { name: 'b', datatype: 'FP32', dims: [4] }], '-1 in the config takes the fixed ONNX dim');
  t.same(config.outputs, [{ name: 'scaled', datatype: 'FP32', dims: [3] }], 'a subset of outputs may be declared');
  t.same(config.dynamicBatching, {
    enabled: true, maxQueueDelayUs: 250, preferredBatchSizes: [4, 8], maxQueueSize: 100, maxQueueSizeSet: true, queueBudgetMs: 0, defaultTimeoutUs: 5000, priorityLevels: 3, defaultPriorityLevel: 2,
  });
  t.same(config.versionPolicy, { kind: 'specific', versions: [1, 3] });
  t.equal(config.instanceCount, 3);
  t.same(config.executionProviders, ['cuda', 'cpu']);
  t.same(config.parameters, { threads: '2', mode: 'fast' });
  t.equal(config.modelFilename, 'net.onnx');
  t.equal(config.source, 'config.json');
  t.same(config.ignoredFields, ['model_warmup']);
  t.same(config.signature(), { name: 'pair', maxBatchSize: 16, inputs: config.inputs, outputs: config.outputs });
  t.notOk(Object.keys(config).includes('signature'), 'signature() is not enumerable');
  t.same(structuredClone(config).inputs, config.inputs, 'the config structured-clones for worker threads');
  const triton = toTritonConfig(config);
  t.equal(triton.max_batch_size, 16);
  t.same(triton.version_policy, { specific: { versions: [1, 3] } });
});

t.test('config.json: queue fields at the top of dynamic_batching and JSON syntax errors', async (t) => {
  const dir = modelFolder('pair', { 'config.json': JSON.stringify({ max_batch_size: 4, dynamic_batching: { max_queue_size: 7, default_timeout_microseconds: 9 } }) });
  const db = resolveModelConfig(dir, PAIR_SIG).dynamicBatching;
  t.equal(db.maxQueueSize, 7);
  t.equal(db.defaultTimeoutUs, 9);
  const bad = modelFolder('pair', { 'config.json': '{\n  "max_batch_size": 4,\n  oops\n}' });
  rejects(t, () => readModelConfig(bad), /config\.json:3: invalid JSON/);
});

t.test('config.pbtxt is read when there is no config.json; config.json wins', async (t) => {
  const pbtxt = `name: "pair"
max_batch_size: 8
input [ { name: "a", data_type: TYPE_FP32, dims: [ 4 ] }, { name: "b", data_type: TYPE_FP32, dims: [ 4 ] } ]
output { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] }
dynamic_batching {
  max_queue_delay_microseconds: 200
  preferred_batch_size: [ 4, 8 ]
  default_queue_policy { max_queue_size: 32 default_timeout_microseconds: 1000 }
}
version_policy: { latest: { num_versions: 2 } }
instance_group [ { count: 2, kind: KIND_GPU } ]
parameters { key: "intra_op_threads" value: { string_value: "1" } }
parameters { key: "mode" value: { string_value: "x" } }
`;
  const config = resolveModelConfig(modelFolder('pair', { 'config.pbtxt': pbtxt }), PAIR_SIG);
  t.equal(config.source, 'config.pbtxt');
  t.equal(config.maxBatchSize, 8);
  t.same(config.outputs.map((o) => o.name), ['sum']);
  t.same(config.dynamicBatching, {
    enabled: true, maxQueueDelayUs: 200, preferredBatchSizes: [4, 8], maxQueueSize: 32, maxQueueSizeSet: true, queueBudgetMs: 0, defaultTimeoutUs: 1000, priorityLevels: 0, defaultPriorityLevel: 0,
  });
  t.same(config.versionPolicy, { kind: 'latest', numVersions: 2 });
  t.same(config.instanceGroups, [{ count: 2, kind: 'KIND_GPU' }]);
  t.same(config.executionProviders, ['cuda', 'cpu'], 'KIND_GPU without execution_providers means CUDA then CPU');
  t.same(config.parameters, { intra_op_threads: '1', mode: 'x' });

  const both = modelFolder('pair', { 'config.json': '{"max_batch_size": 2}', 'config.pbtxt': 'max_batch_size: 8' });
  t.equal(resolveModelConfig(both, PAIR_SIG).maxBatchSize, 2);
  rejects(t, () => resolveModelConfig(modelFolder('pair', { 'config.pbtxt': 'max_batch_size: 8\ninput [ { name: "a" ' }), PAIR_SIG), /config\.pbtxt:2:21: expected a field name or "\}"/);
});

t.test('no config: derived from the ONNX model with Umbra defaults', async (t) => {
  const batched = resolveModelConfig(modelFolder('pair'), PAIR_SIG);
  t.equal(batched.source, 'derived');
  t.equal(batched.configPath, null);
  t.equal(batched.maxBatchSize, DEFAULT_MAX_BATCH_SIZE);
  t.equal(DEFAULT_MAX_BATCH_SIZE, 64);
  t.same(batched.inputs, [{ name: 'a', datatype: 'FP32', dims: [4] }, { name: 'b', datatype: 'FP32', dims: [4] }]);
  t.same(batched.outputs, [{ name: 'sum', datatype: 'FP32', dims: [4] }, { name: 'scaled', datatype: 'FP32', dims: [3] }]);
  t.same(batched.dynamicBatching, {
    enabled: true, maxQueueDelayUs: DEFAULT_MAX_QUEUE_DELAY_US, preferredBatchSizes: [], maxQueueSize: 0, maxQueueSizeSet: false, queueBudgetMs: 0, defaultTimeoutUs: 0, priorityLevels: 0, defaultPriorityLevel: 0,
  });
  t.equal(DEFAULT_MAX_QUEUE_DELAY_US, 0);
  t.same(batched.versionPolicy, { kind: 'latest', numVersions: 1 });
  // No instance_group: every worker of the pool may run a batch (the batcher's maxInFlight is the pool size).
  t.equal(batched.instanceCount, 0);
  t.same(batched.instanceGroups, []);
  t.equal(batched.backend, 'onnxruntime');
  t.same(batched.executionProviders, ['cpu']);
  t.same(batched.parameters, {});
  t.equal(batched.modelFilename, 'model.onnx');

  const fixed = resolveModelConfig(modelFolder('fixed'), FIXED_SIG);
  t.equal(fixed.maxBatchSize, 0, 'a fixed first dim means no batching');
  t.same(fixed.inputs, [{ name: 'x', datatype: 'FP32', dims: [1, 3, 8, 8] }]);
  t.equal(fixed.dynamicBatching.enabled, false);

  const mixed = signature([tensor('a', [-1, 4]), tensor('n', [1])], [tensor('y', [-1])]);
  t.equal(resolveModelConfig(modelFolder('mixed'), mixed).maxBatchSize, 0, 'every input must have a dynamic first dim');
  const scalarOut = signature([tensor('a', [-1, 4])], [tensor('s', [])]);
  t.equal(resolveModelConfig(modelFolder('scalar'), scalarOut).maxBatchSize, 0, 'a scalar output cannot be batched');

  const noShape = signature([{ name: 'a', datatype: 'FP32', dims: [], shapeKnown: false }], [tensor('y', [-1])]);
  rejects(t, () => resolveModelConfig(modelFolder('noshape'), noShape), /input: the ONNX input "a" declares no shape/);
  const declared = resolveModelConfig(modelFolder('noshape', { 'config.json': '{"max_batch_size": 0, "input": [{"name": "a", "data_type": "TYPE_FP32", "dims": [2, 2]}]}' }), noShape);
  t.same(declared.inputs[0]!.dims, [2, 2], 'the config supplies dims the model lacks');
});

t.test('explicit settings: batching off, max_batch_size 0 keeps the batch dim', async (t) => {
  const off = resolveModelConfig(modelFolder('pair', { 'config.json': '{"dynamic_batching": false}' }), PAIR_SIG);
  t.equal(off.maxBatchSize, 64);
  t.equal(off.dynamicBatching.enabled, false);
  const offPb = resolveModelConfig(modelFolder('pair', { 'config.pbtxt': 'dynamic_batching { enabled: false }' }), PAIR_SIG);
  t.equal(offPb.dynamicBatching.enabled, false);
  const zero = resolveModelConfig(modelFolder('pair', { 'config.json': '{"max_batch_size": 0}' }), PAIR_SIG);
  t.same(zero.inputs[0]!.dims, [-1, 4]);
  t.equal(zero.dynamicBatching.enabled, false);
  const prio = resolveModelConfig(modelFolder('pair', { 'config.json': '{"dynamic_batching": {"priority_levels": 4}}' }), PAIR_SIG);
  t.equal(prio.dynamicBatching.defaultPriorityLevel, 4, 'default priority is the lowest level');
});

t.test('invalid values are INVALID_ARGUMENT naming the file and the field', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ max_batch_size: -1 }, /config\.json: expected an integer in 0\.\.1048576 for max_batch_size but received number -1/],
    [{ max_batch_size: 'many' }, /for max_batch_size but received the string "many"/],
    [{ name: 'other' }, /name: "other" must match the model folder name "pair"/],
    [{ platform: 'tensorrt_plan' }, /expected "onnxruntime_onnx" .* for platform/],
    [{ backend: 'tvm' }, /expected one of onnxruntime, native, auto for backend but received the string "tvm"/],
    [{ maxBatchSize: 4 }, /unknown field "maxBatchSize" \(did you mean max_batch_size\?\)/],
    [{ sequence_batching: {} }, /sequence_batching: is not supported by Umbra/],
    [{ dynamic_batching: { max_queue_delay_microseconds: 1.5 } }, /for dynamic_batching\.max_queue_delay_microseconds but received number 1\.5/],
    [{ max_batch_size: 8, dynamic_batching: { preferred_batch_size: [16] } }, /expected an integer in 1\.\.8 for dynamic_batching\.preferred_batch_size\[0\]/],
    [{ dynamic_batching: { priority_levels: 2, default_priority_level: 3 } }, /in 1\.\.2 for dynamic_batching\.default_priority_level/],
    [{ dynamic_batching: { default_queue_policy: { max_queue_size: -5 } } }, /for dynamic_batching\.default_queue_policy\.max_queue_size/],
    [{ dynamic_batching: { bogus: 1 } }, /dynamic_batching: unknown field "bogus"/],
    [{ version_policy: { latest: { num_versions: 0 } } }, /for version_policy\.latest\.num_versions but received number 0/],
    [{ version_policy: { latest: {}, all: {} } }, /expected exactly one of latest, all, specific for version_policy/],
    [{ version_policy: { specific: { versions: [] } } }, /expected at least one version for version_policy\.specific\.versions/],
    [{ instance_group: [{ kind: 'KIND_TPU' }] }, /for instance_group\[0\]\.kind but received the string "KIND_TPU"/],
    [{ instance_group: [{ count: 0 }] }, /for instance_group\[0\]\.count but received number 0/],
    [{ execution_providers: ['cpu', 'rocm'] }, /for execution_providers\[1\] but received the string "rocm"/],
    [{ parameters: { a: { int_value: 1 } } }, /parameters\.a: unknown field "int_value"/],
    [{ default_model_filename: '../x.onnx' }, /expected a plain file name for default_model_filename/],
    [{ parameters: { queue_budget_ms: 'soon' } }, /expected a number of milliseconds in \(0, 3600000\] for parameters\.queue_budget_ms but received the string "soon"/],
    [{ parameters: { queue_budget_ms: '0' } }, /for parameters\.queue_budget_ms/],
    [[1, 2], /expected an object for the whole config but received an array of length 2/],
  ];
  for (const [raw, pattern] of cases) {
    const dir = modelFolder('pair', { 'config.json': JSON.stringify(raw) });
    rejects(t, () => resolveModelConfig(dir, PAIR_SIG), pattern);
  }
});

t.test('declared inputs and outputs must agree with the ONNX model', async (t) => {
  const io = (input: unknown[], extra: Record<string, unknown> = {}): string => JSON.stringify({ max_batch_size: 8, input, ...extra });
  const a = { name: 'a', data_type: 'TYPE_FP32', dims: [4] };
  const b = { name: 'b', data_type: 'TYPE_FP32', dims: [4] };
  const cases: [string, RegExp][] = [
    [io([a, { ...b, name: 'c' }]), /input\[1\]\.name: "c" is not an input of the ONNX model \(its inputs: a, b\)/],
    [io([a]), /input: the ONNX model also needs input\(s\) b; declare every input or none/],
    [io([a, { ...b, data_type: 'TYPE_INT64' }]), /input\[1\]\.data_type: is TYPE_INT64 but the ONNX input "b" is TYPE_FP32/],
    [io([a, { ...b, dims: [5] }]), /input\[1\]\.dims: \[5\] does not match the ONNX model's "b" \[4\] \(without the batch dim, as max_batch_size > 0\)/],
    [io([a, { ...b, dims: [1, 4] }]), /input\[1\]\.dims: \[1, 4\] has rank 2 but the ONNX model's "b" is \[4\]/],
    [io([a, a]), /input\[1\]\.name: "a" is declared twice/],
    [io([a, { ...b, data_type: 'TYPE_FLOAT' }]), /expected one of TYPE_BOOL, .* for input\[1\]\.data_type/],
    [io([a, { ...b, dims: [0] }]), /expected dims of -1 or >= 1 for input\[1\]\.dims/],
    [io([a, { ...b, reshape: { shape: [2, 2] } }]), /input\[1\]\.reshape: is not supported by Umbra/],
    [io([a, b], { output: [{ name: 'scaled', data_type: 'TYPE_FP32', dims: [4] }] }), /output\[0\]\.dims: \[4\] does not match the ONNX model's "scaled" \[3\]/],
    [io([a, b], { output: [{ name: 'logits', data_type: 'TYPE_FP32', dims: [3] }] }), /"logits" is not an output of the ONNX model \(its outputs: sum, scaled\)/],
  ];
  for (const [json, pattern] of cases) rejects(t, () => resolveModelConfig(modelFolder('pair', { 'config.json': json }), PAIR_SIG), pattern);

  rejects(t, () => resolveModelConfig(modelFolder('fixed', { 'config.json': '{"max_batch_size": 4}' }), FIXED_SIG),
    /max_batch_size: is 4 but the ONNX input "x" has no dynamic first \(batch\) dim/);
  rejects(t, () => resolveModelConfig(modelFolder('fixed', { 'config.json': '{"dynamic_batching": {}}' }), FIXED_SIG),
    /dynamic_batching: needs max_batch_size > 0/);
  const asDeclared = resolveModelConfig(modelFolder('fixed', { 'config.pbtxt': 'max_batch_size: 0 input { name: "x" data_type: TYPE_FP32 dims: [1, 3, -1, 8] }' }), FIXED_SIG);
  t.same(asDeclared.inputs[0]!.dims, [1, 3, 8, 8]);
  const strings = signature([tensor('text', [-1], 'BYTES')], [tensor('n', [-1], 'INT64')]);
  const str = resolveModelConfig(modelFolder('str', { 'config.json': '{"input": [{"name": "text", "data_type": "TYPE_STRING", "dims": []}]}' }), strings);
  t.same(str.inputs, [{ name: 'text', datatype: 'BYTES', dims: [] }], 'TYPE_STRING is the protocol BYTES');
});

t.test('version policies select versions', async (t) => {
  const versions = [3, 1, 10, 2];
  t.same(selectVersions(versions, { kind: 'latest', numVersions: 1 }), [10]);
  t.same(selectVersions(versions, { kind: 'latest', numVersions: 2 }), [3, 10]);
  t.same(selectVersions(versions, { kind: 'latest', numVersions: 9 }), [1, 2, 3, 10]);
  t.same(selectVersions(versions, { kind: 'all' }), [1, 2, 3, 10]);
  t.same(selectVersions(versions, { kind: 'specific', versions: [2, 7, 10] }), [2, 10], 'absent versions are left out');
  t.same(selectVersions([], { kind: 'latest', numVersions: 1 }), []);
});

t.test('names and versions are validated with 4xx errors', async (t) => {
  for (const good of ['digits', 'a', 'Model_1.v2-final', '9lives', 'x'.repeat(128)]) t.equal(validateModelName(good), good);
  for (const bad of ['', '..', 'a..b', '.hidden', '-dash', 'a/b', 'a\\b', 'sp ace', 'x'.repeat(129), 'ü', 42, null]) {
    rejects(t, () => validateModelName(bad), /expected a model name .* for the model name but received/, 'INVALID_INPUT');
  }
  t.equal(parseVersion('1'), 1);
  t.equal(parseVersion('42'), 42);
  t.equal(parseVersion(7), 7);
  for (const bad of ['0', '-1', '01', '1.5', 'latest', '', '99999999999999999', 0, 1.5]) {
    rejects(t, () => parseVersion(bad), /expected a positive integer for the model version/, 'INVALID_INPUT');
  }
  rejects(t, () => modelDir('/repo', '../etc'), /model name/, 'INVALID_INPUT');
});

t.test('repository layout: models and their versions', async (t) => {
  const repo = join(tmpRoot, 'repo');
  const touch = (path: string): void => {
    mkdirSync(join(repo, path, '..'), { recursive: true });
    writeFileSync(join(repo, path), 'x');
  };
  touch('beta/1/model.onnx');
  touch('beta/3/model.onnx');
  touch('beta/2/notes.txt');
  touch('beta/01/model.onnx');
  touch('beta/latest/model.onnx');
  touch('beta/config.json');
  touch('alpha/12/model.onnx');
  touch('alpha/7/net.onnx');
  touch('.cache/1/model.onnx');
  touch('bad name/1/model.onnx');
  touch('README.md');
  t.same(listModels(repo), ['alpha', 'beta']);
  t.same(listVersions(repo, 'beta'), [1, 3]);
  t.same(listVersions(repo, 'alpha'), [12]);
  t.same(listVersions(repo, 'alpha', 'net.onnx'), [7]);
  rejects(t, () => listVersions(repo, 'gamma'), /model "gamma" is not in the repository/, 'MODEL_NOT_FOUND');
  rejects(t, () => listModels(join(repo, 'nope')), /is not a folder/);
});

t.test('a Hugging Face export\'s config.json is not a serving config: the config is derived, its id2label names the classes', async (t) => {
  const hf = {
    _name_or_path: 'distilbert-base-uncased-finetuned-sst-2-english', architectures: ['DistilBertForSequenceClassification'], model_type: 'distilbert',
    id2label: { 0: 'NEGATIVE', 1: 'POSITIVE' }, label2id: { NEGATIVE: 0, POSITIVE: 1 }, transformers_version: '4.40.0', vocab_size: 30522,
  };
  const text = signature([tensor('input_ids', [-1, -1], 'INT64'), tensor('attention_mask', [-1, -1], 'INT64')], [tensor('logits', [-1, 2])]);
  const dir = modelFolder('sst2', { 'config.json': JSON.stringify(hf) });
  const file = readModelConfig(dir);
  t.same([file.source, file.raw, file.foreign], ['derived', {}, { path: join(dir, 'config.json'), kind: 'a Hugging Face model config (distilbert)', labels: ['NEGATIVE', 'POSITIVE'] }]);
  const config = resolveModelConfig(dir, text);
  t.same([config.source, config.maxBatchSize, config.outputs[0]!.labels], ['derived', DEFAULT_MAX_BATCH_SIZE, ['NEGATIVE', 'POSITIVE']], 'served as with no config, the logits named');
  t.match(config.configNote, /is a Hugging Face model config \(distilbert\), not a serving config: the model's config is derived from its ONNX graph; its id2label names output "logits"'s 2 classes \(NEGATIVE, POSITIVE\)/);
  // Labels that fit no output (three names, two scores) are left out, saying so.
  const three = resolveModelConfig(modelFolder('sst2', { 'config.json': JSON.stringify({ ...hf, id2label: { 0: 'a', 1: 'b', 2: 'c' } }) }), text);
  t.same([three.outputs[0]!.labels, /fits no output/.test(three.configNote ?? '')], [undefined, true]);
  // A serving config that happens to carry such a field is still a serving config (its errors stand).
  rejects(t, () => resolveModelConfig(modelFolder('sst2', { 'config.json': JSON.stringify({ max_batch_size: 4, model_type: 'bert' }) }), text), /unknown field "model_type"/);
});
