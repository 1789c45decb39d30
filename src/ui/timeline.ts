// Short time series of what every model is doing (requests/s, errors/s, latency p50/p99 per
// version, queue depth, batch sizes, shadow agreement, live accuracy or error), kept in fixed-size ring
// buffers: one point per step, the oldest overwritten, so a server left running for a month holds
// exactly as much as one running for fifteen minutes. The request path only counts into the
// current step's arrays; percentiles and samples are taken once per step.
import type { InferEvent } from '../core/hooks.js';

/** Latency bins: geometric, ratio 1.25 from 10 us; 96 bins reach past an hour. */
const LATENCY_FLOOR_MS = 0.01;
const LATENCY_RATIO = 1.25;
const LATENCY_BINS = 96;
const LOG_RATIO = Math.log(LATENCY_RATIO);

/** Batch-size histogram bounds (rows per model execution): 1, 2, 3-4, 5-8, ..., 129+. */
export const BATCH_BOUNDS = [1, 2, 4, 8, 16, 32, 64, 128];

export interface TimelineOptions {
  /** Milliseconds per point (default 1000). */
  stepMs?: number;
  /** Points kept per series (default 900: fifteen minutes of one-second steps). */
  capacity?: number;
}

/** What the timeline samples once per step, besides what the request path counted. */
export interface TimelineSources {
  /** Requests waiting in the batcher queue of a loaded version. */
  queueDepth(model: string, version: string): number | undefined;
  /** Running agreement of a shadow version with the primary, 0..1. */
  shadowAgreement(model: string, version: string): number | undefined;
  /** Live accuracy from feedback, 0..1 (classifiers). */
  accuracy(model: string, version: string): number | undefined;
  /** Live mean absolute error from feedback (regressions: a first output of one value per row). */
  meanAbsoluteError(model: string, version: string): number | undefined;
  /** Loaded (model, version) pairs: they get points even without traffic. */
  loaded(): { model: string; versions: string[] }[];
}

/** A fixed-capacity ring of numbers; NaN marks "no value at this step" (null in JSON). */
class Ring {
  private readonly data: Float64Array;
  private next = 0;
  private size = 0;

  constructor(readonly capacity: number, fill = 0) {
    this.data = new Float64Array(capacity);
    // A series born late is padded so that every series lines up with the shared time axis.
    for (let i = 0; i < fill; i++) this.push(Number.NaN);
  }

