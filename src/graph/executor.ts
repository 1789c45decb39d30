// Runs a compiled graph on the native kernels. Weights are packed (dense) or compressed (CSR)
// once here, per layer by measured density; bias and activation ride in the kernel call.
// Everything blocks the calling thread: the executor lives inside a pool worker.
import { UmbraError } from '../errors.js';
import {
  biasActivation, boundGemm, csrFromDense, denseWeights, gemm, packSparse, packWeights, softmax, spmm,
  type Activation, type BoundGemm, type SparseWeights,
} from '../native/kernels.js';
import { describeNode, type GraphNode } from './graph.js';
import type { CompiledGraph, DenseStep, Step } from './compile.js';
import { REFERENCE_OPS, softmaxLayout } from './reference-ops.js';
import { asFloat32, type Value } from './tensor.js';
import { slabTypedArrayFor } from '../protocol/datatype.js';

/**
 * Storage for a step's result: a view carved from a shared slab. A fresh Float32Array of more than
 * 64 bytes costs ~1-3 us (a backing store of its own, and the collector's external-memory
 * bookkeeping); a smaller one lives on the V8 heap, and handing it to the addon moves it out at
 * about the same price. On a small model that was more than its kernels. Outputs are views then:
 * whoever transfers them to another thread copies them first (workers/worker.ts).
 */
function float32(n: number): Float32Array {
  return slabTypedArrayFor('FP32', n) as Float32Array;
}

/**
 * A layer goes sparse (CSR in column panels) when fewer than this fraction of its weights are
 * non-zero: the measured break-even of the two kernels. On 4096x4096 single-threaded
 * (bench/RESULTS-native.md) the panel SpMM beats the packed dense GEMM at 40% density and
 * below at batch 1, 8 and 64, and about ties it at 50%; 45% sits between.
 */
export const SPARSE_DENSITY_BELOW = 0.45;

export interface ExecutorOptions {
  /** Kernel threads per call; 1 inside pool workers (the pool already fills the cores). */
  threads?: number;
  /** Override of SPARSE_DENSITY_BELOW (0 = always dense, > 1 = always sparse). */
  sparseBelow?: number;
}

interface PreparedDense {
  kind: 'prepared-dense';
  step: DenseStep;
  /** How errors name this layer. */
  label: string;
  /** Fraction of non-zero weights, as measured at load. */
  density: number;
  /** Packed weights are bound with their bias and activation once: a run only passes X. */
  weights: { format: 'packed'; run: BoundGemm } | { format: 'csr'; csr: SparseWeights };
}

type PreparedStep = Exclude<Step, DenseStep> | PreparedDense;

export interface LayerInfo {
  name: string;
  k: number;
  n: number;
  density: number;
  format: 'packed' | 'csr';
  activation: Activation;
  bias: boolean;
}

function density(w: Float32Array): number {
  let nonZero = 0;
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) nonZero++;
  return w.length === 0 ? 1 : nonZero / w.length;
}

function transpose2d(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c]!;
  return out;
}

export class GraphExecutor {
  private readonly steps: PreparedStep[];
  private readonly threads: number;
  private readonly constantBuffers = new Set<ArrayBufferLike>();

  constructor(private readonly compiled: CompiledGraph, options: ExecutorOptions = {}) {
    this.threads = options.threads ?? 1;
    for (const v of compiled.graph.constants.values()) this.constantBuffers.add(v.data.buffer);
    const sparseBelow = options.sparseBelow ?? SPARSE_DENSITY_BELOW;
    this.steps = compiled.steps.map((step) => {
      if (step.kind !== 'dense') return step;
      const d = density(step.weights);
      const weights = d < sparseBelow
        ? { format: 'csr' as const, csr: packSparse(csrFromDense(step.weights, step.n, step.k)) }
        : { format: 'packed' as const, run: boundGemm(packWeights(denseWeights(step.weights, step.k, step.n, 'nxk'), this.threads), { ...(step.bias ? { bias: step.bias } : {}), activation: step.activation, threads: this.threads }) };
      // The plan's copy is no longer needed once packed: let it be collected.
      const slim: DenseStep = { ...step, weights: new Float32Array(0) };
      return { kind: 'prepared-dense', step: slim, label: `layer "${step.name}"`, density: d, weights };
    });
  }

  /** How each layer runs (for logs, tests and the benchmark). */
  layers(): LayerInfo[] {
    return this.steps.flatMap((s) => (s.kind === 'prepared-dense'
      ? [{ name: s.step.name, k: s.step.k, n: s.step.n, density: s.density, format: s.weights.format, activation: s.step.activation, bias: s.step.bias !== undefined }]
      : []));
  }

