// The Umbra server: the composed app (core + capabilities, src/app.ts) behind the
// uWebSockets.js front end, with graceful drain.
import * as uws from 'uWebSockets.js';
import { Umbra, type UmbraOptions } from '../core/umbra.js';
import type { Api } from '../api/api.js';
import { UmbraApp, type AppOptions } from '../app.js';
import { attachHttp, InFlight } from './http.js';
import type { TrafficController } from '../traffic/index.js';
import type { Monitor, MonitoringOptions } from '../monitor/index.js';
import type { PredictionService } from '../batch/lookup.js';
import { attachWebSocket, STREAM_DEFAULTS, type StreamHub } from './ws.js';

export interface ServerOptions extends UmbraOptions {
  host?: string;
  /** 0 picks a free port (see `UmbraServer.port`). */
  port?: number;
  adminToken?: string;
  maxBodyBytes?: number;
  /** Upper bound on a graceful drain before the remaining work is abandoned. */
  drainSeconds?: number;
  /** WebSocket (/v2/stream): largest frame in bytes (bigger closes with 1009). */
  wsMaxPayloadBytes?: number;
  /** WebSocket: close a connection silent for this many seconds (pings keep live clients open); 0 = never. */
  wsIdleSeconds?: number;
  /** WebSocket: most requests outstanding per connection (one more closes with 1008). */
  wsMaxInFlight?: number;
  /** WebSocket: unread answer bytes past which a connection's new requests wait for the client to read. */
  wsBackpressureBytes?: number;
  /** Prediction store to answer lookups from (sqlite:PATH or postgres://...); see src/batch/lookup.ts. */
  store?: string;
  /** Metrics, drift, feedback, prediction log, alerts (on by default; false = off). */
  monitoring?: MonitoringOptions | false;
  /**
   * Where Umbra keeps what it writes (traffic policies and rollouts; reference profiles are read
   * here first). Never the repository. Unset: traffic state stays in memory (`umbra serve`
   * defaults it to ./.umbra-state).
   */
  stateDir?: string;
}

export const DEFAULTS = {
  host: '127.0.0.1',
  port: 8000,
  maxBodyBytes: 64 * 1024 * 1024,
  drainSeconds: 30,
} as const;

export class UmbraServer {
  readonly api: Api;
  /** Canary/shadow routing and rollouts (src/traffic). */
  readonly traffic: TrafficController;
  /** Metrics, drift, feedback and the prediction log (src/monitor); undefined when off. */
  readonly monitor: Monitor | undefined;
  /** Lookups from a prediction store (`store`); undefined without one. */
  readonly lookup: PredictionService | undefined;
  private readonly app: uws.TemplatedApp;
  private listenSocket: uws.us_listen_socket | false = false;
  private readonly inFlight = new InFlight();
  /** Open WebSocket connections; drain closes each after its in-flight answers. */
  readonly streams: StreamHub;
  private stopping: Promise<void> | undefined;
  private boundPort = 0;

  private constructor(private readonly composed: UmbraApp, readonly options: ServerOptions, private readonly drainState: DrainState) {
    const umbra = composed.core;
    const accepting = () => !drainState.draining;
    this.api = composed.api;
    this.traffic = composed.traffic;
    this.monitor = composed.monitor;
    this.lookup = composed.lookup;
    this.app = uws.App();
    this.streams = attachWebSocket(this.app, umbra, {
      maxPayloadBytes: options.wsMaxPayloadBytes ?? STREAM_DEFAULTS.maxPayloadBytes,
      idleSeconds: options.wsIdleSeconds ?? STREAM_DEFAULTS.idleSeconds,
      maxInFlight: options.wsMaxInFlight ?? STREAM_DEFAULTS.maxInFlight,
      backpressureBytes: options.wsBackpressureBytes ?? STREAM_DEFAULTS.backpressureBytes,
    }, accepting);
    attachHttp(this.app, this.api, { maxBodyBytes: options.maxBodyBytes ?? DEFAULTS.maxBodyBytes }, this.inFlight, () => drainState.draining);
  }

  /** The core: repository, execution and the inference entry point. */
  get umbra(): Umbra {
    return this.composed.core;
  }

  /** Opens the repository, then listens. Readiness reports true once every model has loaded. */
  static async start(options: ServerOptions): Promise<UmbraServer> {
    // Listen first so liveness answers during warm-up; readiness stays false until models load.
    const umbra = await Umbra.open({ ...options, loadAll: false });
    const drainState: DrainState = { draining: false };
    let composed: UmbraApp;
    try {
      composed = await UmbraApp.compose(umbra, { ...appOptions(options), isAccepting: () => !drainState.draining });
    } catch (err) {
      await umbra.close();
      throw err;
    }
    const server = new UmbraServer(composed, options, drainState);
    try {
      await server.listen(options.host ?? DEFAULTS.host, options.port ?? DEFAULTS.port);
    } catch (err) {
      await umbra.close();
      await composed.stop();
      throw err;
    }
    if (options.loadAll !== false) await umbra.manager.loadAll();
    if (options.pollSeconds && options.pollSeconds > 0) umbra.manager.startPolling(options.pollSeconds);
    return server;
  }

  private listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.app.listen(host, port, (socket) => {
        if (!socket) {
          reject(new Error(`could not listen on ${host}:${port}: the port is in use or the address is not local (use --port to pick another)`));
          return;
        }
        this.listenSocket = socket;
        this.boundPort = uws.us_socket_local_port(socket as unknown as uws.us_socket);
        resolve();
      });
    });
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    return `http://${this.options.host ?? DEFAULTS.host}:${this.boundPort}`;
  }

  get isDraining(): boolean {
    return this.drainState.draining;
  }

  /**
   * Graceful stop: readiness turns false at once, the listener closes, queued and in-flight
   * requests finish (bounded by drainSeconds), then the workers stop.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.drainState.draining = true;
    this.composed.drain();
    if (this.listenSocket) {
      uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = false;
    }
    // Requests that reach an open connection during the drain are still answered (with
    // `Connection: close`), so a load balancer that has not yet noticed readiness never sees a
    // failure; only new connections are refused.
    const seconds = this.options.drainSeconds ?? DEFAULTS.drainSeconds;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, seconds * 1000);
      timer.unref();
    });
    // WebSocket connections answer their in-flight requests, refuse new ones, then get a close frame.
    await Promise.race([Promise.all([this.inFlight.idle(), this.streams.drain()]), deadline]);
    await Promise.race([this.umbra.manager.drainAll(), deadline]);
    if (timer) clearTimeout(timer);
    this.app.close();
    await this.umbra.close();
    // After the drain, so the last predictions reach the log and the store closes last.
    await this.composed.stop();
  }
}

/** Set once when the server starts draining; readiness and `Connection: close` read it. */
interface DrainState {
  draining: boolean;
}

function appOptions(options: ServerOptions): Omit<AppOptions, 'isAccepting'> {
  const out: Omit<AppOptions, 'isAccepting'> = {};
  if (options.adminToken) out.adminToken = options.adminToken;
  if (options.monitoring !== undefined) out.monitoring = options.monitoring;
  if (options.stateDir) out.stateDir = options.stateDir;
  if (options.store) out.store = options.store;
  return out;
}

/** Starts a server; the embedding API. */
export function startServer(options: ServerOptions): Promise<UmbraServer> {
  return UmbraServer.start(options);
}
