// Drift of one model version: live rows are counted into the reference profile's bins over a
// sliding window of segments, so memory is fixed whatever the traffic:
// bins x (segments + 1) x 4 bytes per feature (21 x 9 x 4 = 756 bytes with the defaults).
import type { InferRequest, InferResponse, Tensor } from '../protocol/types.js';
import { columnLayout, findTensor, visitRows, type ColumnLayout } from './features.js';
import { binCount, profileColumn, type FeatureProfile } from './profile.js';
import { runTest, TEST_IS_P_VALUE, type DriftTest } from './statistics.js';
import type { ModelSignature } from '../protocol/types.js';

export type Verdict = 'drift' | 'no_drift' | 'inconclusive';

export interface DriftOptions {
  /** Rows in the live window (default 1000). */
  windowRows?: number;
  /** Window length in seconds instead of (or as well as) rows; 0 = by rows only. */
  windowSeconds?: number;
  /** Below this many rows in the window every verdict is inconclusive (default 100). */
  minSamples?: number;
  /** Share of drifted input features that makes the dataset drift (default 0.5). */
  driftShare?: number;
  /** Thresholds: p-value for ks/chi2 (drift below), distance for psi/js (drift at or above). */
  thresholds?: Partial<Record<DriftTest, number>>;
  /** Force one test instead of choosing by sample size. */
  numericTest?: DriftTest;
  categoricalTest?: DriftTest;
  /** Rows captured as the reference when the model has no profile (default 1000). */
  captureRows?: number;
  /** Milliseconds clock for time windows (default Date.now; tests pass a fake one). */
  clock?: () => number;
}

export const DRIFT_DEFAULTS = {
  windowRows: 1000,
  windowSeconds: 0,
  minSamples: 100,
  driftShare: 0.5,
  captureRows: 1000,
  thresholds: { ks: 0.05, chi2: 0.05, psi: 0.1, js: 0.1 } as Record<DriftTest, number>,
  /** Evidently's switch: statistical tests for small samples, distances above. */
  largeSample: 1000,
};

/** The window is split into this many segments; the oldest is dropped as a whole. */
const SEGMENTS = 8;

export interface FeatureDrift {
  name: string;
  kind: 'numeric' | 'categorical';
  test: DriftTest;
  score: number;
  statistic: number;
  threshold: number;
  verdict: Verdict;
}

export interface DriftReport {
  model: string;
  version: string;
  verdict: Verdict;
  window: number;
  minSamples: number;
  reference: { source: string; rows: number } | { source: 'capturing'; rows: number; target: number };
  driftedShare: number;
  features: FeatureDrift[];
  outputs: FeatureDrift[];
  /** The predicted class output drifted (a class vanished or swamped the others). */
  predictionDrift: boolean;
}

/** Fixed-size sliding histogram: SEGMENTS partial counts plus their running total. */
class WindowCounts {
  readonly total: Uint32Array;
  private readonly segments: Uint32Array[];
  private readonly segmentRows = new Uint32Array(SEGMENTS);
  private current = 0;
  private segmentStarted: number;
  rows = 0;

  constructor(readonly size: number, private readonly rowsPerSegment: number, private readonly msPerSegment: number, now: number) {
    this.total = new Uint32Array(size);
    this.segments = Array.from({ length: SEGMENTS }, () => new Uint32Array(size));
    this.segmentStarted = now;
  }

  /** Called once per request: moves to a fresh segment when the current one is full or old. */
  tick(now: number): void {
    const full = this.segmentRows[this.current]! >= this.rowsPerSegment;
    const old = this.msPerSegment > 0 && now - this.segmentStarted >= this.msPerSegment;
    if (!full && !old) return;
    // A time window may have skipped several segments while idle: expire each.
    const steps = old && this.msPerSegment > 0 ? Math.min(SEGMENTS, Math.max(1, Math.floor((now - this.segmentStarted) / this.msPerSegment))) : 1;
    for (let s = 0; s < steps; s++) {
      this.current = (this.current + 1) % SEGMENTS;
      const seg = this.segments[this.current]!;
      for (let i = 0; i < this.size; i++) this.total[i]! -= seg[i]!;
      seg.fill(0);
      this.rows -= this.segmentRows[this.current]!;
      this.segmentRows[this.current] = 0;
    }
    this.segmentStarted = now;
  }

  /** The segment rows are counted into now (until the next tick). */
  get counting(): Uint32Array {
    return this.segments[this.current]!;
  }

  addRows(n: number): void {
    this.segmentRows[this.current]! += n;
    this.rows += n;
  }

  get bytes(): number {
    return this.size * 4 * (SEGMENTS + 1);
  }
}

interface Watched {
  layout: ColumnLayout;
  profiles: FeatureProfile[];
  /** Offset of each column's bins in the window arrays. */
  binOffset: Int32Array;
  /**
   * The profiles' bin edges (numeric) or values (categorical) end to end, so the hot path
   * searches one typed array: column i's are points[pointsAt[i] .. pointsAt[i] + pointsLength[i]].
   */
  points: Float64Array;
  pointsAt: Int32Array;
  pointsLength: Int32Array;
  categorical: Uint8Array;
}

