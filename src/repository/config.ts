// Model configuration: Triton's field names read from config.json or config.pbtxt (JSON first),
// checked against the ONNX model, with defaults filled in; with no config file everything is
// derived from the ONNX model.
//
// Umbra defaults that differ from Triton, on purpose:
// - With no max_batch_size, a model whose every input and output has a dynamic first dim is
//   batched with max_batch_size 64 (DEFAULT_MAX_BATCH_SIZE); otherwise 0.
// - Dynamic batching is ON when max_batch_size > 0 unless the config says `enabled: false` (or
//   `"dynamic_batching": false` in JSON); max_queue_delay_microseconds defaults to 0 as in Triton: a batch
//   forms from what queued while the model was busy, and an idle model answers at once.
// - execution_providers defaults to ["cpu"], or ["cuda", "cpu"] when an instance_group is KIND_GPU.
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { liesInside } from '../real-path.js';
import { describeValue, UmbraError } from '../errors.js';
import type { DataType, ModelSignature, TensorSpec } from '../protocol/types.js';
import type { OnnxSignature, OnnxTensorInfo } from '../onnx/model-io.js';
import { DEFAULT_MODEL_FILENAME, DEFAULT_VERSION_POLICY, isValidModelName, type VersionPolicy } from './layout.js';
import { asArray, parsePbtxt } from './pbtxt.js';

export const DEFAULT_MAX_BATCH_SIZE = 64;
export const DEFAULT_MAX_QUEUE_DELAY_US = 0;
export const BACKENDS = ['onnxruntime', 'native', 'auto'] as const;
export type BackendChoice = (typeof BACKENDS)[number];
/** Where the native backend runs: cpu (default), cuda (refused at load without a usable GPU), auto (cuda when usable, else cpu). */
export const NATIVE_DEVICES = ['cpu', 'cuda', 'auto'] as const;
export type NativeDevice = (typeof NATIVE_DEVICES)[number];
/** The native backend's dense arithmetic on a GPU; the CPU kernels compute in fp32. */
export const GPU_PRECISIONS = ['fp32', 'tf32', 'bf16'] as const;
export type GpuPrecision = (typeof GPU_PRECISIONS)[number];
export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'tensorrt'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];
export const INSTANCE_KINDS = ['KIND_AUTO', 'KIND_CPU', 'KIND_GPU', 'KIND_MODEL'] as const;
export type InstanceKind = (typeof INSTANCE_KINDS)[number];
export type ConfigSource = 'config.json' | 'config.pbtxt' | 'derived';

export interface DynamicBatchingConfig {
  enabled: boolean;
  maxQueueDelayUs: number;
  /** Ascending, each in 1..maxBatchSize; empty = no preference. */
  preferredBatchSizes: number[];
  /** 0 = unbounded (Triton's meaning). Used only when maxQueueSizeSet; else the bound is derived at load. */
  maxQueueSize: number;
  /**
   * Whether the config sets max_queue_size. When it does not, the version's bound is derived at
   * load from its measured batch time and queue budget (src/scheduler/options.ts deriveQueueBound).
   */
  maxQueueSizeSet: boolean;
  /** `parameters.queue_budget_ms`: how long an admitted request may wait before it runs; 0 = the default rule. */
  queueBudgetMs: number;
  /** 0 = no timeout. */
  defaultTimeoutUs: number;
  /** 0 = one queue, no priorities. Level 1 is the highest priority. */
  priorityLevels: number;
  /** In 1..priorityLevels when priorities are on (defaults to the lowest, priorityLevels); else 0. */
  defaultPriorityLevel: number;
}

export interface InstanceGroup {
  count: number;
  kind: InstanceKind;
}

export interface ResolvedModelConfig extends ModelSignature {
  name: string;
  maxBatchSize: number;
  /** Dims exclude the batch dim when maxBatchSize > 0. Names match the ONNX graph. */
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  dynamicBatching: DynamicBatchingConfig;
  versionPolicy: VersionPolicy;
  /**
   * Sum of instance_group counts: how many batches of this model may execute at once. 0 when the
   * config has no instance_group: then every worker of the pool may run one.
   */
  instanceCount: number;
  instanceGroups: InstanceGroup[];
  backend: BackendChoice;
  /** The native backend's device (onnxruntime picks its own by executionProviders). */
  device: NativeDevice;
  /** The native backend's dense arithmetic on a GPU (config `precision`; fp32 by default). */
  precision: GpuPrecision;
  executionProviders: ExecutionProvider[];
  parameters: Record<string, string>;
  /** File inside each version folder (Triton's default_model_filename). */
  modelFilename: string;
  source: ConfigSource;
  configPath: string | null;
  /** Triton fields present in the file that Umbra accepts but does not act on (worth a log line). */
  ignoredFields: string[];
  /** One line per graph output that is not a tensor: what is served instead, or that it is not. */
  outputNotes: string[];
  /** About the config file itself where it is not a serving config (a Hugging Face export's). */
  configNote?: string;
  /** Whether max_batch_size came from the model rather than the config file. */
  maxBatchSizeDerived: boolean;
  /** Where a derived max_batch_size is 0: why the model does not batch. */
  batchingReason?: string;
  /** The protocol's view; non-enumerable, so the config still structured-clones and JSON-encodes. */
  signature(): ModelSignature;
}

