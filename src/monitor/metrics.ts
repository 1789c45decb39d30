// Prometheus metrics of one Umbra instance (prom-client, its own registry so several servers can
// live in one process). The request path touches only request-series.ts: one Map lookup and
// plain array increments per request; prom-client formats everything at scrape time.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { InferEvent } from '../core/hooks.js';
import { RequestSeries } from './request-series.js';

/** Sub-millisecond to seconds: small CPU models answer in ~100 us, large ones in ~1 s. */
export const DEFAULT_LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface MetricsOptions {
  /** Upper bounds in seconds for the latency histograms. */
  buckets?: number[];
  /** Process and Node.js runtime metrics (process_*, nodejs_*); default true. */
  processMetrics?: boolean;
}

/** What src/traffic reports at scrape time (through src/traffic/monitor-bridge.ts): weights and rollouts in force. */
export interface TrafficReading {
  /** Per loaded version taking traffic: its share of the model's unversioned requests (primary, canary), or of primary requests copied to it (shadow). */
  weights: { model: string; version: string; role: 'primary' | 'canary' | 'shadow'; weight: number }[];
  /** Each loaded model's latest rollout (running, paused, or how it ended), by its candidate version. */
  rollouts: { model: string; version: string; state: 'running' | 'paused' | 'promoted' | 'rolled_back' }[];
}

export interface ModelLabels {
  model: string;
  version: string;
}

export class UmbraMetrics {
  readonly registry = new Registry();
  /** umbra_requests_total, the three latency histograms, umbra_inferences_total, umbra_executions_total. */
  readonly requestSeries: RequestSeries;
  readonly pending: Gauge<'model' | 'version'>;
  readonly inFlight: Gauge<'model' | 'version'>;
  /** Requests admitted and not yet answered (queued + in executing batches): what autoscalers target. */
  readonly inFlightRequests: Gauge<'model' | 'version'>;
  /** The queue bound in force (max_queue_size, configured or derived), summed over the version's queues on every thread. */
  readonly queueBound: Gauge<'model' | 'version'>;
  readonly queueFill: Gauge<'model' | 'version'>;
  /** Shadow requests dropped (queue full, timeout, shadow error); called by src/traffic. */
  readonly shadowDropped: Counter<'model' | 'version'>;
  /** Share of shadow answers that agree with the primary's, 0..1; set by src/traffic. */
  readonly shadowAgreement: Gauge<'model' | 'version'>;
  readonly driftScore: Gauge<'model' | 'version' | 'feature' | 'test'>;
  /** 1 drift, 0 no drift, -1 inconclusive (below the minimum sample). */
  readonly driftDetected: Gauge<'model' | 'version'>;
  readonly driftWindow: Gauge<'model' | 'version'>;
  readonly liveAccuracy: Gauge<'model' | 'version'>;
  readonly liveMeanAbsoluteError: Gauge<'model' | 'version'>;
  readonly feedback: Counter<'model' | 'version' | 'result'>;
  readonly logRows: Counter<'result'>;
  readonly logTensorsSummarized: Counter;
  readonly webhookDeliveries: Counter<'result'>;
  /** Rollout decisions by event (start, advance, retry, pause, resume, promote, rollback, restart); set by src/traffic. */
  readonly rolloutEvents: Counter<'model' | 'event'>;
  /** Called at scrape time to refresh gauges that are read, not pushed (queue depth, drift). */
  readonly collectors: { pending?: () => void | Promise<void>; drift?: () => void; traffic?: () => TrafficReading } = {};