/**
 * binOf (profile.ts) over a column's points in a Watched. The numeric search halves without
 * branching on the value (live values land in random bins, so a branchy search mispredicts at
 * almost every step): about a third faster per lookup.
 */
function binIn(points: Float64Array, at: number, length: number, categorical: boolean, x: number): number {
  if (categorical) {
    for (let i = 0; i < length; i++) if (points[at + i] === x) return i;
    return length;
  }
  if (length === 0 || !(x <= points[at + length - 1]!)) return length; // also NaN
  // The first edge i with x <= edges[i] lies in lo .. lo + n - 1; each step keeps the half that
  // holds it (the range may overlap, never miss it) until one index is left.
  let lo = 0;
  let n = length;
  while (n > 1) {
    const half = n >> 1;
    lo += half * +(x > points[at + lo + half - 1]!);
    n -= half;
  }
  return lo;
}

/** Counts every watched column of every row of `tensors` into `segment` and `total`; returns the rows. */
function countRows(w: Watched, tensors: readonly Tensor[], segment: Uint32Array, total: Uint32Array): number {
  let rows = 0;
  const { points, pointsAt, pointsLength, categorical, binOffset } = w;
  for (const watched of w.layout.tensors) {
    const t = findTensor(tensors, watched.tensor);
    if (!t || Array.isArray(t.data)) continue;
    const data = t.data as ArrayLike<number | bigint>;
    const width = watched.width;
    const n = Math.floor(data.length / width);
    if (n > rows) rows = n;
    const big = typeof data[0] === 'bigint';
    for (let r = 0; r < n; r++) {
      const base = r * width;
      for (let c = 0; c < watched.columns; c++) {
        const column = watched.offset + c;
        const raw = data[base + c]!;
        const bin = binOffset[column]! + binIn(points, pointsAt[column]!, pointsLength[column]!, categorical[column] === 1, big ? Number(raw) : (raw as number));
        segment[bin]! += 1;
        total[bin]! += 1;
      }
    }
  }
  return rows;
}

export class VersionDrift {
  private readonly options: Required<Omit<DriftOptions, 'numericTest' | 'categoricalTest' | 'thresholds' | 'clock'>> & Pick<DriftOptions, 'numericTest' | 'categoricalTest'> & { thresholds: Record<DriftTest, number> };
  private readonly clock: () => number;
  private readonly inputs: ColumnLayout;
  private readonly outputs: ColumnLayout;
  private watched: { in: Watched; out: Watched; window: WindowCounts; reference: { source: string; rows: number } } | undefined;
  private capture: { inputs: Float64Array; outputs: Float64Array; rows: number } | undefined;

  constructor(readonly model: string, readonly version: string, signature: ModelSignature, reference: { source: string; rows: number; inputs: FeatureProfile[]; outputs?: FeatureProfile[] } | undefined, options: DriftOptions = {}) {
    this.options = {
      windowRows: options.windowRows ?? DRIFT_DEFAULTS.windowRows,
      windowSeconds: options.windowSeconds ?? DRIFT_DEFAULTS.windowSeconds,
      minSamples: options.minSamples ?? DRIFT_DEFAULTS.minSamples,
      driftShare: options.driftShare ?? DRIFT_DEFAULTS.driftShare,
      captureRows: options.captureRows ?? DRIFT_DEFAULTS.captureRows,
      thresholds: { ...DRIFT_DEFAULTS.thresholds, ...options.thresholds },
      numericTest: options.numericTest,
      categoricalTest: options.categoricalTest,
    };
    this.clock = options.clock ?? Date.now;
    this.inputs = columnLayout(signature, 'inputs');
    this.outputs = columnLayout(signature, 'outputs');
    if (reference && reference.inputs.length === this.inputs.columns) {
      this.start(reference.inputs, reference.outputs && reference.outputs.length === this.outputs.columns ? reference.outputs : [], reference);
    } else {
      // No usable profile: the first live rows become the reference (bounded buffer).
      this.capture = {
        inputs: new Float64Array(this.options.captureRows * this.inputs.columns),
        outputs: new Float64Array(this.options.captureRows * this.outputs.columns),
        rows: 0,
      };
    }
  }

  private start(inputs: FeatureProfile[], outputs: FeatureProfile[], reference: { source: string; rows: number }): void {
    const watch = (layout: ColumnLayout, profiles: FeatureProfile[], base: number): Watched => {
      const binOffset = new Int32Array(profiles.length);
      const pointsAt = new Int32Array(profiles.length);
      const pointsLength = new Int32Array(profiles.length);
      const categorical = new Uint8Array(profiles.length);
      const all: number[] = [];
      let offset = base;
      profiles.forEach((p, i) => {
        binOffset[i] = offset;
        offset += binCount(p);
        const points = p.values ?? p.edges ?? [];
        pointsAt[i] = all.length;
        pointsLength[i] = points.length;
        categorical[i] = p.values ? 1 : 0;
        all.push(...points);
      });
      return { layout, profiles, binOffset, points: Float64Array.from(all), pointsAt, pointsLength, categorical };
    };
    const w = watch(this.inputs, inputs, 0);
    const inBins = inputs.reduce((a, p) => a + binCount(p), 0);
    const o = watch(this.outputs, outputs, inBins);
    const size = inBins + outputs.reduce((a, p) => a + binCount(p), 0);
    const segmentRows = Math.max(1, Math.ceil(this.options.windowRows / SEGMENTS));
    const window = new WindowCounts(size, segmentRows, (this.options.windowSeconds * 1000) / SEGMENTS, this.clock());
    this.watched = { in: w, out: o, window, reference: { source: reference.source, rows: reference.rows } };
    this.capture = undefined;
  }

