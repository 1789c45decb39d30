// The ONNX graph as the native executor sees it: plain nodes with decoded attributes, constants
// (initializers and Constant nodes) as Values, and the graph's inputs and outputs.
import { dirname } from 'node:path';
import { UmbraError } from '../errors.js';
import { int64ToNumber, modelSignature, onnx, readModel, type ModelProto, type OnnxSignature } from '../onnx/model-io.js';
import { tensorValues, type ModelFolder } from '../onnx/tensor-data.js';
import { realOrResolved } from '../real-path.js';
import type { Value } from './tensor.js';
import type pkg from 'onnx-proto';

export type AttributeValue = number | string | number[] | Value;

export interface GraphNode {
  name: string;
  op: string;
  inputs: string[];
  outputs: string[];
  attributes: Map<string, AttributeValue>;
}

export interface Graph {
  signature: OnnxSignature;
  opset: number;
  nodes: GraphNode[];
  constants: Map<string, Value>;
  inputs: string[];
  outputs: string[];
}

/** "node "fc1" (Gemm)" — how every message names a node. */
export function describeNode(node: GraphNode): string {
  return `node "${node.name}" (${node.op})`;
}

function tensorValue(tensor: pkg.onnx.ITensorProto, folder: ModelFolder | undefined): Value {
  const v = tensorValues(tensor, folder);
  return { dims: v.dims, data: v.data instanceof Uint8Array ? Int32Array.from(v.data) : v.data };
}

function decodeAttribute(attr: pkg.onnx.IAttributeProto, folder: ModelFolder | undefined, where: string): AttributeValue | undefined {
  const T = onnx.AttributeProto.AttributeType;
  switch (attr.type) {
    case T.INT: return int64ToNumber(attr.i, `${where} attribute ${attr.name}`);
    case T.FLOAT: return attr.f ?? 0;
    case T.STRING: return new TextDecoder().decode(attr.s ?? new Uint8Array());
    case T.INTS: return (attr.ints ?? []).map((v) => int64ToNumber(v, `${where} attribute ${attr.name}`));
    case T.FLOATS: return [...(attr.floats ?? [])];
    case T.TENSOR: return attr.t ? tensorValue(attr.t, folder) : undefined;
    default: return undefined;
  }
}

/** A Constant node's value (value, value_float(s), value_int(s)). */
function constantValue(node: GraphNode): Value {
  const a = node.attributes;
  const tensor = a.get('value');
  if (tensor !== undefined && typeof tensor === 'object' && !Array.isArray(tensor)) return tensor;
  const f = a.get('value_float');
  if (typeof f === 'number') return { dims: [], data: Float32Array.of(f) };
  const fs = a.get('value_floats');
  if (Array.isArray(fs)) return { dims: [fs.length], data: Float32Array.from(fs) };
  const i = a.get('value_int');
  if (typeof i === 'number') return { dims: [], data: BigInt64Array.of(BigInt(i)) };
  const is = a.get('value_ints');
  if (Array.isArray(is)) return { dims: [is.length], data: BigInt64Array.from(is.map((v) => BigInt(v))) };
  throw new UmbraError('LOAD_FAILED', `${describeNode(node)} has no value the native backend can read (sparse or string constants are not supported)`);
}

/** Decodes a model (path or proto) into a Graph. Constant nodes become constants. */
export function loadGraph(source: string | ModelProto): Graph {
  const model = typeof source === 'string' ? readModel(source) : source;
  const folder: ModelFolder | undefined = typeof source === 'string' ? { dir: dirname(source), realDir: dirname(realOrResolved(source)) } : undefined;
  const signature = modelSignature(model);
  const g = model.graph!;
  const constants = new Map<string, Value>();
  for (const init of g.initializer ?? []) constants.set(init.name ?? '', tensorValue(init, folder));
  const nodes: GraphNode[] = [];
  (g.node ?? []).forEach((n, index) => {
    const name = n.name || `${n.opType ?? 'node'}_${index}`;
    if (n.domain && n.domain !== 'ai.onnx') {
      throw new UmbraError('LOAD_FAILED', `node "${name}" (${n.domain}.${n.opType}) is in an operator domain the native backend does not run; use backend: onnxruntime`);
    }
    const attributes = new Map<string, AttributeValue>();
    for (const attr of n.attribute ?? []) {
      const v = decodeAttribute(attr, folder, `node "${name}"`);
      if (v !== undefined) attributes.set(attr.name ?? '', v);
    }
    const node: GraphNode = { name, op: n.opType ?? '', inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])], attributes };
    if (node.op === 'Constant') {
      constants.set(node.outputs[0] ?? '', constantValue(node));
      return;
    }
    nodes.push(node);
  });
  return {
    signature,
    opset: signature.opset || 13,
    nodes,
    constants,
    inputs: signature.inputs.map((i) => i.name),
    outputs: signature.outputs.map((o) => o.name),
  };
}

export function intAttribute(node: GraphNode, name: string, fallback: number): number {
  const v = node.attributes.get(name);
  return typeof v === 'number' ? v : fallback;
}

export function floatAttribute(node: GraphNode, name: string, fallback: number): number {
  const v = node.attributes.get(name);
  return typeof v === 'number' ? v : fallback;
}

export function intsAttribute(node: GraphNode, name: string): number[] | undefined {
  const v = node.attributes.get(name);
  return Array.isArray(v) ? v : undefined;
}

export function stringAttribute(node: GraphNode, name: string, fallback: string): string {
  const v = node.attributes.get(name);
  return typeof v === 'string' ? v : fallback;
}
