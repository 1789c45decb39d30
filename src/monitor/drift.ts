// Drift of one model version: live rows are counted into the reference profile's bins over a
// sliding window of segments, so memory is fixed whatever the traffic:
// bins x (segments + 1) x 4 bytes per feature (21 x 9 x 4 = 756 bytes with the defaults).
import type { InferRequest, InferResponse, Tensor } from '../protocol/types.js';
import { columnLayout, findTensor, rowsIn, visitRows, watchedRows, type ColumnLayout, type Unwatched } from './features.js';
import { binCount, profileColumn, type FeatureProfile } from './profile.js';
import { runTest, TEST_IS_P_VALUE, type DriftTest } from './statistics.js';
import type { ModelSignature } from '../protocol/types.js';
import { monitorStats } from '../native/monitor-stats.js';

export type Verdict = 'drift' | 'no_drift' | 'inconclusive';

export interface DriftOptions {
  /** Rows in the live window (default 1000). */
  windowRows?: number;
  /** Window length in seconds instead of (or as well as) rows; 0 = by rows only. */
  windowSeconds?: number;
  /** Below this many rows in the window, or in the reference, every verdict is inconclusive (default 100). */
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
  /**
   * Most values (rows x watched columns) counted per request (default 8192). A wider request is
   * counted on every k-th row, from an offset that rotates across requests: on a model with
   * thousands of columns per row, counting every value of a batch of 64 cost the core thread
   * about as much as the model's own compute, while a window of sampled rows tests as well.
   */
  maxValuesPerRequest?: number;
  /** Milliseconds clock for time windows (default Date.now; tests pass a fake one). */
  clock?: () => number;
}

export const DRIFT_DEFAULTS = {
  windowRows: 1000,
  windowSeconds: 0,
  minSamples: 100,
  driftShare: 0.5,
  captureRows: 1000,
  maxValuesPerRequest: 8192,
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
  /**
   * Share of the distribution that moved between the reference and the live window (total
   * variation distance, 0..1): one scale for every test and kind, so features can be ranked.
   */
  shift: number;
  verdict: Verdict;
}

export interface FeatureHistogram {
  name: string;
  kind: 'numeric' | 'categorical';
  edges?: number[];
  values?: number[];
  reference: number[];
  live: number[];
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
  /** Inputs and outputs not watched (or not whole), and why; absent when every one is. */
  unwatched?: Unwatched[];
}

/**
 * Fixed-size sliding histogram: SEGMENTS partial counts. Rows are counted into one segment only;
 * the window's total is summed from the segments when a report asks for it (every few seconds),
 * not kept up to date per value on the request path.
 */
class WindowCounts {
  private readonly segments: Uint32Array[];
  private readonly sum: Uint32Array;
  private readonly segmentRows = new Uint32Array(SEGMENTS);
  private current = 0;
  private segmentStarted: number;
  rows = 0;

  constructor(readonly size: number, private readonly rowsPerSegment: number, private readonly msPerSegment: number, now: number) {
    this.segments = Array.from({ length: SEGMENTS }, () => new Uint32Array(size));
    this.sum = new Uint32Array(size);
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
      this.segments[this.current]!.fill(0);
      this.rows -= this.segmentRows[this.current]!;
      this.segmentRows[this.current] = 0;
    }
    this.segmentStarted = now;
  }

  /** The segment rows are counted into now (until the next tick). */
  get counting(): Uint32Array {
    return this.segments[this.current]!;
  }

  /** Counts of the whole window (a view that the next call overwrites). */
  total(): Uint32Array {
    const sum = this.sum;
    sum.set(this.segments[0]!);
    for (let s = 1; s < SEGMENTS; s++) {
      const seg = this.segments[s]!;
      for (let i = 0; i < this.size; i++) sum[i]! += seg[i]!;
    }
    return sum;
  }

  addRows(n: number): void {
    this.segmentRows[this.current]! += n;
    this.rows += n;
  }

  get bytes(): number {
    return this.size * 4 * (SEGMENTS + 1);
  }
}

/** How a column finds a value's bin (see countValues and Watched). */
const CATEGORY = 0;
const GRID = 1;
const HALVING = 2;

