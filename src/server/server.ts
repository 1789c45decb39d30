// The Umbra server: an Umbra core behind the uWebSockets.js front end, with graceful drain.
import * as uws from 'uWebSockets.js';
import { Umbra, type UmbraOptions } from '../core/umbra.js';
import { Api } from '../api/api.js';
import { attachHttp, InFlight } from './http.js';
import { attachTraffic, type TrafficController } from '../traffic/index.js';
import { attachMonitoring, detachMonitoring, type MonitoringOptions } from '../monitor/index.js';
import { attachPredictionStore } from '../batch/lookup.js';
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
  private readonly app: uws.TemplatedApp;
  private listenSocket: uws.us_listen_socket | false = false;
  private readonly inFlight = new InFlight();
  /** Open WebSocket connections; drain closes each after its in-flight answers. */
  readonly streams: StreamHub;
  private draining = false;
  private stopping: Promise<void> | undefined;
  private boundPort = 0;
  private readonly closers: (() => Promise<void>)[] = [];

  private constructor(readonly umbra: Umbra, readonly options: ServerOptions) {
    const accepting = () => !this.draining;
    const apiOptions: ConstructorParameters<typeof Api>[1] = { isAccepting: accepting };
    if (options.adminToken) apiOptions.adminToken = options.adminToken;
    this.api = new Api(umbra, apiOptions);
    this.traffic = attachTraffic(this, options.stateDir ? { stateDir: options.stateDir } : {});
    this.app = uws.App();
    this.streams = attachWebSocket(this.app, umbra, {
      maxPayloadBytes: options.wsMaxPayloadBytes ?? STREAM_DEFAULTS.maxPayloadBytes,
      idleSeconds: options.wsIdleSeconds ?? STREAM_DEFAULTS.idleSeconds,
      maxInFlight: options.wsMaxInFlight ?? STREAM_DEFAULTS.maxInFlight,
      backpressureBytes: options.wsBackpressureBytes ?? STREAM_DEFAULTS.backpressureBytes,
    }, accepting);
    attachHttp(this.app, this.api, { maxBodyBytes: options.maxBodyBytes ?? DEFAULTS.maxBodyBytes }, this.inFlight, () => this.draining);
    if (options.monitoring !== false) attachMonitoring(this, { ...(options.stateDir !== undefined && { stateDir: options.stateDir }), ...options.monitoring });
  }

  /** Opens the repository, then listens. Readiness reports true once every model has loaded. */
  static async start(options: ServerOptions): Promise<UmbraServer> {
    // Listen first so liveness answers during warm-up; readiness stays false until models load.
    const umbra = await Umbra.open({ ...options, loadAll: false });
    const server = new UmbraServer(umbra, options);
    try {
      if (options.store) await attachPredictionStore(server, options.store);
      await server.listen(options.host ?? DEFAULTS.host, options.port ?? DEFAULTS.port);
    } catch (err) {
      for (const close of server.closers) await close().catch(() => undefined);
      await umbra.close();
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
    return this.draining;
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
    this.draining = true;
    this.traffic.close();
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
    // After the drain, so the last predictions reach the log.
    await detachMonitoring(this.umbra);
    for (const close of this.closers) await close().catch(() => undefined);
  }

  /** Runs after the drain, e.g. to close a prediction store. */
  onStop(close: () => Promise<void>): void {
    this.closers.push(close);
  }
}

/** Starts a server; the embedding API. */
export function startServer(options: ServerOptions): Promise<UmbraServer> {
  return UmbraServer.start(options);
}
