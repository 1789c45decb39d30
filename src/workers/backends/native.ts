// The native backend: Umbra's own graph executor over the addon's kernels, for dense networks.
// Opening compiles the graph (refusing unsupported operators with the node's name) and packs the
// weights once; `run` blocks the worker thread for the kernels' time, like onnxruntime's. With
// device: cuda the layers run on the GPU (src/graph/cuda-executor.ts) and release() frees the
// device memory.
import { UmbraError } from '../../errors.js';
import { compileGraph, GraphExecutor, type LayerInfo, type Value } from '../../graph/index.js';
import { CudaGraphExecutor, type CudaExecutorOptions, type CudaLayerInfo } from '../../graph/cuda-executor.js';
import { cudaStatus } from '../../native/cuda.js';
import type { NativeDevice } from '../../repository/config.js';
import { datatypeOf } from '../../graph/tensor.js';
import type { LayerFormat } from '../../graph/layer-formats.js';
import { precisionCost, seededBatch, type PrecisionCost } from '../../graph/precision-cost.js';
import type { BackendTuning, SessionSpec, WireTensor } from '../messages.js';
import type { Backend, BackendSession, TensorInfo } from './backend.js';

export class NativeSession implements BackendSession {
  readonly inputs: TensorInfo[];
  readonly outputs: TensorInfo[];

  /** GPU at a precision other than fp32: what it costs against fp32, measured at open. */
  accuracy: PrecisionCost | undefined;

  constructor(private readonly executor: GraphExecutor | CudaGraphExecutor, inputs: TensorInfo[], outputs: TensorInfo[]) {
    this.inputs = inputs;
    this.outputs = outputs;
  }

  /** Where the layers run: 'cpu', or 'cuda' (then `executor` holds device memory until release). */
  get device(): 'cpu' | 'cuda' {
    return this.executor instanceof CudaGraphExecutor ? 'cuda' : 'cpu';
  }

  /** How each layer runs (dense packed or CSR, what decided it, its density, fused epilogue). */
  layers(): LayerInfo[] | CudaLayerInfo[] {
    return this.executor.layers();
  }

  /** On a GPU: the device chains' host time by stage so far, and the model runs it covers. */
  planStages(): ReturnType<CudaGraphExecutor['planStages']> | undefined {
    return this.executor instanceof CudaGraphExecutor ? this.executor.planStages() : undefined;
  }

  /** The per-layer formats measured at open, for the other workers of this load to open with. */
  get tuned(): BackendTuning {
    return { layerFormats: this.executor.layerFormats() };
  }

  /** The executor's own run on prepared feeds (the precision check at open). */
  async executorRun(feeds: ReadonlyMap<string, Value>, names: readonly string[]): Promise<Map<string, Value>> {
    return this.executor.run(feeds, names);
  }

  async run(inputs: WireTensor[], outputNames: string[]): Promise<WireTensor[]> {
    const names = outputNames.length > 0 ? outputNames : this.outputs.map((o) => o.name);
    // The CPU executor answers synchronously; only the GPU one returns a promise.
    const pending = this.executor.run(this.feedsOf(inputs), names);
    return this.collect(pending instanceof Promise ? await pending : pending, names);
  }

  /** Present only on the CPU: a GPU run waits on its stream. */
  get runSync(): ((inputs: WireTensor[], outputNames: string[]) => WireTensor[]) | undefined {
    const executor = this.executor;
    if (!(executor instanceof GraphExecutor)) return undefined;
    return (inputs, outputNames) => {
      const names = outputNames.length > 0 ? outputNames : this.outputs.map((o) => o.name);
      return this.collect(executor.run(this.feedsOf(inputs), names), names);
    };
  }

  private feedsOf(inputs: WireTensor[]): Map<string, Value> {
    const feeds = new Map<string, Value>();
    for (const t of inputs) {
      const info = this.inputs.find((i) => i.name === t.name);
      if (!info) throw new UmbraError('INVALID_INPUT', `unexpected input "${t.name}" for the native backend`);
      if (!(t.data instanceof Float32Array)) throw new UmbraError('INVALID_INPUT', `expected FP32 data for input "${t.name}" but received ${t.datatype}`);
      feeds.set(t.name, { dims: [...t.shape], data: t.data });
    }
    return feeds;
  }

  private collect(results: Map<string, Value>, names: readonly string[]): WireTensor[] {
    return names.map((name) => {
      const v = results.get(name)!;
      return { name, datatype: datatypeOf(v.data), shape: [...v.dims], data: v.data };
    });
  }