/** A grid has at most this many cells per column (4 per edge when that is enough). */
const MAX_CELLS = 1024;
/** Most edges a value walks past from its cell's first candidate before halving is preferred. */
const MAX_WALK = 3;

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
  /** CATEGORY, GRID or HALVING per column. */
  mode: Uint8Array;
  /**
   * GRID columns: the range between the first and last edge is cut into equal cells;
   * cells[cellsAt[i] + floor((x - low[i]) * scale[i])] is a bin no greater than x's, from which a
   * short walk over the edges finds it. One multiply and a load or two instead of ~log2(edges)
   * dependent loads: live values are counted on the request path, for every column of every row.
   */
  low: Float64Array;
  high: Float64Array;
  scale: Float64Array;
  cellsAt: Int32Array;
  cells: Int32Array;
  /** The same columns as the addon reads them (nativeTable), for wide FP32 tensors. */
  table: Float64Array;
}

/**
 * Sampled values in one FP32 tensor from which the addon counts them: below it a call's cost
 * (about 0.7 µs) is not won back (the two ways broke even between 600 and 1,000 values;
 * bench/drift-count.mjs, bench/RESULTS-monitoring.md).
 */
const NATIVE_COUNT_MIN = 1024;

/**
 * Per column, NATIVE_STRIDE numbers in the layout native/include/umbra_kernels.h gives the addon:
 * low, high, scale, cellsAt (or -1 categories, -2 halving), cells, pointsAt, length, binOffset. One
 * record per column: the addon reads one cache line where the arrays above take eight.
 */
const NATIVE_STRIDE = 8;

function nativeTable(w: Omit<Watched, 'table'>, cellsOf: (i: number) => number): Float64Array {
  const count = w.profiles.length;
  const table = new Float64Array(count * NATIVE_STRIDE);
  for (let i = 0; i < count; i++) {
    const r = i * NATIVE_STRIDE;
    table[r] = w.low[i]!;
    table[r + 1] = w.high[i]!;
    table[r + 2] = w.scale[i]!;
    table[r + 3] = w.mode[i] === GRID ? w.cellsAt[i]! : w.mode[i] === CATEGORY ? -1 : -2;
    table[r + 4] = w.mode[i] === GRID ? cellsOf(i) : 0;
    table[r + 5] = w.pointsAt[i]!;
    table[r + 6] = w.pointsLength[i]!;
    table[r + 7] = w.binOffset[i]!;
  }
  return table;
}

/** First edge i (of points[at .. at + length]) with x <= edge, or length: the bin of x. */
function firstAtLeast(points: Float64Array, at: number, length: number, x: number): number {
  let i = 0;
  while (i < length && !(x <= points[at + i]!)) i++;
  return i;
}

/**
 * The grid of one numeric column, or undefined where its edges bunch so tightly in places that
 * even MAX_CELLS cells leave long walks (skewed quantiles): such a column halves instead.
 */
function gridOf(points: Float64Array, at: number, length: number): { low: number; high: number; scale: number; cells: Int32Array } | undefined {
  if (length < 2) return undefined;
  const low = points[at]!;
  const high = points[at + length - 1]!;
  if (!(high > low) || !Number.isFinite(high - low)) return undefined;
  for (let size = Math.max(8, 4 * length); size <= MAX_CELLS; size *= 2) {
    const scale = (size - 1) / (high - low);
    // Cell g holds the x in (low, high] with floor((x - low) * scale) = g. Rounding may put x one
    // cell off, so each cell starts from the bin of its lower neighbour's start: never past x's.
    const starts = new Int32Array(size + 2);
    for (let g = 0; g < starts.length; g++) starts[g] = firstAtLeast(points, at, length, low + (g - 1) / scale);
    // A walk from cell g's start ends by the start of cell g + 2 at the latest.
    let walk = 0;
    for (let g = 0; g < size; g++) walk = Math.max(walk, starts[g + 2]! - starts[g]!);
    if (walk <= MAX_WALK) return { low, high, scale, cells: starts.subarray(0, size) };
  }
  return undefined;
}

/**
 * Counts every watched column of every row of `tensors` into `segment`; returns the rows.
 * The bin of x is the first edge i with x <= edges[i] (binOf in profile.ts); past the last edge,
 * and NaN, count in the last bin; a category not in the profile counts in its extra bin.
 */
/** Rows in a request's tensors of this layout (the most any watched tensor holds). */
function rowsOf(w: Watched, tensors: readonly Tensor[]): number {
  let rows = 0;
  for (const watched of w.layout.tensors) {
    const t = findTensor(tensors, watched.tensor);
    if (!t || Array.isArray(t.data)) continue;
    rows = Math.max(rows, rowsIn(watched, t));
  }
  return rows;
}

