// Turns an ONNX graph into the native executor's plan: fold constant subgraphs, fuse PyTorch's
// Erf-based GELU, lower MatMul/Gemm with constant weights to dense layers (weights as [N, K]),
// then fuse a following bias Add and activation into each layer. Pure TypeScript: no kernels run
// here, so `auto` can check a model on the main thread.
import { UmbraError } from '../errors.js';
import type { ModelProto } from '../onnx/model-io.js';
import type { Activation } from '../native/kernels.js';
import { describeNode, floatAttribute, intAttribute, intsAttribute, loadGraph, stringAttribute, type Graph, type GraphNode } from './graph.js';
import { fuseGelu } from './fuse-gelu.js';
import { REFERENCE_OPS, RUNTIME_OPS } from './reference-ops.js';
import { asFloat32, sizeOf, type Value } from './tensor.js';

/** act(X · Wᵀ + bias) with W [n, k] row-major; X is the input flattened to [m, k]. */
export interface DenseStep {
  kind: 'dense';
  name: string;
  input: string;
  output: string;
  k: number;
  n: number;
  weights: Float32Array;
  bias?: Float32Array;
  activation: Activation;
  /** Gemm transA: the runtime input is [k, m] and is transposed first. */
  transposeInput: boolean;
  /** Gemm keeps 2-D; MatMul keeps the input's leading dims. */
  gemm: boolean;
}

/** MatMul/Gemm whose right-hand side is computed at run time (no pre-packing possible). */
export interface MatMulStep {
  kind: 'matmul';
  node: GraphNode;
}

export interface ActivationStep {
  kind: 'activation';
  name: string;
  input: string;
  output: string;
  activation: Exclude<Activation, 'none'>;
}

export interface SoftmaxStep {
  kind: 'softmax';
  node: GraphNode;
}

/** Anything else the TypeScript reference runs (broadcast arithmetic, shapes, ArgMax). */
export interface ReferenceStep {
  kind: 'reference';
  node: GraphNode;
}

export type Step = DenseStep | MatMulStep | ActivationStep | SoftmaxStep | ReferenceStep;

export interface CompiledGraph {
  graph: Graph;
  steps: Step[];
}

const ACTIVATION_OPS: Readonly<Record<string, Exclude<Activation, 'none'>>> = { Relu: 'relu', Sigmoid: 'sigmoid', Tanh: 'tanh', Gelu: 'gelu' };

function unsupported(node: GraphNode, why: string): UmbraError {
  return new UmbraError('LOAD_FAILED', `${describeNode(node)} ${why}; the native backend runs only dense-network operators (${[...RUNTIME_OPS].join(', ')}); use backend: onnxruntime (or auto) for this model`);
}

/** Evaluates every node whose inputs are all constants; returns the nodes left to run. */
export function foldConstants(graph: Graph): GraphNode[] {
  const left: GraphNode[] = [];
  for (const node of graph.nodes) {
    const reference = REFERENCE_OPS[node.op];
    const inputs = node.inputs.map((name) => (name === '' ? undefined : graph.constants.get(name)));
    const allConstant = node.inputs.every((name, i) => name === '' || inputs[i] !== undefined);
    if (!reference || !allConstant) {
      left.push(node);
      continue;
    }
    const outputs = reference(inputs, node, { opset: graph.opset });
    outputs.forEach((value, i) => {
      const name = node.outputs[i];
      if (name) graph.constants.set(name, value);
    });
  }
  return left;
}

