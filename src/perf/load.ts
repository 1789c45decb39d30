// One thread's share of the load: closed loop (N clients, each sends when its last answer came)
// or open loop (requests scheduled at a rate, constant or Poisson, whatever the server does).
// In open loop a request's latency runs from its scheduled send time, so a server that stalls
// is charged for every request that should have been sent meanwhile (no coordinated omission).
import { performance } from 'node:perf_hooks';
import { LatencyHistogram } from './histogram.js';
import { HttpConnection, encodeHttpRequest } from './http-connection.js';
import { WsConnection } from './ws-connection.js';
import { GrpcLoadConnection, grpcRequest } from './grpc-connection.js';
import { frameMessage } from '../client/grpc-channel.js';
import { isGrpc, seededRandom, type Payload, type Protocol } from './payload.js';

export type Distribution = 'constant' | 'poisson';

export interface LoadSpec {
  url: string;
  model: string;
  version?: string;
  protocol: Protocol;
  payloads: Payload[];
  mode: 'concurrency' | 'rate';
  /** Clients (closed loop) or requests per second (open loop) for this thread. */
  level: number;
  distribution: Distribution;
  /** Open loop with constant spacing: offset of the first send, as a fraction of one interval. */
  phase: number;
  seed: number;
  timeoutMs: number;
  /** Open loop over HTTP: most connections opened; later requests wait (their clock still runs). */
  maxConnections: number;
  /** WebSocket (or gRPC) connections shared by the clients; undefined: the protocol's default. */
  wsConnections: number | undefined;
}

/** Concurrent gRPC clients per HTTP/2 connection when --ws-connections is not given. */
export const GRPC_CLIENTS_PER_CONNECTION = 16;

export interface WindowSample {
  startMs: number;
  endMs: number;
  completed: number;
  errors: Record<string, number>;
  latency: LatencyHistogram;
  /** Open loop: how late the generator sent each request against its schedule. */
  sendLag: LatencyHistogram;
  /** The window's first failure as the server worded it (HTTP: status and the start of its body), to show the user. */
  firstError?: string;
}

interface Channel {
  send(payload: number, scheduledAt: number, done: (error: string | null) => void): void;
}

export class LoadDriver {
  private window: WindowSample;
  private running = false;
  private readonly http = new Set<HttpConnection>();
  private readonly idleHttp: HttpConnection[] = [];
  private readonly ws: WsConnection[] = [];
  private readonly grpc: GrpcLoadConnection[] = [];
  /** gRPC: each payload as a ModelInferRequest (without id), and framed for a unary call. */
  private readonly grpcMessages: Buffer[] = [];
  private readonly grpcFrames: Buffer[] = [];
  private readonly requests: Buffer[] = [];
  private readonly frames: Buffer[] = [];
  private readonly backlog: { scheduledAt: number; payload: number }[] = [];
  private nextPayload = 0;
  private timer: NodeJS.Timeout | undefined;
  private reaper: NodeJS.Timeout | undefined;
  private host = '';
  private port = 0;

  constructor(private readonly spec: LoadSpec) {
    this.window = emptyWindow(performance.now());
  }

  async start(): Promise<void> {
    if (isGrpc(this.spec.protocol)) {
      await this.startGrpc();
      return;
    }
    const u = new URL(this.spec.url);
    this.host = u.hostname;
    this.port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
    const path = this.spec.version
      ? `/v2/models/${encodeURIComponent(this.spec.model)}/versions/${encodeURIComponent(this.spec.version)}/infer`
      : `/v2/models/${encodeURIComponent(this.spec.model)}/infer`;
    if (this.spec.protocol === 'ws') {
      const wsUrl = `${u.protocol === 'https:' ? 'wss' : 'ws'}://${u.host}/v2/stream`;
      const n = Math.max(1, Math.min(this.spec.wsConnections ?? 1, this.spec.mode === 'concurrency' ? this.spec.level : Infinity));
      for (let i = 0; i < n; i++) this.ws.push(new WsConnection(wsUrl, `${this.spec.seed}-${i}-`));
      await Promise.all(this.ws.map((c) => c.opened));
      // Splice model_name (and version) into each pre-encoded JSON body once.
      const extra = `"model_name":${JSON.stringify(this.spec.model)},${this.spec.version ? `"model_version":${JSON.stringify(this.spec.version)},` : ''}`;
      for (const p of this.spec.payloads) this.frames.push(Buffer.from(`{${extra}${p.json.slice(1)}`));
    } else {
      const hostHeader = u.host;
      for (const p of this.spec.payloads) {
        this.requests.push(this.spec.protocol === 'http'
          ? encodeHttpRequest(hostHeader, path, Buffer.from(p.json), { 'content-type': 'application/json' })
          : encodeHttpRequest(hostHeader, path, p.binary.body, {
            'content-type': 'application/octet-stream',
            'inference-header-content-length': String(p.binary.headerLength),
          }));
      }
    }
    this.run();
  }

