// Typed adapter over device-resident layer chains (native/src/cuda/plan.cuh): a batch goes up
// once, runs through every op of the chain on the device and comes down once. Batches of up to
// graphMaxRows rows replay a CUDA graph captured the first time their size was seen (per plan),
// so a small batch through many layers pays one launch rather than one per kernel.
import { native, type NativeCudaHandle, type NativeCudaPlanOp, type NativeCudaPlanStats } from './addon.js';
import { checkDimension, checkFloat32, checkOneOf } from './checks.js';
import {
  callCuda, callCudaAsync, CUDA_PRECISIONS, CudaStream, requireCuda,
  type CudaCsrWeights, type CudaDenseWeights, type CudaPrecision, type CudaVector,
} from './cuda.js';
import { ACTIVATIONS, type Activation } from './kernels.js';
import { invalid, UmbraError } from '../errors.js';

/** Each op reads the previous op's output ([m, width]); dense/sparse change the width to n. */
export type CudaPlanOp =
  | { kind: 'dense'; weights: CudaDenseWeights; bias?: CudaVector; activation?: Activation; precision?: CudaPrecision }
  | { kind: 'sparse'; weights: CudaCsrWeights; bias?: CudaVector; activation?: Activation }
  | { kind: 'softmax' }
  | { kind: 'activation'; activation: Activation };

export type CudaPlanStats = NativeCudaPlanStats;

/**
 * Batches up to this many rows replay a captured CUDA graph. Launch overhead (a few µs per
 * kernel) is what a graph saves; at larger batches the kernels' own time dominates and every
 * captured size would hold its own graph. Unmeasured on a GPU so far (bench/RESULTS-gpu.md).
 */
export const CUDA_GRAPH_MAX_ROWS = 64;

export interface CudaPlanOptions {
  /** 0 turns CUDA graphs off. */
  graphMaxRows?: number;
}

function nativeOp(op: CudaPlanOp, i: number): NativeCudaPlanOp {
  const where = `ops[${i}]`;
  const activation = (value: unknown) => ACTIVATIONS.indexOf(checkOneOf(value ?? 'none', ACTIVATIONS, `${where}.activation`));
  switch (op?.kind) {
    case 'dense':
      if (op.weights?.kind !== 'cuda-dense') throw invalid('INVALID_ARGUMENT', 'weights from uploadDense()', `${where}.weights`, op.weights);
      return {
        kind: 'dense', weights: op.weights.handle, bias: op.bias?.handle ?? null, activation: activation(op.activation),
        precision: CUDA_PRECISIONS.indexOf(checkOneOf(op.precision ?? 'fp32', CUDA_PRECISIONS, `${where}.precision`)),
      };
    case 'sparse':
      if (op.weights?.kind !== 'cuda-csr') throw invalid('INVALID_ARGUMENT', 'weights from uploadCsr()', `${where}.weights`, op.weights);
      return { kind: 'sparse', weights: op.weights.handle, bias: op.bias?.handle ?? null, activation: activation(op.activation) };
    case 'softmax':
      return { kind: 'softmax' };
    case 'activation':
      return { kind: 'activation', activation: activation(op.activation) };
    default:
      throw invalid('INVALID_ARGUMENT', 'an op of kind dense, sparse, softmax or activation', where, op);
  }
}

/** A chain of ops on one stream's device. Its uploads stay alive (on the device) until release(). */
export class CudaPlan {
  private handle: NativeCudaHandle | null;

  private constructor(handle: NativeCudaHandle, readonly inputWidth: number, readonly outputWidth: number) {
    this.handle = handle;
  }

  /** Checks the chain (each dense/sparse op reads the width the op before it leaves). Allocates on first run. */
  static create(stream: CudaStream, ops: readonly CudaPlanOp[], inputWidth: number, options: CudaPlanOptions = {}): CudaPlan {
    requireCuda('a CUDA plan');
    if (!(stream instanceof CudaStream)) throw invalid('INVALID_ARGUMENT', 'a CudaStream from CudaStream.create()', 'stream', stream);
    if (!Array.isArray(ops)) throw invalid('INVALID_ARGUMENT', 'an array of ops', 'ops', ops);
    const width = checkDimension(inputWidth, 'inputWidth');
    const graphMaxRows = checkDimension(options.graphMaxRows ?? CUDA_GRAPH_MAX_ROWS, 'graphMaxRows');
    const handle = callCuda(() => native().cudaPlanCreate(stream.handle, ops.map(nativeOp), width, graphMaxRows));
    const stats = callCuda(() => native().cudaPlanStats(handle));
    return new CudaPlan(handle, stats.inputWidth, stats.outputWidth);
  }

  private live(): NativeCudaHandle {
    if (this.handle === null) throw new UmbraError('INVALID_ARGUMENT', 'expected a live CUDA plan but received one that was released');
    return this.handle;
  }

  private args(x: Float32Array, m: number, out: Float32Array | undefined) {
    const rows = checkDimension(m, 'm');
    checkFloat32(x, rows * this.inputWidth, 'x');
    const y = out === undefined ? new Float32Array(rows * this.outputWidth) : checkFloat32(out, rows * this.outputWidth, 'out');
    return { rows, y };
  }

  /** y[m, outputWidth] from x[m, inputWidth]. Blocks the calling thread; returns y. */
  run(x: Float32Array, m: number, out?: Float32Array): Float32Array {
    const handle = this.live();
    const { rows, y } = this.args(x, m, out);
    callCuda(() => native().cudaPlanRun(handle, x, y, rows));
    return y;
  }

  /** As run(), on the libuv pool. Do not touch x or out until it settles. */
  async runAsync(x: Float32Array, m: number, out?: Float32Array): Promise<Float32Array> {
    const handle = this.live();
    const { rows, y } = this.args(x, m, out);
    await callCudaAsync(() => native().cudaPlanRunAsync(handle, x, y, rows));
    return y;
  }

  stats(): CudaPlanStats {
    const handle = this.live();
    return callCuda(() => native().cudaPlanStats(handle));
  }

  /** Frees the plan's activations and graphs (now, or when an in-flight run ends); idempotent. Returns the bytes. */
  release(): number {
    const handle = this.handle;
    this.handle = null;
    return handle === null ? 0 : callCuda(() => native().cudaPlanRelease(handle));
  }
}