/** What a config file says before the ONNX model is consulted (all that version selection needs). */
export interface ModelConfigFile {
  source: ConfigSource;
  path: string | null;
  versionPolicy: VersionPolicy;
  modelFilename: string;
  raw: Record<string, unknown>;
  /**
   * A config.json that is another tool's, not a serving config: a Hugging Face export's (what
   * `optimum-cli export onnx` and `transformers` write beside model.onnx). It is not read as one;
   * its id2label names the classes of the output they fit.
   */
  foreign?: { path: string; kind: string; labels?: string[] };
}

/** Fields only a serving config has: a config.json with none of them may be another tool's. */
const SERVING_FIELDS = ['name', 'platform', 'backend', 'max_batch_size', 'input', 'output', 'dynamic_batching', 'instance_group', 'version_policy', 'parameters', 'default_model_filename', 'sequence_batching', 'ensemble_scheduling'];

/** A Hugging Face model config (config.json of a transformers or Optimum export), or undefined. */
function huggingFaceConfig(raw: unknown, path: string): ModelConfigFile['foreign'] {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const obj = raw as Record<string, unknown>;
  const marked = typeof obj.model_type === 'string' || Array.isArray(obj.architectures) || typeof obj.transformers_version === 'string';
  if (!marked || SERVING_FIELDS.some((f) => f in obj)) return undefined;
  const kind = `a Hugging Face model config${typeof obj.model_type === 'string' ? ` (${obj.model_type})` : ''}`;
  // id2label: {"0": "NEGATIVE", "1": "POSITIVE"}: every index from 0, each a name.
  const ids = obj.id2label && typeof obj.id2label === 'object' ? obj.id2label as Record<string, unknown> : undefined;
  const count = ids ? Object.keys(ids).length : 0;
  const labels = Array.from({ length: count }, (_, i) => ids?.[String(i)]);
  const named = count > 0 && labels.every((l) => typeof l === 'string');
  return { path, kind, ...(named ? { labels: labels as string[] } : {}) };
}

const TRITON_TYPES: Record<string, DataType> = {
  TYPE_BOOL: 'BOOL', TYPE_UINT8: 'UINT8', TYPE_UINT16: 'UINT16', TYPE_UINT32: 'UINT32', TYPE_UINT64: 'UINT64',
  TYPE_INT8: 'INT8', TYPE_INT16: 'INT16', TYPE_INT32: 'INT32', TYPE_INT64: 'INT64',
  TYPE_FP16: 'FP16', TYPE_FP32: 'FP32', TYPE_FP64: 'FP64', TYPE_STRING: 'BYTES',
};
const TRITON_TYPE_OF: Record<string, string> = Object.fromEntries(Object.entries(TRITON_TYPES).map(([t, d]) => [d, t]));

const HANDLED_FIELDS = new Set([
  'name', 'platform', 'backend', 'max_batch_size', 'input', 'output', 'dynamic_batching', 'version_policy',
  'instance_group', 'execution_providers', 'parameters', 'default_model_filename', 'device', 'precision',
  // Read by src/traffic (policy and rollout), straight from the file's raw fields.
  'traffic', 'rollout',
]);
const IGNORED_FIELDS = new Set([
  'optimization', 'model_warmup', 'metric_tags', 'response_cache', 'model_operations', 'model_transaction_policy',
  'model_repository_agents', 'runtime', 'cc_model_filenames', 'version', 'label_filename',
]);
const UNSUPPORTED_FIELDS = new Set(['sequence_batching', 'ensemble_scheduling', 'batch_input', 'batch_output']);

/** Field checks that name the file and the field in every message. */
class Fields {
  readonly ignored: string[] = [];
  constructor(readonly file: string) {}