/** Counts rows first, first + step, ... of the request; returns how many rows were counted. */
function countRows(w: Watched, tensors: readonly Tensor[], segment: Uint32Array, first = 0, step = 1): number {
  let rows = 0;
  for (const watched of w.layout.tensors) {
    const t = findTensor(tensors, watched.tensor);
    if (!t || Array.isArray(t.data)) continue;
    const read = watchedRows(watched, t, first, step);
    const n = read.n;
    let data = read.data;
    const counted = n > first ? Math.ceil((n - first) / step) : 0;
    if (counted > rows) rows = counted;
    // 64-bit integers (class labels mostly) as numbers first, into a kept array (a fresh typed
    // array per request costs more than counting it): the loop below sees numbers only.
    if (typeof data[0] === 'bigint') data = asNumbers(data as BigInt64Array | BigUint64Array, n * watched.width);
    const stats = data instanceof Float32Array && counted * watched.columns >= NATIVE_COUNT_MIN ? monitorStats() : null;
    if (stats) {
      stats.driftCountF32(data as Float32Array, n, watched.width, watched.offset, watched.columns, first, step, w.table, w.cells, w.points, segment);
      continue;
    }
    countValues(w, data as ArrayLike<number>, n, watched.width, watched.columns, watched.offset, segment, first, step);
  }
  return rows;
}

let numbers = new Float64Array(64);

function asNumbers(data: BigInt64Array | BigUint64Array, length: number): Float64Array {
  if (numbers.length < length) numbers = new Float64Array(Math.max(length, numbers.length * 2));
  for (let i = 0; i < length; i++) numbers[i] = Number(data[i]!);
  return numbers;
}

function countValues(w: Watched, data: ArrayLike<number>, n: number, width: number, columns: number, offset: number, segment: Uint32Array, first: number, step: number): void {
  const { points, pointsAt, pointsLength, mode, low, high, scale, cellsAt, cells, binOffset } = w;
  for (let r = first, base = first * width; r < n; r += step, base += step * width) {
    for (let c = 0; c < columns; c++) {
      const column = offset + c;
      const x = data[base + c]!;
      const at = pointsAt[column]!;
      const length = pointsLength[column]!;
      let bin: number;
      const m = mode[column]!;
      if (m === GRID) {
        const lo = low[column]!;
        if (x <= lo) bin = 0;
        else if (!(x <= high[column]!)) bin = length; // also NaN
        else {
          bin = cells[cellsAt[column]! + ((x - lo) * scale[column]! | 0)]!;
          while (x > points[at + bin]!) bin++;
        }
      } else if (m === CATEGORY) {
        bin = 0;
        while (bin < length && points[at + bin] !== x) bin++;
      } else bin = halve(points, at, length, x);
      segment[binOffset[column]! + bin]! += 1;
    }
  }
}

/**
 * binOf over a column's edges by halving. The search does not branch on the value (live values
 * land in random bins, so a branchy search mispredicts at almost every step).
 */
