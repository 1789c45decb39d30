// Reading and writing ONNX files with the generated protobuf classes from `onnx-proto`, and the
// model's input/output signature in protocol terms. No hand-written protobuf parsing here.
//
// onnx-proto's declarations name protobufjs's int64 class `Long` as a global, which only the
// `long` type package (protobufjs's own dependency) declares: kept in this file's declarations
// (preserve), a program that reaches them from Umbra's public types (Umbra.manager's config
// types) compiles with `"types": ["node"]` and without skipLibCheck.
/// <reference types="long" preserve="true" />
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import pkg from 'onnx-proto';
import { UmbraError } from '../errors.js';
import type { DataType } from '../protocol/types.js';

export const { onnx } = pkg;
export type ModelProto = pkg.onnx.ModelProto;
export type TensorProto = pkg.onnx.TensorProto;
export type ValueInfoProto = pkg.onnx.IValueInfoProto;

const ElemType = onnx.TensorProto.DataType;

/** ONNX element type -> protocol datatype. Types without a protocol counterpart are absent. */
const ELEM_TO_DATATYPE: ReadonlyMap<number, DataType> = new Map<number, DataType>([
  [ElemType.FLOAT, 'FP32'],
  [ElemType.UINT8, 'UINT8'],
  [ElemType.INT8, 'INT8'],
  [ElemType.UINT16, 'UINT16'],
  [ElemType.INT16, 'INT16'],
  [ElemType.INT32, 'INT32'],
  [ElemType.INT64, 'INT64'],
  [ElemType.STRING, 'BYTES'],
  [ElemType.BOOL, 'BOOL'],
  [ElemType.FLOAT16, 'FP16'],
  [ElemType.DOUBLE, 'FP64'],
  [ElemType.UINT32, 'UINT32'],
  [ElemType.UINT64, 'UINT64'],
]);

const DATATYPE_TO_ELEM: ReadonlyMap<DataType, number> = new Map(
  [...ELEM_TO_DATATYPE].map(([elem, datatype]) => [datatype, elem]),
);

/** Protocol datatype for an ONNX element type number, or undefined when there is none (bfloat16, complex, float8). */
export function datatypeFromElemType(elemType: number): DataType | undefined {
  return ELEM_TO_DATATYPE.get(elemType);
}

/** ONNX element type number for a protocol datatype. */
export function elemTypeFromDatatype(datatype: DataType): number {
  const elem = DATATYPE_TO_ELEM.get(datatype);
  if (elem === undefined) throw new UmbraError('INTERNAL', `no ONNX element type for datatype ${datatype}`);
  return elem;
}

/**
 * protobufjs returns int64 fields as Long objects when the `long` package is installed and as
 * numbers otherwise; this accepts either (and bigint) and refuses values past 2^53.
 */
export function int64ToNumber(value: unknown, what: string): number {
  let result: number;
  if (typeof value === 'number') result = value;
  else if (typeof value === 'bigint') result = Number(value);
  else if (value !== null && typeof value === 'object' && 'low' in value && 'high' in value) {
    const long = value as { low: number; high: number; unsigned?: boolean };
    const low = long.low >>> 0;
    const high = long.unsigned ? long.high >>> 0 : long.high | 0;
    result = high * 0x1_0000_0000 + low;
  } else if (value === null || value === undefined) result = 0;
  else throw new UmbraError('LOAD_FAILED', `expected an integer for ${what} but received ${typeof value}`);
  if (!Number.isSafeInteger(result)) throw new UmbraError('LOAD_FAILED', `${what} is ${result}, past what Umbra handles (2^53)`);
  return result;
}

/** Decode an ONNX model from a file path or from its bytes (read from `path`, which errors name). Throws LOAD_FAILED naming the file. */
export function readModel(source: string | Uint8Array, path?: string): ModelProto {
  const label = typeof source === 'string' ? source : path ?? 'ONNX bytes';
  let bytes: Uint8Array;
  if (typeof source === 'string') {
    try {
      bytes = readFileSync(source);
    } catch (err) {
      throw new UmbraError('LOAD_FAILED', `cannot read ONNX model ${source}: ${(err as Error).message}`, { cause: err });
    }
  } else {
    bytes = source;
  }
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new UmbraError('LOAD_FAILED', `${label} is not a valid ONNX model: ${(err as Error).message}`, { cause: err });
  }
  if (!model.graph) throw new UmbraError('LOAD_FAILED', `${label} is not a valid ONNX model: it has no graph`);
  return model;
}