  fail(expected: string, field: string, received: unknown): never {
    throw new UmbraError('INVALID_ARGUMENT', `${this.file}: expected ${expected} for ${field} but received ${describeValue(received)}`);
  }

  problem(field: string, message: string): never {
    throw new UmbraError('INVALID_ARGUMENT', `${this.file}: ${field}: ${message}`);
  }

  object(value: unknown, field: string): Record<string, unknown> {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) this.fail('an object', field, value);
    return value as Record<string, unknown>;
  }

  /** Integers may be JSON strings too: protobuf's JSON form writes int64 fields as strings. */
  int(value: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in ${min}..${max}`;
      this.fail(range, field, value);
    }
    return n;
  }

  bool(value: unknown, field: string): boolean {
    if (typeof value !== 'boolean') this.fail('true or false', field, value);
    return value;
  }

  string(value: unknown, field: string): string {
    if (typeof value !== 'string') this.fail('a string', field, value);
    return value;
  }

  oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T {
    if (typeof value !== 'string' || !allowed.includes(value as T)) this.fail(`one of ${allowed.join(', ')}`, field, value);
    return value as T;
  }

  /** Rejects fields outside `known`; records `ignorable` ones present. */
  only(obj: Record<string, unknown>, where: string, known: readonly string[], ignorable: readonly string[] = []): void {
    for (const key of Object.keys(obj)) {
      if (known.includes(key)) continue;
      if (ignorable.includes(key)) {
        this.ignored.push(where ? `${where}.${key}` : key);
        continue;
      }
      const snake = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      const hint = snake !== key && known.includes(snake) ? ` (did you mean ${snake}?)` : '';
      this.problem(where || 'config', `unknown field "${key}"${hint}`);
    }
  }
}

/** Read config.json, else config.pbtxt, else nothing, from a model folder. Parse errors name the file. */
/** The label files a config's outputs name (label_filename, in the model's folder): polling watches them too. */
export function labelFilenames(file: ModelConfigFile): string[] {
  const outputs = file.raw.output;
  const list: unknown[] = Array.isArray(outputs) ? outputs : outputs === undefined ? [] : [outputs];
  return list.flatMap((o) => {
    const name = o !== null && typeof o === 'object' ? (o as Record<string, unknown>).label_filename : undefined;
    return typeof name === 'string' && name !== '' ? [name] : [];
  });
}

export function readModelConfig(dir: string): ModelConfigFile {
  const jsonPath = join(dir, 'config.json');
  const pbtxtPath = join(dir, 'config.pbtxt');
  let raw: unknown;
  let source: ConfigSource;
  let path: string | null;
  if (existsSync(jsonPath)) {
    source = 'config.json';
    path = jsonPath;
    const text = readFileSync(jsonPath, 'utf8');
    try {
      raw = JSON.parse(text);
    } catch (err) {
      const message = (err as Error).message;
      const position = /position (\d+)/.exec(message);
      const line = position ? text.slice(0, Number(position[1])).split('\n').length : undefined;
      throw new UmbraError('INVALID_ARGUMENT', `${jsonPath}${line ? `:${line}` : ''}: invalid JSON: ${message}`);
    }
    const foreign = huggingFaceConfig(raw, jsonPath);
    if (foreign && !existsSync(pbtxtPath)) return { source: 'derived', path: null, versionPolicy: DEFAULT_VERSION_POLICY, modelFilename: DEFAULT_MODEL_FILENAME, raw: {}, foreign };
  } else if (existsSync(pbtxtPath)) {
    source = 'config.pbtxt';
    path = pbtxtPath;
    raw = parsePbtxt(readFileSync(pbtxtPath, 'utf8'), pbtxtPath);
  } else {
    return { source: 'derived', path: null, versionPolicy: DEFAULT_VERSION_POLICY, modelFilename: DEFAULT_MODEL_FILENAME, raw: {} };
  }
  const fields = new Fields(path);
  const obj = fields.object(raw, 'the whole config');
  return {
    source,
    path,
    versionPolicy: obj.version_policy === undefined ? DEFAULT_VERSION_POLICY : readVersionPolicy(fields, obj.version_policy),
    modelFilename: readModelFilename(fields, obj.default_model_filename),
    raw: obj,
  };
}

function readVersionPolicy(fields: Fields, value: unknown): VersionPolicy {
  const obj = fields.object(value, 'version_policy');
  const keys = Object.keys(obj);
  if (keys.length !== 1) fields.fail('exactly one of latest, all, specific', 'version_policy', keys.join(', ') || 'none');
  if (obj.all !== undefined) {
    if (obj.all !== true) fields.object(obj.all, 'version_policy.all');
    return { kind: 'all' };
  }
  if (obj.latest !== undefined) {
    const latest = fields.object(obj.latest, 'version_policy.latest');
    fields.only(latest, 'version_policy.latest', ['num_versions']);
    const numVersions = latest.num_versions === undefined ? 1 : fields.int(latest.num_versions, 'version_policy.latest.num_versions', 1);
    return { kind: 'latest', numVersions };
  }
  if (obj.specific !== undefined) {
    const specific = fields.object(obj.specific, 'version_policy.specific');
    fields.only(specific, 'version_policy.specific', ['versions']);
    const versions = asArray(specific.versions).map((v, i) => fields.int(v, `version_policy.specific.versions[${i}]`, 1));
    if (versions.length === 0) fields.fail('at least one version', 'version_policy.specific.versions', []);
    return { kind: 'specific', versions: [...new Set(versions)].sort((a, b) => a - b) };
  }
  fields.fail('exactly one of latest, all, specific', 'version_policy', keys[0]);
}

function readModelFilename(fields: Fields, value: unknown): string {
  if (value === undefined || value === '') return DEFAULT_MODEL_FILENAME;
  const name = fields.string(value, 'default_model_filename');
  if (name.includes('/') || name.includes('\\') || name === '.' || name === '..') fields.fail('a plain file name', 'default_model_filename', name);
  return name;
}

/** Read the model folder's config (if any) and resolve it against the ONNX model's signature. */
export function resolveModelConfig(dir: string, onnxSignature: OnnxSignature): ResolvedModelConfig {
  return resolveConfigFile(readModelConfig(dir), onnxSignature, basename(dir));
}

/** Pure part of resolveModelConfig: validate `file.raw`, check it against the ONNX model, fill defaults. */
export function resolveConfigFile(file: ModelConfigFile, onnxSignature: OnnxSignature, folderName: string, unbatched?: string): ResolvedModelConfig {
  const fields = new Fields(file.path ?? `model ${folderName} (no config file)`);
  const raw = file.raw;
  for (const key of Object.keys(raw)) {
    if (UNSUPPORTED_FIELDS.has(key)) fields.problem(key, 'is not supported by Umbra');
  }
  fields.only(raw, '', [...HANDLED_FIELDS], [...IGNORED_FIELDS]);

  let name = folderName;
  if (raw.name !== undefined && raw.name !== '') {
    name = fields.string(raw.name, 'name');
    if (name !== folderName) fields.problem('name', `"${name}" must match the model folder name "${folderName}"`);
  }
  if (!isValidModelName(name)) fields.fail('a valid model name', 'the model folder name', name);

  if (raw.platform !== undefined && raw.platform !== '' && raw.platform !== 'onnxruntime_onnx') {
    fields.fail('"onnxruntime_onnx" (Umbra serves ONNX models only)', 'platform', raw.platform);
  }
  const backend: BackendChoice = raw.backend === undefined || raw.backend === '' ? 'onnxruntime' : fields.oneOf(raw.backend, 'backend', BACKENDS);
  const device: NativeDevice = raw.device === undefined || raw.device === '' ? 'cpu' : fields.oneOf(raw.device, 'device', NATIVE_DEVICES);
  if (device !== 'cpu' && backend === 'onnxruntime') {
    fields.problem('device', `"${device}" applies to backend: native (or auto); onnxruntime runs where execution_providers say (e.g. ["cuda", "cpu"])`);
  }
  let precision: GpuPrecision = 'fp32';
  if (raw.precision !== undefined && raw.precision !== '') {
    if (raw.precision === 'fp16') {
      fields.problem('precision', '"fp16" is not available yet; "bf16" (fp32\'s range, 8-bit mantissa) or "tf32" run on the tensor cores');
    } else {
      precision = fields.oneOf(raw.precision, 'precision', GPU_PRECISIONS);
      if (precision !== 'fp32' && (device === 'cpu' || backend === 'onnxruntime')) {
        fields.problem('precision', `"${precision}" applies to backend: native with device: cuda (or auto); the CPU kernels compute in fp32`);
      }
    }
  }

  const batchable = firstDimsDynamic(onnxSignature);
  let maxBatchSize: number;
  let batchingReason: string | undefined;
  if (raw.max_batch_size === undefined) {
    // `unbatched`: the load found that the model's answers do not follow the batch (measured).
    maxBatchSize = batchable === true && unbatched === undefined ? DEFAULT_MAX_BATCH_SIZE : 0;
    if (unbatched !== undefined) batchingReason = unbatched;
    else if (batchable !== true) batchingReason = batchable.role === 'model' ? 'the model has no inputs' : `the ONNX ${batchable.role} "${batchable.name}" has no dynamic first (batch) dim`;
  } else {
    maxBatchSize = fields.int(raw.max_batch_size, 'max_batch_size', 0, 1 << 20);
    if (maxBatchSize > 0 && batchable !== true) {
      fields.problem('max_batch_size', `is ${maxBatchSize} but the ONNX ${batchable.role} "${batchable.name}" has no dynamic first (batch) dim; set max_batch_size: 0 or export the model with a dynamic batch axis`);
    }
  }

  const inputs = resolveTensors(fields, raw.input, 'input', onnxSignature.inputs, maxBatchSize);
  const outputs = resolveTensors(fields, raw.output, 'output', onnxSignature.outputs, maxBatchSize, file.path ? dirname(file.path) : undefined);
  const configNote = file.foreign ? foreignNote(file.foreign, outputs) : undefined;
  const parameters = readParameters(fields, raw.parameters);
  const dynamicBatching = readDynamicBatching(fields, raw.dynamic_batching, maxBatchSize, readQueueBudget(fields, parameters.queue_budget_ms));
  const instanceGroups = readInstanceGroups(fields, raw.instance_group);
  const executionProviders = raw.execution_providers === undefined
    ? (instanceGroups.some((g) => g.kind === 'KIND_GPU') ? ['cuda', 'cpu'] as ExecutionProvider[] : ['cpu'] as ExecutionProvider[])
    : readExecutionProviders(fields, raw.execution_providers);

  const config = {
    name,
    maxBatchSize,
    inputs,
    outputs,
    dynamicBatching,
    versionPolicy: file.versionPolicy,
    instanceCount: instanceGroups.reduce((sum, g) => sum + g.count, 0),
    instanceGroups,
    backend,
    device,
    precision,
    executionProviders,
    parameters,
    modelFilename: file.modelFilename,
    source: file.source,
    configPath: file.path,
    ignoredFields: fields.ignored,
    outputNotes: onnxSignature.outputNotes ?? [],
    ...(configNote !== undefined ? { configNote } : {}),
    maxBatchSizeDerived: raw.max_batch_size === undefined,
    ...(batchingReason !== undefined ? { batchingReason } : {}),
  };
  Object.defineProperty(config, 'signature', {
    enumerable: false,
    value: (): ModelSignature => ({ name: config.name, maxBatchSize: config.maxBatchSize, inputs: config.inputs, outputs: config.outputs }),
  });
  return config as ResolvedModelConfig;
}

/** true if every input and output has a dynamic first dim; else the first tensor that does not. */
function firstDimsDynamic(signature: OnnxSignature): true | { role: string; name: string } {
  if (signature.inputs.length === 0) return { role: 'model', name: 'has no inputs and' };
  for (const [role, list] of [['input', signature.inputs], ['output', signature.outputs]] as const) {
    for (const t of list) {
      if (!t.shapeKnown) continue;
      if (t.dims.length === 0 || t.dims[0] !== -1) return { role, name: t.name };
    }
  }
  return true;
}

function resolveTensors(fields: Fields, declared: unknown, role: 'input' | 'output', onnxTensors: OnnxTensorInfo[], maxBatchSize: number, configDir?: string): TensorSpec[] {
  const list = asArray(declared);
  const fromOnnx = (t: OnnxTensorInfo): number[] => {
    if (!t.shapeKnown) fields.problem(role, `the ONNX ${role} "${t.name}" declares no shape; declare its dims in the config`);
    return maxBatchSize > 0 ? t.dims.slice(1) : [...t.dims];
  };
  if (list.length === 0) return onnxTensors.map((t) => ({ name: t.name, datatype: t.datatype, dims: fromOnnx(t) }));

  const byName = new Map(onnxTensors.map((t) => [t.name, t]));
  const seen = new Set<string>();
  const specs = list.map((item, i) => {
    const where = `${role}[${i}]`;
    const obj = fields.object(item, where);
    const known = ['name', 'data_type', 'dims', 'optional', 'reshape', 'is_shape_tensor', 'allow_ragged_batch'];
    // An output's class labels serve the classification extension; an input's have no use.
    if (role === 'output') fields.only(obj, where, [...known, 'label_filename'], ['format', 'is_non_linear_format_io']);
    else fields.only(obj, where, known, ['format', 'label_filename', 'is_non_linear_format_io']);
    if (obj.reshape !== undefined) fields.problem(`${where}.reshape`, 'is not supported by Umbra');
    if (obj.is_shape_tensor === true || obj.allow_ragged_batch === true) fields.problem(where, 'shape tensors and ragged batches are not supported by Umbra');
    const name = fields.string(obj.name, `${where}.name`);
    if (seen.has(name)) fields.problem(`${where}.name`, `"${name}" is declared twice`);
    seen.add(name);
    const onnxTensor = byName.get(name);
    if (!onnxTensor) {
      fields.problem(`${where}.name`, `"${name}" is not an ${role} of the ONNX model (its ${role}s: ${onnxTensors.map((t) => t.name).join(', ') || 'none'})`);
    }
    const typeName = fields.oneOf(obj.data_type, `${where}.data_type`, [...Object.keys(TRITON_TYPES), ...Object.values(TRITON_TYPES)]);
    const datatype = TRITON_TYPES[typeName] ?? (typeName as DataType);
    if (datatype !== onnxTensor.datatype) {
      fields.problem(`${where}.data_type`, `is ${typeName} but the ONNX ${role} "${name}" is ${TRITON_TYPE_OF[onnxTensor.datatype]}`);
    }
    if (obj.dims === undefined) fields.fail('an array of dims', `${where}.dims`, undefined);
    const dims = asArray(obj.dims).map((d, j) => fields.int(d, `${where}.dims[${j}]`, -1));
    if (dims.includes(0)) fields.fail('dims of -1 or >= 1', `${where}.dims`, dims.join(', '));
    const spec: TensorSpec = { name, datatype, dims: mergeDims(fields, `${where}.dims`, dims, onnxTensor, maxBatchSize) };
    if (role === 'output' && obj.label_filename !== undefined && obj.label_filename !== '') {
      const labels = readLabels(fields, obj.label_filename, `${where}.label_filename`, configDir);
      if (labels) {
        spec.labels = labels;
        spec.labelFilename = String(obj.label_filename);
      }
    }
    return spec;
  });
  if (role === 'input') {
    const missing = onnxTensors.filter((t) => !seen.has(t.name)).map((t) => t.name);
    if (missing.length > 0) fields.problem('input', `the ONNX model also needs input(s) ${missing.join(', ')}; declare every input or none`);
  }
  return specs;
}

/**
 * What became of another tool's config.json: not read as a serving config, and its class names
 * given to the first floating-point output with one score per class (the classification extension
 * then answers "0.98:1:POSITIVE").
 */
function foreignNote(foreign: NonNullable<ModelConfigFile['foreign']>, outputs: TensorSpec[]): string {
  const base = `${foreign.path} is ${foreign.kind}, not a serving config: the model's config is derived from its ONNX graph`;
  const labels = foreign.labels;
  if (!labels) return base;
  const fits = outputs.find((o) => !o.labels && (o.datatype === 'FP32' || o.datatype === 'FP16' || o.datatype === 'FP64') && o.dims.length > 0 && o.dims.every((d) => d > 0) && o.dims.reduce((a, b) => a * b, 1) === labels.length);
  if (!fits) return `${base}; its id2label (${labels.length} classes) fits no output`;
  fits.labels = labels;
  return `${base}; its id2label names output "${fits.name}"'s ${labels.length} classes (${labels.slice(0, 4).join(', ')}${labels.length > 4 ? ', ...' : ''}) for the classification extension`;
}

