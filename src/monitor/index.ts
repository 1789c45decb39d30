// Monitoring as a capability: `monitoringPlugin` hooks metrics, drift, feedback, the prediction
// log and alerts into the inference path and registers their routes. Other capabilities that need
// monitoring (traffic's rollout analysis, the lookup counter) are handed the Monitor it returns.
import { UmbraError } from '../errors.js';
import { BearerToken } from '../api/admin.js';
import type { Umbra } from '../core/umbra.js';
import { parseJsonObject, type ApiReply, type ApiRequest, type RouteTable } from '../api/api.js';
import type { PluginContext } from '../api/plugin.js';
import { Counter, Gauge, type Registry } from 'prom-client';
import { httpGuardCounts, httpGuardInstalled } from '../server/http-guard.js';
import type { ThreadRegistry } from '../core/threads.js';
import { Monitor, type MonitoringOptions } from './monitor.js';
import { registerServingMetrics } from './serving-metrics.js';

export { Monitor, type MonitoringOptions } from './monitor.js';
export { UmbraMetrics, DEFAULT_LATENCY_BUCKETS, parseBuckets, type TrafficReading } from './metrics.js';
export type { DriftReport, FeatureDrift, Verdict, DriftOptions } from './drift.js';
export type { AccuracyReport, FeedbackResult } from './feedback.js';

/** Hooks monitoring into the core and registers its routes; closes (flushing the log) after the drain. */
export function monitoringPlugin(ctx: PluginContext, options: MonitoringOptions = {}): Monitor {
  const monitor = new Monitor(ctx.core, options);
  registerRoutes(ctx.routes, ctx.core, monitor);
  registerThreadCpu(monitor.metrics.registry, ctx.core.threads);
  registerHttpGuard(monitor.metrics.registry);
  registerServingMetrics(monitor.metrics.registry, { core: ctx.core, isAccepting: ctx.isAccepting, log: monitor.log, traffic: () => monitor.metrics.collectors.traffic?.() });
  const log = monitor.log;
  if (log) log.whenReady().then(() => ctx.core.threads.add('log', log.writerThreadId), () => undefined);
  // After the drain and the core's close, so the last predictions reach the log.
  ctx.onStop(() => monitor.close());
  return monitor;
}

/**
 * umbra_thread_cpu_seconds_total{kind}: CPU time of the core's thread, the I/O threads, the model
 * workers and the log writer, read from /proc at scrape time (Linux), ended threads included; and
 * 'other', the rest of the process's CPU (garbage collection runs partly on the runtime's helper
 * threads: about 15 µs of an MLP request's I/O-thread work on two I/O threads). Which kind of
 * thread a host runs out of first is the question a many-core deployment asks.
 */
function registerThreadCpu(registry: Registry, threads: ThreadRegistry): void {
  const cpu = new Counter({
    name: 'umbra_thread_cpu_seconds_total',
    help: 'CPU seconds (user + system) used by the server threads of each kind: core (routing, batching, hooks), io (HTTP/WebSocket reading, parsing, encoding), model (model workers), log (prediction log writer), other (threads of no kind: the runtime\'s garbage-collection helpers, the libuv pool).',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const sums = threads.totals();
      this.reset();
      for (const [kind, seconds] of sums) this.inc({ kind }, seconds);
    },
  });
  void cpu;
}

/**
 * umbra_http_guard_installed and umbra_http_guard_events_total{event}: whether the HTTP guard
 * (src/server/http-guard.ts) stands between the clients and the transport, and what it did, for
 * the whole process: request lines that arrived cut and were handed on whole, text frames held
 * until whole, text frames that were not UTF-8 (closed with 1007), the transport's error pages
 * answered as JSON, malformed requests it would leave unanswered, answered 400, pipelined
 * requests held, HTTP/1.0 requests served (handed to the transport as HTTP/1.1).
 */
