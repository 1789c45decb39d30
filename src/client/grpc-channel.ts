// gRPC over node:http2 with nothing else: length-prefixed messages (a flag byte and a 4-byte
// big-endian length before each), grpc-status from the trailers, a deadline as grpc-timeout. The
// caller brings the message bytes, so this costs a fraction of @grpc/grpc-js's client per call;
// umbra/client's gRPC client and `umbra perf --protocol grpc` are built on it. Node only.
import { frameMessage } from '../protocol/proto/grpc-frame.js';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';

/** A finished call: `status` 0 (OK) with the answer's message, or the error's status and details. */
export interface GrpcReply {
  status: number;
  details: string;
  message: Buffer | undefined;
  /** Response headers and trailers (lower-case), for metadata such as grpc-status-details-bin. */
  trailers: IncomingHttpHeaders;
}

export { frameMessage };

/** gRPC's status for a call the transport failed under (connection refused, reset, closed). */
export const GRPC_UNAVAILABLE = 14;
export const GRPC_DEADLINE_EXCEEDED = 4;

/** Splits a stream of bytes into gRPC messages, across chunk boundaries. */
export class MessageReader {
  private pending: Buffer | undefined;

  /** Calls `onMessage` for each whole message in what has arrived so far. */
  push(chunk: Buffer, onMessage: (message: Buffer) => void): void {
    let data = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    while (data.length >= 5) {
      const length = data.readUInt32BE(1);
      if (data.length < 5 + length) break;
      onMessage(data.subarray(5, 5 + length));
      data = data.subarray(5 + length);
    }
    if (data.length > 0) this.pending = data;
  }
}

function statusOf(headers: IncomingHttpHeaders): number | undefined {
  const value = headers['grpc-status'];
  return value === undefined ? undefined : Number(value);
}