  push(value: number): void {
    this.data[this.next] = value;
    this.next = (this.next + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
  }

  /** Oldest first. */
  values(): (number | null)[] {
    const out = new Array<number | null>(this.size);
    const start = (this.next - this.size + this.capacity) % this.capacity;
    for (let i = 0; i < this.size; i++) out[i] = nullable(this.data[(start + i) % this.capacity]!);
    return out;
  }

  last(): number | null {
    return this.size === 0 ? null : nullable(this.data[(this.next - 1 + this.capacity) % this.capacity]!);
  }
}

function nullable(v: number): number | null {
  return Number.isNaN(v) ? null : round(v);
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/** Per (model, version): the step's counters and the series they become. */
class VersionSeries {
  requests = 0;
  errors = 0;
  readonly latency = new Uint32Array(LATENCY_BINS);
  readonly series: Record<SeriesName, Ring>;

  /** `lastActive`: the latest step it was loaded or had requests; once that leaves the window it is dropped. */
  constructor(capacity: number, fill: number, public lastActive: number) {
    this.series = {} as Record<SeriesName, Ring>;
    for (const name of SERIES) this.series[name] = new Ring(capacity, fill);
  }
}

export const SERIES = ['requests_per_s', 'errors_per_s', 'p50_ms', 'p99_ms', 'queue_depth', 'accuracy', 'mean_absolute_error', 'shadow_agreement'] as const;
export type SeriesName = (typeof SERIES)[number];

class ModelSeries {
  readonly versions = new Map<string, VersionSeries>();
  /** Client requests (shadow copies are the shadow version's load, not the model's). */
  requests = 0;
  errors = 0;
  readonly total: { requests_per_s: Ring; errors_per_s: Ring };
  /** Executions per batch-size bin, in the current step; `batchRing` holds one row per step. */
  readonly batches = new Float64Array(BATCH_BOUNDS.length + 1);
  readonly batchRing: Float64Array;

  constructor(readonly capacity: number, fill: number) {
    this.total = { requests_per_s: new Ring(capacity, fill), errors_per_s: new Ring(capacity, fill) };
    this.batchRing = new Float64Array(capacity * this.batches.length);
  }
}

export interface VersionPoint extends Record<SeriesName, number | null> {}

export interface TimelinePoint {
  time: number;
  models: Record<string, { requests_per_s: number | null; errors_per_s: number | null; versions: Record<string, VersionPoint> }>;
}

export class Timeline {
  readonly stepMs: number;
  readonly capacity: number;
  private readonly models = new Map<string, ModelSeries>();
  private readonly times: Ring;
  /** Steps taken so far (the batch ring's write position). */
  private steps = 0;
  private lastModelName = '';
  private lastVersionName = '';
  private lastVersion: VersionSeries | undefined;
  private lastModel: ModelSeries | undefined;

  constructor(private readonly sources: TimelineSources, options: TimelineOptions = {}) {
    this.stepMs = options.stepMs ?? 1000;
    this.capacity = options.capacity ?? 900;
    this.times = new Ring(this.capacity);
  }

  /** Hot path: counts one finished request into the current step. */
  observe(event: InferEvent): void {
    // Most events name the same model and version as the last one: no key string, no map lookup.
    let v = this.lastVersion;
    let m = this.lastModel;
    if (event.model !== this.lastModelName || event.version !== this.lastVersionName || !v || !m) {
      m = this.modelOf(event.model);
      v = this.versionOf(m, event.version);
      this.lastModelName = event.model;
      this.lastVersionName = event.version;
      this.lastVersion = v;
      this.lastModel = m;
    }
    const failed = event.outcome !== 'success';
    v.requests++;
    if (failed) v.errors++;
    else v.latency[latencyBin(event.durationMs)]!++;
    if (event.role !== 'shadow') {
      m.requests++;
      if (failed) m.errors++;
    }
    const t = event.timing;
    // Each request of a batch adds its share, so one execution of 8 rows counts 1.
    if (t && t.batchRows > 0) m.batches[batchBin(t.batchRows)]! += t.rows / t.batchRows;
  }

  /** Closes the current step at `now` (ms since the epoch): one point on every series. */
  sample(now = Date.now()): TimelinePoint {
    for (const { model, versions } of this.sources.loaded()) {
      const m = this.modelOf(model);
      for (const version of versions) this.versionOf(m, version).lastActive = this.steps;
    }
    const perSecond = 1000 / this.stepMs;
    const point: TimelinePoint = { time: now, models: {} };
    const row = (this.steps % this.capacity) * (BATCH_BOUNDS.length + 1);
    for (const [model, m] of this.models) {
      // A version neither loaded nor asked for since its last point left the window has nothing
      // left to show: without this, every model name and version ever served would keep its rings.
      for (const [version, v] of m.versions) {
        if (v.requests > 0 || this.steps - v.lastActive < this.capacity) continue;
        m.versions.delete(version);
        this.lastModelName = '';
      }
      if (m.versions.size === 0) {
        this.models.delete(model);
        continue;
      }
      m.total.requests_per_s.push(m.requests * perSecond);
      m.total.errors_per_s.push(m.errors * perSecond);
      m.requests = 0;
      m.errors = 0;
      m.batchRing.set(m.batches, row);
      m.batches.fill(0);
      const versions: Record<string, VersionPoint> = {};
      for (const [version, v] of m.versions) {
        if (v.requests > 0) v.lastActive = this.steps;
        const s = v.series;
        s.requests_per_s.push(v.requests * perSecond);
        s.errors_per_s.push(v.errors * perSecond);
        const served = v.requests - v.errors;
        s.p50_ms.push(served > 0 ? percentile(v.latency, served, 0.5) : Number.NaN);
        s.p99_ms.push(served > 0 ? percentile(v.latency, served, 0.99) : Number.NaN);
        s.queue_depth.push(this.sources.queueDepth(model, version) ?? Number.NaN);
        s.accuracy.push(this.sources.accuracy(model, version) ?? Number.NaN);
        s.mean_absolute_error.push(this.sources.meanAbsoluteError(model, version) ?? Number.NaN);
        s.shadow_agreement.push(this.sources.shadowAgreement(model, version) ?? Number.NaN);
        v.requests = 0;
        v.errors = 0;
        v.latency.fill(0);
        versions[version] = lastPoint(v);
      }
      point.models[model] = { requests_per_s: m.total.requests_per_s.last(), errors_per_s: m.total.errors_per_s.last(), versions };
    }
    this.times.push(now);
    this.steps++;
    return point;
  }

  /** Every series of `model` (or of every model), oldest first, on the shared time axis. */
  view(model?: string): Record<string, unknown> {
    const models: Record<string, unknown> = {};
    for (const [name, m] of this.models) {
      if (model !== undefined && name !== model) continue;
      const versions: Record<string, Record<string, (number | null)[]>> = {};
      for (const [version, v] of m.versions) {
        const out: Record<string, (number | null)[]> = {};
        for (const s of SERIES) out[s] = v.series[s].values();
        versions[version] = out;
      }
      models[name] = {
        requests_per_s: m.total.requests_per_s.values(),
        errors_per_s: m.total.errors_per_s.values(),
        batch_sizes: this.batchHistogram(m),
        versions,
      };
    }
    return { step_seconds: this.stepMs / 1000, capacity: this.capacity, times: this.times.values(), models };
  }

  /** Executions per batch size over the whole window; `le` is each bin's largest batch. */
  private batchHistogram(m: ModelSeries): { le: (number | null)[]; executions: number[] } {
    const bins = BATCH_BOUNDS.length + 1;
    const sums = new Float64Array(bins);
    const rows = Math.min(this.steps, this.capacity);
    for (let r = 0; r < rows; r++) for (let b = 0; b < bins; b++) sums[b]! += m.batchRing[r * bins + b]!;
    return { le: [...BATCH_BOUNDS, null], executions: [...sums].map((x) => round(x)) };
  }

  /** The model's newest requests/s and errors/s (null before the first step). */
  latest(model: string): { requests_per_s: number | null; errors_per_s: number | null } {
    const m = this.models.get(model);
    return { requests_per_s: m?.total.requests_per_s.last() ?? null, errors_per_s: m?.total.errors_per_s.last() ?? null };
  }

  /** A model no longer loaded keeps its series until it falls out of the window; `forget` drops it now. */
  forget(model: string): void {
    this.models.delete(model);
    this.lastModelName = '';
  }

  private modelOf(model: string): ModelSeries {
    let m = this.models.get(model);
    if (!m) {
      m = new ModelSeries(this.capacity, this.filled());
      this.models.set(model, m);
    }
    return m;
  }

  private versionOf(m: ModelSeries, version: string): VersionSeries {
    let v = m.versions.get(version);
    if (!v) {
      v = new VersionSeries(this.capacity, this.filled(), this.steps);
      m.versions.set(version, v);
    }
    return v;
  }

  private filled(): number {
    return Math.min(this.steps, this.capacity);
  }
}

function lastPoint(v: VersionSeries): VersionPoint {
  const out = {} as VersionPoint;
  for (const s of SERIES) out[s] = v.series[s].last();
  return out;
}

function latencyBin(ms: number): number {
  if (!(ms > LATENCY_FLOOR_MS)) return 0;
  return Math.min(LATENCY_BINS - 1, Math.floor(Math.log(ms / LATENCY_FLOOR_MS) / LOG_RATIO) + 1);
}

function batchBin(rows: number): number {
  let i = 0;
  while (i < BATCH_BOUNDS.length && rows > BATCH_BOUNDS[i]!) i++;
  return i;
}

/** The `q` quantile from the binned latencies: the geometric middle of the bin it falls in (within 12%). */
function percentile(bins: Uint32Array, count: number, q: number): number {
  const rank = Math.max(1, Math.ceil(q * count));
  let seen = 0;
  for (let i = 0; i < bins.length; i++) {
    seen += bins[i]!;
    if (seen >= rank) {
      if (i === 0) return LATENCY_FLOOR_MS;
      const low = LATENCY_FLOOR_MS * LATENCY_RATIO ** (i - 1);
      return low * Math.sqrt(LATENCY_RATIO);
    }
  }
  return Number.NaN;
}
