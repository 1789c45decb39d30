// Which initializers of an ONNX graph are prunable weights, and how they lie as matrices.
// Only FP32 initializers that feed nothing but weight inputs (MatMul B, Gemm B, Conv W) qualify,
// so biases, normalisation scales and shape constants are never touched.
import { int64ToNumber, onnx, type ModelProto } from '../onnx/model-io.js';
import type pkg from 'onnx-proto';

/** 'nxk': rows are output units and K (the input dimension) runs along a row; 'kxn': rows are inputs. */
export type MatrixLayout = 'nxk' | 'kxn';

export interface PrunableWeight {
  /** Initializer name. */
  readonly name: string;
  /** Names of the nodes that read it (op type and index when a node has no name). */
  readonly nodes: readonly string[];
  readonly op: 'MatMul' | 'Gemm' | 'Conv';
  readonly dims: readonly number[];
  /** The weight as a matrix: MatMul [K,N] is kxn; Gemm transB=1 [N,K] and Conv [O, C*kh*kw] are nxk. */
  readonly rows: number;
  readonly cols: number;
  readonly layout: MatrixLayout;
  readonly size: number;
  readonly tensor: pkg.onnx.ITensorProto;
  /**
   * Read by a node whose result reaches a graph output without passing another MatMul, Gemm or
   * Conv: an output layer (a classifier's last layer), whose output units are the model's outputs.
   */
  readonly outputLayer: boolean;
}

export interface SkippedInitializer {
  readonly name: string;
  readonly reason: string;
}

/**
 * Whether a skipped initializer is a weight some layer reads (left alone for its reason: another
 * reader, its type or rank, its side of the product), not a bias, norm or constant.
 */
export function isLayerWeight(s: SkippedInitializer): boolean {
  return !s.reason.startsWith('not ');
}

interface WeightUse {
  op: PrunableWeight['op'];
  node: string;
  /** Index of the reading node in the graph. */
  index: number;
  layout: MatrixLayout;
}

const DEFAULT_DOMAINS = new Set(['', 'ai.onnx']);

function attributeInt(node: pkg.onnx.INodeProto, name: string, fallback: number): number {
  const attr = (node.attribute ?? []).find((a) => a.name === name);
  return attr ? int64ToNumber(attr.i, `attribute ${name}`) : fallback;
}

/** The weight role of input `index` of `node`, or null when that input is not a prunable weight. */
function weightUse(node: pkg.onnx.INodeProto, index: number, label: string, nodeIndex: number): WeightUse | null {
  if (index !== 1 || !DEFAULT_DOMAINS.has(node.domain ?? '')) return null;
  switch (node.opType) {
    case 'MatMul': return { op: 'MatMul', node: label, index: nodeIndex, layout: 'kxn' };
    // Gemm computes A·B, or A·Bᵀ with transB=1, so B is [K,N] or [N,K].
    case 'Gemm': return { op: 'Gemm', node: label, index: nodeIndex, layout: attributeInt(node, 'transB', 0) === 1 ? 'nxk' : 'kxn' };
    case 'Conv': return { op: 'Conv', node: label, index: nodeIndex, layout: 'nxk' };
    default: return null;
  }
}

const isProduct = (node: pkg.onnx.INodeProto) => DEFAULT_DOMAINS.has(node.domain ?? '') && (node.opType === 'MatMul' || node.opType === 'Gemm');

const isLayerOp = (node: pkg.onnx.INodeProto) => DEFAULT_DOMAINS.has(node.domain ?? '') && (node.opType === 'MatMul' || node.opType === 'Gemm' || node.opType === 'Conv');

/**
 * Indices of the MatMul/Gemm/Conv nodes whose results reach a graph output through other ops
 * only (bias adds, activations, softmax, argmax, reshapes): the output layers. The walk stops at
 * the next MatMul/Gemm/Conv, so each node's walk covers only the ops up to the next layer.
 */
function outputLayerNodes(graph: pkg.onnx.IGraphProto): Set<number> {
  const nodes = graph.node ?? [];
  const readers = new Map<string, number[]>();
  nodes.forEach((node, n) => {
    for (const input of node.input ?? []) if (input) readers.set(input, [...(readers.get(input) ?? []), n]);
  });
  const outputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const found = new Set<number>();
  nodes.forEach((node, n) => {
    if (!isLayerOp(node)) return;
    const pending = [...(node.output ?? [])];
    const seen = new Set<string>();
    while (pending.length > 0) {
      const tensor = pending.pop()!;
      if (!tensor || seen.has(tensor)) continue;
      seen.add(tensor);
      if (outputs.has(tensor)) {
        found.add(n);
        return;
      }
      for (const r of readers.get(tensor) ?? []) if (!isLayerOp(nodes[r]!)) pending.push(...(nodes[r]!.output ?? []));
    }
  });
  return found;
}

