// The composition root: the core (the one inference entry point, the repository, the execution
// layer) with the capabilities plugged in, in one list, each handed what it needs. Transports
// (src/server: HTTP and WebSocket on uWebSockets.js) serve what this builds; embedding callers
// may build it without any transport.
import { Api } from './api/api.js';
import type { PluginContext } from './api/plugin.js';
import type { Umbra } from './core/umbra.js';
import { monitoringPlugin, type Monitor, type MonitoringOptions } from './monitor/index.js';
import { trafficPlugin, type TrafficController } from './traffic/index.js';
import { predictionStorePlugin, type PredictionService } from './batch/lookup.js';
import { uiPlugin, type OpsHandle, type UiOptions } from './ui/index.js';

export interface AppOptions {
  /** Bearer token the admin routes require. */
  adminToken?: string;
  /** Metrics, drift, feedback, prediction log, alerts (on by default; false = off). */
  monitoring?: MonitoringOptions | false;
  /** Where traffic policies and rollouts persist, and reference profiles are read first; unset = traffic state in memory. */
  stateDir?: string;
  /** Prediction store to answer lookups from (sqlite:PATH or postgres://...). */
  store?: string;
  /** The ops page and the time series behind it (on by default; false = neither; `page: false` = series only). */
  ui?: UiOptions | false;
  /** Threads reading requests, as the ops page reports them (default 1). */
  ioThreads?: number;
  /** Readiness: false once the server drains. */
  isAccepting: () => boolean;
}

export class UmbraApp {
  private readonly drainHooks: (() => void)[] = [];
  private readonly stopHooks: (() => Promise<void>)[] = [];
  private drained = false;
  monitor: Monitor | undefined;
  traffic!: TrafficController;
  lookup: PredictionService | undefined;
  ops: OpsHandle | undefined;

  private constructor(readonly core: Umbra, readonly api: Api) {}

  /** Plugs every capability into `core`. On failure, whatever was plugged in is closed again. */
  static async compose(core: Umbra, options: AppOptions): Promise<UmbraApp> {
    const apiOptions: ConstructorParameters<typeof Api>[1] = { isAccepting: options.isAccepting };
    if (options.adminToken) apiOptions.adminToken = options.adminToken;
    const api = new Api(core, apiOptions);
    const app = new UmbraApp(core, api);
    const ctx: PluginContext = {
      core,
      routes: api,
      requireAdmin: (req) => api.checkAdmin(req),
      adminGuard: api.adminGate.hasToken ? 'token' : 'loopback',
      isAccepting: options.isAccepting,
      onDrain: (fn) => app.drainHooks.push(fn),
      onStop: (fn) => app.stopHooks.push(fn),
    };
    try {
      // The capabilities, in order: monitoring first, since traffic and lookup report into it.
      if (options.monitoring !== false) app.monitor = monitoringPlugin(ctx, { ...(options.stateDir !== undefined && { stateDir: options.stateDir }), ...options.monitoring });
      app.traffic = trafficPlugin(ctx, { monitor: app.monitor, ...(options.stateDir ? { stateDir: options.stateDir } : {}) });
      if (options.store) app.lookup = await predictionStorePlugin(ctx, options.store, { metrics: app.monitor?.metrics });
      if (options.ui !== false) app.ops = uiPlugin(ctx, { monitor: app.monitor, traffic: app.traffic, ioThreads: options.ioThreads ?? 1 }, options.ui ?? {});
    } catch (err) {
      app.drain();
      await app.stop();
      throw err;
    }
    return app;
  }

  /** The server starts draining: capabilities stop starting background work. Idempotent. */
  drain(): void {
    if (this.drained) return;
    this.drained = true;
    for (const fn of this.drainHooks) fn();
  }

  /** After the drain and the core's close: capabilities flush and close, in plug-in order. */
  async stop(): Promise<void> {
    this.drain();
    for (const fn of this.stopHooks.splice(0)) await fn().catch(() => undefined);
  }
}
