// The Umbra server: the composed app (core + capabilities, src/app.ts) behind the
// uWebSockets.js front end, on this thread or on I/O threads (src/server/io), with graceful drain.
import { EventEmitter } from 'node:events';
import { createServer } from 'node:net';
import { UmbraError, invalid } from '../errors.js';
import { usableCores } from '../cores.js';
import * as uws from 'uWebSockets.js';
import { installHttpGuard, type HttpGuardStatus } from './http-guard.js';
import { Umbra, type UmbraOptions } from '../core/umbra.js';
import type { Api } from '../api/api.js';
import { UmbraApp, type AppOptions } from '../app.js';
import { attachHttp, closeListener, InFlight, OpenStreams, settled, watchArrivals, type ApiHandler, type HttpOptions } from './http.js';
import type { TrafficController } from '../traffic/index.js';
import type { Monitor, MonitoringOptions } from '../monitor/index.js';
import type { PredictionService } from '../batch/lookup.js';
import { attachWebSocket, STREAM_DEFAULTS, sumStreamStats, type StreamHub, type StreamOptions, type StreamStats } from './ws.js';
import { DEFAULTS } from './defaults.js';
import { IoHub } from './io/io-hub.js';
import type { OpsHandle, UiOptions } from '../ui/index.js';
import { GrpcServer } from './grpc/grpc-server.js';
import { drainDeadlineError } from './drain-deadline.js';
import { errorReply } from '../api/api.js';
import { READERS_INLINE_BUDGET_US } from '../execution/placement.js';

export interface ServerOptions extends UmbraOptions {
  host?: string;
  /** 0 picks a free port (see `UmbraServer.port`). */
  port?: number;
  adminToken?: string;
  maxBodyBytes?: number;
  /**
   * HTTP answers of 1 KiB or more go out compressed (gzip or deflate) to clients whose
   * Accept-Encoding asks (default false: see HttpOptions). Compressed request bodies are taken
   * either way.
   */
  responseCompression?: boolean;
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
  /** WebSocket: browser origins besides the server's own whose pages may open a stream (`*` any); an upgrade with another Origin is refused with 403. */
  wsOrigins?: string[];
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
  /**
   * Threads that read, parse, encode and answer HTTP and WebSocket requests (default
   * `defaultIoThreads()`). 1 serves on the core's own thread, with no hop between threads.
   */
  ioThreads?: number;
  /**
   * Whether the core's thread is one of the `ioThreads`, reading requests on the same port beside
   * the I/O threads (the kernel spreads connections over every listener), or only serves what
   * they hand over. Default `defaultCoreReads(ioThreads)`: on a host with no core to spare for a
   * thread that only relays. No effect with `ioThreads` 1, where the core's thread reads everything.
   */
  coreReads?: boolean;
  /** The ops page (GET /ui) and the time series behind it; false turns both off. */
  ui?: UiOptions | false;
  /**
   * Port of the gRPC service (Open Inference Protocol, Triton's extensions, grpc.health.v1) on the
   * same host; 'any' picks a free one (see `UmbraServer.grpcPort`); absent or 0: no gRPC (the
   * CLI's default is 8001).
   */
  grpcPort?: number | 'any';
  /**
   * Seconds between the HTTP/2 PINGs a gRPC connection gets while a call is open on it, so a proxy
   * (nginx's grpc_read_timeout, 60 s) does not end a quiet stream; default 25.
   */
  grpcPingSeconds?: number;
  /**
   * The HTTP transport guard (src/server/http-guard.ts): request lines cut across TCP segments
   * handed on whole, 1007 for WebSocket text frames that are not UTF-8, JSON for the transport's
   * own error pages. Default true; once installed it stays for the whole process.
   */
  httpGuard?: boolean;
}

export { DEFAULTS };

