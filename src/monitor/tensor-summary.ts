// What the prediction log keeps of a tensor too large to keep whole (--log-tensor-max-values):
// its type, its shape (beside it in the log) and exact statistics of every value, computed in one
// pass on the thread that answered, so nothing of the tensor outlives the request.
import { halfToFloat32 } from '../protocol/half.js';
import type { DataType, TensorData } from '../protocol/types.js';

export interface TensorSummary {
  /** Marks the entry as a summary: the values themselves were not logged. */
  summarized: true;
  datatype: DataType;
  /** How many values the tensor had. */
  values: number;
  /** Over the finite values; null when there are none (and always for BYTES). */
  min: number | null;
  max: number | null;
  mean: number | null;
  /** NaN and infinite values, left out of min, max and mean. */
  non_finite: number;
}

export function summarizeTensor(datatype: DataType, data: TensorData): TensorSummary {
  if (Array.isArray(data)) return { summarized: true, datatype, values: data.length, min: null, max: null, mean: null, non_finite: 0 };
  // Float tensors (nearly all this meets) get a loop without conversions.
  const s = data instanceof Float32Array || data instanceof Float64Array ? statsFloat(data)
    : datatype === 'FP16' ? statsGeneric(data as Uint16Array, halfToFloat32)
      : statsGeneric(data as ArrayLike<number | bigint>, Number);
  const finite = data.length - s.nonFinite;
  return {
    summarized: true,
    datatype,
    values: data.length,
    min: finite > 0 ? s.min : null,
    max: finite > 0 ? s.max : null,
    mean: finite > 0 ? s.sum / finite : null,
    non_finite: s.nonFinite,
  };
}

interface Stats { min: number; max: number; sum: number; nonFinite: number }

/**
 * A branch-free pass first (several times faster than testing each value); only a tensor whose
 * sum is not finite (a NaN or infinity in it, or an overflow) takes the exact second pass.
 */
function statsFloat(v: Float32Array | Float64Array): Stats {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    min = Math.min(min, x);
    max = Math.max(max, x);
    sum += x;
  }
  if (Number.isFinite(sum)) return { min, max, sum, nonFinite: 0 };
  return statsGeneric(v, (x: number) => x);
}

/** Integer, bigint and FP16-bit arrays (`value` reads one element): rare above the cap, so one general loop serves. */
function statsGeneric<T extends number | bigint>(v: ArrayLike<T>, value: (x: T) => number): Stats {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let nonFinite = 0;
  for (let i = 0; i < v.length; i++) {
    const x = value(v[i]!);
    if (x - x !== 0) {
      nonFinite++;
      continue;
    }
    if (x < min) min = x;
    if (x > max) max = x;
    sum += x;
  }
  return { min, max, sum, nonFinite };
}
