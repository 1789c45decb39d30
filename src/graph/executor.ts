// Runs a compiled graph on the native kernels. Weights are packed (dense) or compressed (CSR in
// column panels) once here, each layer in the format measured fastest for it (layer-formats.ts);
// bias and activation ride in the kernel call. Everything blocks the calling thread: the
// executor lives inside a pool worker.
import { UmbraError } from '../errors.js';
import {
  biasActivation, boundGemm, boundSpmm, csrFromDense, denseWeights, gemm, packSparse, packWeights, softmax,
  type Activation, type BoundGemm, type BoundSpmm,
} from '../native/kernels.js';
import { formSparseChains, SparseChainRunner, type SparseChain } from './sparse-chain.js';
import { describeNode, type GraphNode } from './graph.js';
import type { CompiledGraph, DenseStep, Step } from './compile.js';
import {
  decideLayerFormat, DEFAULT_TUNE_BATCH_SIZES, seededInput, timeLayer,
  type LayerBasis, type LayerFormat, type LayerTiming,
} from './layer-formats.js';
import { REFERENCE_OPS, softmaxLayout } from './reference-ops.js';
import { asFloat32, sizeOf, type Value } from './tensor.js';
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
 * The density rule the executor used before formats were measured, kept for callers that ask
 * for a fixed rule (`sparseBelow`): sparse under 45% non-zero, the break-even of the two kernels
 * on one 4096x4096 layer on an Intel host (bench/RESULTS-native.md).
 */
export const SPARSE_DENSITY_BELOW = 0.45;

export interface ExecutorOptions {
  /** Kernel threads per call; 1 inside pool workers (the pool already fills the cores). */
  threads?: number;
  /** A fixed rule instead of measurement: sparse below this density (0 = always dense, > 1 = always sparse). */
  sparseBelow?: number;
  /**
   * Each dense layer's format, in layer order, from an earlier measurement of this model (so
   * every worker of a load runs the same plan). Ignored when it does not fit the model.
   */
  layerFormats?: readonly LayerFormat[];
  /** Batch sizes each layer is timed on (default DEFAULT_TUNE_BATCH_SIZES). */
  tuneBatchSizes?: readonly number[];
}

interface PreparedDense {
  kind: 'prepared-dense';
  step: DenseStep;
  /** How errors name this layer. */
  label: string;
  /** Fraction of non-zero weights, as measured at load. */
  density: number;
  format: LayerFormat;
  basis: LayerBasis;
  reason: string;
  timings?: LayerTiming[];
  /** Weights bound with their bias and activation once: a run only passes X. */
  run: BoundGemm;
  /** The same call on transposed activations, for a CSR layer (sparse chains pass those along). */
  sparse?: BoundSpmm;
}

type PreparedStep = Exclude<Step, DenseStep> | PreparedDense;

export interface LayerInfo {
  name: string;
  k: number;
  n: number;
  density: number;
  format: LayerFormat;
  /** What decided the format, and why, with the figures when measured. */
  basis: LayerBasis;
  reason: string;
  /** Both formats' fastest call per timed batch size, when measured. */
  timings?: LayerTiming[];
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

/** One warm-up batch flowing through the graph while its layers are timed. */
interface TuningBatch {
  batch: number;
  env: Map<string, Value>;
}

export class GraphExecutor {
  private readonly steps: PreparedStep[] = [];
  /** What a run executes: the steps, with runs of sparse layers merged into chains. */
  private readonly program: (PreparedStep | SparseChain<PreparedDense>)[];
  private readonly chains = new SparseChainRunner();
  private readonly threads: number;
  private readonly constantBuffers = new Set<ArrayBufferLike>();
  /** Why layers past some step were not timed, when a warm-up batch could not run the graph. */
  private untunedReason: string | undefined;