  /** gRPC: connections (each a stream of its own for grpc-stream), the payloads encoded once. */
  private async startGrpc(): Promise<void> {
    const streaming = this.spec.protocol === 'grpc-stream';
    // One HTTP/2 connection for every client makes the server take each connection's calls in
    // long bursts while the generator waits; a few connections keep both sides busy.
    // (An open loop has no fixed number of clients: it gets the connections of 64.)
    const clients = this.spec.mode === 'concurrency' ? this.spec.level : Infinity;
    const wanted = this.spec.wsConnections ?? Math.ceil(Math.min(clients, 64) / GRPC_CLIENTS_PER_CONNECTION);
    const n = Math.max(1, Math.min(wanted, clients));
    for (let i = 0; i < n; i++) this.grpc.push(new GrpcLoadConnection(this.spec.url, streaming, `${this.spec.seed}-${i}-`));
    await Promise.all(this.grpc.map((c) => c.opened));
    for (const p of this.spec.payloads) {
      const message = grpcRequest(p, this.spec.model, this.spec.version);
      this.grpcMessages.push(message);
      this.grpcFrames.push(frameMessage(message));
    }
    this.run();
  }

  private run(): void {
    this.running = true;
    this.window = emptyWindow(performance.now());
    this.reaper = setInterval(() => this.expire(), Math.min(1000, Math.max(50, this.spec.timeoutMs / 4)));
    if (this.spec.mode === 'concurrency') {
      for (let i = 0; i < this.spec.level; i++) this.loop(this.channelFor(i));
    } else this.schedule();
  }

  /** Ends the current window and starts the next. */
  collect(): WindowSample {
    const now = performance.now();
    const w = this.window;
    w.endMs = now;
    this.window = emptyWindow(now);
    return w;
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    if (this.reaper) clearInterval(this.reaper);
    for (const c of this.http) c.close();
    this.http.clear();
    this.idleHttp.length = 0;
    for (const c of this.ws) c.close();
    for (const c of this.grpc) c.close();
    this.backlog.length = 0;
  }

  /** An HTTP answer's outcome: null for 2xx, else its status, with the words of the window's first such answer kept. */
  private statusError(status: number, conn: HttpConnection): string | null {
    if (status >= 200 && status < 300) return null;
    const error = String(status);
    if (this.window.firstError === undefined && this.running) this.window.firstError = conn.lastErrorBody ? `${error} ${conn.lastErrorBody}` : error;
    return error;
  }

  private record(scheduledAt: number, error: string | null): void {
    if (!this.running) return;
    const w = this.window;
    if (error === null) {
      w.completed += 1;
      w.latency.recordMs(performance.now() - scheduledAt);
    } else {
      w.errors[error] = (w.errors[error] ?? 0) + 1;
      w.firstError ??= error;
    }
  }

  private pickPayload(): number {
    const i = this.nextPayload;
    this.nextPayload = (i + 1) % this.spec.payloads.length;
    return i;
  }