/**
 * I/O threads for a host with `cores` cores, as measured (bench/RESULTS-io-threads.md). On two
 * cores, two: the core's thread reads beside one I/O thread (defaultCoreReads), and a model cheap
 * enough runs on the thread that read its requests (READERS_INLINE_BUDGET_US), so each core reads,
 * batches and answers its own clients. Against one thread doing everything, digits (batch-1 JSON,
 * c64) served at 1.36x with wrk, and a 64-1024-1024-10 MLP at 1.7x. Larger hosts: half the cores,
 * the other half left to the model workers, at most 8 (not measured on such a host yet).
 */
export function defaultIoThreads(cores = usableCores()): number {
  if (cores <= 1) return 1;
  return Math.min(8, Math.max(2, Math.floor(cores / 2)));
}

/**
 * Whether the core's thread should read requests itself beside `ioThreads - 1` I/O threads: when
 * the host has fewer cores than the I/O threads plus the core's thread. Then a core thread that
 * only relays competes for a core with the threads that read, and every request it relays pays
 * the hop; reading a share itself, it answers that share with no hop at all. On two cores, digits
 * (batch-1 JSON, c64) served with two threads at 1.35x the one-thread rate this way, against 1.23x
 * with two I/O threads of their own (bench/RESULTS-io-threads.md). With a core to spare the core's thread stays free for
 * batching and monitoring, which every I/O thread's requests need.
 */
export function defaultCoreReads(ioThreads: number, cores = usableCores()): boolean {
  return ioThreads > 1 && ioThreads + 1 > cores;
}

/**
 * The inline budget where every core reads requests (`ioThreads` at least the cores, the core's
 * thread among them): READERS_INLINE_BUDGET_US; elsewhere undefined (the usual 100 µs).
 */
export function readersInlineBudgetUs(ioThreads: number, coreReads: boolean, cores = usableCores()): number | undefined {
  return coreReads && ioThreads > 1 && ioThreads >= cores ? READERS_INLINE_BUDGET_US : undefined;
}

/** Set once when the server starts draining; readiness and `Connection: close` read it. */
interface DrainState {
  draining: boolean;
}

/** Where requests are read: the core's own thread, or I/O threads (IoHub). */
export interface Transport {
  readonly port: number;
  /** Stops accepting and resolves once every open connection's requests are answered (or `deadline`). */
  drain(deadline: Promise<void>): Promise<void>;
  /**
   * The drain's deadline (`drainSeconds`) passed: every request still unanswered, on every thread,
   * is answered now with a 503 (drainDeadlineError); resolves once each thread has written them.
   */
  cutOff(drainSeconds: number): Promise<void>;
  /** Closes every socket; I/O threads not ended when `bound` resolves are not waited for (IoHub.close). */
  close(bound?: Promise<void>): Promise<void>;
  streamStats(): Promise<StreamStats>;
}

/** Everything on the core's thread: no hop between threads. */
class LocalTransport implements Transport {
  private readonly app = uws.App();
  private listenSocket: uws.us_listen_socket | false = false;
  private readonly inFlight = new InFlight();
  private readonly openStreams = new OpenStreams();
  private readonly unwatch: () => void;
  readonly streams: StreamHub;
  port = 0;

  /** HTTP requests read since the start. */
  get requestsRead(): number {
    return this.inFlight.entered;
  }

