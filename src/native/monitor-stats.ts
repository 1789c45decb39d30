// The addon's statistics for monitoring (native/src/cpu/tensor_stats.cc, drift_count.cc): the
// prediction log's summary, feedback's argmax and drift's counting over FP32 tensors, resolved
// once per thread. Without the addon,
// or with UMBRA_NATIVE_STATS=0, the callers' JavaScript loops give the same results.
import { native } from './addon.js';

export interface MonitorStats {
  /** [min, max, sum, nonFinite] of the finite values into `out` (see tensor-summary.ts for the sum's order). */
  tensorStatsF32(values: Float32Array, out: Float64Array): void;
  /** out[r] = the first column of row r's largest value (0 for a row that starts with NaN). */
  argmaxRowsF32(data: Float32Array, rows: number, cols: number, out: Float64Array): void;
  /** Whether every value is finite (the NaN gate on wide inputs). */
  allFiniteF32(values: Float32Array): boolean;
  /** Drift's bins for rows first, first + step, ... (the table's layout: src/monitor/drift.ts, nativeTable). */
  driftCountF32(data: Float32Array, n: number, width: number, firstColumn: number, columns: number, first: number, step: number,
    table: Float64Array, cells: Int32Array, points: Float64Array, segment: Uint32Array): void;
}

let resolved: MonitorStats | null | undefined;

function resolve(): MonitorStats | null {
  try {
    const binding = native();
    if (typeof binding.tensorStatsF32 !== 'function' || typeof binding.argmaxRowsF32 !== 'function' || typeof binding.driftCountF32 !== 'function' || typeof binding.allFiniteF32 !== 'function') return null;
    return { tensorStatsF32: binding.tensorStatsF32.bind(binding), argmaxRowsF32: binding.argmaxRowsF32.bind(binding), driftCountF32: binding.driftCountF32.bind(binding), allFiniteF32: binding.allFiniteF32.bind(binding) };
  } catch {
    return null; // no addon: the JavaScript loops serve
  }
}

/** The addon's statistics, or null where this thread computes them in JavaScript. */
export function monitorStats(): MonitorStats | null {
  if (resolved === undefined) resolved = process.env.UMBRA_NATIVE_STATS === '0' ? null : resolve();
  return resolved;
}

/**
 * Turns the addon's statistics off (false) or back on where the addon has them (true) in this
 * thread; returns whether they were on. For comparisons and tests.
 */
export function useMonitorStats(on: boolean): boolean {
  const was = monitorStats() !== null;
  resolved = on ? resolve() : null;
  return was;
}
