// What the prediction log keeps of a tensor too large to keep whole (--log-tensor-max-values):
// its type, its shape (beside it in the log) and exact statistics of every value, computed in one
// pass on the thread that answered, so nothing of the tensor outlives the request.
import { halfToFloat32 } from '../protocol/half.js';
import type { DataType, TensorData } from '../protocol/types.js';
import { monitorStats } from '../native/monitor-stats.js';

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
  // Float tensors (nearly all this meets) get a loop without conversions, FP32 the addon's.
  const s = data instanceof Float32Array ? statsFloat32(data)
    : data instanceof Float64Array ? statsFloat(data)
      : datatype === 'FP16' ? statsGeneric(data as Uint16Array, halfToFloat32)
        : statsGeneric(data as ArrayLike<number | bigint>, Number);
  const finite = data.length - s.nonFinite;
  return {
    summarized: true,
    datatype,
    values: data.length,
    // A zero of either sign is reported as 0: which one a pass meets first is not a statistic.
    min: finite > 0 ? s.min + 0 : null,
    max: finite > 0 ? s.max + 0 : null,
    mean: finite > 0 ? s.sum / finite : null,
    non_finite: s.nonFinite,
  };
}

interface Stats { min: number; max: number; sum: number; nonFinite: number }

/**
 * The sum every path computes (the addon's too, so the mean does not depend on which ran): eight
 * lanes, lane j adding the finite values at j, j + 8, j + 16, ... in order, then the lanes added
 * 0..7. Eight independent sums are what lets the addon use vector instructions.
 */
const LANES = 8;
const lanes = new Float64Array(LANES);
const nativeOut = new Float64Array(4);

function laneTotal(): number {
  let total = 0;
  for (let j = 0; j < LANES; j++) total += lanes[j]!;
  return total;
}

function statsFloat32(v: Float32Array): Stats {
  const stats = monitorStats();
  if (!stats) return statsFloat(v);
  stats.tensorStatsF32(v, nativeOut);
  return { min: nativeOut[0]!, max: nativeOut[1]!, sum: nativeOut[2]!, nonFinite: nativeOut[3]! };
}

/**
 * A branch-free pass first (several times faster than testing each value); only a tensor whose
 * sum is not finite (a NaN or infinity in it) takes the exact second pass.
 */
function statsFloat(v: Float32Array | Float64Array): Stats {
  let min = Infinity;
  let max = -Infinity;
  lanes.fill(0);
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    min = x < min ? x : min;
    max = x > max ? x : max;
    lanes[i & 7]! += x;
  }
  const sum = laneTotal();
  if (Number.isFinite(sum)) return { min, max, sum, nonFinite: 0 };
  return statsGeneric(v, (x: number) => x);
}

/** Integer, bigint and FP16-bit arrays (`value` reads one element), and floats with NaN or infinity. */
function statsGeneric<T extends number | bigint>(v: ArrayLike<T>, value: (x: T) => number): Stats {
  let min = Infinity;
  let max = -Infinity;
  let nonFinite = 0;
  lanes.fill(0);
  for (let i = 0; i < v.length; i++) {
    const x = value(v[i]!);
    if (x - x !== 0) {
      nonFinite++;
      continue;
    }
    if (x < min) min = x;
    if (x > max) max = x;
    lanes[i & 7]! += x;
  }
  return { min, max, sum: laneTotal(), nonFinite };
}
