// Counters one side of a comparison keeps: requests, errors, recent latencies, agreement. Used
// by the shadow endpoint (per shadow version) and by rollout analysis (per step window).
import type { Comparison } from './compare.js';

/** The last `capacity` latencies; quantiles are read from a sorted copy (only on demand). */
export class LatencyRing {
  private readonly values: Float64Array;
  private next = 0;
  private count = 0;

  constructor(capacity = 4096) {
    this.values = new Float64Array(capacity);
  }

  private sorted: Float64Array | undefined;

  add(ms: number): void {
    this.sorted = undefined;
    this.values[this.next] = ms;
    this.next = (this.next + 1) % this.values.length;
    if (this.count < this.values.length) this.count += 1;
  }

  get size(): number {
    return this.count;
  }

  /** Nearest-rank quantile, q in (0, 1]; undefined when empty. */
  quantile(q: number): number | undefined {
    if (this.count === 0) return undefined;
    this.sorted ??= Float64Array.from(this.values.subarray(0, this.count)).sort();
    const sorted = this.sorted;
    const rank = Math.min(this.count, Math.max(1, Math.ceil(q * this.count)));
    return sorted[rank - 1];
  }
}

export class SideStats {
  requests = 0;
  errors = 0;
  readonly latency = new LatencyRing();

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
