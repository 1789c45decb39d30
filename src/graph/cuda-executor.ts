// Runs a compiled graph with its layers on a CUDA device. Every chain of steps that starts with a
// dense layer and continues through dense layers, activations and last-axis softmaxes, each
// reading only the step before it, becomes one device plan (src/native/cuda-plan.ts): the batch
// goes up once, stays on the device through the chain, comes down once, and small batches replay
// a captured CUDA graph. Weights go to the device once, here; release() frees them. The steps
// between chains (shapes, broadcast arithmetic, run-time MatMuls) run on the host through the CPU
// executor, which sees only those steps.
import { UmbraError } from '../errors.js';
import { CudaPlan, CUDA_GRAPH_MAX_ROWS, type CudaPlanOp } from '../native/cuda-plan.js';
import type { CudaPlanStages } from '../native/addon.js';
import {
  releaseCuda, threadStream, uploadCsr, uploadDense, uploadVector,
  type CudaCsrWeights, type CudaDenseWeights, type CudaPrecision, type CudaResident, type CudaVector,
} from '../native/cuda.js';
import { csrFromDense, denseWeights, type Activation } from '../native/kernels.js';
import { stepInputs, transposed, type ActivationStep, type CompiledGraph, type DenseStep, type SoftmaxStep, type Step } from './compile.js';
import { GraphExecutor } from './executor.js';
import { decideLayerFormat, seededInput, timeLayer, type LayerBasis, type LayerFormat, type LayerTiming } from './layer-formats.js';
import { describeNode, intAttribute } from './graph.js';
import { softmaxLayout } from './reference-ops.js';
import { asFloat32, normalizeAxis, type Value } from './tensor.js';

/**
 * The density cut for a layer that could not be timed (or when the caller asks for a fixed rule):
 * CSR below it. The CSR kernel reads an index per weight and loses the dense kernel's tiling, so the
 * cut sits well below the CPU's 45%. Layers are normally timed both ways at load instead.
 */
export const CUDA_SPARSE_DENSITY_BELOW = 0.2;

/**
 * Batch sizes a pruned layer is timed on at load when the caller names none: one request, a full
 * CUDA-graph batch and a large one (the GPU's sparse kernels gain, if anywhere, on big batches).
 */
export const CUDA_TUNE_BATCH_SIZES: readonly number[] = [1, 64, 256];

export interface CudaExecutorOptions {
  /** CUDA device index (default 0). */
  device?: number;
  /** Dense layers' arithmetic: fp32 (default), or tf32 / bf16 on the tensor cores. */
  precision?: CudaPrecision;
  /** A fixed density rule instead of timing each pruned layer (0 = always dense, > 1 = always CSR). */
  sparseBelow?: number;
  /** Batch sizes each pruned layer is timed on at load (default CUDA_TUNE_BATCH_SIZES). */
  tuneBatchSizes?: readonly number[];
  /** Each dense layer's format from an earlier open of the same load (skips the timing). */
  layerFormats?: readonly LayerFormat[];
  /** Batches up to this many rows replay a captured CUDA graph; 0 = never. */
  graphMaxRows?: number;
  /** Kernel threads for the host steps. */
  threads?: number;
}

export interface CudaLayerInfo {
  name: string;
  k: number;
  n: number;
  density: number;
  format: 'dense' | 'csr';
  /** What decided the format, and why, with the figures when measured. */
  basis: LayerBasis;
  reason: string;
  /** Both formats' fastest call per timed batch size (one-layer device runs, copies included), when measured. */
  timings?: LayerTiming[];
  activation: Activation;
  bias: boolean;
  device: number;
  precision: CudaPrecision;
}

type ChainStep = DenseStep | ActivationStep | SoftmaxStep;

interface Chain {
  kind: 'chain';
  first: DenseStep;
  rest: ChainStep[];
  input: string;
  output: string;
  plan: CudaPlan;
}

interface HostRun {
  kind: 'host';
  executor: GraphExecutor;
  /** Values the run produces that a later step or the caller reads. */
  outputs: string[];
}

