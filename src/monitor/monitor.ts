// One Umbra instance's monitoring: metrics, drift, feedback, prediction log and alerts, fed by
// the inference hooks. Everything on the request path is O(columns) counting into fixed arrays.
import { statSync } from 'node:fs';
import { IdAssigner } from '../core/ids.js';
import type { Umbra } from '../core/umbra.js';
import type { InferEvent } from '../core/hooks.js';
import type { ModelVersion } from '../repository/model-version.js';
import { VersionDrift, type DriftOptions, type DriftReport, type FeatureHistogram, type Verdict } from './drift.js';
import { FeedbackJoin, predictedRows, predictedValues, predictionReader, type AccuracyReport, type FeedbackOptions, type FeedbackResult, type PredictionReader } from './feedback.js';
import { UmbraMetrics, type MetricsOptions } from './metrics.js';
import { queueFill } from '../scheduler/options.js';
import { PredictionLog, type PredictionLogOptions } from './prediction-log.js';
import { profileFileOf, readProfile } from './profile.js';
import { Webhook, type AlertEvent, type WebhookOptions } from './webhook.js';
import { decodeTensors } from './tensor-blob.js';

export interface MonitoringOptions extends MetricsOptions {
  /** Drift detection (default on); false turns it off. */
  drift?: DriftOptions | false;
  feedback?: FeedbackOptions;
  /**
   * Labels (`POST /v2/models/{m}/feedback`) need `Authorization: Bearer <token>` with this token;
   * absent = any client that can infer may label. Live accuracy and the rollouts that decide on it
   * trust the labels, so a server whose clients are not the ones who know the truth should set it.
   */
  feedbackToken?: string;
  /** Prediction log; absent = no log (the CLI sets a SQLite default). */
  log?: PredictionLogOptions;
  webhook?: WebhookOptions;
  /** Alert when live accuracy falls below this (classification). */
  accuracyThreshold?: number;
  /** Alert when live mean absolute error rises above this (regression). */
  errorThreshold?: number;
  /** Labelled rows needed before accuracy alerts (default 50). */
  minLabels?: number;
  /** How often drift and accuracy are evaluated for gauges and alerts (default 10 s). */
  evaluateSeconds?: number;
  /** The state directory: reference profiles from `umbra profile` are read here first (src/monitor/profile.ts). */
  stateDir?: string;
}

/** A rollout decision as src/traffic reports it (the webhook event adds `type: "rollout"`). */
export interface RolloutEvent {
  model: string;
  candidate: string;
  baseline: string;
  /** start, advance, retry, pause, resume, promote, rollback or restart. */
  event: string;
  step: number;
  state: string;
  reason: string;
  verdict?: string;
  at: string;
}

/** Per (model, version): what the hooks update. */
interface VersionState {
  model: string;
  version: string;
  drift: VersionDrift | undefined;
  /** The profile file the drift reference was read from (mtime and size), '' without one. */
  profileStamp: string;
  reader: PredictionReader | undefined;
  /** `parameters.log_inputs_sample` of the version's config: its own input sampling in the log. */
  inputsSample: number | undefined;
  /** Triton statistics (nanosecond sums). */
  stats: { success: number; successNs: number; fail: number; failNs: number; queueNs: number; computeNs: number; inferences: number; executions: number; last: number };
  alerted: { drift: boolean; accuracy: boolean };
}

export class Monitor {
  readonly metrics: UmbraMetrics;
  readonly feedback: FeedbackJoin;
  readonly log: PredictionLog | undefined;
  readonly webhook: Webhook | undefined;
  private readonly versions = new Map<string, VersionState>();
  private readonly timer: NodeJS.Timeout;
  private readonly detach: () => void;
  private readonly detachLoaded: () => void;

