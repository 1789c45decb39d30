// The gRPC transport: gRPC's wire format on node:http2, on the core's thread, serving
// GRPCInferenceService (Open Inference Protocol + Triton's streaming, statistics and repository
// extensions) and grpc.health.v1.Health. Written on node:http2 rather than @grpc/grpc-js because
// the library's own cost per unary call was the ceiling (bench/RESULTS-grpc.md); @grpc/grpc-js
// and @grpc/proto-loader clients are what the tests talk to it with. Inference goes through the
// same core entry point as HTTP (infer-call.ts). Drain: the listener closes, every connection
// gets GOAWAY (calls in flight finish, new ones go elsewhere), streams refuse new requests and
// health watches end, then the connections close.
import { threadArrivals } from '../../scheduler/arrivals.js';
import { constants, createServer, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { UmbraApp } from '../../app.js';
import { decodeInferRequest, encodeInferResponse } from '../../protocol/proto/infer-messages.js';
import { HEALTH_SERVICE, INFERENCE_SERVICE } from '../../protocol/proto/files.js';
import { buildCatalog, CatalogView } from '../io/catalog.js';
import { GrpcCall, percentEncode } from './call.js';
import { controlHandlers } from './control.js';
import { answerWith, methodsOf, readRequest, unaryRoute, type Route } from './definition.js';
import { HealthService } from './health.js';
import { contextOf, runInfer, type InferDeps } from './infer-call.js';
import { Status } from './status.js';
import { InferStream } from './stream.js';
import { drainDeadlineError } from '../drain-deadline.js';

export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port (see `port`). */
  port: number;
  /** Largest request message (the HTTP body limit applies to gRPC messages too). */
  maxMessageBytes: number;
  /** Seconds between the PINGs sent on a connection while a call is open on it (default 25). */
  pingSeconds?: number;
}

/**
 * A proxy ends a call whose upstream sent nothing for its read timeout: nginx's grpc_read_timeout
 * and ingress-nginx's are 60 s, and a ModelStreamInfer stream or a health Watch can be quiet for
 * longer. An HTTP/2 PING on the connection is read as the upstream's activity, so a quiet call
 * stays open; only connections with a call open are pinged (a proxy closes an idle pooled
 * connection that is sent anything).
 */
const PING_SECONDS = 25;