  constructor(private readonly compiled: CompiledGraph, options: ExecutorOptions = {}) {
    this.threads = options.threads ?? 1;
    for (const v of compiled.graph.constants.values()) this.constantBuffers.add(v.data.buffer);
    const denseCount = compiled.steps.filter((s) => s.kind === 'dense').length;
    const plan = options.layerFormats?.length === denseCount ? options.layerFormats : undefined;
    // Layers are timed on real activations: warm-up batches flow through the graph step by step
    // as it is prepared, so each layer sees its own input width and rows per sample.
    let tuning = options.sparseBelow === undefined && !plan ? this.tuningBatches(options.tuneBatchSizes ?? DEFAULT_TUNE_BATCH_SIZES) : [];
    let index = 0;
    for (const step of compiled.steps) {
      const prepared = step.kind === 'dense' ? this.prepareDense(step, options, plan?.[index++], tuning) : step;
      this.steps.push(prepared);
      try {
        for (const t of tuning) this.execute(prepared, t.env);
      } catch (err) {
        // A graph that cannot run on made-up inputs (a shape it insists on) is still served;
        // its remaining layers fall back to the density rule, and say so.
        tuning = [];
        this.untunedReason = `a warm-up batch failed: ${(err as Error).message}`;
      }
    }
    this.program = formSparseChains(this.steps, compiled.graph.outputs);
  }

  private tuningBatches(sizes: readonly number[]): TuningBatch[] {
    const inputs = this.compiled.graph.signature.inputs;
    return [...new Set(sizes)].filter((b) => Number.isInteger(b) && b > 0).sort((a, b) => a - b).map((batch) => {
      const env = new Map<string, Value>();
      inputs.forEach((info, i) => {
        const dims = info.dims.map((d, at) => (d >= 0 ? d : at === 0 ? batch : 1));
        env.set(info.name, { dims, data: seededInput(sizeOf(dims), 7 + i) });
      });
      return { batch, env };
    });
  }

  private prepareDense(step: DenseStep, options: ExecutorOptions, given: LayerFormat | undefined, tuning: readonly TuningBatch[]): PreparedDense {
    const d = density(step.weights);
    const label = `layer "${step.name}"`;
    const bound = { ...(step.bias ? { bias: step.bias } : {}), activation: step.activation, threads: this.threads };
    const packed = () => boundGemm(packWeights(denseWeights(step.weights, step.k, step.n, 'nxk'), this.threads), bound);
    const csr = () => boundSpmm(packSparse(csrFromDense(step.weights, step.n, step.k)), bound);
    // Timing builds both forms; the chosen one is kept rather than built again.
    let forms = undefined as { packed: BoundGemm; csr: BoundSpmm } | undefined;
    const decision = decideLayerFormat(d, { ...(options.sparseBelow !== undefined ? { sparseBelow: options.sparseBelow } : {}), ...(given ? { given } : {}), fallbackBelow: SPARSE_DENSITY_BELOW }, () => {
      const runnable = tuning.filter((t) => t.env.has(step.input));
      if (runnable.length === 0) return this.untunedReason ?? 'no warm-up batch reached it';
      const timed = { packed: packed(), csr: csr() };
      forms = timed;
      return runnable.map((t) => {
        const { x, m } = this.layerInput(step, t.env.get(step.input)!);
        // One kernel thread: its CPU time is the kernel's. With more, the helpers' work and the
        // caller's waits are off this thread's clock, so elapsed time it is.
        return timeLayer(timed.packed, timed.csr, x, m, new Float32Array(m * step.n), t.batch, this.threads === 1 ? 'thread-cpu' : 'wall');
      });
    });
    const { format, basis, reason, timings } = decision;
    const run = forms ? forms[format] : format === 'csr' ? csr() : packed();
    // The plan's copy is no longer needed once packed: let it be collected.
    const slim: DenseStep = { ...step, weights: new Float32Array(0) };
    const sparse = format === 'csr' ? { sparse: run as BoundSpmm } : {};
    return { kind: 'prepared-dense', step: slim, label, density: d, format, basis, reason, run, ...sparse, ...(timings ? { timings } : {}) };
  }

  /** How each layer runs (for the API, logs, tests and the benchmark). */
  layers(): LayerInfo[] {
    return this.steps.flatMap((s) => (s.kind === 'prepared-dense'
      ? [{
        name: s.step.name, k: s.step.k, n: s.step.n, density: s.density, format: s.format, basis: s.basis, reason: s.reason,
        ...(s.timings ? { timings: s.timings.map((t) => ({ ...t })) } : {}), activation: s.step.activation, bias: s.step.bias !== undefined,
      }]
      : []));
  }

