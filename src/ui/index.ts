// The ops page as a capability: `uiPlugin` keeps the short time series (src/ui/timeline.ts),
// registers the JSON routes the page reads (which any script may read too), the server-sent
// event stream that keeps it live, and, unless `page` is false, the page itself under /ui:
//   GET /v2/ops/server              models, versions and states, workers, I/O threads, uptime, rates
//   GET /v2/ops/timeline            every model's series (last 15 minutes by default)
//   GET /v2/models/{m}/timeline     one model's series, per version
//   GET /v2/ops/events              text/event-stream: a `tick` per step (the server summary and the newest points)
//   GET /ui, /ui/models/{m}         the page; /ui/assets/* its script, styles and uPlot, from the package
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UmbraError } from '../errors.js';
import type { ApiReply } from '../api/api.js';
import type { PluginContext } from '../api/plugin.js';
import type { Monitor } from '../monitor/index.js';
import type { TrafficController } from '../traffic/index.js';
import { VERSION } from '../version.js';
import { Timeline, type TimelineOptions, type TimelinePoint } from './timeline.js';

export { Timeline, SERIES, BATCH_BOUNDS, type TimelineOptions, type TimelineSources, type TimelinePoint } from './timeline.js';

export interface UiOptions extends TimelineOptions {
  /** Serve the page under /ui (default true); the JSON routes and the event stream stay either way. */
  page?: boolean;
  /** Open event streams allowed at once (default 64); one more is answered 503. */
  maxStreams?: number;
}

export interface UiDeps {
  monitor: Monitor | undefined;
  traffic: TrafficController;
  /** Threads reading HTTP/WebSocket requests (1 = the core's own thread). */
  ioThreads: number;
}

export interface OpsHandle {
  readonly timeline: Timeline;
  /** Closes the current step now and sends it to every open stream (the timer does this every step). */
  step(now?: number): Promise<void>;
  /** Open event streams. */
  readonly streams: number;
}

const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'ui', 'static');

function json(status: number, value: unknown): ApiReply {
  return { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) };
}