/** An output's labels, one per line of a file in the model's folder (Triton's label_filename). */
function readLabels(fields: Fields, value: unknown, where: string, configDir: string | undefined): string[] | undefined {
  const file = fields.string(value, where);
  if (configDir === undefined) return undefined;
  if (isAbsolute(file) || normalize(file).startsWith('..')) {
    fields.problem(where, `"${file}" is not inside the model's folder`);
    return undefined;
  }
  try {
    // A model folder from elsewhere may hold a symbolic link out of it, and the label file's lines
    // are answered to every client that asks for classes: where it really lies is what counts.
    if (!liesInside(join(configDir, file), configDir)) {
      fields.problem(where, `"${file}" is not inside the model's folder (it links out of it)`);
      return undefined;
    }
    const lines = readFileSync(join(configDir, file), 'utf8').split(/\r?\n/);
    while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    return lines;
  } catch (err) {
    fields.problem(where, `cannot read ${join(configDir, file)}: ${(err as Error).message}`);
    return undefined;
  }
}

/** Config dims against ONNX dims: ranks equal, fixed dims equal; the more specific of each pair wins. */
function mergeDims(fields: Fields, where: string, dims: number[], onnxTensor: OnnxTensorInfo, maxBatchSize: number): number[] {
  if (!onnxTensor.shapeKnown) return dims;
  const onnxDims = maxBatchSize > 0 ? onnxTensor.dims.slice(1) : onnxTensor.dims;
  const shown = (d: number[]): string => `[${d.join(', ')}]`;
  const batchNote = maxBatchSize > 0 ? ' (without the batch dim, as max_batch_size > 0)' : '';
  if (dims.length !== onnxDims.length) {
    fields.problem(where, `${shown(dims)} has rank ${dims.length} but the ONNX model's "${onnxTensor.name}" is ${shown(onnxDims)}${batchNote}`);
  }
  return dims.map((d, i) => {
    const o = onnxDims[i]!;
    if (d !== -1 && o !== -1 && d !== o) {
      fields.problem(where, `${shown(dims)} does not match the ONNX model's "${onnxTensor.name}" ${shown(onnxDims)}${batchNote}`);
    }
    return d === -1 ? o : d;
  });
}

