// Joining ground truth with predictions: recent predictions wait in a bounded map (oldest out
// first, expired after a TTL); each label updates a fixed-size window of live accuracy / error.
import type { InferResponse, ModelSignature, Tensor } from '../protocol/types.js';

export type Task = 'classification' | 'regression';

export interface FeedbackOptions {
  /** Predictions kept for joining (default 100000); the oldest are forgotten first. */
  maxPending?: number;
  /** Seconds a prediction waits for its label (default 86400). */
  ttlSeconds?: number;
  /** Labelled rows the live accuracy / error is computed over (default 1000). */
  accuracyWindow?: number;
}

const INTEGER_TYPES = new Set(['UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64']);
/** Values kept per prediction at most (rows of a request). */
const MAX_VALUES = 64;

/** How a version's answer becomes one predicted value per row. */
export interface PredictionReader {
  task: Task;
  output: string;
  /** argmax over the row's columns (score vectors); else the single value. */
  argmax: boolean;
  width: number;
}

/** An integer output of one column is the class; else the first output: one column = regression, more = argmax class. */
export function predictionReader(signature: ModelSignature): PredictionReader | undefined {
  const widthOf = (dims: number[]) => (dims.some((d) => d < 0) ? undefined : dims.reduce((a, b) => a * b, 1));
  const cls = signature.outputs.find((o) => INTEGER_TYPES.has(o.datatype) && widthOf(o.dims) === 1);
  if (cls) return { task: 'classification', output: cls.name, argmax: false, width: 1 };
  const first = signature.outputs.find((o) => o.datatype !== 'BYTES' && widthOf(o.dims) !== undefined);
  if (!first) return undefined;
  const width = widthOf(first.dims)!;
  return width === 1 ? { task: 'regression', output: first.name, argmax: false, width } : { task: 'classification', output: first.name, argmax: true, width };
}

export function predictedValues(reader: PredictionReader, response: InferResponse): Float64Array | undefined {
  let t: Tensor | undefined;
  for (const o of response.outputs) if (o.name === reader.output) t = o;
  if (!t || Array.isArray(t.data)) return undefined;
  const data = t.data as ArrayLike<number | bigint>;
  const rows = Math.min(MAX_VALUES, Math.floor(data.length / reader.width));
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    if (!reader.argmax) {
      out[r] = Number(data[r]!);
      continue;
    }
    let best = 0;
    for (let c = 1; c < reader.width; c++) if (Number(data[r * reader.width + c]!) > Number(data[r * reader.width + best]!)) best = c;
    out[r] = best;
  }
  return out;
}

interface VersionPrediction {
  version: string;
  task: Task;
  predicted: Float64Array;
}

/** One request id; a shadow or canary copy of the request adds its version's answer beside the primary's. */
interface Waiting {
  model: string;
  predictions: VersionPrediction[];
  at: number;
  labelled: boolean;
}

/** Versions one id may carry (primary, canary, shadows). */
const MAX_VERSIONS_PER_ID = 4;

/** Fixed-size ring of per-row scores (1/0 correct, or absolute error) with a running sum. */
class ScoreWindow {
  private readonly values: Float64Array;
  private next = 0;
  private filled = 0;
  private total = 0;
  labelled = 0;

  constructor(size: number, readonly task: Task) {
    this.values = new Float64Array(size);
  }

  push(score: number): void {
    if (this.filled === this.values.length) this.total -= this.values[this.next]!;
    else this.filled += 1;
    this.values[this.next] = score;
    this.total += score;
    this.next = (this.next + 1) % this.values.length;
    this.labelled += 1;
  }

  get mean(): number | undefined {
    return this.filled === 0 ? undefined : this.total / this.filled;
  }

  get size(): number {
    return this.filled;
  }
}

export interface AccuracyReport {
  model: string;
  version: string;
  task: Task;
  /** Labelled rows ever joined for this version. */
  labelled: number;
  /** Rows the figure below is over (the latest, up to the window). */
  window: number;
  /** Classification: share correct. */
  accuracy?: number;
  /** Regression: mean absolute error. */
  meanAbsoluteError?: number;
}

export interface JoinedLabel {
  id: string;
  model: string;
  /** The first version that answered (the primary). */
  version: string;
  /** Every version whose answer to this id was scored (primary, canary, shadows). */
  versions: string[];
  truth: unknown;
}

export interface FeedbackResult {
  accepted: number;
  unknown: string[];
  /** Labels whose shape does not match the prediction (rows), or already labelled ids. */
  rejected: { id: string; reason: string }[];
  joined: JoinedLabel[];
}