function halve(points: Float64Array, at: number, length: number, x: number): number {
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

export class VersionDrift {
  private readonly options: Required<Omit<DriftOptions, 'numericTest' | 'categoricalTest' | 'thresholds' | 'clock'>> & Pick<DriftOptions, 'numericTest' | 'categoricalTest'> & { thresholds: Record<DriftTest, number> };
  private readonly clock: () => number;
  private readonly inputs: ColumnLayout;
  private readonly outputs: ColumnLayout;
  private watched: { in: Watched; out: Watched; window: WindowCounts; reference: { source: string; rows: number } } | undefined;
  private capture: { inputs: Float64Array; outputs: Float64Array; rows: number } | undefined;
  /** Requests counted on a sample of their rows so far (rotates the first row counted). */
  private sampled = 0;

  constructor(readonly model: string, readonly version: string, signature: ModelSignature, reference: { source: string; rows: number; inputs: FeatureProfile[]; outputs?: FeatureProfile[] } | undefined, options: DriftOptions = {}) {
    this.options = {
      windowRows: options.windowRows ?? DRIFT_DEFAULTS.windowRows,
      windowSeconds: options.windowSeconds ?? DRIFT_DEFAULTS.windowSeconds,
      minSamples: options.minSamples ?? DRIFT_DEFAULTS.minSamples,
      driftShare: options.driftShare ?? DRIFT_DEFAULTS.driftShare,
      captureRows: options.captureRows ?? DRIFT_DEFAULTS.captureRows,
      maxValuesPerRequest: Math.max(1, options.maxValuesPerRequest ?? DRIFT_DEFAULTS.maxValuesPerRequest),
      thresholds: { ...DRIFT_DEFAULTS.thresholds, ...options.thresholds },
      numericTest: options.numericTest,
      categoricalTest: options.categoricalTest,
    };
    this.clock = options.clock ?? Date.now;
    this.inputs = columnLayout(signature, 'inputs');
    this.outputs = columnLayout(signature, 'outputs');
    if (this.inputs.columns + this.outputs.columns === 0) {
      // Nothing to count (text in, an embedding out): no reference to wait for (evaluate says why).
    } else if (reference && reference.inputs.length === this.inputs.columns) {
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
      const count = profiles.length;
      const binOffset = new Int32Array(count);
      const pointsAt = new Int32Array(count);
      const pointsLength = new Int32Array(count);
      const mode = new Uint8Array(count);
      const low = new Float64Array(count);
      const high = new Float64Array(count);
      const scale = new Float64Array(count);
      const cellsAt = new Int32Array(count);
      const gridCells = new Int32Array(count);
      const all: number[] = [];
      let offset = base;
      profiles.forEach((p, i) => {
        binOffset[i] = offset;
        offset += binCount(p);
        const points = p.values ?? p.edges ?? [];
        pointsAt[i] = all.length;
        pointsLength[i] = points.length;
        all.push(...points);
      });
      const points = Float64Array.from(all);
      const grids: Int32Array[] = [];
      let cellCount = 0;
      profiles.forEach((p, i) => {
        const grid = p.values ? undefined : gridOf(points, pointsAt[i]!, pointsLength[i]!);
        mode[i] = p.values ? CATEGORY : grid ? GRID : HALVING;
        if (!grid) return;
        low[i] = grid.low;
        high[i] = grid.high;
        scale[i] = grid.scale;
        cellsAt[i] = cellCount;
        gridCells[i] = grid.cells.length;
        cellCount += grid.cells.length;
        grids.push(grid.cells);
      });
      const cells = new Int32Array(cellCount);
      for (let i = 0, at = 0; i < grids.length; at += grids[i]!.length, i++) cells.set(grids[i]!, at);
      const watched = { layout, profiles, binOffset, points, pointsAt, pointsLength, mode, low, high, scale, cellsAt, cells };
      return { ...watched, table: nativeTable(watched, (i) => gridCells[i]!) };
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
    const counting = response && state.out.profiles.length > 0;
    const valuesPerRow = state.in.profiles.length + (counting ? state.out.profiles.length : 0);
    // Rows are the inputs' (or, where no input is watched, the outputs').
    const byInputs = state.in.profiles.length > 0;
    if (!byInputs && !counting) return;
    const n = byInputs ? rowsOf(state.in, request.inputs) : rowsOf(state.out, response!.outputs);
    const step = Math.max(1, Math.ceil((n * valuesPerRow) / this.options.maxValuesPerRequest));
    // The rows counted start at a rotating offset, so no position in a batch is always left out.
    const first = step === 1 ? 0 : this.sampled++ % step;
    const rows = countRows(state.in, request.inputs, segment, first, step);
    const outputRows = counting ? countRows(state.out, response.outputs, segment, first, step) : 0;
    win.addRows(byInputs ? rows : outputRows);
  }

  private captureRows(request: InferRequest, response: InferResponse | undefined): void {
    const cap = this.capture!;
    const target = this.options.captureRows;
    const base = cap.rows;
    const ic = this.inputs.columns;
    const oc = this.outputs.columns;
    const inputRows = visitRows(this.inputs, request.inputs, (r, c, v) => {
      if (base + r < target) cap.inputs[(base + r) * ic + c] = v;
    });
    let outputRows = 0;
    if (response) {
      outputRows = visitRows(this.outputs, response.outputs, (r, c, v) => {
        if (base + r < target) cap.outputs[(base + r) * oc + c] = v;
      });
    }
    // Rows are the inputs' (or, where no input is watched, the outputs': a text model's scores).
    cap.rows = Math.min(target, base + (ic > 0 ? inputRows : outputRows));
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

  /**
   * Whether the model's prediction drifted, read as feedback reads it (feedback.ts): an integer
   * class output of one column where the model has one; else its first output, by the same share
   * of its columns that decides for the inputs. A PyTorch classifier exported with softmax
   * probabilities and no label output, or a regression, otherwise never drifted by its outputs:
   * a two-head model whose five probabilities all drifted (KS statistics 0.11-0.54) and its
   * regression head too, with a quarter of its inputs drifting, was reported "no_drift".
   */
  private predictionDrifted(outputs: readonly FeatureDrift[]): boolean {
    const tensors = this.outputs.tensors;
    if (tensors.some((t) => t.categorical)) return outputs.some((f, i) => f.verdict === 'drift' && this.isCategoricalOutput(i));
    const first = tensors[0];
    if (!first || first.columns === 0) return false;
    const columns = outputs.slice(first.offset, first.offset + first.columns);
    return columns.length > 0 && columns.filter((f) => f.verdict === 'drift').length / columns.length >= this.options.driftShare;
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
    const unwatched = [...this.inputs.unwatched, ...this.outputs.unwatched];
    const base = { model: this.model, version: this.version, minSamples: this.options.minSamples };
    const tail = unwatched.length > 0 ? { unwatched } : {};
    if (!this.watched) {
      const reference = this.capture ? { source: 'capturing', rows: this.capture.rows, target: this.options.captureRows } : { source: 'none', rows: 0 };
      return { ...base, verdict: 'inconclusive', window: 0, reference, driftedShare: 0, features: [], outputs: [], predictionDrift: false, ...tail };
    }
    const { window, reference } = this.watched;
    window.tick(this.clock());
    const n = window.rows;
    const total = window.total();
    // A test is only as good as its smaller sample: a reference of a few rows judges nothing.
    const enough = Math.min(n, reference.rows) >= this.options.minSamples;
    const judge = (w: Watched): FeatureDrift[] => w.profiles.map((p, i) => {
      const offset = w.binOffset[i]!;
      const live = total.subarray(offset, offset + binCount(p));
      const test = this.testFor(p.kind, Math.min(n, reference.rows));
      const result = runTest(test, p.counts, live);
      const threshold = this.options.thresholds[test];
      const drifted = TEST_IS_P_VALUE[test] ? result.score < threshold : result.score >= threshold;
      const score = round(result.score);
      return { name: p.name, kind: p.kind, test, score, statistic: round(result.statistic), threshold, shift: round(totalVariation(p.counts, live)), verdict: !enough ? 'inconclusive' : drifted ? 'drift' : 'no_drift' };
    });
    const features = judge(this.watched.in);
    const outputs = judge(this.watched.out);
    const drifted = features.filter((f) => f.verdict === 'drift').length;
    const driftedShare = features.length > 0 ? drifted / features.length : 0;
    const predictionDrift = enough && this.predictionDrifted(outputs);
    let verdict: Verdict = 'inconclusive';
    if (enough) verdict = driftedShare >= this.options.driftShare || predictionDrift ? 'drift' : 'no_drift';
    return { ...base, verdict, window: n, reference, driftedShare: round(driftedShare), features, outputs, predictionDrift, ...tail };
  }

  /**
   * One watched column's reference and live window counts, bin for bin: `edges` are the upper
   * bounds of numeric bins (the last bin is above every edge), `values` the categories.
   */
  histogram(name: string): FeatureHistogram | undefined {
    const state = this.watched;
    if (!state) return undefined;
    for (const w of [state.in, state.out]) {
      const i = w.profiles.findIndex((p) => p.name === name);
      if (i < 0) continue;
      const p = w.profiles[i]!;
      state.window.tick(this.clock());
      const offset = w.binOffset[i]!;
      const live = [...state.window.total().subarray(offset, offset + binCount(p))];
      return { name: p.name, kind: p.kind, ...(p.values ? { values: [...p.values] } : { edges: [...(p.edges ?? [])] }), reference: [...p.counts], live };
    }
    return undefined;
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

/** Half the summed absolute difference of the two histograms' shares. */
function totalVariation(reference: ArrayLike<number>, live: ArrayLike<number>): number {
  let r = 0;
  let l = 0;
  for (let i = 0; i < reference.length; i++) {
    r += reference[i]!;
    l += live[i]!;
  }
  if (r === 0 || l === 0) return 0;
  let d = 0;
  for (let i = 0; i < reference.length; i++) d += Math.abs(reference[i]! / r - live[i]! / l);
  return d / 2;
}