  /** `api`: what answers this thread's HTTP requests (default the composed API; beside I/O threads, the hub's routed one). */
  constructor(composed: UmbraApp, stream: StreamOptions, http: HttpOptions, state: DrainState, api: ApiHandler = composed.api) {
    this.streams = attachWebSocket(this.app, composed.core, stream, () => !state.draining);
    attachHttp(this.app, api, http, this.inFlight, () => state.draining, this.openStreams);
    this.unwatch = watchArrivals(this.app, this.inFlight, this.streams);
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.app.listen(host, port, (socket) => {
        if (!socket) {
          reject(new Error(`could not listen on ${host}:${port}: the port is in use or the address is not local (use --port to pick another)`));
          return;
        }
        this.listenSocket = socket;
        this.port = uws.us_socket_local_port(socket as unknown as uws.us_socket);
        resolve();
      });
    });
  }

  async drain(deadline: Promise<void>): Promise<void> {
    const listener = this.listenSocket;
    this.listenSocket = false;
    if (listener) await closeListener(listener);
    // Streamed answers (server-sent events) never end by themselves.
    this.openStreams.endAll();
    // WebSocket connections answer their in-flight requests, refuse new ones, then get a close frame.
    await Promise.race([settled(this.inFlight, this.streams), deadline]);
  }

  async cutOff(drainSeconds: number): Promise<void> {
    const err = drainDeadlineError(drainSeconds);
    this.inFlight.cutOff(errorReply(err));
    this.streams.cutOff(err);
  }

  /**
   * As an I/O thread stops (io-thread.ts): requests read after the drain settled (on a connection
   * still open while the stop waited for the models) are answered before their sockets close,
   * waited for no longer than `bound`; closed first, such a client would see a reset.
   */
  async close(bound?: Promise<void>): Promise<void> {
    const listener = this.listenSocket;
    this.listenSocket = false;
    if (listener) await closeListener(listener);
    await (bound ? Promise.race([settled(this.inFlight, this.streams), bound]) : settled(this.inFlight, this.streams));
    this.unwatch();
    this.app.close();
  }

  async streamStats(): Promise<StreamStats> {
    return this.streams.stats();
  }
}

/**
 * The core's thread and I/O threads on one port: each has its own listener, and the kernel spreads
 * new connections over them. A request read on the core's thread is served there with no hop.
 */
class SharedPortTransport implements Transport {
  /** 'pause' and 'close' from either side's WebSocket connections, 'replaced' from the I/O threads. */
  readonly events = new EventEmitter();

  constructor(readonly local: LocalTransport, readonly hub: IoHub) {
    for (const name of ['pause', 'close']) {
      local.streams.on(name, (...args: unknown[]) => this.events.emit(name, ...args));
      hub.on(name, (...args: unknown[]) => this.events.emit(name, ...args));
    }
    hub.on('replaced', () => this.events.emit('replaced'));
  }

  /** The I/O threads first (for port 0 they find a free port), then the core's listener on the same port. */
  static async start(composed: UmbraApp, options: { threads: number; host: string; port: number; http: HttpOptions; stream: StreamOptions }, state: DrainState): Promise<SharedPortTransport> {
    const hub = new IoHub(composed.core, composed.api, { ...options, threads: options.threads - 1 });
    await hub.start();
    const local = new LocalTransport(composed, options.stream, options.http, state, hub.routedApi);
    try {
      await local.listen(options.host, hub.port);
    } catch (err) {
      await hub.close();
      await local.close();
      throw err;
    }
    return new SharedPortTransport(local, hub);
  }

  get port(): number {
    return this.hub.port;
  }

  /** Every listener stops accepting in the same turn. */
  async drain(deadline: Promise<void>): Promise<void> {
    await Promise.all([this.local.drain(deadline), this.hub.drain(deadline)]);
  }

  async cutOff(drainSeconds: number): Promise<void> {
    await Promise.all([this.local.cutOff(drainSeconds), this.hub.cutOff(drainSeconds)]);
  }

  async close(bound?: Promise<void>): Promise<void> {
    await Promise.all([this.local.close(bound), this.hub.close(bound)]);
  }

  async streamStats(): Promise<StreamStats> {
    return sumStreamStats(await Promise.all([this.local.streamStats(), this.hub.streamStats()]));
  }

  /** The core's thread (by its OS id) with the requests it read, then each I/O thread. */
  threadStats(): { tid: number; requests: number }[] {
    return [{ tid: process.pid, requests: this.local.requestsRead }, ...this.hub.threadStats()];
  }
}