  constructor(options: MetricsOptions = {}) {
    const buckets = options.buckets ?? DEFAULT_LATENCY_BUCKETS;
    const registers = [this.registry];
    this.requestSeries = new RequestSeries(buckets, this.registry);
    // The three queue gauges come from one refresh per scrape. It may wait on the I/O threads, and
    // a scrape reads every metric at once, so each of them waits on the same refresh.
    let refreshing: Promise<void> | undefined;
    const queues = (): Promise<void> => (refreshing ??= Promise.resolve(this.collectors.pending?.()).finally(() => { refreshing = undefined; }));
    this.pending = new Gauge({ name: 'umbra_pending_requests', help: 'Requests waiting in the queue.', labelNames: ['model', 'version'], registers, collect: queues });
    this.inFlight = new Gauge({ name: 'umbra_executing_batches', help: 'Batches executing now.', labelNames: ['model', 'version'], registers, collect: queues });
    this.queueFill = new Gauge({ name: 'umbra_queue_fill_ratio', help: 'How full the version\'s fullest queue is: what max_queue_size counts (requests queued, and those in batches staged on a busy slot) over it, the largest over its queues on every thread (requests are refused with 503 at 1 by the queue that is full, whatever the others hold). Only versions with a bounded queue.', labelNames: ['model', 'version'], registers, collect: queues });
    this.queueBound = new Gauge({ name: 'umbra_queue_bound_requests', help: 'Requests the version\'s queues hold before refusing with 503: max_queue_size in force (configured, or derived at load from the measured batch time), summed over its queues on every thread (an inline version has one on each I/O thread); 0 = unbounded. Compare with umbra_pending_requests.', labelNames: ['model', 'version'], registers, collect: queues });
    this.inFlightRequests = new Gauge({ name: 'umbra_inflight_requests', help: 'Requests admitted to the model and not yet answered: queued plus in executing batches.', labelNames: ['model', 'version'], registers, collect: queues });
    this.shadowDropped = new Counter({ name: 'umbra_shadow_dropped_total', help: 'Shadow requests dropped instead of delaying the primary.', labelNames: ['model', 'version'], registers });
    this.shadowAgreement = new Gauge({ name: 'umbra_shadow_agreement', help: 'Share of shadow answers agreeing with the primary answer (0..1).', labelNames: ['model', 'version'], registers });
    this.driftScore = new Gauge({ name: 'umbra_drift_score', help: 'Drift score of one feature or output against the reference profile (test: psi, ks, js, chi2).', labelNames: ['model', 'version', 'feature', 'test'], registers, collect: () => this.collectors.drift?.() });
    this.driftDetected = new Gauge({ name: 'umbra_drift_detected', help: 'Dataset drift verdict: 1 drift, 0 no drift, -1 inconclusive.', labelNames: ['model', 'version'], registers });
    this.driftWindow = new Gauge({ name: 'umbra_drift_window_rows', help: 'Rows in the live drift window.', labelNames: ['model', 'version'], registers });
    this.liveAccuracy = new Gauge({ name: 'umbra_live_accuracy', help: 'Accuracy over the latest labelled predictions (classification).', labelNames: ['model', 'version'], registers });
    this.liveMeanAbsoluteError = new Gauge({ name: 'umbra_live_mean_absolute_error', help: 'Mean absolute error over the latest labelled predictions (regression).', labelNames: ['model', 'version'], registers });
    this.feedback = new Counter({ name: 'umbra_feedback_total', help: 'Feedback labels by result: accepted or unknown (unknown or expired prediction id).', labelNames: ['model', 'version', 'result'], registers });
    this.logRows = new Counter({ name: 'umbra_prediction_log_rows_total', help: 'Prediction log rows by result: written, dropped (buffer full), failed (database error).', labelNames: ['result'], registers });
    this.logTensorsSummarized = new Counter({ name: 'umbra_prediction_log_tensors_summarized_total', help: 'Tensors the prediction log kept as a summary (type, shape, min, max, mean) because they had more values than --log-tensor-max-values.', registers });
    this.rolloutEvents = new Counter({ name: 'umbra_rollout_events_total', help: 'Rollout decisions by event: start, advance, retry, pause, resume, promote, rollback, restart.', labelNames: ['model', 'event'], registers });
    this.webhookDeliveries = new Counter({ name: 'umbra_webhook_deliveries_total', help: 'Webhook events by result: delivered, retried, failed, dropped.', labelNames: ['result'], registers });
    if (options.processMetrics !== false) {
      collectDefaultMetrics({ register: this.registry });
      // prom-client names these gauges *_total, which Prometheus reserves for counters (promtool rejects them).
      for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name);
    }
  }

  /** Records one finished request. The only metrics work on the request path. */
  observe(event: InferEvent): void {
    this.requestSeries.observe(event);
  }

  /** Prometheus text exposition. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** Parses `--metrics-buckets 0.001,0.01,0.1`: ascending positive seconds. */
export function parseBuckets(text: string): number[] {
  const values = text.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (values.length === 0 || values.some((v) => !Number.isFinite(v) || v <= 0)) {
    throw new Error(`expected comma-separated positive seconds for --metrics-buckets but received ${JSON.stringify(text)}`);
  }
  for (let i = 1; i < values.length; i++) {
    if (values[i]! <= values[i - 1]!) throw new Error(`expected ascending values for --metrics-buckets but received ${JSON.stringify(text)}`);
  }
  return values;
}