/** Every name a subgraph (If/Loop/Scan bodies) reads, so weights captured by one are left alone. */
function subgraphReads(graph: pkg.onnx.IGraphProto, into: Set<string>): void {
  for (const node of graph.node ?? []) {
    for (const input of node.input ?? []) into.add(input);
    for (const attr of node.attribute ?? []) {
      if (attr.g) subgraphReads(attr.g, into);
      for (const g of attr.graphs ?? []) subgraphReads(g, into);
    }
  }
}

export function findPrunable(model: ModelProto): { prunable: PrunableWeight[]; skipped: SkippedInitializer[] } {
  const graph = model.graph!;
  const uses = new Map<string, WeightUse[]>();
  const otherUse = new Map<string, string>();
  /** Initializers read as the left operand of a product (W·x), by the first node that does. */
  const leftOperand = new Map<string, string>();
  const nestedReads = new Set<string>();
  (graph.node ?? []).forEach((node, n) => {
    const label = node.name || `${node.opType ?? 'node'}#${n}`;
    (node.input ?? []).forEach((input, i) => {
      if (!input) return;
      const use = weightUse(node, i, label, n);
      if (use) uses.set(input, [...(uses.get(input) ?? []), use]);
      else if (!otherUse.has(input)) otherUse.set(input, `input ${i} of ${node.opType} ${label}`);
      if (i === 0 && isProduct(node) && !leftOperand.has(input)) leftOperand.set(input, `${node.opType} ${label}`);
    });
    for (const attr of node.attribute ?? []) {
      if (attr.g) subgraphReads(attr.g, nestedReads);
      for (const g of attr.graphs ?? []) subgraphReads(g, nestedReads);
    }
  });
  const outputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const outputLayers = outputLayerNodes(graph);

  const prunable: PrunableWeight[] = [];
  const skipped: SkippedInitializer[] = [];
  for (const tensor of graph.initializer ?? []) {
    const name = tensor.name ?? '';
    const found = uses.get(name);
    const skip = (reason: string) => skipped.push({ name, reason });
    if (!found) {
      // A layer's weight on the left (torch.matmul(W, x)): its role, not "not a weight" among the biases.
      if (leftOperand.has(name)) skip(`the left operand of ${leftOperand.get(name)} (W·x); only a product's right-hand weight (x·W, Gemm B, Conv W) is pruned`);
      else skip(otherUse.has(name) ? `not a weight (${otherUse.get(name)})` : 'not read by a MatMul, Gemm or Conv weight input');
      continue;
    }
    if (otherUse.has(name)) { skip(`also read as ${otherUse.get(name)}`); continue; }
    if (outputs.has(name)) { skip('also a graph output'); continue; }
    if (nestedReads.has(name)) { skip('also read inside a subgraph'); continue; }
    if (tensor.dataType !== onnx.TensorProto.DataType.FLOAT) {
      skip(`element type ${onnx.TensorProto.DataType[tensor.dataType ?? 0] ?? tensor.dataType}; only FP32 weights are pruned`);
      continue;
    }
    const first = found[0]!;
    if (found.some((u) => u.layout !== first.layout || u.op !== first.op)) { skip('read as weights of different layouts'); continue; }
    const dims = (tensor.dims ?? []).map((d, i) => int64ToNumber(d, `dim ${i} of "${name}"`));
    const size = dims.reduce((a, b) => a * b, 1);
    if (first.op === 'Conv' ? dims.length < 3 : dims.length !== 2) {
      skip(`rank ${dims.length} ${first.op} weight (expected ${first.op === 'Conv' ? '3 or more' : '2'} dims)`);
      continue;
    }
    const rows = dims[0]!;
    const cols = rows === 0 ? 0 : size / rows;
    prunable.push({
      name, nodes: found.map((u) => u.node), op: first.op, dims, rows, cols, layout: first.layout, size, tensor,
      outputLayer: found.some((u) => outputLayers.has(u.index)),
    });
  }
  return { prunable, skipped };
}

/** The input (K) and output (N) sizes of a prunable weight. */
export function matrixSides(w: Pick<PrunableWeight, 'rows' | 'cols' | 'layout'>): { inputs: number; outputs: number } {
  return w.layout === 'nxk' ? { inputs: w.cols, outputs: w.rows } : { inputs: w.rows, outputs: w.cols };
}
