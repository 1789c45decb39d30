// A small ONNX graph builder for the example models and tests: declare inputs, outputs, nodes
// and initializers in plain objects and get a ModelProto that onnxruntime accepts.
import { UmbraError } from '../errors.js';
import type { DataType } from '../protocol/types.js';
import { elemTypeFromDatatype, onnx, type ModelProto } from './model-io.js';
import { makeTensor, type InitializerDatatype } from './tensor-data.js';
import type pkg from 'onnx-proto';

export interface ValueSpec {
  name: string;
  datatype: DataType;
  /** A number for a fixed dim, a string for a named symbolic dim, -1 for an anonymous dynamic dim. */
  dims: readonly (number | string)[];
}

/**
 * Attribute values: an integer number becomes INT, a non-integer FLOAT, a string STRING, arrays
 * INTS/FLOATS alike. Use the tagged forms when a whole number must be a FLOAT (Gemm's alpha: 1).
 */
export type AttributeValue =
  | number | string | readonly number[]
  | { float: number } | { floats: readonly number[] } | { int: number } | { ints: readonly number[] };

export interface NodeSpec {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  domain?: string;
  attributes?: Record<string, AttributeValue>;
}

export interface InitializerSpec {
  name: string;
  datatype: InitializerDatatype;
  dims: readonly number[];
  values: ArrayLike<number> | readonly bigint[] | BigInt64Array;
}

export interface ModelSpec {
  inputs: readonly ValueSpec[];
  outputs: readonly ValueSpec[];
  nodes: readonly NodeSpec[];
  initializers?: readonly InitializerSpec[];
  /** Default-domain opset; 13 unless given. */
  opset?: number;
  graphName?: string;
  producerName?: string;
  docString?: string;
}

/** IR version 8 is the newest that onnx-proto's schema knows and that onnxruntime reads. */
const IR_VERSION = 8;

function valueInfo(spec: ValueSpec): pkg.onnx.ValueInfoProto {
  const dim = spec.dims.map((d) => {
    if (typeof d === 'string') return onnx.TensorShapeProto.Dimension.create({ dimParam: d });
    if (d < 0) return onnx.TensorShapeProto.Dimension.create({});
    return onnx.TensorShapeProto.Dimension.create({ dimValue: d });
  });
  return onnx.ValueInfoProto.create({
    name: spec.name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: elemTypeFromDatatype(spec.datatype),
        shape: onnx.TensorShapeProto.create({ dim }),
      }),
    }),
  });
}

function attribute(name: string, value: AttributeValue): pkg.onnx.AttributeProto {
  const Type = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') {
    return onnx.AttributeProto.create({ name, type: Type.STRING, s: new TextEncoder().encode(value) });
  }
  if (typeof value === 'number') {
    return Number.isInteger(value)
      ? onnx.AttributeProto.create({ name, type: Type.INT, i: value })
      : onnx.AttributeProto.create({ name, type: Type.FLOAT, f: value });
  }
  if (Array.isArray(value)) {
    const numbers = value as readonly number[];
    return numbers.every(Number.isInteger)
      ? onnx.AttributeProto.create({ name, type: Type.INTS, ints: [...numbers] })
      : onnx.AttributeProto.create({ name, type: Type.FLOATS, floats: [...numbers] });
  }
  if ('float' in value) return onnx.AttributeProto.create({ name, type: Type.FLOAT, f: value.float });
  if ('floats' in value) return onnx.AttributeProto.create({ name, type: Type.FLOATS, floats: [...value.floats] });
  if ('int' in value) return onnx.AttributeProto.create({ name, type: Type.INT, i: value.int });
  if ('ints' in value) return onnx.AttributeProto.create({ name, type: Type.INTS, ints: [...value.ints] });
  throw new UmbraError('INTERNAL', `attribute "${name}" has an unsupported value`);
}

/** Build a ModelProto; checks that every node input is defined before use (topological order). */
export function buildModel(spec: ModelSpec): ModelProto {
  const defined = new Set<string>(['']);
  for (const v of spec.inputs) defined.add(v.name);
  for (const t of spec.initializers ?? []) defined.add(t.name);
  const nodes = spec.nodes.map((node, index) => {
    for (const input of node.inputs) {
      if (!defined.has(input)) throw new UmbraError('INTERNAL', `node ${index} (${node.op}) reads "${input}" before anything defines it`);
    }
    for (const output of node.outputs) defined.add(output);
    return onnx.NodeProto.create({
      name: node.name ?? `${node.op.toLowerCase()}_${index}`,
      opType: node.op,
      domain: node.domain ?? '',
      input: [...node.inputs],
      output: [...node.outputs],
      attribute: Object.entries(node.attributes ?? {}).map(([name, value]) => attribute(name, value)),
    });
  });
  for (const output of spec.outputs) {
    if (!defined.has(output.name)) throw new UmbraError('INTERNAL', `graph output "${output.name}" is not produced by any node`);
  }
  return onnx.ModelProto.create({
    irVersion: IR_VERSION,
    producerName: spec.producerName ?? 'umbra',
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: spec.opset ?? 13 })],
    graph: onnx.GraphProto.create({
      name: spec.graphName ?? 'graph',
      docString: spec.docString ?? '',
      input: spec.inputs.map(valueInfo),
      output: spec.outputs.map(valueInfo),
      node: nodes,
      initializer: (spec.initializers ?? []).map((t) => makeTensor(t.name, t.datatype, t.dims, t.values)),
    }),
  });
}