  constructor(private readonly umbra: Umbra, readonly options: MonitoringOptions = {}) {
    this.metrics = new UmbraMetrics(options);
    // Every prediction gets an id (the caller's, or one the core assigns and returns in the answer):
    // feedback labels join to it.
    const ids = umbra.ids ??= new IdAssigner();
    this.feedback = new FeedbackJoin({ ...options.feedback, assignedPrefix: ids.prefix });
    const m = this.metrics;
    if (options.log) {
      this.log = new PredictionLog(options.log, {
        written: (n) => m.logRows.inc({ result: 'written' }, n),
        dropped: (n) => m.logRows.inc({ result: 'dropped' }, n),
        failed: (n) => m.logRows.inc({ result: 'failed' }, n),
        summarized: (n) => m.logTensorsSummarized.inc(n),
      });
    }
    if (options.webhook) this.webhook = new Webhook(options.webhook, { result: (r) => m.webhookDeliveries.inc({ result: r }) });
    this.installCollectors();
    this.detach = umbra.hooks.use({
      onResult: (event) => this.onResult(event),
      readsHeaders: false,
    });
    this.timer = setInterval(() => this.evaluateAll(), (options.evaluateSeconds ?? 10) * 1000);
    this.timer.unref();
    // A reload (admin load, --poll-seconds) re-reads the reference profile and the config.
    const onLoaded = (name: string) => this.refreshModel(name);
    umbra.manager.on('loaded', onLoaded);
    // An unloaded model's series leave /metrics at once, not at the next evaluation.
    const onUnloaded = () => this.forgetRetired();
    umbra.manager.on('unloaded', onUnloaded);
    this.detachLoaded = () => {
      umbra.manager.off('loaded', onLoaded);
      umbra.manager.off('unloaded', onUnloaded);
    };
  }

  /** Whether `umbra profile` has written a reference profile for the model. */
  hasProfile(model: string): boolean {
    return profileStampOf(this.umbra.manager.repository, model, this.options.stateDir) !== '';
  }

  /** A rollout decision: counted, and sent to the webhook. */
  recordRollout(e: RolloutEvent): void {
    this.metrics.rolloutEvents.inc({ model: e.model, event: e.event });
    this.alert({ ...e, type: 'rollout', version: e.candidate, time: e.at });
  }

  /** Rebuilds the drift reference and prediction reader of a model's versions from the files on disk. */
  private refreshModel(model: string): void {
    for (const [key, s] of this.versions) {
      if (s.model !== model) continue;
      const fresh = this.createState(model, s.version);
      fresh.stats = s.stats;
      fresh.alerted = s.alerted;
      this.versions.set(key, fresh);
    }
  }

  /** A profile written (or removed) since a version's drift reference was read replaces it. */
  private refreshChangedProfiles(): void {
    const stamps = new Map<string, string>();
    for (const s of this.versions.values()) {
      if (!s.drift) continue;
      let stamp = stamps.get(s.model);
      if (stamp === undefined) {
        stamp = profileStampOf(this.umbra.manager.repository, s.model, this.options.stateDir);
        stamps.set(s.model, stamp);
      }
      if (stamp !== s.profileStamp) this.refreshModel(s.model);
    }
  }


  private onResult(event: InferEvent): void {
    this.metrics.observe(event);
    const s = this.stateOf(event.model, event.version);
    const st = s.stats;
    const ns = event.durationMs * 1e6;
    if (event.outcome !== 'success') {
      st.fail += 1;
      st.failNs += ns;
      return;
    }
    st.success += 1;
    st.successNs += ns;
    st.last = Date.now();
    const t = event.timing;
    if (t) {
      st.queueNs += t.queueMs * 1e6;
      st.computeNs += t.computeMs * 1e6;
      st.inferences += t.rows;
      if (t.batchRows > 0) st.executions += t.rows / t.batchRows;
    }
    const request = event.request;
    const response = event.response;
    if (!request || !response) return;
    s.drift?.observe(request, response);
    const id = response.id ?? request.id;
    if (id === undefined) return;
    if (s.reader) {
      const predicted = predictedValues(s.reader, response);
      if (predicted) this.feedback.remember(id, event.model, event.version, s.reader.task, predicted, st.last, event.role === 'shadow', predictedRows(s.reader, response));
    }
    if (this.log) {
      const p: Parameters<PredictionLog['push']>[0] = { id, model: event.model, version: event.version, role: event.role, timeMs: st.last, latencyMs: event.durationMs, inputs: request.inputs, outputs: response.outputs };
      this.log.push(p, s.inputsSample);
    }
  }