  /** The layers (by name) of each run of sparse layers that passes transposed activations along. */
  sparseChains(): string[][] {
    return this.program.flatMap((item) => (item.kind === 'sparse-chain' ? [item.layers.map((l) => l.step.name)] : []));
  }

  /** Each dense layer's format in order: the plan another executor of the same model can follow. */
  layerFormats(): LayerFormat[] {
    return this.steps.flatMap((s) => (s.kind === 'prepared-dense' ? [s.format] : []));
  }

  /** Runs the graph; `inputs` maps graph input names to values. Returns the requested outputs. */
  run(inputs: ReadonlyMap<string, Value>, outputs: readonly string[]): Map<string, Value> {
    const env = new Map<string, Value>(inputs);
    for (const item of this.program) {
      if (item.kind === 'sparse-chain') {
        const first = item.layers[0]!;
        const input = this.read(env, first.step.input, first.label);
        env.set(item.layers[item.layers.length - 1]!.step.output, this.chains.run(item, input, this.layerInput(first.step, input), float32));
      } else {
        this.execute(item, env);
      }
    }
    const result = new Map<string, Value>();
    for (const name of outputs) {
      const v = this.read(env, name, 'graph output');
      // Outputs may be transferred away: never hand out a constant's own buffer.
      result.set(name, this.constantBuffers.has(v.data.buffer) ? { dims: v.dims, data: v.data.slice() } : v);
    }
    return result;
  }

  /**
   * A value by name. Constants are looked up where they live, not copied into every run's
   * environment; the reader's description is only formatted when a value is missing.
   */
  private read(env: ReadonlyMap<string, Value>, name: string, reader: GraphNode | string): Value {
    const v = env.get(name) ?? this.compiled.graph.constants.get(name);
    if (!v) throw new UmbraError('INVALID_INPUT', `${typeof reader === 'string' ? reader : describeNode(reader)} reads "${name}", which has no value (is an input missing?)`);
    return v;
  }

  /** Runs one step on the values in `env` and stores its results there. */
  private execute(step: PreparedStep, env: Map<string, Value>): void {
    switch (step.kind) {
      case 'prepared-dense': env.set(step.step.output, this.dense(step, this.read(env, step.step.input, step.label))); return;
      case 'activation': {
        const x = this.read(env, step.input, `node "${step.name}"`);
        const src = asFloat32(x);
        const data = float32(src.length);
        data.set(src);
        biasActivation(data, 1, data.length, { activation: step.activation });
        env.set(step.output, { dims: [...x.dims], data });
        return;
      }
      case 'softmax': env.set(step.node.outputs[0]!, this.softmax(step.node, this.read(env, step.node.inputs[0]!, step.node))); return;
      case 'matmul': env.set(step.node.outputs[0]!, this.matmul(step.node, step.node.inputs.map((n) => (n === '' ? undefined : this.read(env, n, step.node))))); return;
      case 'reference': {
        const node = step.node;
        const args = node.inputs.map((n) => (n === '' ? undefined : this.read(env, n, node)));
        const results = REFERENCE_OPS[node.op]!(args, node, { opset: this.compiled.graph.opset });
        results.forEach((v, i) => { if (node.outputs[i]) env.set(node.outputs[i]!, v); });
      }
    }
  }

  /** A layer's input as X [m, k] (transposed first for Gemm transA); throws on a shape it cannot take. */
  private layerInput(step: DenseStep, input: Value): { x: Float32Array; m: number } {
    const x = asFloat32(input);
    if (x.length % step.k !== 0 || (step.gemm && input.dims.length !== 2)) {
      throw new UmbraError('INVALID_INPUT', `layer "${step.name}" expects rows of ${step.k} values but received shape [${input.dims.join(', ')}]`);
    }
    const m = x.length / step.k;
    return { x: step.transposeInput ? transpose2d(x, step.k, m) : x, m };
  }

  private dense(prepared: PreparedDense, input: Value): Value {
    const { step } = prepared;
    const { x, m } = this.layerInput(step, input);
    const dims = step.gemm ? [m, step.n] : [...input.dims.slice(0, -1), step.n];
    if (m === 0) return { dims, data: new Float32Array(0) };
    return { dims, data: prepared.run(x, m, float32(m * step.n)) };
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