  private channelFor(client: number): Channel {
    if (this.grpc.length > 0) {
      const conn = this.grpc[client % this.grpc.length]!;
      return { send: (payload, at, done) => conn.send(this.grpcMessages[payload]!, this.grpcFrames[payload]!, done, at) };
    }
    if (this.spec.protocol === 'ws') {
      const conn = this.ws[client % this.ws.length]!;
      return { send: (payload, at, done) => conn.send(this.frames[payload]!, done, at) };
    }
    // Closed loop over HTTP: each client owns a connection, reopened if the server drops it.
    let conn: HttpConnection | undefined;
    return {
      send: (payload, at, done) => {
        if (!conn || !conn.reusable(performance.now())) conn = this.openHttp();
        conn.send(this.requests[payload]!, (status, error) => done(error ?? this.statusError(status, conn!)), at);
      },
    };
  }

  private loop(channel: Channel): void {
    if (!this.running) return;
    const at = performance.now();
    channel.send(this.pickPayload(), at, (error) => {
      this.record(at, error);
      // A refused connection would spin; give the server a moment before the next try.
      if (error !== null && !/^\d+$/.test(error)) setTimeout(() => this.loop(channel), 10);
      else this.loop(channel);
    });
  }

  private openHttp(): HttpConnection {
    const conn = new HttpConnection(this.host, this.port, (c) => {
      this.http.delete(c);
      const i = this.idleHttp.indexOf(c);
      if (i >= 0) this.idleHttp.splice(i, 1);
    });
    this.http.add(conn);
    return conn;
  }

  // Open loop: a timer walks the schedule and sends everything due.
  private schedule(): void {
    const random = seededRandom(this.spec.seed);
    const interval = 1000 / this.spec.level;
    let next = performance.now() + interval * this.spec.phase;
    const gap = () => (this.spec.distribution === 'poisson' ? -Math.log(1 - random()) * interval : interval);
    const tick = () => {
      if (!this.running) return;
      const now = performance.now();
      while (next <= now) {
        this.dispatch(next, now);
        next += gap();
      }
      this.timer = setTimeout(tick, Math.max(0, next - performance.now()));
    };
    tick();
  }

  private dispatch(scheduledAt: number, now: number): void {
    const payload = this.pickPayload();
    if (this.grpc.length > 0) {
      this.window.sendLag.recordMs(now - scheduledAt);
      const conn = this.grpc[payload % this.grpc.length]!;
      conn.send(this.grpcMessages[payload]!, this.grpcFrames[payload]!, (error) => this.record(scheduledAt, error), scheduledAt);
      return;
    }
    if (this.spec.protocol === 'ws') {
      this.window.sendLag.recordMs(now - scheduledAt);
      const conn = this.ws[payload % this.ws.length]!;
      conn.send(this.frames[payload]!, (error) => this.record(scheduledAt, error), scheduledAt);
      return;
    }
    this.backlog.push({ scheduledAt, payload });
    this.pump(now);
  }

  /** Sends waiting requests, oldest first, on idle connections or new ones up to the cap. */
  private pump(now: number): void {
    while (this.running && this.backlog.length > 0) {
      let conn = this.idleHttp.pop();
      // One that idled into the server's keep-alive timeout is closed here, not sent on.
      while (conn && !conn.reusable(now)) conn = this.idleHttp.pop();
      if (!conn && this.http.size < this.spec.maxConnections) conn = this.openHttp();
      if (!conn) return;
      const { scheduledAt, payload } = this.backlog.shift()!;
      this.sendOpen(conn, scheduledAt, payload, now);
    }
  }

  private sendOpen(conn: HttpConnection, scheduledAt: number, payload: number, now: number): void {
    this.window.sendLag.recordMs(now - scheduledAt);
    conn.send(this.requests[payload]!, (status, error) => {
      this.record(scheduledAt, error ?? this.statusError(status, conn));
      if (!this.running) return;
      if (conn.idle) this.idleHttp.push(conn);
      this.pump(performance.now());
    }, now);
  }

  private expire(): void {
    const deadline = performance.now() - this.spec.timeoutMs;
    for (const c of this.http) if (!c.idle && c.sentAt > 0 && c.sentAt < deadline) c.abort('timeout');
    for (const c of this.ws) c.expire(deadline);
    for (const c of this.grpc) c.expire(deadline);
  }
}

function emptyWindow(now: number): WindowSample {
  return { startMs: now, endMs: now, completed: 0, errors: {}, latency: new LatencyHistogram(), sendLag: new LatencyHistogram() };
}