  async release(): Promise<void> {
    // Packed CPU weights are plain typed arrays: dropping the session frees them. Device memory
    // is freed here, at unload, not whenever the garbage collector gets to it.
    if (this.executor instanceof CudaGraphExecutor) this.executor.release();
  }
}


export interface NativeOpenOptions {
  /** A fixed sparse/dense density rule instead of measuring each layer (tests and benchmarks). */
  sparseBelow?: number;
  /** Batch sizes each pruned layer's formats are timed on at open (default 1, 8 and 64; on a GPU 1, 64 and 256). */
  tuneBatchSizes?: readonly number[];
  /** Each dense layer's format from an earlier open of the same model (skips the timing). */
  layerFormats?: readonly LayerFormat[];
  /** cpu (default), cuda (refused with the reason when no device is usable), or auto (cuda when usable). */
  device?: NativeDevice;
  /** GPU only: CUDA device index, precision and CUDA graph batch limit. */
  cuda?: Pick<CudaExecutorOptions, 'device' | 'precision' | 'graphMaxRows'>;
}

/** 'cpu' or 'cuda' for a model config's `device`; throws LOAD_FAILED naming the reason and the fix. */
export function resolveNativeDevice(device: NativeDevice = 'cpu'): 'cpu' | 'cuda' {
  if (device === 'cpu') return 'cpu';
  const status = cudaStatus();
  if (status.available) return 'cuda';
  if (device === 'auto') return 'cpu';
  throw new UmbraError('LOAD_FAILED', `device: cuda needs a usable CUDA device but ${status.reason}; set device: cpu (or auto) in the model config, or load the model on a host with a CUDA GPU`);
}

/** Opens a model on the native executor, outside the worker pool too (bench-model, tests). */
export function openNative(modelPath: string, threads: number, options: NativeOpenOptions = {}): NativeSession {
  const device = resolveNativeDevice(options.device);
  const compiled = compileGraph(modelPath);
  const sig = compiled.graph.signature;
  const sparseBelow = options.sparseBelow !== undefined ? { sparseBelow: options.sparseBelow } : {};
  const formats = {
    ...sparseBelow,
    ...(options.tuneBatchSizes ? { tuneBatchSizes: options.tuneBatchSizes } : {}),
    ...(options.layerFormats ? { layerFormats: options.layerFormats } : {}),
  };
  const executor = device === 'cpu'
    ? new GraphExecutor(compiled, { threads, ...formats })
    : new CudaGraphExecutor(compiled, { threads, ...formats, ...options.cuda });
  const info = (t: { name: string; datatype: TensorInfo['datatype']; dims: number[] }): TensorInfo => ({ name: t.name, datatype: t.datatype, shape: [...t.dims] });
  return new NativeSession(executor, sig.inputs.map(info), sig.outputs.map(info));
}

/**
 * Opens a model as openNative does and, on the GPU at a precision other than fp32, measures what
 * the precision costs: a seeded batch through the same chains at fp32 (uploaded for the check and
 * released after it) and at the precision, compared over every float output.
 */
export async function openNativeMeasured(modelPath: string, threads: number, options: NativeOpenOptions = {}): Promise<NativeSession> {
  const session = openNative(modelPath, threads, options);
  const precision = options.cuda?.precision ?? 'fp32';
  if (session.device !== 'cuda' || precision === 'fp32') return session;
  const rows = 8;
  const feeds = seededBatch(session.inputs, rows);
  const names = session.outputs.map((o) => o.name);
  // The same layer formats as the session, so only the precision differs.
  const reference = new CudaGraphExecutor(compileGraph(modelPath), { threads, layerFormats: session.tuned.layerFormats, ...options.cuda, precision: 'fp32' });
  try {
    const want = await reference.run(feeds, names);
    const got = await session.executorRun(feeds, names);
    session.accuracy = precisionCost(precision, rows, want, got);
  } finally {
    reference.release();
  }
  return session;
}

export const nativeBackend: Backend = {
  async open(spec: SessionSpec): Promise<BackendSession> {
    return openNativeMeasured(spec.modelPath, Math.max(1, spec.intraOpThreads), {
      ...(spec.device === undefined ? {} : { device: spec.device }),
      ...(spec.precision === undefined ? {} : { cuda: { precision: spec.precision } }),
      ...(spec.batchSizes ? { tuneBatchSizes: spec.batchSizes } : {}),
      ...(spec.tuned ? { layerFormats: spec.tuned.layerFormats } : {}),
    });
  },
};