export class UmbraServer {
  readonly api: Api;
  /** Canary/shadow routing and rollouts (src/traffic). */
  readonly traffic: TrafficController;
  /** Metrics, drift, feedback and the prediction log (src/monitor); undefined when off. */
  readonly monitor: Monitor | undefined;
  /** Lookups from a prediction store (`store`); undefined without one. */
  readonly lookup: PredictionService | undefined;
  /** The ops page's time series and event stream (src/ui); undefined with `ui: false`. */
  readonly ops: OpsHandle | undefined;
  /**
   * Events from every I/O thread: 'pause' when a WebSocket connection stops taking requests
   * because its client reads slowly, 'close' with {code, reason} for every closed WebSocket
   * connection, 'replaced' when an I/O thread that died has been replaced.
   */
  readonly events: EventEmitter;
  /** The open WebSocket connections, when the server reads on its own thread (`ioThreads` 1). */
  readonly streams: StreamHub | undefined;
  /** Threads reading requests (1 = the core's own thread), the core's own among them when `coreReads`. */
  readonly ioThreads: number;
  /** Whether the core's thread reads requests (always with one I/O thread). */
  readonly coreReads: boolean;
  /** The HTTP transport guard's state in this process (`httpGuard`). */
  readonly httpGuard: HttpGuardStatus;
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly composed: UmbraApp,
    readonly options: ServerOptions,
    private readonly drainState: DrainState,
    private readonly transport: Transport,
    /** The gRPC service, when `grpcPort` asks for one. */
    readonly grpc: GrpcServer | undefined,
  ) {
    this.api = composed.api;
    this.traffic = composed.traffic;
    this.monitor = composed.monitor;
    this.lookup = composed.lookup;
    this.ops = composed.ops;
    this.httpGuard = installHttpGuard(options.httpGuard ?? true);
    if (transport instanceof LocalTransport) {
      this.streams = transport.streams;
      this.events = transport.streams;
      this.ioThreads = 1;
      this.coreReads = true;
    } else if (transport instanceof SharedPortTransport) {
      this.streams = undefined;
      this.events = transport.events;
      this.ioThreads = transport.hub.size + 1;
      this.coreReads = true;
    } else {
      const hub = transport as IoHub;
      this.streams = undefined;
      this.events = hub;
      this.ioThreads = hub.size;
      this.coreReads = false;
    }
  }

  /** The core: repository, execution and the inference entry point. */
  get umbra(): Umbra {
    return this.composed.core;
  }

  /** Opens the repository, then listens. Readiness reports true once every model has loaded. */
  static async start(options: ServerOptions): Promise<UmbraServer> {
    if (typeof options !== 'object' || options === null) throw invalid('INVALID_ARGUMENT', 'an options object such as { repository: \'models\', port: 8000 }', 'startServer()', options);
    // Before anything starts: a port given as a string ('0', read from an environment variable)
    // listened on some port while `port` and `url` said 0, and one out of range was node's RangeError.
    for (const key of ['port', 'grpcPort'] as const) {
      const value = options[key];
      if (value !== undefined && !(key === 'grpcPort' && value === 'any') && !(Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 65535)) {
        throw invalid('INVALID_ARGUMENT', `an integer from 0 to 65535${key === 'grpcPort' ? " or 'any'" : ''}`, `server option ${key}`, value);
      }
    }
    // Listen first so liveness answers during warm-up; readiness stays false until models load.
    const threads = options.ioThreads ?? defaultIoThreads();
    const coreReads = threads > 1 && (options.coreReads ?? defaultCoreReads(threads));
    // Where every core reads requests, a moderately costly model is served by each reading thread
    // itself rather than by a worker that would take a core from one of them (placement.ts).
    const inline = options.inlineBudgetUs ?? readersInlineBudgetUs(threads, coreReads);
    // Polling starts once the models have loaded (below): a pass during the first loads would load each again.
    const umbra = await Umbra.open({ ...options, loadAll: false, pollSeconds: 0, ...(inline !== undefined ? { inlineBudgetUs: inline } : {}) });
    const drainState: DrainState = { draining: false };
    let composed: UmbraApp;
    try {
      composed = await UmbraApp.compose(umbra, { ...appOptions(options), isAccepting: () => !drainState.draining });
    } catch (err) {
      await umbra.close();
      throw err;
    }
    const host = options.host ?? DEFAULTS.host;
    const port = options.port ?? DEFAULTS.port;
    const maxBodyBytes = options.maxBodyBytes ?? DEFAULTS.maxBodyBytes;
    const http: HttpOptions = { maxBodyBytes, responseCompression: options.responseCompression ?? false };
    const stream = streamOptions(options);
    // Before any listener opens: the guard follows each connection from its first byte.
    installHttpGuard(options.httpGuard ?? true);
    let transport: LocalTransport | IoHub | SharedPortTransport | undefined;
    let grpc: GrpcServer | undefined;
    try {
      // Both ports first, before either listens: the HTTP listener shares its port (below).
      await ensurePortFree(host, port, "--port (startServer()'s port)");
      const grpcWanted = options.grpcPort;
      if (typeof grpcWanted === 'number' && grpcWanted !== 0) await ensurePortFree(host, grpcWanted, "--grpc-port (startServer()'s grpcPort)");
      if (threads <= 1) {
        const local = new LocalTransport(composed, stream, http, drainState);
        transport = local;
        await local.listen(host, port);
      } else if (coreReads) {
        transport = await SharedPortTransport.start(composed, { threads, host, port, http, stream }, drainState);
      } else {
        const hub = new IoHub(umbra, composed.api, { threads, host, port, http, stream });
        transport = hub;
        await hub.start();
      }
      const hub = transport instanceof IoHub ? transport : transport instanceof SharedPortTransport ? transport.hub : undefined;
      if (hub) umbra.replicaQueues = () => hub.replicaQueues();
      const grpcPort = options.grpcPort;
      if (grpcPort !== undefined && grpcPort !== 0) {
        // On the core's thread: the hop to an I/O thread would cost it more than the transport does (bench/RESULTS.md).
        grpc = new GrpcServer(composed, { host, port: grpcPort === 'any' ? 0 : grpcPort, maxMessageBytes: maxBodyBytes, pingSeconds: options.grpcPingSeconds }, () => !drainState.draining);
        await grpc.listen();
      }
    } catch (err) {
      await grpc?.close();
      await transport?.close();
      await umbra.close();
      await composed.stop();
      throw err;
    }
    const server = new UmbraServer(composed, options, drainState, transport, grpc);
    if (options.loadAll !== false) {
      try {
        await umbra.manager.loadAll();
      } catch (err) {
        // A repository that cannot be read: the caller gets no server to stop, so its port, I/O
        // threads and workers would outlive the call and keep the process from exiting.
        await server.stop();
        throw err;
      }
    }
    if (options.pollSeconds && options.pollSeconds > 0) umbra.manager.startPolling(options.pollSeconds);
    return server;
  }

  get port(): number {
    return this.transport.port;
  }

  get url(): string {
    const host = this.options.host ?? DEFAULTS.host;
    // An IPv6 address goes in brackets in a URL (http://[::1]:8000).
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  /** The gRPC port (0 when gRPC is off). */
  get grpcPort(): number {
    return this.grpc?.port ?? 0;
  }

  get isDraining(): boolean {
    return this.drainState.draining;
  }

  /**
   * Each I/O thread's OS id and the requests it read (handed to the core, or answered itself);
   * with `coreReads` the core's thread comes first, with the HTTP requests it read. Empty when
   * the core's thread reads every request itself.
   */
  ioThreadStats(): { tid: number; requests: number }[] {
    if (this.transport instanceof IoHub || this.transport instanceof SharedPortTransport) return this.transport.threadStats();
    return [];
  }

  /** Open WebSocket connections and their requests, summed over every I/O thread. */
  streamStats(): Promise<StreamStats> {
    return this.transport.streamStats();
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
    // Requests that reach an open connection during the drain are still answered (with
    // `Connection: close`), so a load balancer that has not yet noticed readiness never sees a
    // failure; only new connections are refused.
    const seconds = this.options.drainSeconds ?? DEFAULTS.drainSeconds;
    let timer: NodeJS.Timeout | undefined;
    let expired = false;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        expired = true;
        resolve();
      }, seconds * 1000);
      timer.unref();
    });
    await Promise.all([this.transport.drain(deadline), this.grpc?.drain(deadline)]);
    await Promise.race([this.umbra.manager.drainAll(), deadline]);
    if (timer) clearTimeout(timer);
    // Past the deadline, what comes next is bounded by CLOSE_AFTER_DEADLINE_MS in all (what a
    // supervisor's grace period counts on). Not unref'd: the stop must come back even where
    // nothing else keeps the loop alive.
    let grace: NodeJS.Timeout | undefined;
    const graceOver = expired ? new Promise<void>((resolve) => { grace = setTimeout(resolve, CLOSE_AFTER_DEADLINE_MS); }) : undefined;
    if (graceOver) {
      // Requests still unanswered get a 503 (gRPC: UNAVAILABLE) saying why, on every thread,
      // before the connections close: a connection closed with no answer looks like a crash.
      await Promise.race([Promise.all([this.transport.cutOff(seconds), this.grpc?.cutOff(seconds)]), graceOver]);
    }
    await this.grpc?.close();
    // An I/O thread ends once its inline replicas have drained, and a batch running there (one the
    // deadline cut off, or one begun after the thread drained) cannot be interrupted: it is waited
    // for within the same grace as one in the workers, past the deadline or from here.
    let closeGrace: NodeJS.Timeout | undefined;
    const closeBound = graceOver ?? new Promise<void>((resolve) => { closeGrace = setTimeout(resolve, CLOSE_AFTER_DEADLINE_MS); });
    await this.transport.close(closeBound);
    clearTimeout(closeGrace);
    // Past the deadline a batch may still be running in a worker, which nothing can interrupt:
    // closing waits for it only until the grace ends, so the drain stays bounded and the log below
    // is still flushed; the process's exit ends that worker.
    const closed = this.umbra.close();
    if (!graceOver) await closed;
    else {
      closed.catch(() => undefined);
      await Promise.race([closed, graceOver]);
      clearTimeout(grace);
    }
    // After the drain, so the last predictions reach the log and the store closes last.
    await this.composed.stop();
  }
}