/** Row-major [rows, cols] -> [cols, rows]. */
export function transposed(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

/** A constant that adds one value per output column (shape [n], [1, n] or a scalar), or undefined. */
function columnVector(value: Value | undefined, n: number, maxRank: number): Float32Array | undefined {
  if (!value) return undefined;
  const size = sizeOf(value.dims);
  if (value.dims.length > maxRank || value.dims.slice(0, -1).some((d) => d !== 1)) return undefined;
  if (size === n && (value.dims[value.dims.length - 1] ?? 1) === n) return asFloat32(value);
  if (size === 1) return new Float32Array(n).fill(asFloat32(value)[0]!);
  return undefined;
}

const SAME_RANK_OPS = new Set(['Relu', 'Sigmoid', 'Tanh', 'Gelu', 'Erf', 'Sqrt', 'Neg', 'Reciprocal', 'Identity', 'Dropout', 'Softmax', 'Cast']);
const BROADCAST_OPS = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow']);

/**
 * The rank of each value where the graph's inputs and constants and the ops the native backend
 * runs determine it (no shapes needed), so a node the kernels cannot run on its ranks (a batched
 * MatMul of two run-time tensors) is refused at load, and `auto` picks onnxruntime for it.
 */
function knownRanks(graph: Graph): Map<string, number> {
  const ranks = new Map<string, number>();
  for (const input of graph.signature.inputs) if (input.dims.length > 0) ranks.set(input.name, input.dims.length);
  for (const [name, value] of graph.constants) ranks.set(name, value.dims.length);
  const count = (name: string | undefined, node: GraphNode, attribute: string): number | undefined => {
    const c = name ? graph.constants.get(name) : undefined;
    return c ? sizeOf(c.dims) : intsAttribute(node, attribute)?.length;
  };
  for (const node of graph.nodes) {
    const [a, b] = node.inputs.map((name) => ranks.get(name));
    let rank: number | undefined;
    if (SAME_RANK_OPS.has(node.op)) rank = a;
    else if (BROADCAST_OPS.has(node.op)) rank = a !== undefined && b !== undefined ? Math.max(a, b) : undefined;
    else if (node.op === 'Flatten' || node.op === 'Gemm') rank = 2;
    else if (node.op === 'Shape') rank = 1;
    else if (node.op === 'Reshape') rank = count(node.inputs[1], node, '');
    else if (node.op === 'Concat') rank = node.inputs.map((name) => ranks.get(name)).find((r) => r !== undefined);
    else if (node.op === 'Gather') rank = a !== undefined && b !== undefined ? a - 1 + b : undefined;
    else if (node.op === 'Unsqueeze' || node.op === 'Squeeze') {
      const axes = count(node.inputs[1], node, 'axes');
      rank = a === undefined || axes === undefined ? undefined : node.op === 'Unsqueeze' ? a + axes : a - axes;
    } else if (node.op === 'ArgMax') rank = a === undefined ? undefined : intAttribute(node, 'keepdims', 1) === 1 ? a : a - 1;
    else if (node.op === 'MatMul' && a !== undefined && b !== undefined) rank = a === 1 ? b - 1 : b === 1 ? a - 1 : Math.max(a, b);
    if (rank !== undefined && node.outputs[0]) ranks.set(node.outputs[0], rank);
  }
  return ranks;
}

function lowerMatMul(node: GraphNode, graph: Graph, steps: Step[], ranks: ReadonlyMap<string, number>): void {
  const [aName = '', bName = '', cName = ''] = node.inputs;
  const b = graph.constants.get(bName);
  const gemm = node.op === 'Gemm';
  if (!b || graph.constants.has(aName) || b.dims.length !== 2) {
    if (b && b.dims.length !== 2) throw unsupported(node, `has a ${b.dims.length}-D weight`);
    // The run-time product takes a 2-D right-hand side only (GraphExecutor.matmul).
    const rank = ranks.get(bName);
    if (!b && rank !== undefined && rank !== 2) throw unsupported(node, `multiplies by a run-time ${rank}-D right-hand side (a batched MatMul)`);
    steps.push({ kind: 'matmul', node });
    return;
  }
  const transB = gemm && intAttribute(node, 'transB', 0) === 1;
  const [rows, cols] = [b.dims[0]!, b.dims[1]!];
  const [k, n] = transB ? [cols, rows] : [rows, cols];
  let weights = transB ? asFloat32(b).slice() : transposed(asFloat32(b), rows, cols);
  const alpha = gemm ? floatAttribute(node, 'alpha', 1) : 1;
  if (alpha !== 1) weights = weights.map((v) => v * alpha);
  const output = node.outputs[0]!;
  const step: DenseStep = {
    kind: 'dense', name: node.name, input: aName, output, k, n, weights, activation: 'none',
    transposeInput: gemm && intAttribute(node, 'transA', 0) === 1, gemm,
  };
  steps.push(step);
  if (!gemm || cName === '') return;
  const beta = floatAttribute(node, 'beta', 1);
  const c = graph.constants.get(cName);
  const bias = columnVector(c, n, 2);
  if (bias) {
    step.bias = beta === 1 ? Float32Array.from(bias) : bias.map((v) => v * beta);
    return;
  }
  // A full [m, n] C: add it after the layer, as the reference does.
  if (beta !== 1) {
    if (!c) throw unsupported(node, 'scales a run-time C by beta');
    const scaled = `${cName}::beta`;
    graph.constants.set(scaled, { dims: c.dims, data: asFloat32(c).map((v) => v * beta) });
    steps.push({ kind: 'reference', node: { name: `${node.name}::C`, op: 'Add', inputs: [`${output}::AB`, scaled], outputs: [output], attributes: new Map() } });
  } else {
    steps.push({ kind: 'reference', node: { name: `${node.name}::C`, op: 'Add', inputs: [`${output}::AB`, cName], outputs: [output], attributes: new Map() } });
  }
  step.output = `${output}::AB`;
}

function lower(node: GraphNode, graph: Graph, steps: Step[], ranks: ReadonlyMap<string, number>): void {
  if (!RUNTIME_OPS.has(node.op)) throw unsupported(node, 'is not supported');
  switch (node.op) {
    case 'MatMul':
    case 'Gemm':
      lowerMatMul(node, graph, steps, ranks);
      return;
    case 'Softmax':
      steps.push({ kind: 'softmax', node });
      return;
    case 'Dropout':
      if ((node.outputs[1] ?? '') !== '' && isUsed(node.outputs[1]!, graph)) throw unsupported(node, 'has its mask output used');
      steps.push({ kind: 'reference', node: { ...node, outputs: node.outputs.slice(0, 1) } });
      return;
    case 'Gelu':
      if (stringAttribute(node, 'approximate', 'none') !== 'none') break;
      steps.push({ kind: 'activation', name: node.name, input: node.inputs[0]!, output: node.outputs[0]!, activation: 'gelu' });
      return;
    default: {
      const activation = ACTIVATION_OPS[node.op];
      if (activation) {
        steps.push({ kind: 'activation', name: node.name, input: node.inputs[0]!, output: node.outputs[0]!, activation });
        return;
      }
    }
  }
  steps.push({ kind: 'reference', node });
}

function isUsed(name: string, graph: Graph): boolean {
  return graph.outputs.includes(name) || graph.nodes.some((n) => n.inputs.includes(name));
}

/** The values a step reads. */
export function stepInputs(step: Step): string[] {
  if (step.kind === 'dense' || step.kind === 'activation') return [step.input];
  return step.node.inputs;
}

/** How many steps (and graph outputs) read each value: only a value read once can be fused away. */
function readCounts(steps: Step[], graph: Graph): Map<string, number> {
  const uses = new Map<string, number>();
  for (const s of steps) for (const name of stepInputs(s)) uses.set(name, (uses.get(name) ?? 0) + 1);
  for (const name of graph.outputs) uses.set(name, (uses.get(name) ?? 0) + 1);
  return uses;
}

/** Fuses "dense -> Add(bias) / Sub(bias)" and "dense -> activation" into the dense step. */
function fuseEpilogues(steps: Step[], graph: Graph): Step[] {
  const uses = readCounts(steps, graph);
  const removed = new Set<number>();
  steps.forEach((step, i) => {
    if (step.kind !== 'dense') return;
    for (;;) {
      // Only a value read once, by the very next consumer, can disappear into the kernel call.
      if (uses.get(step.output) !== 1) return;
      const j = steps.findIndex((s, at) => at > i && !removed.has(at) && stepInputs(s).includes(step.output));
      const next = steps[j];
      if (!next || step.activation !== 'none') return;
      if (next.kind === 'activation') {
        step.activation = next.activation;
        step.output = next.output;
      } else if (next.kind === 'reference' && (next.node.op === 'Add' || next.node.op === 'Sub')) {
        const [x, y] = next.node.inputs;
        if (x === y) return;
        if (next.node.op === 'Sub' && x !== step.output) return;
        const add = columnVector(graph.constants.get((x === step.output ? y : x) ?? ''), step.n, 2);
        if (!add) return;
        const sign = next.node.op === 'Sub' ? -1 : 1;
        const bias = step.bias ? Float32Array.from(step.bias) : new Float32Array(step.n);
        for (let c = 0; c < step.n; c++) bias[c]! += sign * add[c]!;
        step.bias = bias;
        step.output = next.node.outputs[0]!;
      } else {
        return;
      }
      removed.add(j);
    }
  });
  return steps.filter((_, i) => !removed.has(i));
}

/**
 * Folds "Mul(x, s)" / "Div(x, s)" by a constant scalar into the dense layer that alone reads its
 * result: (x * s) . W = x . (s * W). Input scaling (pixels / 16, standardisation by one factor) is
 * common in exported models, and on a small model the elementwise pass over X costs as much as a
 * layer. The layer reads x instead; only rounding differs (one product per weight instead of one
 * per input value).
 */
function foldInputScales(steps: Step[], graph: Graph): Step[] {
  const uses = readCounts(steps, graph);
  const removed = new Set<number>();
  steps.forEach((step, i) => {
    if (step.kind !== 'reference' || (step.node.op !== 'Mul' && step.node.op !== 'Div')) return;
    const [a = '', b = ''] = step.node.inputs;
    const output = step.node.outputs[0] ?? '';
    const scalar = (name: string): number | undefined => {
      const v = graph.constants.get(name);
      // Rank <= 1 keeps x's shape under broadcasting; the value must be a finite float.
      if (!v || sizeOf(v.dims) !== 1 || v.dims.length > 1 || !(v.data instanceof Float32Array || v.data instanceof Float64Array)) return undefined;
      const value = Number(v.data[0]);
      return Number.isFinite(value) ? value : undefined;
    };
    let x: string;
    let scale: (w: number) => number;
    if (step.node.op === 'Mul' && scalar(b) !== undefined && !graph.constants.has(a)) {
      const s = scalar(b)!;
      [x, scale] = [a, (w) => w * s];
    } else if (step.node.op === 'Mul' && scalar(a) !== undefined && !graph.constants.has(b)) {
      const s = scalar(a)!;
      [x, scale] = [b, (w) => w * s];
    } else if (step.node.op === 'Div' && scalar(b) !== undefined && scalar(b) !== 0 && !graph.constants.has(a)) {
      const s = scalar(b)!;
      [x, scale] = [a, (w) => w / s];
    } else return;
    if (uses.get(output) !== 1) return;
    const consumer = steps.find((s, at) => at > i && stepInputs(s).includes(output));
    if (consumer?.kind !== 'dense' || consumer.input !== output) return;
    consumer.weights = consumer.weights.map(scale);
    consumer.input = x;
    removed.add(i);
  });
  return steps.filter((_, i) => !removed.has(i));
}

/** The plan for a model (a path or a decoded proto). Throws LOAD_FAILED naming the first unsupported node. */
export function compileGraph(source: string | ModelProto): CompiledGraph {
  const graph = loadGraph(source);
  for (const input of graph.signature.inputs) {
    if (input.datatype !== 'FP32') {
      throw new UmbraError('LOAD_FAILED', `input "${input.name}" is ${input.datatype}; the native backend serves FP32 inputs only; use backend: onnxruntime (or auto)`);
    }
  }
  graph.nodes = fuseGelu(foldConstants(graph), graph);
  const steps: Step[] = [];
  const ranks = knownRanks(graph);
  for (const node of graph.nodes) lower(node, graph, steps, ranks);
  return { graph, steps: fuseEpilogues(foldInputScales(steps, graph), graph) };
}