function density(w: Float32Array): number {
  let nonZero = 0;
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) nonZero++;
  return w.length === 0 ? 1 : nonZero / w.length;
}

function outputsOf(step: Step): string[] {
  if (step.kind === 'dense' || step.kind === 'activation') return [step.output];
  return step.node.outputs.filter((name) => name !== '');
}

function stepName(step: Step): string {
  return step.kind === 'dense' ? `layer "${step.name}"` : step.kind === 'activation' ? `node "${step.name}"` : describeNode(step.node);
}

/** A run of steps on the device: a dense layer, then layers, activations and last-axis softmaxes. */
export interface ChainPart {
  kind: 'chain';
  first: DenseStep;
  rest: ChainStep[];
  output: string;
}

/** Steps the CPU executor runs between chains, and which of their values are read afterwards. */
export interface HostPart {
  kind: 'host';
  steps: Step[];
  outputs: string[];
}

/**
 * Splits a compiled graph into device chains and host runs, in order. A step joins the open chain
 * when it reads the chain's output and nothing else reads that value (it never leaves the
 * device); a dense layer that transposes its input, or reads another width, starts a new chain.
 * A softmax joins only when its axis is the last for the rank the chain is known to have.
 * Pure: no device is touched, so it is testable anywhere.
 */
export function partitionForDevice(compiled: CompiledGraph): (ChainPart | HostPart)[] {
  const { graph, steps } = compiled;
  const reads = new Map<string, number>();
  for (const s of steps) for (const name of stepInputs(s)) reads.set(name, (reads.get(name) ?? 0) + 1);
  for (const name of graph.outputs) reads.set(name, (reads.get(name) ?? 0) + 1);
  const rankOf = new Map<string, number>();
  for (const t of graph.signature.inputs) if (t.shapeKnown) rankOf.set(t.name, t.dims.length);
  const lastAxisSoftmax = (step: SoftmaxStep, rank: number | undefined): boolean => {
    if (rank === undefined) return false;
    const axis = intAttribute(step.node, 'axis', graph.opset < 13 ? 1 : -1);
    return normalizeAxis(axis, rank, describeNode(step.node)) === rank - 1;
  };
  const readFrom = (at: number): Set<string> => {
    const later = new Set(graph.outputs);
    for (const s of steps.slice(at)) for (const name of stepInputs(s)) later.add(name);
    return later;
  };

  const parts: (ChainPart | HostPart)[] = [];
  let chain: (ChainPart & { width: number; rank: number | undefined }) | null = null;
  let host: Step[] = [];
  const closeChain = () => {
    if (chain) parts.push({ kind: 'chain', first: chain.first, rest: chain.rest, output: chain.output });
    chain = null;
  };
  const closeHost = (at: number) => {
    if (host.length === 0) return;
    const later = readFrom(at);
    parts.push({ kind: 'host', steps: host, outputs: host.flatMap(outputsOf).filter((name) => later.has(name)) });
    host = [];
  };
  steps.forEach((step, at) => {
    const inputs = stepInputs(step);
    const open = chain as (ChainPart & { width: number; rank: number | undefined }) | null;
    if (open && inputs.length === 1 && inputs[0] === open.output && reads.get(open.output) === 1) {
      if (step.kind === 'dense' && !step.transposeInput && step.k === open.width) {
        open.rest.push(step);
        open.output = step.output;
        open.width = step.n;
        if (step.gemm) open.rank = 2;
        return;
      }
      if (step.kind === 'activation' || (step.kind === 'softmax' && lastAxisSoftmax(step, open.rank))) {
        open.rest.push(step);
        open.output = outputsOf(step)[0]!;
        return;
      }
    }
    closeChain();
    if (step.kind === 'dense') {
      closeHost(at);
      chain = { kind: 'chain', first: step, rest: [], output: step.output, width: step.n, rank: step.gemm ? 2 : rankOf.get(step.input) };
    } else {
      host.push(step);
    }
  });
  closeChain();
  closeHost(steps.length);
  return parts;
}

