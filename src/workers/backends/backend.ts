// What a model worker needs from an execution backend. onnxruntime is the default; the native
// backend (the addon's kernels) implements the same surface.
import type { DataType } from '../../protocol/types.js';
import type { SessionSpec, WireTensor } from '../messages.js';

export interface TensorInfo {
  name: string;
  datatype: DataType;
  /** -1 for a dynamic dimension. */
  shape: number[];
}

export interface BackendSession {
  readonly inputs: TensorInfo[];
  readonly outputs: TensorInfo[];
  /** Runs one batch. Blocks the calling (worker) thread for the compute time. */
  run(inputs: WireTensor[], outputNames: string[]): Promise<WireTensor[]>;
  release(): Promise<void>;
}

export interface Backend {
  open(spec: SessionSpec): Promise<BackendSession>;
}