function readDynamicBatching(fields: Fields, value: unknown, maxBatchSize: number, queueBudgetMs: number): DynamicBatchingConfig {
  const off: DynamicBatchingConfig = {
    enabled: false, maxQueueDelayUs: 0, preferredBatchSizes: [], maxQueueSize: 0, maxQueueSizeSet: false, queueBudgetMs, defaultTimeoutUs: 0, priorityLevels: 0, defaultPriorityLevel: 0,
  };
  if (value === false || (value === undefined && maxBatchSize === 0)) return off;
  const obj = value === undefined || value === true ? {} : fields.object(value, 'dynamic_batching');
  fields.only(obj, 'dynamic_batching', [
    'enabled', 'max_queue_delay_microseconds', 'preferred_batch_size', 'max_queue_size', 'default_timeout_microseconds',
    'default_queue_policy', 'priority_levels', 'default_priority_level',
  ], ['preserve_ordering', 'priority_queue_policy']);
  const enabled = obj.enabled === undefined ? true : fields.bool(obj.enabled, 'dynamic_batching.enabled');
  if (!enabled) return off;
  if (maxBatchSize === 0) fields.problem('dynamic_batching', 'needs max_batch_size > 0 (the model does not batch)');
  const policy = obj.default_queue_policy === undefined ? {} : fields.object(obj.default_queue_policy, 'dynamic_batching.default_queue_policy');
  fields.only(policy, 'dynamic_batching.default_queue_policy', ['max_queue_size', 'default_timeout_microseconds'], ['timeout_action', 'allow_timeout_override']);
  const pick = (key: string): [unknown, string] => policy[key] !== undefined
    ? [policy[key], `dynamic_batching.default_queue_policy.${key}`]
    : [obj[key], `dynamic_batching.${key}`];
  const [queueSize, queueSizeField] = pick('max_queue_size');
  const [timeout, timeoutField] = pick('default_timeout_microseconds');
  const preferred = asArray(obj.preferred_batch_size).map((v, i) => fields.int(v, `dynamic_batching.preferred_batch_size[${i}]`, 1, Math.max(1, maxBatchSize)));
  const priorityLevels = obj.priority_levels === undefined ? 0 : fields.int(obj.priority_levels, 'dynamic_batching.priority_levels', 0, 1000);
  let defaultPriorityLevel = 0;
  if (priorityLevels > 0) {
    defaultPriorityLevel = obj.default_priority_level === undefined || obj.default_priority_level === 0 || obj.default_priority_level === '0'
      ? priorityLevels
      : fields.int(obj.default_priority_level, 'dynamic_batching.default_priority_level', 1, priorityLevels);
  } else if (obj.default_priority_level !== undefined) {
    fields.int(obj.default_priority_level, 'dynamic_batching.default_priority_level', 0, 0);
  }
  return {
    enabled,
    maxQueueDelayUs: obj.max_queue_delay_microseconds === undefined
      ? DEFAULT_MAX_QUEUE_DELAY_US
      : fields.int(obj.max_queue_delay_microseconds, 'dynamic_batching.max_queue_delay_microseconds', 0),
    preferredBatchSizes: [...new Set(preferred)].sort((a, b) => a - b),
    maxQueueSize: queueSize === undefined ? 0 : fields.int(queueSize, queueSizeField, 0),
    maxQueueSizeSet: queueSize !== undefined,
    queueBudgetMs,
    defaultTimeoutUs: timeout === undefined ? 0 : fields.int(timeout, timeoutField, 0),
    priorityLevels,
    defaultPriorityLevel,
  };
}