  private stateOf(model: string, version: string): VersionState {
    const key = `${model}\u0000${version}`;
    let s = this.versions.get(key);
    if (!s) {
      s = this.createState(model, version);
      this.versions.set(key, s);
    }
    return s;
  }

  private createState(model: string, version: string): VersionState {
    let mv: ModelVersion | undefined;
    try {
      mv = this.umbra.manager.get(model, version);
    } catch {
      mv = undefined;
    }
    let drift: VersionDrift | undefined;
    const profileStamp = profileStampOf(this.umbra.manager.repository, model, this.options.stateDir);
    if (mv && this.options.drift !== false) {
      let reference: ConstructorParameters<typeof VersionDrift>[3];
      try {
        const profile = readProfile(this.umbra.manager.repository, model, this.options.stateDir);
        if (profile) reference = { source: profile.source, rows: profile.rows, inputs: profile.inputs, outputs: profile.outputs[version] ?? [] };
      } catch (err) {
        process.emitWarning(`umbra monitoring: model '${model}': ${(err as Error).message}; capturing a reference from live rows instead`);
        reference = undefined;
      }
      drift = new VersionDrift(model, version, mv.signature, reference, this.options.drift || {});
    }
    return {
      model,
      version,
      drift,
      profileStamp,
      reader: mv ? predictionReader(mv.signature) : undefined,
      inputsSample: mv ? inputsSampleOf(mv) : undefined,
      stats: { success: 0, successNs: 0, fail: 0, failNs: 0, queueNs: 0, computeNs: 0, inferences: 0, executions: 0, last: 0 },
      alerted: { drift: false, accuracy: false },
    };
  }

  /** Gauges that are read at scrape time instead of on the request path. */
  private installCollectors(): void {
    const umbra = this.umbra;
    const m = this.metrics;
    m.collectors.pending = async () => {
      // The I/O threads' replicas of inline versions queue requests of their own.
      const replicas = (await umbra.replicaQueues?.().catch(() => undefined)) ?? {};
      m.pending.reset();
      m.inFlight.reset();
      m.inFlightRequests.reset();
      m.queueBound.reset();
      m.queueFill.reset();
      for (const name of umbra.manager.names()) {
        for (const mv of umbra.manager.versionsOf(name)) {
          const labels = { model: name, version: mv.version };
          const stats = mv.stats();
          const key = `${name}/${mv.version}`;
          const other = Object.prototype.hasOwnProperty.call(replicas, key) ? replicas[key]! : undefined;
          const pending = stats.pending + (other?.pending ?? 0);
          m.pending.set(labels, pending);
          m.inFlight.set(labels, stats.inFlight + (other?.inFlight ?? 0));
          m.inFlightRequests.set(labels, pending + stats.executingRequests + (other?.executingRequests ?? 0));
          const bound = mv.queueBound.maxQueueSize + (other?.maxQueueSize ?? 0);
          m.queueBound.set(labels, bound);
          if (bound > 0) m.queueFill.set(labels, Math.max(queueFill(stats.pending + stats.stagedRequests, mv.queueBound.maxQueueSize), other?.fullest ?? 0));
        }
      }
    };
    m.collectors.drift = () => this.evaluateAll();
  }

