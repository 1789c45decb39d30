// Joining ground truth with predictions: recent predictions wait in a bounded map (oldest out
// first, expired after a TTL); each label updates a fixed-size window of live accuracy / error.
import { halfArrayToFloat32 } from '../protocol/half.js';
import type { InferResponse, ModelSignature, Tensor } from '../protocol/types.js';
import { monitorStats } from '../native/monitor-stats.js';

export type Task = 'classification' | 'regression';

export interface FeedbackOptions {
  /** Predictions kept for joining (default 100000); the oldest are forgotten first. */
  maxPending?: number;
  /** Seconds a prediction waits for its label (default 86400). */
  ttlSeconds?: number;
  /** Labelled rows the live accuracy / error is computed over (default 1000). */
  accuracyWindow?: number;
  /** Ids Umbra assigns are this prefix and a sequence number; they are found without a hash lookup. */
  assignedPrefix?: string;
}

const INTEGER_TYPES = new Set(['UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64']);
/** Values kept per prediction at most (rows of a request): a label scores a request's first 64 rows. */
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

/** Rows of the answer, all of them: what a label must give a truth for (only the first MAX_VALUES are scored). */
export function predictedRows(reader: PredictionReader, response: InferResponse): number {
  let t: Tensor | undefined;
  for (const o of response.outputs) if (o.name === reader.output) t = o;
  return t ? Math.floor(t.data.length / reader.width) : 0;
}