export function uiPlugin(ctx: PluginContext, deps: UiDeps, options: UiOptions = {}): OpsHandle {
  const { core } = ctx;
  const { monitor, traffic } = deps;
  const startedAt = Date.now();
  const timeline = new Timeline({
    queueDepth: (model, version) => core.manager.versionsOf(model).find((v) => v.version === version)?.pending,
    shadowAgreement: (model, version) => traffic.shadows.agreementOf(model, version),
    accuracy: (model, version) => monitor?.liveAccuracy(model, version)?.accuracy,
    meanAbsoluteError: (model, version) => monitor?.liveAccuracy(model, version)?.meanAbsoluteError,
    loaded: () => core.manager.names().map((model) => ({ model, versions: core.manager.versionsOf(model).map((v) => v.version) })),
  }, options);
  const detach = core.hooks.use({ onResult: (event) => timeline.observe(event), readsHeaders: false });

  const summary = async (): Promise<Record<string, unknown>> => {
    const index = await core.manager.index();
    const names = [...new Set(index.map((e) => e.name))];
    const models = names.map((name) => {
      const entries = index.filter((e) => e.name === name);
      const loaded = core.manager.versionsOf(name);
      const versions = loaded.map((mv) => ({ version: mv.version, state: 'READY', queue_depth: mv.pending, in_flight: mv.inFlight }));
      const model = entries.find((e) => e.version === undefined) ?? entries[0]!;
      let policy: Record<string, unknown> | null = null;
      try {
        policy = loaded.length > 0 ? traffic.policyOf(name) : null;
      } catch {
        policy = null;
      }
      const last = timeline.latest(name);
      return {
        name,
        state: entries.some((e) => e.state === 'READY') ? 'READY' : model.state,
        ...(model.reason ? { reason: model.reason } : {}),
        versions,
        primary: policy?.primary ?? null,
        canary: policy?.canary ?? null,
        shadows: policy?.shadows ?? [],
        rollout: policy?.rollout ?? null,
        requests_per_s: last.requests_per_s,
        errors_per_s: last.errors_per_s,
        queue_depth: versions.reduce((a, v) => a + v.queue_depth, 0),
      };
    });
    return {
      name: 'umbra',
      version: VERSION,
      started_at: new Date(startedAt).toISOString(),
      uptime_s: Math.round((Date.now() - startedAt) / 1000),
      ready: core.isReady(),
      io_threads: deps.ioThreads,
      workers: core.pool.size,
      step_seconds: timeline.stepMs / 1000,
      // Whether metrics, drift, feedback and the log run (umbra serve --monitoring).
      monitoring: monitor !== undefined,
      // How actions are authorised: with the admin token, or (none set) only from loopback clients.
      admin: ctx.adminGuard,
      models,
    };
  };

  const writers = new Set<(chunk: string) => void>();
  const maxStreams = options.maxStreams ?? 64;
  let sending = Promise.resolve();
  const step = (now = Date.now()): Promise<void> => {
    const point = timeline.sample(now);
    if (writers.size === 0) return Promise.resolve();
    // Ticks go out in order even if building one summary outlasts a step.
    sending = sending.then(async () => {
      const chunk = `event: tick\ndata: ${JSON.stringify({ ...(await summary()), point: point satisfies TimelinePoint })}\n\n`;
      for (const write of writers) write(chunk);
    }).catch(() => undefined);
    return sending;
  };
  const timer = setInterval(() => void step(), timeline.stepMs);
  timer.unref();
  ctx.onDrain(() => clearInterval(timer));
  ctx.onStop(async () => {
    clearInterval(timer);
    detach();
  });

  const api = ctx.routes;
  api.route('GET', '/v2/ops/server', async () => json(200, await summary()));
  api.route('GET', '/v2/ops/timeline', () => json(200, timeline.view()));
  api.route('GET', '/v2/models/:m/timeline', (_q, [m]) => {
    core.manager.get(m!); // 404 for unknown models
    return json(200, timeline.view(m!));
  });
  api.route('GET', '/v2/ops/events', () => {
    if (writers.size >= maxStreams) throw new UmbraError('TOO_MANY_STREAMS', `${writers.size} event streams are open, the most allowed; close one or retry later`, { retryAfter: 5 });
    return {
      status: 200,
      headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
      // The browser reconnects after 2 s if the stream breaks.
      body: `retry: 2000\n: umbra ${VERSION}, a tick every ${timeline.stepMs / 1000} s\n\n`,
      stream: {
        open(write) {
          writers.add(write);
          return () => writers.delete(write);
        },
      },
    };
  });

  if (options.page !== false) registerPage(ctx);
  return {
    timeline,
    step,
    get streams() {
      return writers.size;
    },
  };
}

const ASSET_TYPES: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', html: 'text/html; charset=utf-8' };

/**
 * The page acts for the operator (with the admin token, or as a loopback client when none is set),
 * so no other site may frame it and have the operator click its buttons (frame-ancestors; X-Frame-Options
 * for older browsers), and it runs only its own script: it renders server data as text, and should a
 * model's names ever reach the DOM as markup, nothing in them runs. Inline style attributes stay
 * allowed: the bars are sized with them.
 */
const PAGE_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** The page's files, read once at start: a handful of kilobytes, served from memory. */
function registerPage(ctx: PluginContext): void {
  const uplotDir = dirname(createRequire(import.meta.url).resolve('uplot'));
  const assets = new Map<string, string>([
    ['app.js', readFileSync(join(STATIC_DIR, 'app.js'), 'utf8')],
    ['app.css', readFileSync(join(STATIC_DIR, 'app.css'), 'utf8')],
    ['uplot.js', readFileSync(join(uplotDir, 'uPlot.iife.min.js'), 'utf8')],
    ['uplot.css', readFileSync(join(uplotDir, 'uPlot.min.css'), 'utf8')],
  ]);
  const html = readFileSync(join(STATIC_DIR, 'index.html'), 'utf8');
  const page = (): ApiReply => ({ status: 200, headers: { 'content-type': ASSET_TYPES.html!, 'cache-control': 'no-cache', ...PAGE_HEADERS }, body: html });
  ctx.routes.route('GET', '/ui', page);
  ctx.routes.route('GET', '/ui/models/:m', page);
  ctx.routes.route('GET', '/ui/assets/:file', (_q, [file]) => {
    const body = assets.get(file!);
    if (body === undefined) throw new UmbraError('NOT_FOUND', `no asset '${file}' under /ui/assets`);
    return { status: 200, headers: { 'content-type': ASSET_TYPES[file!.split('.').pop()!]!, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' }, body };
  });
}