function detailsOf(headers: IncomingHttpHeaders): string {
  const value = headers['grpc-message'];
  if (typeof value !== 'string') return '';
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** `http://host:port`, `host:port` or `[::1]:port` as the authority http2.connect wants. */
export function authorityOf(address: string): string {
  return /^[a-z]+:\/\//i.test(address) ? address : `http://${address}`;
}

export interface CallOptions {
  /** Extra metadata (lower-case names), e.g. {authorization: 'Bearer ...'}. */
  metadata?: Record<string, string>;
  /** The call fails with DEADLINE_EXCEEDED after this long; the server stops its work then too. */
  deadlineMs?: number;
}

const UNARY = Symbol('unary call');

interface UnaryState {
  done: (reply: GrpcReply) => void;
  headers: IncomingHttpHeaders | undefined;
  trailers: IncomingHttpHeaders | undefined;
  first: Buffer | undefined;
  rest: Buffer[] | undefined;
}

type UnaryStream = ClientHttp2Stream & { [UNARY]: UnaryState };

function ignore(): void {}

function onUnaryResponse(this: UnaryStream, headers: IncomingHttpHeaders): void {
  this[UNARY].headers = headers;
}

function onUnaryData(this: UnaryStream, chunk: Buffer): void {
  const state = this[UNARY];
  if (state.first === undefined) state.first = chunk;
  else (state.rest ??= []).push(chunk);
}

function onUnaryTrailers(this: UnaryStream, trailers: IncomingHttpHeaders): void {
  this[UNARY].trailers = trailers;
}

/** The status is in the trailers, or in the headers of a trailers-only answer. */
function onUnaryClose(this: UnaryStream): void {
  const state = this[UNARY];
  const headers = state.headers ?? {};
  const trailers = state.trailers ?? headers;
  const status = statusOf(trailers) ?? statusOf(headers);
  const all = state.trailers ? { ...headers, ...state.trailers } : headers;
  if (status === undefined) {
    state.done({ status: this.rstCode === 8 ? 1 : GRPC_UNAVAILABLE, details: `the call ended without a status (stream reset ${this.rstCode ?? 'none'})`, message: undefined, trailers: all });
    return;
  }
  let message: Buffer | undefined;
  if (status === 0) {
    const body = state.rest ? Buffer.concat([state.first!, ...state.rest]) : state.first;
    if (body !== undefined && body.length >= 5) message = body.subarray(5, 5 + body.readUInt32BE(1));
  }
  state.done({ status, details: detailsOf(trailers), message, trailers: all });
}

export class GrpcChannel {
  private session: ClientHttp2Session | undefined;
  private connecting: Promise<ClientHttp2Session> | undefined;
  private readonly headerCache = new Map<string, OutgoingHttpHeaders>();

  constructor(readonly address: string, private readonly metadata: Record<string, string> = {}) {}

  /** Opens the connection (calls open it themselves; this is for callers who want it up front). */
  async connect(): Promise<ClientHttp2Session> {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    this.connecting ??= (async () => {
      const http2 = await import('node:http2');
      // Windows sized for tensors, as the server's: HTTP/2's 64 KiB defaults would make a large
      // answer wait for a WINDOW_UPDATE after every 64 KiB.
      const session = http2.connect(authorityOf(this.address), { settings: { initialWindowSize: 8 << 20, maxFrameSize: 1 << 20 } });
      await new Promise<void>((resolve, reject) => {
        session.once('connect', () => resolve());
        session.once('error', reject);
      });
      session.setLocalWindowSize(32 << 20);
      session.on('error', () => undefined);
      session.once('close', () => {
        if (this.session === session) this.session = undefined;
      });
      this.session = session;
      return session;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** The connected session, when there is one (for callers that want no promise per call). */
  get ready(): ClientHttp2Session | undefined {
    const s = this.session;
    return s && !s.closed && !s.destroyed ? s : undefined;
  }

  headers(path: string, options: CallOptions = {}): OutgoingHttpHeaders {
    if (options.metadata === undefined && options.deadlineMs === undefined) {
      let cached = this.headerCache.get(path);
      if (!cached) {
        cached = { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...this.metadata };
        this.headerCache.set(path, cached);
      }
      return cached;
    }
    const headers: OutgoingHttpHeaders = { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...this.metadata, ...options.metadata };
    if (options.deadlineMs !== undefined) headers['grpc-timeout'] = `${Math.max(1, Math.ceil(options.deadlineMs))}m`;
    return headers;
  }

  /**
   * One unary call on a connected session, with the framed request; `done` gets the status and the
   * answer. No promise and no closure per call (the load generator makes tens of thousands a
   * second): the call's state is one object its stream's listeners share.
   */
  static call(session: ClientHttp2Session, headers: OutgoingHttpHeaders, frame: Buffer, done: (reply: GrpcReply) => void): ClientHttp2Stream {
    const stream = session.request(headers) as UnaryStream;
    stream[UNARY] = { done, headers: undefined, trailers: undefined, first: undefined, rest: undefined };
    stream.on('response', onUnaryResponse);
    stream.on('data', onUnaryData);
    stream.on('trailers', onUnaryTrailers);
    stream.on('close', onUnaryClose);
    stream.on('error', ignore);
    stream.end(frame);
    return stream;
  }

  /** A unary call: the request message in, the reply out (errors are replies with a status). */
  async unary(path: string, message: Uint8Array, options: CallOptions = {}): Promise<GrpcReply> {
    let session: ClientHttp2Session;
    try {
      session = await this.connect();
    } catch (err) {
      return { status: GRPC_UNAVAILABLE, details: `cannot connect to ${this.address}: ${(err as Error).message}`, message: undefined, trailers: {} };
    }
    return new Promise((resolve) => {
      GrpcChannel.call(session, this.headers(path, options), frameMessage(message), resolve);
    });
  }

  /** A bidirectional stream: `onMessage` for each answer, `onClose` once with the final status. */
  async stream(path: string, onMessage: (message: Buffer) => void, onClose: (reply: GrpcReply) => void, options: CallOptions = {}): Promise<{ write(message: Uint8Array): boolean; end(): void; cancel(): void; stream: ClientHttp2Stream }> {
    const session = await this.connect();
    const stream = session.request(this.headers(path, options));
    const reader = new MessageReader();
    let responseHeaders: IncomingHttpHeaders = {};
    stream.on('response', (h) => {
      responseHeaders = h;
    });
    stream.on('data', (chunk: Buffer) => reader.push(chunk, onMessage));
    stream.on('trailers', (trailers) => {
      responseHeaders = { ...responseHeaders, ...trailers };
    });
    stream.on('error', () => undefined);
    stream.on('close', () => {
      const status = statusOf(responseHeaders);
      onClose(status === undefined
        ? { status: stream.rstCode === 8 ? 1 : GRPC_UNAVAILABLE, details: `the stream ended without a status (stream reset ${stream.rstCode ?? 'none'})`, message: undefined, trailers: responseHeaders }
        : { status, details: detailsOf(responseHeaders), message: undefined, trailers: responseHeaders });
    });
    return {
      write: (message) => stream.write(frameMessage(message)),
      end: () => stream.end(),
      cancel: () => stream.close(8),
      stream,
    };
  }

  /** Closes the connection once its calls are done. */
  close(): void {
    this.session?.close();
    this.session = undefined;
  }

  /** Closes the connection now, whatever is still open on it. */
  destroy(): void {
    this.session?.destroy();
    this.session = undefined;
  }
}
