// Counters one side of a comparison keeps: requests, errors, a bounded sample of latencies,
// agreement. Used by the shadow endpoint (per shadow version) and by rollout analysis (per window).
import type { Comparison } from './compare.js';
import { seededRandom } from '../random.js';

/** Latencies below this (answers from a store, clock granularity) count as this, so logs stay finite. */
export const LATENCY_FLOOR_MS = 1e-3;

/**
 * A uniform sample (reservoir) of at most `capacity` of every value seen, so a window's memory is
 * fixed whatever the traffic and its statistics describe the whole window, not its last seconds.
 * The draw is seeded: the same stream of values keeps the same sample. With `logScale` values are
 * kept as their logarithms (latency tests work on log latencies): `ascending()` gives the logs,
 * `quantile()` answers in the values' own scale.
 */
export class Reservoir {
  private readonly values: Float64Array;
  /** Sorted copy, rebuilt in place when values changed since the last ask. */
  private readonly sortedValues: Float64Array;
  private sortedValid = false;
  private count = 0;
  private seen = 0;
  private readonly random: () => number;

  constructor(capacity = 1024, seed = 0x7e57, private readonly logScale = false) {
    this.values = new Float64Array(capacity);
    this.sortedValues = new Float64Array(capacity);
    this.random = seededRandom(seed);
  }

  add(value: number): void {
    this.seen += 1;
    let slot = this.count;
    if (slot < this.values.length) this.count += 1;
    else {
      slot = Math.floor(this.random() * this.seen);
      if (slot >= this.values.length) return;
    }
    this.values[slot] = this.logScale ? Math.log(Math.max(value, LATENCY_FLOOR_MS)) : value;
    this.sortedValid = false;
  }

  /** Values kept (at most the capacity). */
  get size(): number {
    return this.count;
  }

  /** Values ever added. */
  get total(): number {
    return this.seen;
  }

  /** The kept values (logs with `logScale`), ascending: a view the next add invalidates; do not modify. */
  ascending(): Float64Array {
    const sorted = this.sortedValues.subarray(0, this.count);
    if (!this.sortedValid) {
      sorted.set(this.values.subarray(0, this.count));
      sorted.sort();
      this.sortedValid = true;
    }
    return sorted;
  }

  /** Nearest-rank quantile, q in (0, 1]; undefined when empty. */
  quantile(q: number): number | undefined {
    if (this.count === 0) return undefined;
    const sorted = this.ascending();
    const rank = Math.min(this.count, Math.max(1, Math.ceil(q * this.count)));
    const v = sorted[rank - 1]!;
    return this.logScale ? Math.exp(v) : v;
  }
}

export class SideStats {
  requests = 0;
  errors = 0;
  /** Latencies in ms, kept as logs. */
  readonly latency = new Reservoir(1024, 0x7e57, true);

  record(ok: boolean, latencyMs?: number): void {
    this.requests += 1;
    if (!ok) this.errors += 1;
    if (latencyMs !== undefined) this.latency.add(latencyMs);
  }

  get errorRate(): number | undefined {
    return this.requests === 0 ? undefined : this.errors / this.requests;
  }
}

export class AgreementStats {
  compared = 0;
  rows = 0;
  agreeingRows = 0;
  absDiffSum = 0;
  absPrimarySum = 0;
  elements = 0;

  add(c: Comparison): void {
    this.compared += 1;
    this.rows += c.rows;
    this.agreeingRows += c.agreeingRows;
    this.absDiffSum += c.absDiffSum;
    this.absPrimarySum += c.absPrimarySum;
    this.elements += c.elements;
  }

  /** Fraction of compared rows where the two versions agree. */
  get agreement(): number | undefined {
    return this.rows === 0 ? undefined : this.agreeingRows / this.rows;
  }

  get meanAbsDiff(): number | undefined {
    return this.elements === 0 ? undefined : this.absDiffSum / this.elements;
  }

  /** Relative L1 difference: sum |p - s| / sum |p|. */
  get meanRelDiff(): number | undefined {
    if (this.elements === 0) return undefined;
    return this.absPrimarySum === 0 ? (this.absDiffSum === 0 ? 0 : Infinity) : this.absDiffSum / this.absPrimarySum;
  }
}

export function round(value: number | undefined, digits = 6): number | null {
  if (value === undefined || Number.isNaN(value)) return null;
  if (!Number.isFinite(value)) return value > 0 ? Number.MAX_VALUE : -Number.MAX_VALUE;
  return Number(value.toPrecision(digits));
}