  /**
   * Versions no longer loaded (the model unloaded, or a reload retired them) stop reporting: their
   * last drift verdict or accuracy would otherwise stay on /metrics, and keep an alert on
   * `umbra_drift_detected == 1` firing, for a version that serves nothing. Their request counters,
   * latency histograms, feedback and shadow series and accuracy windows go too: kept, every version
   * and model name ever served would add 61 series or more, and a window, for the life of the process.
   */
  private forgetRetired(): void {
    const m = this.metrics;
    const gone = new Set<string>();
    for (const [key, s] of this.versions) {
      if (this.isLoaded(s.model, s.version)) continue;
      this.versions.delete(key);
      gone.add(s.model);
      const labels = { model: s.model, version: s.version };
      m.driftDetected.remove(labels);
      m.driftWindow.remove(labels);
      m.liveAccuracy.remove(labels);
      m.liveMeanAbsoluteError.remove(labels);
      m.requestSeries.forget(s.model, s.version);
      m.feedback.remove({ ...labels, result: 'accepted' });
      m.shadowDropped.remove(labels);
      m.shadowAgreement.remove(labels);
      // Labels for ids no version knows are counted per model: they go with the model's last version.
      if (this.umbra.manager.versionsOf(s.model).length === 0) m.feedback.remove({ model: s.model, version: '', result: 'unknown' });
    }
    // Their accuracy windows too (a label arriving late for one makes a window again, dropped here
    // next time), but for the versions a rollout under way names: a rollout paused because a reload
    // left its candidate out judges the labels gathered since its start once the version is back.
    const named = new Set(this.rolloutVersions().map((v) => `${v.model}\u0000${v.version}`));
    this.feedback.forgetWindows((model, version) => this.isLoaded(model, version) || named.has(`${model}\u0000${version}`));
    // And the predictions of a model no longer loaded that wait for labels.
    for (const model of new Set([...gone, ...this.feedback.modelsWaiting()])) {
      if (this.umbra.manager.versionsOf(model).length === 0) this.feedback.forgetModel(model);
    }
  }

  /** Traffic says which versions its rollouts under way name (keepWindowsOf). */
  private rolloutVersions: () => { model: string; version: string }[] = () => [];

  /** `read`: the versions rollouts under way name; their accuracy windows are kept while they are not loaded. */
  keepWindowsOf(read: () => { model: string; version: string }[]): void {
    this.rolloutVersions = read;
  }

  private isLoaded(model: string, version: string): boolean {
    try {
      this.umbra.manager.get(model, version);
      return true;
    } catch {
      return false;
    }
  }

  /** Recomputes drift and accuracy of every version, updates their gauges and fires alerts. */
  evaluateAll(): void {
    this.forgetRetired();
    this.refreshChangedProfiles();
    const m = this.metrics;
    m.driftScore.reset();
    for (const s of this.versions.values()) {
      const labels = { model: s.model, version: s.version };
      if (s.drift) {
        const report = s.drift.evaluate();
        m.driftDetected.set(labels, verdictValue(report.verdict));
        m.driftWindow.set(labels, report.window);
        if (report.verdict !== 'inconclusive') {
          for (const f of [...report.features, ...report.outputs]) m.driftScore.set({ ...labels, feature: f.name, test: f.test }, f.score);
        }
        this.checkDriftAlert(s, report);
      }
      const acc = this.feedback.report(s.model, s.version);
      if (acc) {
        if (acc.accuracy !== undefined) m.liveAccuracy.set(labels, acc.accuracy);
        if (acc.meanAbsoluteError !== undefined) m.liveMeanAbsoluteError.set(labels, acc.meanAbsoluteError);
        this.checkAccuracyAlert(s, acc);
      }
    }
  }

  /** Alerts fire once per crossing and re-arm when the version is back under the line. */
  private checkDriftAlert(s: VersionState, report: DriftReport): void {
    if (report.verdict === 'drift' && !s.alerted.drift) {
      s.alerted.drift = true;
      const drifted = report.features.concat(report.outputs).filter((f) => f.verdict === 'drift').map((f) => ({ name: f.name, test: f.test, score: f.score, threshold: f.threshold }));
      this.alert({ type: 'drift', model: s.model, version: s.version, time: new Date().toISOString(), verdict: report.verdict, window: report.window, driftedShare: report.driftedShare, predictionDrift: report.predictionDrift, drifted });
    } else if (report.verdict === 'no_drift') s.alerted.drift = false;
  }

  private checkAccuracyAlert(s: VersionState, acc: AccuracyReport): void {
    if (acc.window < (this.options.minLabels ?? 50)) return;
    const below = this.options.accuracyThreshold !== undefined && acc.accuracy !== undefined && acc.accuracy < this.options.accuracyThreshold;
    const above = this.options.errorThreshold !== undefined && acc.meanAbsoluteError !== undefined && acc.meanAbsoluteError > this.options.errorThreshold;
    if ((below || above) && !s.alerted.accuracy) {
      s.alerted.accuracy = true;
      this.alert({ ...acc, type: 'accuracy', time: new Date().toISOString(), accuracyThreshold: this.options.accuracyThreshold, errorThreshold: this.options.errorThreshold });
    } else if (!below && !above) s.alerted.accuracy = false;
  }

