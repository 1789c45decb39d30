// The native backend: Umbra's own graph executor over the addon's kernels, for dense networks.
// Opening compiles the graph (refusing unsupported operators with the node's name) and packs the
// weights once; `run` blocks the worker thread for the kernels' time, like onnxruntime's.
import { UmbraError } from '../../errors.js';
import { compileGraph, GraphExecutor, type LayerInfo, type Value } from '../../graph/index.js';
import { datatypeOf } from '../../graph/tensor.js';
import type { TensorData } from '../../protocol/types.js';
import type { SessionSpec, WireTensor } from '../messages.js';
import type { Backend, BackendSession, TensorInfo } from './backend.js';

export class NativeSession implements BackendSession {
  readonly inputs: TensorInfo[];
  readonly outputs: TensorInfo[];

  constructor(private readonly executor: GraphExecutor, inputs: TensorInfo[], outputs: TensorInfo[]) {
    this.inputs = inputs;
    this.outputs = outputs;
  }

  /** How each layer runs (dense packed or CSR, its measured density, fused epilogue). */
  layers(): LayerInfo[] {
    return this.executor.layers();
  }

  async run(inputs: WireTensor[], outputNames: string[]): Promise<WireTensor[]> {
    const feeds = new Map<string, Value>();
    for (const t of inputs) {
      const info = this.inputs.find((i) => i.name === t.name);
      if (!info) throw new UmbraError('INVALID_INPUT', `unexpected input "${t.name}" for the native backend`);
      if (!(t.data instanceof Float32Array)) throw new UmbraError('INVALID_INPUT', `expected FP32 data for input "${t.name}" but received ${t.datatype}`);
      feeds.set(t.name, { dims: [...t.shape], data: t.data });
    }
    const names = outputNames.length > 0 ? outputNames : this.outputs.map((o) => o.name);
    const results = this.executor.run(feeds, names);
    return names.map((name) => {
      const v = results.get(name)!;
      return { name, datatype: datatypeOf(v.data), shape: [...v.dims], data: ownData(v) };
    });
  }

  async release(): Promise<void> {
    // Packed weights are plain typed arrays: dropping the session frees them.
  }
}

/** Outputs are transferred to the main thread: each must own its whole buffer (a view is copied). */
function ownData(v: Value): TensorData {
  const d = v.data;
  return (d.byteOffset === 0 && d.byteLength === d.buffer.byteLength ? d : d.slice()) as TensorData;
}

export interface NativeOpenOptions {
  /** Override the sparse/dense density threshold (tests and benchmarks). */
  sparseBelow?: number;
}

/** Opens a model on the native executor, outside the worker pool too (bench-model, tests). */
export function openNative(modelPath: string, threads: number, options: NativeOpenOptions = {}): NativeSession {
  const compiled = compileGraph(modelPath);
  const sig = compiled.graph.signature;
  const executor = new GraphExecutor(compiled, { threads, ...(options.sparseBelow !== undefined ? { sparseBelow: options.sparseBelow } : {}) });
  const info = (t: { name: string; datatype: TensorInfo['datatype']; dims: number[] }): TensorInfo => ({ name: t.name, datatype: t.datatype, shape: [...t.dims] });
  return new NativeSession(executor, sig.inputs.map(info), sig.outputs.map(info));
}

export const nativeBackend: Backend = {
  async open(spec: SessionSpec): Promise<BackendSession> {
    return openNative(spec.modelPath, Math.max(1, spec.intraOpThreads));
  },
};