  /** Runs the graph; `inputs` maps graph input names to values. Returns the requested outputs. */
  run(inputs: ReadonlyMap<string, Value>, outputs: readonly string[]): Map<string, Value> {
    // Constants are looked up where they live, not copied into every run's environment; the
    // reader's description is only formatted when a value is missing.
    const constants = this.compiled.graph.constants;
    const env = new Map<string, Value>(inputs);
    const get = (name: string, reader: GraphNode | string): Value => {
      const v = env.get(name) ?? constants.get(name);
      if (!v) throw new UmbraError('INVALID_INPUT', `${typeof reader === 'string' ? reader : describeNode(reader)} reads "${name}", which has no value (is an input missing?)`);
      return v;
    };
    for (const step of this.steps) {
      switch (step.kind) {
        case 'prepared-dense': env.set(step.step.output, this.dense(step, get(step.step.input, step.label))); break;
        case 'activation': {
          const x = get(step.input, `node "${step.name}"`);
          const src = asFloat32(x);
          const data = float32(src.length);
          data.set(src);
          biasActivation(data, 1, data.length, { activation: step.activation });
          env.set(step.output, { dims: [...x.dims], data });
          break;
        }
        case 'softmax': {
          const x = get(step.node.inputs[0]!, step.node);
          env.set(step.node.outputs[0]!, this.softmax(step.node, x));
          break;
        }
        case 'matmul': env.set(step.node.outputs[0]!, this.matmul(step.node, step.node.inputs.map((n) => (n === '' ? undefined : get(n, step.node))))); break;
        case 'reference': {
          const node = step.node;
          const args = node.inputs.map((n) => (n === '' ? undefined : get(n, node)));
          const results = REFERENCE_OPS[node.op]!(args, node, { opset: this.compiled.graph.opset });
          results.forEach((v, i) => { if (node.outputs[i]) env.set(node.outputs[i]!, v); });
          break;
        }
      }
    }
    const result = new Map<string, Value>();
    for (const name of outputs) {
      const v = get(name, 'graph output');
      // Outputs may be transferred away: never hand out a constant's own buffer.
      result.set(name, this.constantBuffers.has(v.data.buffer) ? { dims: v.dims, data: v.data.slice() } : v);
    }
    return result;
  }

  private dense(prepared: PreparedDense, input: Value): Value {
    const { step } = prepared;
    let x = asFloat32(input);
    const size = x.length;
    if (size % step.k !== 0 || (step.gemm && input.dims.length !== 2)) {
      throw new UmbraError('INVALID_INPUT', `layer "${step.name}" expects rows of ${step.k} values but received shape [${input.dims.join(', ')}]`);
    }
    const m = size / step.k;
    if (step.transposeInput) x = transpose2d(x, step.k, m);
    const dims = step.gemm ? [m, step.n] : [...input.dims.slice(0, -1), step.n];
    if (m === 0) return { dims, data: new Float32Array(0) };
    if (prepared.weights.format === 'packed') return { dims, data: prepared.weights.run(x, m, float32(m * step.n)) };
    const data = spmm({ x, m, activation: step.activation, threads: this.threads, ...(step.bias ? { bias: step.bias } : {}), weights: prepared.weights.csr });
    return { dims, data };
  }

  private softmax(node: GraphNode, x: Value): Value {
    const { outer, span, inner } = softmaxLayout(x.dims, node, { opset: this.compiled.graph.opset });
    if (inner !== 1) return REFERENCE_OPS.Softmax!([x], node, { opset: this.compiled.graph.opset })[0]!;
    const src = asFloat32(x);
    const data = float32(src.length);
    data.set(src);
    if (data.length > 0) softmax(data, outer, span);
    return { dims: [...x.dims], data };
  }

  /** MatMul/Gemm whose weight is a run-time value: unpacked gemm on 2-D operands. */
  private matmul(node: GraphNode, args: (Value | undefined)[]): Value {
    const [a, b, c] = args;
    if (!a || !b || b.dims.length !== 2 || (node.op === 'Gemm' && a.dims.length !== 2)) {
      throw new UmbraError('INVALID_INPUT', `${describeNode(node)} needs a 2-D right-hand side at run time (batched MatMul is not supported by the native backend)`);
    }
    const gemmOp = node.op === 'Gemm';
    const transA = gemmOp && Number(node.attributes.get('transA') ?? 0) === 1;
    const transB = gemmOp && Number(node.attributes.get('transB') ?? 0) === 1;
    const [bRows, bCols] = [b.dims[0]!, b.dims[1]!];
    const [k, n] = transB ? [bCols, bRows] : [bRows, bCols];
    let x = asFloat32(a);
    const m = x.length / k;
    if (!Number.isInteger(m)) throw new UmbraError('INVALID_INPUT', `${describeNode(node)}: shapes [${a.dims.join(', ')}] and [${b.dims.join(', ')}] do not multiply`);
    if (transA) x = transpose2d(x, k, m);
    const dims = gemmOp ? [m, n] : [...a.dims.slice(0, -1), n];
    let y = m === 0 ? new Float32Array(0) : gemm({ x, m, weights: denseWeights(asFloat32(b), k, n, transB ? 'nxk' : 'kxn'), threads: this.threads });
    if (gemmOp) {
      const alpha = Number(node.attributes.get('alpha') ?? 1);
      if (alpha !== 1) y = y.map((v) => v * alpha);
      if (c) {
        const beta = Number(node.attributes.get('beta') ?? 1);
        const cb = beta === 1 ? c : { dims: c.dims, data: asFloat32(c).map((v) => v * beta) };
        return REFERENCE_OPS.Add!([{ dims, data: y }, cb], node, { opset: 13 })[0]!;
      }
    }
    return { dims, data: y };
  }
}