export class CudaGraphExecutor {
  private readonly items: (Chain | HostRun)[] = [];
  private readonly layerInfo: CudaLayerInfo[] = [];
  private readonly uploads: CudaResident[] = [];
  private readonly constants: ReadonlyMap<string, Value>;
  private readonly opset: number;
  readonly device: number;
  private released = false;

  /** Uploads every layer's weights (blocking); throws UmbraError when CUDA is not usable. */
  constructor(compiled: CompiledGraph, options: CudaExecutorOptions = {}) {
    const parts = partitionForDevice(compiled);
    // Keep only the constants something reads at run time: the layers' weights live on the
    // device from here on, and their host copies may be collected.
    const read = new Set(compiled.graph.outputs);
    for (const part of parts) {
      if (part.kind === 'chain') read.add(part.first.input);
      else for (const step of part.steps) for (const name of stepInputs(step)) read.add(name);
    }
    this.constants = new Map([...compiled.graph.constants].filter(([name]) => read.has(name)));
    const graph = { ...compiled.graph, constants: this.constants as Map<string, Value> };
    this.opset = graph.opset;
    this.device = options.device ?? 0;
    // One stream per worker thread, shared by every model the worker serves.
    const stream = threadStream(this.device);
    const precision = options.precision ?? 'fp32';
    const graphMaxRows = options.graphMaxRows ?? CUDA_GRAPH_MAX_ROWS;
    const plan = options.layerFormats?.length === compiled.steps.filter((s) => s.kind === 'dense').length ? options.layerFormats : undefined;
    let dense = 0;
    const formats: FormatOptions = {
      ...(options.sparseBelow !== undefined ? { sparseBelow: options.sparseBelow } : {}),
      tuneBatchSizes: options.tuneBatchSizes ?? CUDA_TUNE_BATCH_SIZES,
      given: () => plan?.[dense++],
      stream,
      graphMaxRows,
    };
    try {
      for (const part of parts) {
        if (part.kind === 'host') {
          this.items.push({ kind: 'host', executor: new GraphExecutor({ graph, steps: part.steps }, { threads: options.threads ?? 1 }), outputs: part.outputs });
          continue;
        }
        const ops = [part.first, ...part.rest].map((step) => this.planOp(step, precision, formats));
        const plan = CudaPlan.create(stream, ops, part.first.k, { graphMaxRows });
        const slim = <T extends ChainStep>(step: T): T => (step.kind === 'dense' ? { ...step, weights: new Float32Array(0) } : step);
        this.items.push({ kind: 'chain', first: slim(part.first), rest: part.rest.map(slim), input: part.first.input, output: part.output, plan });
      }
    } catch (err) {
      this.release();
      throw err;
    }
  }

  private planOp(step: ChainStep, precision: CudaPrecision, formats: FormatOptions): CudaPlanOp {
    if (step.kind === 'activation') return { kind: 'activation', activation: step.activation };
    if (step.kind === 'softmax') return { kind: 'softmax' };
    const d = density(step.weights);
    const bias = step.bias ? this.keep(uploadVector(step.bias, this.device)) : undefined;
    const epilogue = { activation: step.activation, ...(bias ? { bias } : {}) };
    const upload = {
      dense: (): CudaPlanOp => ({ kind: 'dense', weights: uploadDense(denseWeights(step.weights, step.k, step.n, 'nxk'), this.device), precision, ...epilogue }),
      csr: (): CudaPlanOp => ({ kind: 'sparse', weights: uploadCsr(csrFromDense(step.weights, step.n, step.k), this.device), ...epilogue }),
    };
    // Timing uploads both forms; the chosen one is kept rather than uploaded again.
    let timed = undefined as { packed: CudaPlanOp; csr: CudaPlanOp } | undefined;
    const given = formats.given();
    const decision = decideLayerFormat(d, {
      ...(formats.sparseBelow !== undefined ? { sparseBelow: formats.sparseBelow } : {}),
      ...(given ? { given } : {}),
      fallbackBelow: CUDA_SPARSE_DENSITY_BELOW,
    }, () => {
      const ops = { packed: upload.dense(), csr: upload.csr() };
      timed = ops;
      return timeOnDevice(ops.packed, ops.csr, step.k, step.n, formats);
    });
    let op: CudaPlanOp;
    if (timed) {
      op = timed[decision.format];
      releaseCuda(opWeights(decision.format === 'csr' ? timed.packed : timed.csr));
    } else {
      op = decision.format === 'csr' ? upload.csr() : upload.dense();
    }
    this.keep(opWeights(op));
    this.layerInfo.push({
      name: step.name, k: step.k, n: step.n, density: d, format: decision.format === 'csr' ? 'csr' : 'dense',
      basis: decision.basis, reason: decision.reason, ...(decision.timings ? { timings: decision.timings } : {}),
      activation: step.activation, bias: bias !== undefined, device: this.device, precision,
    });
    return op;
  }