export class FeedbackJoin {
  private readonly waiting = new Map<string, Waiting>();
  private readonly windows = new Map<string, ScoreWindow>();
  private readonly maxPending: number;
  private readonly ttlMs: number;
  private readonly windowSize: number;

  constructor(options: FeedbackOptions = {}) {
    this.maxPending = options.maxPending ?? 100_000;
    this.ttlMs = (options.ttlSeconds ?? 86_400) * 1000;
    this.windowSize = options.accuracyWindow ?? 1000;
  }

  /** Hot path: remember one answered prediction under its id. */
  remember(id: string, model: string, version: string, task: Task, predicted: Float64Array, now = Date.now()): void {
    const key = `${model}\u0000${id}`;
    const existing = this.waiting.get(key);
    if (existing && !existing.labelled) {
      // Same id from another version (shadow, canary): keep both; from the same version: a re-used id, the newest wins.
      const i = existing.predictions.findIndex((p) => p.version === version);
      if (i >= 0) existing.predictions[i] = { version, task, predicted };
      else if (existing.predictions.length < MAX_VERSIONS_PER_ID) existing.predictions.push({ version, task, predicted });
      return;
    }
    if (existing) this.waiting.delete(key);
    this.waiting.set(key, { model, predictions: [{ version, task, predicted }], at: now, labelled: false });
    if (this.waiting.size > this.maxPending) {
      const oldest = this.waiting.keys().next().value;
      if (oldest !== undefined) this.waiting.delete(oldest);
    }
  }

  get pendingCount(): number {
    return this.waiting.size;
  }

  /** Joins labels with remembered predictions of `model`. */
  accept(model: string, items: { id: string; truth: unknown }[], now = Date.now()): FeedbackResult {
    const result: FeedbackResult = { accepted: 0, unknown: [], rejected: [], joined: [] };
    for (const { id, truth } of items) {
      const w = this.waiting.get(`${model}\u0000${id}`);
      if (!w || now - w.at > this.ttlMs) {
        result.unknown.push(id);
        continue;
      }
      if (w.labelled) {
        result.rejected.push({ id, reason: 'already labelled' });
        continue;
      }
      const truths = Array.isArray(truth) ? truth : [truth];
      const rows = w.predictions[0]!.predicted.length;
      if (truths.length !== rows || !truths.every((t) => typeof t === 'number' && Number.isFinite(t))) {
        result.rejected.push({ id, reason: `expected ${rows === 1 ? 'a number' : `an array of ${rows} numbers`} for truth` });
        continue;
      }
      for (const p of w.predictions) {
        const win = this.windowOf(w.model, p.version, p.task);
        truths.forEach((t, r) => {
          const predicted = p.predicted[r];
          if (predicted === undefined) return;
          win.push(p.task === 'classification' ? (predicted === t ? 1 : 0) : Math.abs(predicted - (t as number)));
        });
      }
      w.labelled = true;
      result.accepted += 1;
      result.joined.push({ id, model: w.model, version: w.predictions[0]!.version, versions: w.predictions.map((p) => p.version), truth });
    }
    return result;
  }

  private windowOf(model: string, version: string, task: Task): ScoreWindow {
    const key = `${model}\u0000${version}`;
    let w = this.windows.get(key);
    if (!w) {
      w = new ScoreWindow(this.windowSize, task);
      this.windows.set(key, w);
    }
    return w;
  }

  report(model: string, version: string): AccuracyReport | undefined {
    const w = this.windows.get(`${model}\u0000${version}`);
    if (!w) return undefined;
    const out: AccuracyReport = { model, version, task: w.task, labelled: w.labelled, window: w.size };
    const mean = w.mean;
    if (mean !== undefined) {
      if (w.task === 'classification') out.accuracy = mean;
      else out.meanAbsoluteError = mean;
    }
    return out;
  }

  reports(): AccuracyReport[] {
    const out: AccuracyReport[] = [];
    for (const key of this.windows.keys()) {
      const [model, version] = key.split('\u0000') as [string, string];
      const r = this.report(model, version);
      if (r) out.push(r);
    }
    return out;
  }

  /** Drops expired predictions from the old end (called on a timer, not per request). */
  sweep(now = Date.now()): void {
    for (const [key, w] of this.waiting) {
      if (now - w.at <= this.ttlMs) break;
      this.waiting.delete(key);
    }
  }
}