export function predictedValues(reader: PredictionReader, response: InferResponse): Float64Array | undefined {
  let t: Tensor | undefined;
  for (const o of response.outputs) if (o.name === reader.output) t = o;
  if (!t || Array.isArray(t.data)) return undefined;
  // FP16 arrives as raw bits: read as the values they hold (bits order negative values backwards).
  const data = (t.datatype === 'FP16' ? halfArrayToFloat32((t.data as Uint16Array).subarray(0, MAX_VALUES * reader.width)) : t.data) as ArrayLike<number | bigint>;
  const rows = Math.min(MAX_VALUES, Math.floor(data.length / reader.width));
  const out = new Float64Array(rows);
  // Float scores (nearly every classifier): the addon's loop for FP32, else a monomorphic one
  // without conversions. A 64 x 4096 output costs 1 ms of the serving thread per request through
  // the general loop below, 0.25 ms through the monomorphic one.
  const stats = monitorStats();
  if (reader.argmax && data instanceof Float32Array && stats) stats.argmaxRowsF32(data, rows, reader.width, out);
  else if (reader.argmax && (data instanceof Float32Array || data instanceof Float64Array)) argmaxRows(data, reader.width, out);
  else for (let r = 0; r < rows; r++) {
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

/** out[r] = the first column holding row r's largest value (column 0 when the row starts with NaN). */
function argmaxRows(data: Float32Array | Float64Array, width: number, out: Float64Array): void {
  for (let r = 0, at = 0; r < out.length; r++, at += width) {
    let best = 0;
    let top = data[at]!;
    for (let c = 1; c < width; c++) {
      const v = data[at + c]!;
      if (v > top) {
        top = v;
        best = c;
      }
    }
    out[r] = best;
  }
}

interface VersionPrediction {
  version: string;
  task: Task;
  /** The first rows' predictions (at most MAX_VALUES). */
  predicted: ArrayLike<number>;
  /** Rows the answer had: what a label gives a truth for. */
  rows: number;
}

/** Versions one id may carry (primary, canary, shadows). */
const MAX_VERSIONS_PER_ID = 4;

/**
 * Fixed-size ring of per-row scores (1/0 correct, or absolute error) with a running sum, and the
 * time of the prediction each score is for, so evidence can be limited to predictions made since
 * a moment (a rollout's start: labels of earlier predictions are no evidence about it).
 */
class ScoreWindow {
  private readonly values: Float64Array;
  private readonly predictedAt: Float64Array;
  private next = 0;
  private filled = 0;
  private total = 0;
  labelled = 0;

  constructor(size: number, readonly task: Task) {
    this.values = new Float64Array(size);
    this.predictedAt = new Float64Array(size);
  }

  push(score: number, predictedAtMs: number): void {
    if (this.filled === this.values.length) this.total -= this.values[this.next]!;
    else this.filled += 1;
    this.values[this.next] = score;
    this.predictedAt[this.next] = predictedAtMs;
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

  /** The scores in the window of predictions made at or after `ms`: how many, and their mean. */
  since(ms: number): { size: number; mean: number | undefined } {
    let size = 0;
    let total = 0;
    for (let i = 0; i < this.filled; i++) {
      if (this.predictedAt[i]! < ms) continue;
      size += 1;
      total += this.values[i]!;
    }
    return { size, mean: size === 0 ? undefined : total / size };
  }
}

/**
 * Why labels cannot be scored against a prediction of `rows` rows, or undefined: one number per
 * row; for a classifier, a class (an integer, from 0 to `classes` - 1 where the version scores
 * that many). A label that cannot name a class is a mistake in the labels, not a wrong answer.
 */
function truthProblem(task: Task, classes: number | undefined, rows: number, truths: unknown[]): string | undefined {
  const what = rows === 1 ? 'a number' : `an array of ${rows} numbers`;
  if (truths.length !== rows || !truths.every((t) => typeof t === 'number' && Number.isFinite(t))) return `expected ${what} for truth`;
  if (task !== 'classification') return undefined;
  // A model whose output is the class itself may name classes by any integer (-1 and 1, say).
  const bad = (truths as number[]).find((t) => !Number.isSafeInteger(t) || (classes !== undefined && (t < 0 || t >= classes)));
  if (bad === undefined) return undefined;
  return `expected ${rows === 1 ? 'a class' : `${rows} classes`} for truth (${classes !== undefined ? `an integer from 0 to ${classes - 1}: the model scores ${classes} classes` : 'an integer'}) but received ${bad}`;
}

export interface AccuracyReport {
  model: string;
  version: string;
  task: Task;
  /** Labelled rows ever joined for this version. */
  labelled: number;
  /** Rows the figure below is over (the latest, up to the window; with `since`, of predictions made since). */
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
  /** Every version whose answer to this id was scored (the served one and its shadow copies). */
  versions: string[];
  /** The times of the first and last of those answers, as the log records them: the label belongs to these rows only. */
  fromMs: number;
  toMs: number;
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
  /**
   * Waiting predictions live in slot-indexed arrays used as a circle, so the oldest is forgotten
   * in O(1) and the common case (one row, one version) keeps no object per prediction: 100,000
   * waiting predictions as objects cost more in garbage collection than the rest of monitoring.
   */
  private readonly slots = new Map<string, Map<string, number>>();
  private readonly slotModel: (string | undefined)[];
  /** A caller's id (kept in `slots`), or undefined for an assigned id (kept as its number). */
  private readonly slotId: (string | undefined)[];
  private readonly slotSeq: Float64Array;
  /** Assigned sequence number modulo the capacity -> slot. */
  private readonly seqSlot: Int32Array;
  private readonly prefix: string | undefined;
  private readonly at: Float64Array;
  /** Time of the latest answer in the slot (a shadow copy's comes after the served one's). */
  private readonly lastAt: Float64Array;
  private readonly labelled: Uint8Array;
  /** One row from one version: the predicted value and the interned version. */
  private readonly single: Float64Array;
  private readonly singleVersion: Int32Array;
  /** Several rows or several versions under one id. */
  private readonly many = new Map<number, VersionPrediction[]>();
  private readonly versions: { version: string; task: Task }[] = [];
  private readonly versionIndex = new Map<string, number>();
  private next = 0;
  private count = 0;
  private readonly windows = new Map<string, ScoreWindow>();
  private readonly maxPending: number;
  private readonly ttlMs: number;
  private readonly windowSize: number;

  constructor(options: FeedbackOptions = {}) {
    this.maxPending = Math.max(1, options.maxPending ?? 100_000);
    this.ttlMs = (options.ttlSeconds ?? 86_400) * 1000;
    this.windowSize = options.accuracyWindow ?? 1000;
    const n = this.maxPending;
    this.slotModel = new Array<string | undefined>(n);
    this.slotId = new Array<string | undefined>(n);
    this.slotSeq = new Float64Array(n).fill(-1);
    this.seqSlot = new Int32Array(n).fill(-1);
    this.prefix = options.assignedPrefix;
    this.at = new Float64Array(n);
    this.lastAt = new Float64Array(n);
    this.labelled = new Uint8Array(n);
    this.single = new Float64Array(n);
    this.singleVersion = new Int32Array(n);
  }

  private intern(version: string, task: Task): number {
    // A version's task never changes (it comes from its signature), so the version alone is the key.
    let i = this.versionIndex.get(version);
    if (i === undefined || this.versions[i]!.task !== task) {
      i = this.versions.length;
      this.versions.push({ version, task });
      this.versionIndex.set(version, i);
    }
    return i;
  }

  private predictionsOf(slot: number): VersionPrediction[] {
    const many = this.many.get(slot);
    if (many) return many;
    const v = this.versions[this.singleVersion[slot]!]!;
    return [{ version: v.version, task: v.task, predicted: [this.single[slot]!], rows: 1 }];
  }

  /** The sequence number of an id Umbra assigned, else -1. */
  private assignedSeq(id: string): number {
    const p = this.prefix;
    if (p === undefined || id.length <= p.length || !id.startsWith(p)) return -1;
    const n = Number(id.slice(p.length));
    return Number.isSafeInteger(n) && n >= 0 ? n : -1;
  }

  /** The slot holding `id` of `model`, if it is still remembered. */
  private find(model: string, id: string, seq = this.assignedSeq(id)): number | undefined {
    if (seq >= 0) {
      const slot = this.seqSlot[seq % this.maxPending]!;
      return slot >= 0 && this.slotSeq[slot] === seq && this.slotModel[slot] === model ? slot : undefined;
    }
    return this.slots.get(model)?.get(id);
  }

  /**
   * Hot path: remember one answered prediction under its id. A shadow copy joins the answer it
   * copies, so one label scores both; any other answer under a remembered id is a new request
   * that re-used the id: it takes the id over, and a label sent later is for it alone.
   */
  remember(id: string, model: string, version: string, task: Task, predicted: ArrayLike<number>, now = Date.now(), shadow = false, rows = predicted.length): void {
    const seq = this.assignedSeq(id);
    const existing = shadow ? this.find(model, id, seq) : undefined;
    if (existing !== undefined && !this.labelled[existing]) {
      const list = this.predictionsOf(existing);
      const i = list.findIndex((p) => p.version === version);
      const entry = { version, task, predicted: Array.from(predicted), rows };
      if (i >= 0) list[i] = entry;
      else if (list.length < MAX_VERSIONS_PER_ID) list.push(entry);
      this.many.set(existing, list);
      this.lastAt[existing] = Math.max(this.lastAt[existing]!, now);
      return;
    }
    const slot = this.next;
    this.next = (slot + 1) % this.maxPending;
    if (this.slotModel[slot] === undefined) this.count += 1;
    else this.forget(slot);
    if (seq >= 0) {
      this.slotSeq[slot] = seq;
      this.seqSlot[seq % this.maxPending] = slot;
    } else {
      let ids = this.slots.get(model);
      if (!ids) {
        ids = new Map();
        this.slots.set(model, ids);
      }
      ids.set(id, slot);
      this.slotId[slot] = id;
    }
    this.slotModel[slot] = model;
    this.at[slot] = now;
    this.lastAt[slot] = now;
    this.labelled[slot] = 0;
    if (rows === 1) {
      this.single[slot] = predicted[0]!;
      this.singleVersion[slot] = this.intern(version, task);
    } else this.many.set(slot, [{ version, task, predicted: Array.from(predicted), rows }]);
  }

  private forget(slot: number): void {
    const id = this.slotId[slot];
    if (id !== undefined) {
      const ids = this.slots.get(this.slotModel[slot]!);
      // A caller id re-used since it took this slot lives in a newer slot: leave that one alone.
      if (ids?.get(id) === slot) {
        ids.delete(id);
        // An empty map kept would stay for the life of the process: one for every model name ever served.
        if (ids.size === 0) this.slots.delete(this.slotModel[slot]!);
      }
      this.slotId[slot] = undefined;
    } else {
      const seq = this.slotSeq[slot]!;
      if (seq >= 0 && this.seqSlot[seq % this.maxPending] === slot) this.seqSlot[seq % this.maxPending] = -1;
      this.slotSeq[slot] = -1;
    }
    this.many.delete(slot);
  }

  /**
   * Forgets the predictions of `model` waiting for labels (a model no longer loaded): kept, each
   * model name ever served would hold them until newer predictions pushed them out, and its map of
   * ids until then. Labels for them still join from the prediction log, when it is on.
   */
  forgetModel(model: string): void {
    for (let slot = 0; slot < this.maxPending; slot++) {
      if (this.slotModel[slot] !== model) continue;
      this.forget(slot);
      this.slotModel[slot] = undefined;
      this.count -= 1;
    }
    this.slots.delete(model);
  }

  /** Models with predictions under ids their callers chose waiting for labels. */
  modelsWaiting(): string[] {
    return [...this.slots.keys()];
  }

  get pendingCount(): number {
    return this.count;
  }

  /**
   * Joins labels with remembered predictions of `model`. `classesOf(version)`: how many classes a
   * classifier version scores (undefined where its output is the class itself), so a label past
   * them is refused, not counted as a wrong answer.
   */
  accept(model: string, items: { id: string; truth: unknown }[], now = Date.now(), classesOf: (version: string) => number | undefined = () => undefined): FeedbackResult {
    const result: FeedbackResult = { accepted: 0, unknown: [], rejected: [], joined: [] };
    for (const { id, truth } of items) {
      const slot = this.find(model, id);
      if (slot === undefined || now - this.at[slot]! > this.ttlMs) {
        result.unknown.push(id);
        continue;
      }
      if (this.labelled[slot]) {
        result.rejected.push({ id, reason: 'already labelled' });
        continue;
      }
      const predictions = this.predictionsOf(slot);
      const first = predictions[0]!;
      const truths = Array.isArray(truth) ? truth : [truth];
      const refused = truthProblem(first.task, classesOf(first.version), first.rows, truths);
      if (refused) {
        result.rejected.push({ id, reason: refused });
        continue;
      }
      const predictedAt = this.at[slot]!;
      for (const p of predictions) {
        const win = this.windowOf(model, p.version, p.task);
        truths.forEach((t, r) => {
          const predicted = p.predicted[r];
          if (predicted === undefined) return;
          win.push(p.task === 'classification' ? (predicted === t ? 1 : 0) : Math.abs(predicted - (t as number)), predictedAt);
        });
      }
      this.labelled[slot] = 1;
      result.accepted += 1;
      result.joined.push({ id, model, version: predictions[0]!.version, versions: predictions.map((p) => p.version), fromMs: predictedAt, toMs: this.lastAt[slot]!, truth });
    }
    return result;
  }

  /** Scores a label against a prediction of `rows` rows found in the log; returns why it was refused, if it was. */
  scoreLogged(model: string, version: string, task: Task, predicted: ArrayLike<number>, truth: unknown, predictedAtMs: number, classes?: number, rows = predicted.length): string | undefined {
    const truths = Array.isArray(truth) ? truth : [truth];
    const refused = truthProblem(task, classes, rows, truths);
    if (refused) return refused;
    const win = this.windowOf(model, version, task);
    truths.forEach((t, r) => {
      const p = predicted[r];
      if (p === undefined) return;
      win.push(task === 'classification' ? (p === t ? 1 : 0) : Math.abs(p - (t as number)), predictedAtMs);
    });
    return undefined;
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

  /** The version's live accuracy (or error); with `sinceMs`, over the labels of predictions made since then only. */
  report(model: string, version: string, sinceMs?: number): AccuracyReport | undefined {
    const w = this.windows.get(`${model}\u0000${version}`);
    if (!w) return undefined;
    const scope = sinceMs === undefined ? { size: w.size, mean: w.mean } : w.since(sinceMs);
    const out: AccuracyReport = { model, version, task: w.task, labelled: w.labelled, window: scope.size };
    const mean = scope.mean;
    if (mean !== undefined) {
      if (w.task === 'classification') out.accuracy = mean;
      else out.meanAbsoluteError = mean;
    }
    return out;
  }

  /**
   * Drops the accuracy windows of versions `keep` refuses (versions no longer loaded): kept, each
   * version ever served would hold its window (two arrays of the window's size) for the life of
   * the process. A version reloaded under the same number keeps its window.
   */
  forgetWindows(keep: (model: string, version: string) => boolean): void {
    for (const key of this.windows.keys()) {
      const [model, version] = key.split('\u0000') as [string, string];
      if (!keep(model, version)) this.windows.delete(key);
    }
  }

  /** How many versions hold an accuracy window. */
  get windowCount(): number {
    return this.windows.size;
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
}
