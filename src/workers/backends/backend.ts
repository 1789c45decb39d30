// What a model worker needs from an execution backend. onnxruntime is the default; the native
// backend (the addon's kernels) implements the same surface.
import { typedArrayFor } from '../../protocol/index.js';
import type { DataType } from '../../protocol/types.js';
import type { PrecisionCost } from '../../graph/precision-cost.js';
import type { CudaPlanStages } from '../../native/addon.js';
import type { BackendTuning, LayerReport, SessionSpec, WireTensor } from '../messages.js';

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
  /**
   * The same run, answered synchronously, where the backend can: an inline model then costs no
   * event-loop turn and no promise per batch. Absent when a run must wait (a GPU stream).
   */
  runSync?(inputs: WireTensor[], outputNames: string[]): WireTensor[];
  release(): Promise<void>;
  /** What this session measured at open, for later opens of the same load to reuse. */
  readonly tuned?: BackendTuning;
  /** How each dense layer runs (the native backend). */
  layers?(): LayerReport[];
  /** The native backend on a GPU below fp32: what the precision costs, measured at open. */
  readonly accuracy?: PrecisionCost | undefined;
  /** onnxruntime: why the session runs on other execution providers than the first asked for. */
  readonly providerNote?: string;
  /** The native backend on a GPU: its device chains' host time by stage so far (bench-model). */
  planStages?(): { runs: number; stages: CudaPlanStages } | undefined;
}

export interface Backend {
  open(spec: SessionSpec): Promise<BackendSession>;
}

/** Zero inputs of the session's own shapes (a dynamic first dim = `rows`, other dynamic dims `length`). */
export function placeholderInputs(inputs: readonly TensorInfo[], rows = 1, length = 1): WireTensor[] {
  return inputs.map((info) => {
    const shape = info.shape.map((d, i) => (d >= 0 ? d : i === 0 ? rows : length));
    const n = shape.reduce((a, b) => a * b, 1);
    return { name: info.name, datatype: info.datatype, shape, data: typedArrayFor(info.datatype, n) };
  });
}

/** Each output's first dim in one run (-1 where an output has no dims): whether answers follow the batch. */
export type OutputRows = Record<string, number>;

export function outputRowsOf(outputs: readonly WireTensor[]): OutputRows {
  const rows: OutputRows = {};
  for (const t of outputs) rows[t.name] = t.shape.length > 0 ? t.shape[0]! : -1;
  return rows;
}

/**
 * Fastest wall time of a few runs of a zero batch of `rows` rows, in microseconds: the model's own
 * cost. The fastest run, not the median, because on a busy machine the others include time the
 * thread spent preempted, and placement must not flip to the slow path when the host is loaded.
 * With it, each output's first dim in the first run.
 */
export async function fastestRunMicros(session: BackendSession, rows: number, runs = 11, length = 1): Promise<{ micros: number; outputRows: OutputRows }> {
  const inputs = placeholderInputs(session.inputs, rows, length);
  const times: number[] = [];
  let spentUs = 0;
  let outputRows: OutputRows = {};
  // A model that costs a second a batch needs no eleven runs to show it: the load stays short.
  for (let i = 0; i < runs && spentUs < PROBE_TIME_CAP_US; i++) {
    const t0 = performance.now();
    const outputs = await session.run(inputs, []);
    times.push((performance.now() - t0) * 1000);
    spentUs += times[times.length - 1]!;
    if (i === 0) outputRows = outputRowsOf(outputs);
  }
  return { micros: Math.min(...times), outputRows };
}

/**
 * The length a probe gives an input's dynamic dims besides the first (the first probe runs them
 * at 1): a sequence of 64 tokens, a 64x64 image. A request's cost then grows with its own length;
 * this is what placement and the queue bound go by for such a model.
 */
export const PROBE_LENGTH = 64;

/** A probe stops taking runs once they add up to this (after the first). */
const PROBE_TIME_CAP_US = 1_000_000;

/** Whether an input has a dynamic dim besides the first (a sequence length, an image size). */
export function hasLengthDims(inputs: readonly TensorInfo[]): boolean {
  return inputs.some((info) => info.shape.some((d, i) => d < 0 && i > 0));
}
