// Monitoring's one entry point for the server (`attachMonitoring`) and the small API other
// capabilities call (traffic's rollout analysis reads drift and accuracy, and counts shadows).
import { UmbraError } from '../errors.js';
import type { Umbra } from '../core/umbra.js';
import { parseJsonObject, type Api, type ApiReply, type ApiRequest } from '../api/api.js';
import { Monitor, type MonitoringOptions } from './monitor.js';
import type { DriftReport } from './drift.js';
import type { AccuracyReport } from './feedback.js';
import type { UmbraMetrics } from './metrics.js';

export { Monitor, type MonitoringOptions } from './monitor.js';
export { UmbraMetrics, DEFAULT_LATENCY_BUCKETS, parseBuckets } from './metrics.js';
export type { DriftReport, FeatureDrift, Verdict, DriftOptions } from './drift.js';
export type { AccuracyReport, FeedbackResult } from './feedback.js';

const monitors = new WeakMap<Umbra, Monitor>();

/** What attachMonitoring needs of a server (UmbraServer satisfies it). */
export interface Monitorable {
  api: Api;
  umbra: Umbra;
}

/** Hooks monitoring into the inference path and registers its routes. Call once per server. */
export function attachMonitoring(server: Monitorable, options: MonitoringOptions = {}): Monitor {
  const existing = monitors.get(server.umbra);
  if (existing) return existing;
  const monitor = new Monitor(server.umbra, options);
  monitors.set(server.umbra, monitor);
  registerRoutes(server.api, server.umbra, monitor);
  return monitor;
}

/** Stops one server's monitoring (flushes the log); the server calls this on stop. */
export async function detachMonitoring(umbra: Umbra): Promise<void> {
  const monitor = monitors.get(umbra);
  if (!monitor) return;
  monitors.delete(umbra);
  await monitor.close();
}

export function monitorOf(umbra: Umbra): Monitor | undefined {
  return monitors.get(umbra);
}

/** The metrics registry of a server, e.g. `metricsOf(umbra)?.shadowDropped.inc({model, version})`. */
export function metricsOf(umbra: Umbra): UmbraMetrics | undefined {
  return monitors.get(umbra)?.metrics;
}

/** Drift verdict and per-feature scores of a version; undefined when monitoring is off or it served nothing. */
export function driftVerdict(umbra: Umbra, model: string, version?: string): DriftReport | undefined {
  return monitors.get(umbra)?.driftReport(model, version);
}

/** Live accuracy / error from joined feedback; undefined before the first label. */
export function liveAccuracy(umbra: Umbra, model: string, version?: string): AccuracyReport | undefined {
  return monitors.get(umbra)?.liveAccuracy(model, version);
}

function json(status: number, value: unknown): ApiReply {
  return { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) };
}

const MAX_FEEDBACK_ITEMS = 10_000;

function parseFeedback(req: ApiRequest): { id: string; truth: unknown }[] {
  const body = parseJsonObject(req.body, 'the feedback request');
  const list = body.feedback === undefined ? [body] : body.feedback;
  if (!Array.isArray(list)) throw new UmbraError('INVALID_INPUT', 'expected an array for "feedback" (or one {"id", "truth"} object)');
  if (list.length > MAX_FEEDBACK_ITEMS) throw new UmbraError('INVALID_INPUT', `expected at most ${MAX_FEEDBACK_ITEMS} items for "feedback" but received ${list.length}`);
  return list.map((item: unknown, i) => {
    if (typeof item !== 'object' || item === null) throw new UmbraError('INVALID_INPUT', `expected an object for feedback[${i}]`);
    const { id, truth } = item as { id?: unknown; truth?: unknown };
    if (typeof id !== 'string' || id === '') throw new UmbraError('INVALID_INPUT', `expected a non-empty string for feedback[${i}].id`);
    if (truth === undefined) throw new UmbraError('INVALID_INPUT', `expected a number or an array of numbers for feedback[${i}].truth`);
    return { id, truth };
  });
}

function registerRoutes(api: Api, umbra: Umbra, monitor: Monitor): void {
  api.route('GET', '/metrics', async () => {
    const { contentType, body } = await monitor.metrics.exposition();
    return { status: 200, headers: { 'content-type': contentType }, body };
  });
  const stats = (model: string, version?: string) => {
    umbra.manager.get(model, version); // 404 for unknown models and versions
    return json(200, monitor.statistics(model, version));
  };
  api.route('GET', '/v2/models/:m/stats', (_q, [m]) => stats(m!));
  api.route('GET', '/v2/models/:m/versions/:v/stats', (_q, [m, v]) => stats(m!, v));
  const drift = (model: string, version?: string) => {
    const mv = umbra.manager.get(model, version);
    const report = monitor.driftReport(model, mv.version);
    const accuracy = monitor.liveAccuracy(model, mv.version) ?? null;
    if (!report) {
      return json(200, { model, version: mv.version, verdict: 'inconclusive', window: 0, reason: monitor.options.drift === false ? 'drift detection is off' : 'no traffic yet', features: [], outputs: [], accuracy });
    }
    return json(200, { ...report, accuracy });
  };
  api.route('GET', '/v2/models/:m/drift', (_q, [m]) => drift(m!));
  api.route('GET', '/v2/models/:m/versions/:v/drift', (_q, [m, v]) => drift(m!, v));
  api.route('POST', '/v2/models/:m/feedback', async (q, [m]) => {
    umbra.manager.get(m!);
    const result = await monitor.acceptFeedback(m!, parseFeedback(q));
    return json(200, { accepted: result.accepted, unknown: result.unknown, rejected: result.rejected });
  });
}