/** `parameters.queue_budget_ms`: a positive number of milliseconds, or absent (0: the default rule). */
function readQueueBudget(fields: Fields, value: string | undefined): number {
  if (value === undefined) return 0;
  const ms = Number(value);
  if (value.trim() === '' || !Number.isFinite(ms) || ms <= 0 || ms > 3_600_000) {
    fields.fail('a number of milliseconds in (0, 3600000]', 'parameters.queue_budget_ms', value);
  }
  return ms;
}

function readInstanceGroups(fields: Fields, value: unknown): InstanceGroup[] {
  const list = asArray(value);
  if (list.length === 0) return [];
  return list.map((item, i) => {
    const where = `instance_group[${i}]`;
    const obj = fields.object(item, where);
    fields.only(obj, where, ['count', 'kind'], ['name', 'gpus', 'profile', 'passive', 'host_policy', 'rate_limiter', 'secondary_devices']);
    return {
      count: obj.count === undefined ? 1 : fields.int(obj.count, `${where}.count`, 1, 256),
      kind: obj.kind === undefined ? 'KIND_AUTO' : fields.oneOf(obj.kind, `${where}.kind`, INSTANCE_KINDS),
    };
  });
}

function readExecutionProviders(fields: Fields, value: unknown): ExecutionProvider[] {
  const list = asArray(value).map((v, i) => fields.oneOf(v, `execution_providers[${i}]`, EXECUTION_PROVIDERS));
  if (list.length === 0) fields.fail('at least one execution provider', 'execution_providers', []);
  return [...new Set(list)];
}