/** Encode an ONNX model to bytes. */
export function encodeModel(model: pkg.onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Write an ONNX model to `path`, creating parent folders. */
export function writeModel(model: pkg.onnx.IModelProto, path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, encodeModel(model));
}

/** One graph input or output as the protocol sees it. */
export interface OnnxTensorInfo {
  name: string;
  datatype: DataType;
  /** Full shape including any batch dim; -1 for a symbolic (`dim_param`) or absent dim. */
  dims: number[];
  /** False when the model declares no shape at all (rank unknown); `dims` is then empty. */
  shapeKnown: boolean;
}

export interface OnnxSignature {
  inputs: OnnxTensorInfo[];
  /** The outputs served: the graph's tensor outputs, with non-tensor ones replaced or left out (see `nonTensorOutputs`). */
  outputs: OnnxTensorInfo[];
  /** One line per graph output that is not a tensor: what is served instead, or that it is not. */
  outputNotes: string[];
  /** Opset of the default ("" or "ai.onnx") domain, 0 when the model does not say. */
  opset: number;
  irVersion: number;
  producer: string;
}

function tensorInfo(value: ValueInfoProto, role: 'input' | 'output'): OnnxTensorInfo {
  const name = value.name ?? '';
  const tensorType = value.type?.tensorType;
  if (!tensorType) {
    throw new UmbraError('LOAD_FAILED', `ONNX ${role} "${name}" is not a tensor (sequences, maps and sparse tensors are not served)`);
  }
  const elemType = tensorType.elemType ?? 0;
  const datatype = datatypeFromElemType(elemType);
  if (datatype === undefined) {
    const typeName = ElemType[elemType] ?? `element type ${elemType}`;
    throw new UmbraError('LOAD_FAILED', `ONNX ${role} "${name}" has type ${typeName}, which has no protocol datatype`);
  }
  const shape = tensorType.shape;
  if (!shape) return { name, datatype, dims: [], shapeKnown: false };
  const dims = (shape.dim ?? []).map((dim, i) => {
    if (dim.dimValue !== null && dim.dimValue !== undefined && !dim.dimParam) {
      const n = int64ToNumber(dim.dimValue, `dim ${i} of ONNX ${role} "${name}"`);
      // Some exporters write 0 or negatives for "unknown"; treat them as dynamic.
      return n > 0 ? n : -1;
    }
    return -1;
  });
  return { name, datatype, dims, shapeKnown: true };
}

/** Inputs (without initializers that older IR versions also list as inputs), outputs, opset. */
export function modelSignature(model: pkg.onnx.IModelProto): OnnxSignature {
  const graph = model.graph;
  if (!graph) throw new UmbraError('LOAD_FAILED', 'ONNX model has no graph');
  const initializerNames = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  const inputs = (graph.input ?? [])
    .filter((value) => !initializerNames.has(value.name ?? ''))
    .map((value) => tensorInfo(value, 'input'));
  const plan = nonTensorOutputs(graph);
  const outputs = (graph.output ?? []).flatMap((value) => {
    const other = plan.get(value.name ?? '');
    if (!other) return [tensorInfo(value, 'output')];
    return other.replacement ? [other.replacement] : [];
  });
  if (outputs.length === 0 && plan.size > 0) {
    throw new UmbraError('LOAD_FAILED', `the model has no tensor output to serve: ${[...plan.values()].map((p) => p.note).join('; ')}`);
  }
  const defaultOpset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return {
    inputs,
    outputs,
    outputNotes: [...plan.values()].map((p) => p.note),
    opset: defaultOpset ? int64ToNumber(defaultOpset.version, 'opset version') : 0,
    irVersion: int64ToNumber(model.irVersion, 'IR version'),
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
  };
}

/** A graph output that is not a tensor, and the tensor served in its place, if any. */
interface NonTensorOutput {
  note: string;
  replacement?: OnnxTensorInfo;
  /** The ZipMap node whose input replaces it (removed from the served graph). */
  zipMap?: pkg.onnx.INodeProto;
}

function kindOf(value: ValueInfoProto): string {
  const type = value.type;
  if (type?.sequenceType) return type.sequenceType.elemType?.mapType ? 'a sequence of maps' : 'a sequence';
  if (type?.mapType) return 'a map';
  if (type?.optionalType) return 'an optional value';
  if (type?.sparseTensorType) return 'a sparse tensor';
  return 'not a tensor';
}