  /** Each dense layer's format in order: the plan the other workers of this load open with. */
  layerFormats(): LayerFormat[] {
    return this.layerInfo.map((l) => (l.format === 'csr' ? 'csr' : 'packed'));
  }

  private keep<T extends CudaDenseWeights | CudaCsrWeights | CudaVector>(upload: T): T {
    this.uploads.push(upload);
    return upload;
  }

  /** How each layer runs on the device (for logs, tests and the benchmark). */
  layers(): CudaLayerInfo[] {
    return this.layerInfo.map((l) => ({ ...l }));
  }

  /** Device chains and host runs, in order (for tests and logs). */
  outline(): { kind: 'chain' | 'host'; steps: number }[] {
    return this.items.map((item) => (item.kind === 'chain'
      ? { kind: 'chain', steps: 1 + item.rest.length }
      : { kind: 'host', steps: item.outputs.length }));
  }

  /** CUDA graph use per chain (captured batch sizes, replays). */
  planStats(): ReturnType<CudaPlan['stats']>[] {
    return this.items.flatMap((item) => (item.kind === 'chain' ? [item.plan.stats()] : []));
  }

  /** Host time of every chain's runs so far by stage, summed over chains (µs), and the model runs they served. */
  planStages(): { runs: number; stages: CudaPlanStages } {
    const stats = this.planStats();
    const stages: CudaPlanStages = { lockUs: 0, stageInUs: 0, launchUs: 0, deviceUs: 0, stageOutUs: 0, captureUs: 0 };
    for (const s of stats) for (const key of Object.keys(stages) as (keyof CudaPlanStages)[]) stages[key] += s.stages[key];
    // Every chain runs once per model run.
    return { runs: stats[0]?.runs ?? 0, stages };
  }

  /** Device bytes this model holds: its weights plus its chains' activation buffers. */
  deviceBytes(): number {
    const weights = this.uploads.reduce((sum, u) => sum + u.bytes, 0);
    return weights + (this.released ? 0 : this.planStats().reduce((sum, s) => sum + s.deviceBytes, 0));
  }

  /** Runs the graph; `inputs` maps graph input names to values. Returns the requested outputs. */
  async run(inputs: ReadonlyMap<string, Value>, outputs: readonly string[]): Promise<Map<string, Value>> {
    if (this.released) throw new UmbraError('INVALID_ARGUMENT', 'expected a loaded model but its CUDA executor was released');
    const env = new Map<string, Value>(inputs);
    const get = (name: string, reader: string): Value => {
      const v = env.get(name) ?? this.constants.get(name);
      if (!v) throw new UmbraError('INVALID_INPUT', `${reader} reads "${name}", which has no value (is an input missing?)`);
      return v;
    };
    for (const item of this.items) {
      if (item.kind === 'host') {
        for (const [name, value] of item.executor.run(env, item.outputs)) env.set(name, value);
      } else {
        env.set(item.output, await this.runChain(item, get(item.input, `layer "${item.first.name}"`)));
      }
    }
    const result = new Map<string, Value>();
    for (const name of outputs) {
      const v = get(name, 'graph output');
      // Outputs may be transferred away: never hand out a constant's own buffer.
      result.set(name, this.constants.get(name) === v ? { dims: v.dims, data: v.data.slice() } : v);
    }
    return result;
  }