/** An answer before any call exists: a status in the one HEADERS frame, with the HTTP status the spec asks for. */
function refuse(stream: ServerHttp2Stream, httpStatus: number, code: Status, details: string): void {
  stream.on('error', () => undefined);
  if (stream.destroyed || stream.closed) return;
  stream.respond({ ':status': httpStatus, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': percentEncode(details) }, { endStream: true });
  // Answered: whatever the client still sends is refused (RST_STREAM NO_ERROR once the answer is out).
  if (!stream.readableEnded) stream.close(constants.NGHTTP2_NO_ERROR);
}

/** Flow-control windows and the largest frame a client may send (see the constructor). */
const STREAM_WINDOW = 8 << 20;
const CONNECTION_WINDOW = 32 << 20;
const MAX_FRAME = 1 << 20;

export class GrpcServer {
  private readonly server: Http2Server;
  private readonly routes = new Map<string, Route>();
  private readonly services = new Set<string>([INFERENCE_SERVICE, HEALTH_SERVICE]);
  private readonly sessions = new Set<Http2Session>();
  private readonly catalog = new CatalogView();
  private readonly streams = new Set<InferStream>();
  /** Calls whose HTTP/2 stream is open, so the drain's deadline can end each with a status. */
  private readonly calls = new Set<GrpcCall>();
  private readonly health: HealthService;
  private readonly detach: (() => void)[] = [];
  private readonly deps: InferDeps;
  private readonly limits: { maxMessageBytes: number };
  private draining = false;
  port = 0;

  constructor(app: UmbraApp, private readonly options: GrpcServerOptions, private readonly isAccepting: () => boolean) {
    const core = app.core;
    this.deps = { core, catalog: this.catalog };
    this.limits = { maxMessageBytes: options.maxMessageBytes };
    this.health = new HealthService(core, isAccepting);

    const inference = methodsOf(INFERENCE_SERVICE);
    const control = controlHandlers({ core, api: app.api, monitor: app.monitor, isAccepting });
    for (const [method, handler] of Object.entries(control)) this.route(INFERENCE_SERVICE, method, unaryRoute(inference[method]!, method, handler));
    this.route(INFERENCE_SERVICE, 'ModelInfer', (call) => this.infer(call));
    this.route(INFERENCE_SERVICE, 'ModelStreamInfer', (call) => this.stream(call));
    for (const [method, route] of Object.entries(this.health.routes())) this.route(HEALTH_SERVICE, method, route);
    for (const method of Object.keys(inference)) {
      if (!this.routes.has(`/${INFERENCE_SERVICE}/${method}`)) throw new Error(`${INFERENCE_SERVICE}/${method} is in proto/ but has no handler`);
    }

    // Sessions without a size cap of their own: a message's size is bounded by maxMessageBytes,
    // and a call's data is read as it arrives (a paused stream is bounded by its flow-control window).
    // HTTP/2's default windows (64 KiB a stream and a connection) make a client wait for a
    // WINDOW_UPDATE every 64 KiB of a request: a 1 MiB tensor took 16 round trips, and unary gRPC
    // ran at 0.14x HTTP binary on 1 MiB inputs. Larger windows and frames let a request arrive in one go.
    this.server = createServer({ maxSessionMemory: Number.MAX_SAFE_INTEGER, settings: { initialWindowSize: STREAM_WINDOW, maxFrameSize: MAX_FRAME } });
    this.server.on('session', (session) => this.track(session));
    this.server.on('stream', (stream, headers) => this.dispatch(stream, headers));
    // A peer that speaks something else than HTTP/2 is a session error; it costs that session only.
    this.server.on('sessionError', () => undefined);

    // Requests are parsed here against the loaded signatures, kept current as models come and go.
    // Signatures only: gRPC is served on the core's thread, which runs inline models itself.
    const refresh = () => this.catalog.update(buildCatalog(core, false));
    refresh();
    for (const event of ['loaded', 'unloaded', 'load-failed'] as const) {
      core.manager.on(event, refresh);
      this.detach.push(() => core.manager.off(event, refresh));
    }
  }

  private route(service: string, method: string, route: Route): void {
    this.routes.set(`/${service}/${method}`, route);
  }

  listen(): Promise<void> {
    const { host, port } = this.options;
    return new Promise((resolve, reject) => {
      const failed = (err: Error) => reject(new Error(`could not listen for gRPC on ${host}:${port}: ${err.message} (use --grpc-port to pick another, 0 to turn gRPC off)`));
      this.server.once('error', failed);
      this.server.listen(port, host, () => {
        this.server.off('error', failed);
        // An HTTP/2 connection carries many calls at once: while one is open, a call may come.
        this.detach.push(threadArrivals.add({ mayArrive: () => this.sessions.size > 0 }));
        const pings = setInterval(() => this.pingBusySessions(), (this.options.pingSeconds ?? PING_SECONDS) * 1000);
        pings.unref();
        this.detach.push(() => clearInterval(pings));
        const address = this.server.address();
        this.port = typeof address === 'object' && address ? address.port : port;
        resolve();
      });
    });
  }

  private track(session: Http2Session): void {
    session.on('error', () => undefined);
    if (this.draining) {
      session.close();
      return;
    }
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    // The connection's own window, shared by its streams (the settings above set each stream's).
    if (!session.destroyed) session.setLocalWindowSize(CONNECTION_WINDOW);
  }

  private pingBusySessions(): void {
    const busy = new Set<Http2Session>();
    for (const call of this.calls) if (call.stream.session) busy.add(call.stream.session);
    for (const session of busy) if (!session.closed && !session.destroyed) session.ping(() => undefined);
  }

  private dispatch(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const path = headers[':path'] ?? '';
    const route = this.routes.get(path);
    if (headers[':method'] !== 'POST') {
      refuse(stream, 405, Status.UNIMPLEMENTED, `expected POST for a gRPC call but received ${headers[':method']}`);
      return;
    }
    const type = headers['content-type'];
    if (typeof type !== 'string' || !type.startsWith('application/grpc')) {
      refuse(stream, 415, Status.INVALID_ARGUMENT, `expected content-type application/grpc (or application/grpc+proto) but received ${type === undefined ? 'none' : JSON.stringify(type)}`);
      return;
    }
    if (!route) {
      const service = /^\/([^/]*)\//.exec(path)?.[1];
      refuse(stream, 200, Status.UNIMPLEMENTED, service !== undefined && this.services.has(service)
        ? `${service} has no method ${JSON.stringify(path.slice(service.length + 2))}`
        : `this server has no service for ${JSON.stringify(path)} (it serves ${[...this.services].join(' and ')})`);
      return;
    }
    const call = new GrpcCall(stream, headers, this.limits);
    if (call.finished) return;
    this.calls.add(call);
    stream.once('close', () => this.calls.delete(call));
    route(call);
  }

  private infer(call: GrpcCall): void {
    readRequest(call, 'ModelInferRequest', decodeInferRequest, (request) => {
      answerWith(call, () => runInfer(this.deps, request, contextOf(call), call.cancellation), encodeInferResponse);
    });
  }

  private stream(call: GrpcCall): void {
    const stream = new InferStream(call, this.deps, (s) => this.streams.delete(s));
    this.streams.add(stream);
    if (!this.isAccepting()) stream.drain();
  }

  /** Open ModelStreamInfer calls and their outstanding requests. */
  streamStats(): { streams: number; outstanding: number } {
    let outstanding = 0;
    for (const s of this.streams) outstanding += s.outstanding;
    return { streams: this.streams.size, outstanding };
  }

  /**
   * Stops accepting and resolves once every call is answered (or at `deadline`): the listener
   * closes, every connection gets GOAWAY and closes once its calls finish; streams and health
   * watches end.
   */
  async drain(deadline: Promise<void>): Promise<void> {
    this.draining = true;
    for (const d of this.detach.splice(0)) d();
    this.health.drain();
    for (const s of this.streams) s.drain();
    const listenerClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const sessionsClosed = [...this.sessions].map((session) => new Promise<void>((resolve) => {
      if (session.closed || session.destroyed) resolve();
      else {
        session.once('close', () => resolve());
        session.close();
      }
    }));
    await Promise.race([Promise.all([listenerClosed, ...sessionsClosed]), deadline]);
  }

  /**
   * The drain's deadline passed: every call still open ends UNAVAILABLE saying so (a stream first
   * answers its outstanding requests with the same message). Resolves once every connection has
   * closed, its statuses written.
   */
  async cutOff(drainSeconds: number): Promise<void> {
    const err = drainDeadlineError(drainSeconds);
    for (const s of [...this.streams]) s.cutOff(err);
    for (const call of [...this.calls]) call.fail(err);
    // Each connection had GOAWAY (drain), so `closed` is already set: it is destroyed, and says
    // 'close', once its last stream has ended, the statuses above sent.
    await Promise.all([...this.sessions].map((session) => new Promise<void>((resolve) => {
      if (session.destroyed) resolve();
      else session.once('close', () => resolve());
    })));
  }

  /** Ends whatever is still open (calls past the drain deadline). */
  async close(): Promise<void> {
    this.draining = true;
    for (const d of this.detach.splice(0)) d();
    for (const session of this.sessions) session.destroy(undefined, constants.NGHTTP2_CANCEL);
    this.sessions.clear();
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