/** Triton's map form (`{key: {string_value}}`, or pbtxt `parameters { key: .. value { string_value: .. } }`) or plain strings. */
function readParameters(fields: Fields, value: unknown): Record<string, string> {
  if (value === undefined) return {};
  const out: Record<string, string> = {};
  const asString = (v: unknown, field: string): string => {
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    const obj = fields.object(v, field);
    fields.only(obj, field, ['string_value']);
    return fields.string(obj.string_value, `${field}.string_value`);
  };
  const entries = Array.isArray(value) || (typeof value === 'object' && value !== null && 'key' in value && 'value' in value) ? asArray(value) : null;
  if (entries) {
    entries.forEach((entry, i) => {
      const obj = fields.object(entry, `parameters[${i}]`);
      const key = fields.string(obj.key, `parameters[${i}].key`);
      out[key] = asString(obj.value, `parameters.${key}`);
    });
    return out;
  }
  for (const [key, v] of Object.entries(fields.object(value, 'parameters'))) out[key] = asString(v, `parameters.${key}`);
  return out;
}

/**
 * The resolved config in Triton's JSON shape (snake_case), for the model config endpoint.
 * `maxQueueSize`: the queue bound in force, where it was derived at load rather than configured
 * (the config's own 0 would read as "unbounded" to a Triton user).
 */