/** How long the stop may take once the drain's deadline has passed: answering what is cut off, and waiting for a batch still running. */
const CLOSE_AFTER_DEADLINE_MS = 2000;

function streamOptions(options: ServerOptions): StreamOptions {
  return {
    maxPayloadBytes: options.wsMaxPayloadBytes ?? STREAM_DEFAULTS.maxPayloadBytes,
    idleSeconds: options.wsIdleSeconds ?? STREAM_DEFAULTS.idleSeconds,
    maxInFlight: options.wsMaxInFlight ?? STREAM_DEFAULTS.maxInFlight,
    backpressureBytes: options.wsBackpressureBytes ?? STREAM_DEFAULTS.backpressureBytes,
    origins: options.wsOrigins ?? [],
  };
}

function appOptions(options: ServerOptions): Omit<AppOptions, 'isAccepting'> {
  const out: Omit<AppOptions, 'isAccepting'> = {};
  if (options.adminToken) out.adminToken = options.adminToken;
  if (options.monitoring !== undefined) out.monitoring = options.monitoring;
  if (options.stateDir) out.stateDir = options.stateDir;
  if (options.store) out.store = options.store;
  if (options.ui !== undefined) out.ui = options.ui;
  out.ioThreads = options.ioThreads ?? defaultIoThreads();
  return out;
}

/** Starts a server; the embedding API. */
export function startServer(options: ServerOptions): Promise<UmbraServer> {
  return UmbraServer.start(options);
}

/**
 * Refuses a port another process listens on. uWS listens with SO_REUSEPORT (the I/O threads share
 * one port that way), so a second server on a port in use would not fail: it would silently take
 * a share of the first one's connections. A plain listen, without that option, finds out first.
 */
export function ensurePortFree(host: string, port: number, flag: string): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE'
        ? new UmbraError('INVALID_ARGUMENT', `port ${port} on ${host} is in use by another process (another umbra serve?); stop it, or choose another port with ${flag}`)
        : new UmbraError('INVALID_ARGUMENT', `cannot listen on ${host}:${port} (${err.code ?? err.message}); choose another port with ${flag}`));
    });
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
  });
}
