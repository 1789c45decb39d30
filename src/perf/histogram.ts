// Latency histogram: HDR (hdr-histogram-js) in microseconds, 3 significant digits, so the
// percentiles of millions of samples cost a few KB and merge across windows and threads.
import * as hdr from 'hdr-histogram-js';

/** One hour in microseconds: anything slower is clamped (and still counted). */
const HIGHEST_US = 3_600_000_000;

export interface LatencySummary {
  count: number;
  mean_ms: number;
  p50_ms: number;
  p90_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
}

export class LatencyHistogram {
  private readonly h: hdr.Histogram;

  constructor(from?: hdr.Histogram) {
    this.h = from ?? hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_US, numberOfSignificantValueDigits: 3, useWebAssembly: false });
  }

  recordMs(ms: number): void {
    const us = Math.round(ms * 1000);
    this.h.recordValue(Math.min(HIGHEST_US, Math.max(1, us)));
  }

  get count(): number {
    return this.h.totalCount;
  }

  percentileMs(p: number): number {
    // HDR reports the top of the percentile's bucket, which can lie above every recorded value:
    // no percentile is above the maximum.
    return this.h.totalCount === 0 ? 0 : Math.min(this.h.getValueAtPercentile(p), this.h.maxValue) / 1000;
  }

  get meanMs(): number {
    return this.h.totalCount === 0 ? 0 : this.h.mean / 1000;
  }

  get maxMs(): number {
    return this.h.totalCount === 0 ? 0 : this.h.maxValue / 1000;
  }

  add(other: LatencyHistogram): void {
    this.h.add(other.h);
  }

  reset(): void {
    this.h.reset();
  }

  /** Compact text form for crossing thread boundaries. */
  encode(): string {
    return hdr.encodeIntoCompressedBase64(this.h);
  }

  static decode(text: string): LatencyHistogram {
    return new LatencyHistogram(hdr.decodeFromCompressedBase64(text, 32, false));
  }

  static merge(parts: Iterable<LatencyHistogram>): LatencyHistogram {
    const out = new LatencyHistogram();
    for (const p of parts) out.add(p);
    return out;
  }

  summary(): LatencySummary {
    return {
      count: this.count,
      mean_ms: round3(this.meanMs),
      p50_ms: round3(this.percentileMs(50)),
      p90_ms: round3(this.percentileMs(90)),
      p95_ms: round3(this.percentileMs(95)),
      p99_ms: round3(this.percentileMs(99)),
      max_ms: round3(this.maxMs),
    };
  }
}

export function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}