function registerHttpGuard(registry: Registry): void {
  const installed = new Gauge({
    name: 'umbra_http_guard_installed',
    help: 'Whether the HTTP guard reads what clients send ahead of the HTTP library (1) or not (0: --http-guard off, or it could not be installed; the serve log says why).',
    registers: [registry],
    collect() {
      this.set(httpGuardInstalled() ? 1 : 0);
    },
  });
  const events = new Counter({
    name: 'umbra_http_guard_events_total',
    help: 'What the HTTP guard did, by event: request_line_held (a request line cut across reads, handed on whole), text_frame_held (a WebSocket text frame cut across reads, handed on once checked), text_frame_refused (a text frame that was not UTF-8, closed with 1007), error_page_json (an error of the HTTP library answered as JSON), request_refused (a malformed request the HTTP library would leave unanswered, answered 400), pipelined_held (a pipelined request held until the answer before it was out), http10_rewritten (an HTTP/1.0 request handed to the HTTP library as HTTP/1.1 with Connection: close, so it is answered instead of refused with 505).',
    labelNames: ['event'],
    registers: [registry],
    collect() {
      const c = httpGuardCounts();
      this.reset();
      this.inc({ event: 'request_line_held' }, c.requestLinesHeld);
      this.inc({ event: 'text_frame_held' }, c.textFramesHeld);
      this.inc({ event: 'text_frame_refused' }, c.textFramesRefused);
      this.inc({ event: 'error_page_json' }, c.errorPagesRewritten);
      this.inc({ event: 'request_refused' }, c.requestsRefused);
      this.inc({ event: 'pipelined_held' }, c.pipelinedHeld);
      this.inc({ event: 'http10_rewritten' }, c.http10Rewritten);
    },
  });
  void installed;
  void events;
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

function registerRoutes(api: RouteTable, umbra: Umbra, monitor: Monitor): void {
  // Answers given on I/O threads reach the monitor in their own messages: a reader who has had
  // an answer sees it counted (one round trip to each I/O thread per read).
  api.route('GET', '/metrics', async () => {
    await umbra.settleEvents();
    const { contentType, body } = await monitor.metrics.exposition();
    return { status: 200, headers: { 'content-type': contentType }, body };
  });
  const stats = async (model: string, version?: string) => {
    umbra.manager.get(model, version); // 404 for unknown models and versions
    await umbra.settleEvents();
    return json(200, monitor.statistics(model, version));
  };
  // Triton's statistics extension: without a model, every model's (as gRPC's ModelStatistics with no name).
  api.route('GET', '/v2/models/stats', async () => {
    await umbra.settleEvents();
    return json(200, { model_stats: umbra.manager.names().flatMap((m) => (monitor.statistics(m) as { model_stats: unknown[] }).model_stats) });
  });
  api.route('GET', '/v2/models/:m/stats', (_q, [m]) => stats(m!));
  api.route('GET', '/v2/models/:m/versions/:v/stats', (_q, [m, v]) => stats(m!, v));
  // ?feature=NAME adds that column's reference and live histograms.
  const drift = async (query: string, model: string, version?: string) => {
    // Unversioned: the version unversioned requests go to (a policy's primary, else the newest).
    const mv = version ? umbra.manager.get(model, version) : umbra.defaultVersion(model);
    await umbra.settleEvents();
    const report = monitor.driftReport(model, mv.version);
    const accuracy = monitor.liveAccuracy(model, mv.version) ?? null;
    if (!report) {
      return json(200, { model, version: mv.version, verdict: 'inconclusive', window: 0, reason: monitor.options.drift === false ? 'drift detection is off' : 'no traffic yet', features: [], outputs: [], accuracy });
    }
    const feature = new URLSearchParams(query).get('feature');
    if (feature === null) return json(200, { ...report, accuracy });
    const histogram = monitor.featureHistogram(model, mv.version, feature);
    if (!histogram) {
      const known = [...report.features, ...report.outputs].map((f) => f.name);
      throw new UmbraError('INVALID_INPUT', `unknown feature '${feature}' for drift of model '${model}' version ${mv.version}${known.length ? ` (known: ${known.slice(0, 8).join(', ')}${known.length > 8 ? ', ...' : ''})` : ': no reference yet'}`);
    }
    return json(200, { ...report, accuracy, histogram });
  };
  api.route('GET', '/v2/models/:m/drift', (q, [m]) => drift(q.query, m!));
  api.route('GET', '/v2/models/:m/versions/:v/drift', (q, [m, v]) => drift(q.query, m!, v));
  const feedbackToken = monitor.options.feedbackToken ? new BearerToken(monitor.options.feedbackToken) : undefined;
  api.route('POST', '/v2/models/:m/feedback', async (q, [m]) => {
    if (feedbackToken && !feedbackToken.matches(q.headers.authorization)) {
      throw new UmbraError('UNAUTHORIZED', 'this server takes labels only with its feedback token: send Authorization: Bearer <token> (the token umbra serve was given with --feedback-token-file)');
    }
    umbra.manager.get(m!);
    const labels = parseFeedback(q);
    await umbra.settleEvents();
    const result = await monitor.acceptFeedback(m!, labels);
    return json(200, { accepted: result.accepted, unknown: result.unknown, rejected: result.rejected });
  });
}