/**
 * The graph's outputs that are not tensors (the protocol carries tensors only), by name. A
 * classifier exported by skl2onnx ends in ZipMap, a sequence of {class: probability} maps, one per
 * row: its input, the [rows, classes] probability tensor, is served in its place. Any other is
 * left out, said so at load.
 */
export function nonTensorOutputs(graph: pkg.onnx.IGraphProto): Map<string, NonTensorOutput> {
  const plan = new Map<string, NonTensorOutput>();
  const tensorOutputs = new Set((graph.output ?? []).filter((v) => v.type?.tensorType).map((v) => v.name ?? ''));
  for (const value of graph.output ?? []) {
    if (value.type?.tensorType) continue;
    const name = value.name ?? '';
    const kind = kindOf(value);
    const zipMap = (graph.node ?? []).find((n) => n.opType === 'ZipMap' && n.domain === 'ai.onnx.ml' && n.output?.[0] === name);
    const source = zipMap?.input?.[0];
    if (zipMap && source && !tensorOutputs.has(source)) {
      const attribute = (key: string) => zipMap.attribute?.find((a) => a.name === key);
      const labels = attribute('classlabels_int64s')?.ints?.map(String) ?? attribute('classlabels_strings')?.strings?.map((s) => Buffer.from(s).toString('utf8')) ?? [];
      plan.set(name, {
        note: `output "${name}" (${kind}, ZipMap's {class: probability} per row) is served as "${source}": the same probabilities as a [rows, ${labels.length}] FP32 tensor, in class order ${labels.join(', ')}`,
        replacement: { name: source, datatype: 'FP32', dims: [-1, labels.length], shapeKnown: labels.length > 0 },
        zipMap,
      });
      tensorOutputs.add(source);
    } else {
      plan.set(name, { note: `output "${name}" (${kind}) is not served: the protocol carries tensors only` });
    }
  }
  return plan;
}

/**
 * The model as it is served where some outputs are not tensors: those outputs replaced or left out
 * as `nonTensorOutputs` says, and the ZipMap nodes that made the replaced ones removed. The model
 * unchanged where every output is a tensor.
 */
export function servedModel(model: ModelProto): ModelProto {
  const graph = model.graph;
  if (!graph) return model;
  const plan = nonTensorOutputs(graph);
  if (plan.size === 0) return model;
  const firstDim = graph.input?.[0]?.type?.tensorType?.shape?.dim?.[0];
  const output = (graph.output ?? []).flatMap((value) => {
    const other = plan.get(value.name ?? '');
    if (!other) return [value];
    const r = other.replacement;
    if (!r) return [];
    const dims = r.dims.map((d, i) => (i === 0 && firstDim ? onnx.TensorShapeProto.Dimension.create(firstDim) : d < 0 ? onnx.TensorShapeProto.Dimension.create({}) : onnx.TensorShapeProto.Dimension.create({ dimValue: d })));
    return [onnx.ValueInfoProto.create({ name: r.name, type: { tensorType: { elemType: ElemType.FLOAT, ...(r.shapeKnown ? { shape: { dim: dims } } : {}) } } })];
  });
  const removed = new Set([...plan.values()].flatMap((p) => (p.zipMap ? [p.zipMap] : [])));
  const served = onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...graph, output, node: (graph.node ?? []).filter((n) => !removed.has(n)) }) });
  return served;
}

/** Where an initializer stored outside the .onnx file lives (ONNX external data convention). */
export interface ExternalDataReference {
  tensor: string;
  /** Path relative to the model file's folder. */
  location: string;
  offset: number;
  /** Byte length, or -1 when the model does not say (the rest of the file). */
  length: number;
}

/** Metadata of every initializer whose bytes live in an external file. Reads no external file. */
export function externalDataReferences(model: pkg.onnx.IModelProto): ExternalDataReference[] {
  const refs: ExternalDataReference[] = [];
  for (const tensor of model.graph?.initializer ?? []) {
    if (tensor.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const entries = new Map((tensor.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const name = tensor.name ?? '';
    refs.push({
      tensor: name,
      location: entries.get('location') ?? '',
      offset: entries.has('offset') ? parseExternalInt(entries.get('offset'), `offset of external tensor "${name}"`) : 0,
      length: entries.has('length') ? parseExternalInt(entries.get('length'), `length of external tensor "${name}"`) : -1,
    });
  }
  return refs;
}

function parseExternalInt(text: string | undefined, what: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new UmbraError('LOAD_FAILED', `expected a non-negative integer for ${what} but received ${JSON.stringify(text)}`);
  return n;
}