  private alert(event: AlertEvent): void {
    this.webhook?.send(event);
  }

  /** Drift of one version (when omitted, the one unversioned requests go to); undefined when it has served nothing yet. */
  driftReport(model: string, version?: string): DriftReport | undefined {
    const v = version ?? this.umbra.defaultVersion(model).version;
    this.refreshChangedProfiles();
    const s = this.versions.get(`${model}\u0000${v}`);
    if (!s?.drift) return undefined;
    const report = s.drift.evaluate();
    this.checkDriftAlert(s, report);
    return report;
  }

  /** The reference and live histograms of one drift-watched column (undefined: unknown column, or no reference yet). */
  featureHistogram(model: string, version: string, feature: string): FeatureHistogram | undefined {
    return this.versions.get(`${model}\u0000${version}`)?.drift?.histogram(feature);
  }

  /** A version's live accuracy; with `sinceMs`, over labels of the predictions it made since then (a rollout's own evidence). */
  liveAccuracy(model: string, version?: string, sinceMs?: number): AccuracyReport | undefined {
    const v = version ?? this.umbra.defaultVersion(model).version;
    return this.feedback.report(model, v, sinceMs);
  }

  /** Joins labels, counts them, logs them and re-checks the accuracy alert. */
  async acceptFeedback(model: string, items: { id: string; truth: unknown }[]): Promise<FeedbackResult> {
    const result = this.feedback.accept(model, items, Date.now(), (version) => classesOf(this.versions.get(`${model}\u0000${version}`)?.reader));
    if (this.log && result.unknown.length > 0) await this.joinLogged(model, items, result);
    const now = Date.now();
    const byVersion = new Map<string, number>();
    for (const j of result.joined) for (const v of j.versions) byVersion.set(v, (byVersion.get(v) ?? 0) + 1);
    for (const [version, n] of byVersion) {
      this.metrics.feedback.inc({ model, version, result: 'accepted' }, n);
      const s = this.versions.get(`${model}\u0000${version}`);
      const acc = this.feedback.report(model, version);
      if (acc && this.isLoaded(model, version)) {
        if (acc.accuracy !== undefined) this.metrics.liveAccuracy.set({ model, version }, acc.accuracy);
        if (acc.meanAbsoluteError !== undefined) this.metrics.liveMeanAbsoluteError.set({ model, version }, acc.meanAbsoluteError);
        if (s) this.checkAccuracyAlert(s, acc);
      }
    }
    if (result.unknown.length > 0) this.metrics.feedback.inc({ model, version: '', result: 'unknown' }, result.unknown.length);
    this.log?.pushLabels(result.joined.map((j) => ({ id: j.id, model: j.model, version: j.version, timeMs: now, fromMs: j.fromMs, toMs: j.toMs, truth: j.truth })));
    return result;
  }

  /** Ids no longer in memory are looked up in the prediction log (bounded by its retention). */
  private async joinLogged(model: string, items: { id: string; truth: unknown }[], result: FeedbackResult): Promise<void> {
    const found = new Map((await this.log!.lookup(model, result.unknown)).map((f) => [f.id, f]));
    // The first label of an id counts; a repeat in the same request is refused below.
    const truthOf = new Map<string, unknown>();
    for (const i of items) if (!truthOf.has(i.id)) truthOf.set(i.id, i.truth);
    const unknown: string[] = [];
    const seen = new Set<string>();
    for (const id of result.unknown) {
      const logged = found.get(id);
      if (logged && seen.has(id)) {
        result.rejected.push({ id, reason: 'already labelled' });
        continue;
      }
      seen.add(id);
      const reader = logged ? this.readerFor(model, logged.version) : undefined;
      const outputs = logged ? decodeTensors(logged.outputs) : null;
      if (!logged || !reader || !outputs) {
        unknown.push(id);
        continue;
      }
      if (logged.labelled) {
        result.rejected.push({ id, reason: 'already labelled' });
        continue;
      }
      const scored = outputs[reader.output];
      if (scored && 'summary' in scored) {
        result.rejected.push({ id, reason: `the log kept only a summary of output '${reader.output}' (${scored.summary.values} values, over --log-tensor-max-values); labels for it join while the prediction is in memory, or from the log when served with a higher cap (0 keeps every value)` });
        continue;
      }
      const response = { model_name: model, model_version: logged.version, outputs: Object.entries(outputs).flatMap(([name, t]) => ('data' in t ? [{ name, datatype: 'FP64' as const, shape: t.shape, data: Float64Array.from(t.data as ArrayLike<number | bigint>, Number) }] : [])) };
      const predicted = predictedValues(reader, response);
      const truth = truthOf.get(id);
      const reason = predicted ? this.feedback.scoreLogged(model, logged.version, reader.task, predicted, truth, logged.timeMs, classesOf(reader), predictedRows(reader, response)) : 'the logged prediction has no predicted value';
      if (reason) {
        result.rejected.push({ id, reason });
        continue;
      }
      result.accepted += 1;
      result.joined.push({ id, model, version: logged.version, versions: [logged.version], fromMs: logged.timeMs, toMs: logged.untilMs, truth });
    }
    result.unknown = unknown;
  }