  /** Hot path: counts every watched column of every row. */
  observe(request: InferRequest, response: InferResponse | undefined): void {
    if (this.capture) {
      this.captureRows(request, response);
      return;
    }
    const state = this.watched;
    if (!state) return;
    const win = state.window;
    win.tick(this.clock());
    const segment = win.counting;
    const rows = countRows(state.in, request.inputs, segment, win.total);
    if (response && state.out.profiles.length > 0) countRows(state.out, response.outputs, segment, win.total);
    win.addRows(rows);
  }

  private captureRows(request: InferRequest, response: InferResponse | undefined): void {
    const cap = this.capture!;
    const target = this.options.captureRows;
    const base = cap.rows;
    const ic = this.inputs.columns;
    const oc = this.outputs.columns;
    const rows = visitRows(this.inputs, request.inputs, (r, c, v) => {
      if (base + r < target) cap.inputs[(base + r) * ic + c] = v;
    });
    if (response) {
      visitRows(this.outputs, response.outputs, (r, c, v) => {
        if (base + r < target) cap.outputs[(base + r) * oc + c] = v;
      });
    }
    cap.rows = Math.min(target, base + rows);
    if (cap.rows < target) return;
    const column = (data: Float64Array, width: number, c: number) => {
      const out = new Float64Array(target);
      for (let r = 0; r < target; r++) out[r] = data[r * width + c]!;
      return out;
    };
    const inputs = this.inputs.names.map((name, c) => profileColumn(name, column(cap.inputs, ic, c)));
    const outputs = this.outputs.names.map((name, c) => profileColumn(name, column(cap.outputs, oc, c), this.isCategoricalOutput(c)));
    this.start(inputs, outputs, { source: 'live', rows: target });
  }

  private isCategoricalOutput(column: number): boolean {
    return this.outputs.tensors.some((t) => t.categorical && column >= t.offset && column < t.offset + t.columns);
  }

  /** Memory of the live window in bytes (0 while capturing the reference). */
  get windowBytes(): number {
    return this.watched?.window.bytes ?? 0;
  }

  get windowRows(): number {
    return this.watched?.window.rows ?? 0;
  }

  evaluate(): DriftReport {
    const base = { model: this.model, version: this.version, minSamples: this.options.minSamples };
    if (!this.watched) {
      return { ...base, verdict: 'inconclusive', window: 0, reference: { source: 'capturing', rows: this.capture?.rows ?? 0, target: this.options.captureRows }, driftedShare: 0, features: [], outputs: [], predictionDrift: false };
    }
    const { window, reference } = this.watched;
    window.tick(this.clock());
    const n = window.rows;
    const enough = n >= this.options.minSamples;
    const judge = (w: Watched): FeatureDrift[] => w.profiles.map((p, i) => {
      const offset = w.binOffset[i]!;
      const live = window.total.subarray(offset, offset + binCount(p));
      const test = this.testFor(p.kind, Math.min(n, reference.rows));
      const result = runTest(test, p.counts, live);
      const threshold = this.options.thresholds[test];
      const drifted = TEST_IS_P_VALUE[test] ? result.score < threshold : result.score >= threshold;
      const score = round(result.score);
      return { name: p.name, kind: p.kind, test, score, statistic: round(result.statistic), threshold, verdict: !enough ? 'inconclusive' : drifted ? 'drift' : 'no_drift' };
    });
    const features = judge(this.watched.in);
    const outputs = judge(this.watched.out);
    const drifted = features.filter((f) => f.verdict === 'drift').length;
    const driftedShare = features.length > 0 ? drifted / features.length : 0;
    const predictionDrift = enough && outputs.some((f, i) => f.verdict === 'drift' && this.isCategoricalOutput(i));
    let verdict: Verdict = 'inconclusive';
    if (enough) verdict = driftedShare >= this.options.driftShare || predictionDrift ? 'drift' : 'no_drift';
    return { ...base, verdict, window: n, reference, driftedShare: round(driftedShare), features, outputs, predictionDrift };
  }

  private testFor(kind: 'numeric' | 'categorical', sampleSize: number): DriftTest {
    const large = sampleSize > DRIFT_DEFAULTS.largeSample;
    if (kind === 'categorical') return this.options.categoricalTest ?? (large ? 'js' : 'chi2');
    return this.options.numericTest ?? (large ? 'psi' : 'ks');
  }
}

function round(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 1e6) / 1e6 : x;
}