export function toTritonConfig(config: ResolvedModelConfig, maxQueueSize?: number): Record<string, unknown> {
  const tensor = (t: TensorSpec): Record<string, unknown> => ({ name: t.name, data_type: TRITON_TYPE_OF[t.datatype], dims: t.dims, ...(t.labelFilename ? { label_filename: t.labelFilename } : {}) });
  const db = config.dynamicBatching;
  const policy = config.versionPolicy;
  return {
    name: config.name,
    platform: 'onnxruntime_onnx',
    backend: config.backend,
    device: config.device,
    ...(config.precision !== 'fp32' ? { precision: config.precision } : {}),
    max_batch_size: config.maxBatchSize,
    input: config.inputs.map(tensor),
    output: config.outputs.map(tensor),
    version_policy: policy.kind === 'latest' ? { latest: { num_versions: policy.numVersions } }
      : policy.kind === 'all' ? { all: {} } : { specific: { versions: policy.versions } },
    instance_group: config.instanceGroups.map((g) => ({ count: g.count, kind: g.kind })),
    ...(db.enabled ? {
      dynamic_batching: {
        max_queue_delay_microseconds: db.maxQueueDelayUs,
        preferred_batch_size: db.preferredBatchSizes,
        priority_levels: db.priorityLevels,
        default_priority_level: db.defaultPriorityLevel,
        default_queue_policy: { max_queue_size: maxQueueSize ?? db.maxQueueSize, default_timeout_microseconds: db.defaultTimeoutUs },
      },
    } : {}),
    execution_providers: config.executionProviders,
    parameters: Object.fromEntries(Object.entries(config.parameters).map(([k, v]) => [k, { string_value: v }])),
    default_model_filename: config.modelFilename,
  };
}