  private async runChain(chain: Chain, input: Value): Promise<Value> {
    const { first } = chain;
    let x = asFloat32(input);
    if (x.length % first.k !== 0 || (first.gemm && input.dims.length !== 2)) {
      throw new UmbraError('INVALID_INPUT', `layer "${first.name}" expects rows of ${first.k} values but received shape [${input.dims.join(', ')}]`);
    }
    const m = x.length / first.k;
    if (first.transposeInput) x = transposed(x, first.k, m);
    // The shapes the chain's steps produce, checked as the CPU executor checks them.
    let dims = first.gemm ? [m, first.n] : [...input.dims.slice(0, -1), first.n];
    for (const step of chain.rest) {
      if (step.kind === 'dense') {
        if (step.gemm && dims.length !== 2) {
          throw new UmbraError('INVALID_INPUT', `layer "${step.name}" expects rows of ${step.k} values but received shape [${dims.join(', ')}]`);
        }
        dims = step.gemm ? [m, step.n] : [...dims.slice(0, -1), step.n];
      } else if (step.kind === 'softmax') {
        const { span, inner } = softmaxLayout(dims, step.node, { opset: this.opset });
        if (inner !== 1 || span !== dims[dims.length - 1]) {
          throw new UmbraError('INVALID_INPUT', `${stepName(step)} expects its axis to be the last of shape [${dims.join(', ')}] (as the model declares)`);
        }
      }
    }
    if (m === 0) return { dims, data: new Float32Array(0) };
    return { dims, data: await chain.plan.runAsync(x, m) };
  }

  /** Frees the device memory (weights, activations, graphs) now. Idempotent; returns the bytes freed. */
  release(): number {
    let bytes = 0;
    for (const item of this.items) if (item.kind === 'chain') bytes += item.plan.release();
    for (const upload of this.uploads) bytes += releaseCuda(upload);
    this.uploads.length = 0;
    this.released = true;
    return bytes;
  }
}

/** How a CUDA executor decides its pruned layers' formats (see CudaExecutorOptions). */
interface FormatOptions {
  sparseBelow?: number;
  tuneBatchSizes: readonly number[];
  /** The next dense layer's format from an earlier open, in layer order. */
  given: () => LayerFormat | undefined;
  stream: ReturnType<typeof threadStream>;
  graphMaxRows: number;
}

function opWeights(op: CudaPlanOp): CudaDenseWeights | CudaCsrWeights {
  if (op.kind !== 'dense' && op.kind !== 'sparse') throw new Error('opWeights: not a layer');
  return op.weights;
}

/**
 * Both forms of one layer timed on the device, each as a one-layer plan run the way a chain runs
 * (the batch up, the kernel, the batch down; small batches replaying a captured graph), on a seeded
 * batch of every size in `tuneBatchSizes`. The copies are the same for both forms, so they narrow
 * the measured gap but never reverse it. A failed timing run returns its reason: the fixed cut
 * decides, and the load goes on.
 */
function timeOnDevice(packed: CudaPlanOp, csr: CudaPlanOp, k: number, n: number, formats: FormatOptions): LayerTiming[] | string {
  const plans: CudaPlan[] = [];
  try {
    const plan = (op: CudaPlanOp) => {
      const made = CudaPlan.create(formats.stream, [op], k, { graphMaxRows: formats.graphMaxRows });
      plans.push(made);
      return made;
    };
    const [a, b] = [plan(packed), plan(csr)];
    const run = (p: CudaPlan) => (x: Float32Array, m: number, out?: Float32Array) => p.run(x, m, out);
    const sizes = [...new Set(formats.tuneBatchSizes)].filter((m) => Number.isInteger(m) && m > 0).sort((x, y) => x - y);
    if (sizes.length === 0) return 'no batch sizes to time it on';
    return sizes.map((m) => timeLayer(run(a), run(b), seededInput(m * k, 7 + m), m, new Float32Array(m * n), m));
  } catch (err) {
    return `the timing run failed: ${(err as Error).message}`;
  } finally {
    for (const p of plans) p.release();
  }
}