  /** How a version's answers become predictions; the newest loaded version stands in for an unloaded one. */
  private readerFor(model: string, version: string): PredictionReader | undefined {
    const s = this.versions.get(`${model}\u0000${version}`);
    if (s?.reader) return s.reader;
    try {
      return predictionReader(this.umbra.manager.get(model, version).signature);
    } catch {
      try {
        return predictionReader(this.umbra.manager.get(model).signature);
      } catch {
        return undefined;
      }
    }
  }

  /** Triton-shaped statistics of the versions of `model` that served. */
  statistics(model: string, version?: string): unknown {
    const stats = [];
    for (const s of this.versions.values()) {
      if (s.model !== model || (version !== undefined && s.version !== version)) continue;
      const st = s.stats;
      const pair = (count: number, ns: number) => ({ count, ns: Math.round(ns) });
      stats.push({
        name: s.model,
        version: s.version,
        last_inference: st.last,
        inference_count: st.inferences,
        execution_count: Math.round(st.executions),
        inference_stats: {
          success: pair(st.success, st.successNs),
          fail: pair(st.fail, st.failNs),
          queue: pair(st.success, st.queueNs),
          compute_input: pair(st.success, 0),
          compute_infer: pair(st.success, st.computeNs),
          compute_output: pair(st.success, 0),
        },
        batch_stats: [],
      });
    }
    return { model_stats: stats };
  }

  /** Stops the timers and hooks, flushes the log and gives the webhook a moment to deliver. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.detach();
    this.detachLoaded();
    this.evaluateAll();
    await this.log?.close();
    await this.webhook?.close();
  }
}

/** Path, mtime and size of a model's profile file in effect, '' when it has none: cheap to compare every evaluation. */
function profileStampOf(repository: string, model: string, stateDir: string | undefined): string {
  const path = profileFileOf(repository, model, stateDir);
  if (path === undefined) return '';
  try {
    const st = statSync(path);
    return `${path}:${st.mtimeMs}:${st.size}`;
  } catch {
    return '';
  }
}

/** `parameters.log_inputs_sample` ("0".."1"): this model's share of logged predictions that keep their inputs. */
function inputsSampleOf(mv: ModelVersion): number | undefined {
  const raw = mv.config.parameters.log_inputs_sample;
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !(n >= 0 && n <= 1)) {
    process.emitWarning(`umbra monitoring: model '${mv.name}': expected a fraction in 0..1 for parameters.log_inputs_sample but received ${JSON.stringify(raw)}; using the server's --log-inputs-sample`);
    return undefined;
  }
  return n;
}

function verdictValue(v: Verdict): number {
  return v === 'drift' ? 1 : v === 'no_drift' ? 0 : -1;
}

export function verdictOf(report: DriftReport | undefined): Verdict {
  return report?.verdict ?? 'inconclusive';
}

/** Classes a classifier's reader scores: its score vector's width (undefined where the output is the class itself). */
function classesOf(reader: PredictionReader | undefined): number | undefined {
  return reader?.task === 'classification' && reader.argmax ? reader.width : undefined;
}
