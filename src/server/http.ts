// uWebSockets.js front end: reads requests into the transport-free Api and writes its replies.
// uWS rules: copy everything out of `req` synchronously, register onAborted before any await,
// cork deferred writes, copy onData chunks, respect backpressure on large answers.
import { STATUS_CODES } from 'node:http';
import * as uws from 'uWebSockets.js';
import { UmbraError } from '../errors.js';
import { Cancellation } from '../scheduler/cancellation.js';
import { errorReply, type ApiReply, type ApiRequest } from '../api/api.js';
import { BufferPool, MIN_RECYCLED_BYTES } from '../buffer-pool.js';
import { markOwned } from '../owned-buffers.js';
import { addressMod64 } from '../native/kernels.js';
import { threadArrivals } from '../scheduler/arrivals.js';
import type { StreamHub } from './ws.js';
import { asksToClose, checkFraming, HeaderCollector } from './framing.js';
import { bodyBytes, decodeBody, encodeBody, MIN_COMPRESSED_BYTES, requestCoding, responseCoding, type Coding } from './content-coding.js';

/** What answers requests: the core thread's Api, or an I/O thread's (src/server/io). */
export interface ApiHandler {
  handle(req: ApiRequest): Promise<ApiReply>;
  /** An answer that needs no body, given before it is read (a refusal under overload); undefined reads it. */
  earlyReply?(method: string, path: string, headers: Record<string, string>): ApiReply | undefined;
}

export interface HttpOptions {
  /** Largest accepted request body in bytes (413 past it); a compressed body's, once inflated. */
  maxBodyBytes: number;
  /**
   * Answers of MIN_COMPRESSED_BYTES or more go out compressed (gzip or deflate) to clients whose
   * Accept-Encoding asks. Off by default: most HTTP clients ask whether or not they need it, and
   * on model answers it costs more CPU than the request path (src/server/content-coding.ts).
   */
  responseCompression?: boolean;
}

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found',
  405: '405 Method Not Allowed', 409: '409 Conflict', 413: '413 Payload Too Large',
  415: '415 Unsupported Media Type', 429: '429 Too Many Requests', 500: '500 Internal Server Error',
  501: '501 Not Implemented', 503: '503 Service Unavailable', 504: '504 Gateway Timeout',
};

/** The status line's code and reason: uWS writes a bare code as "HTTP/1.1 403" with no space after it, which RFC 9112 requires. */
function statusText(status: number): string {
  return STATUS_TEXT[status] ?? `${status} ${STATUS_CODES[status] ?? 'Unknown'}`;
}

/**
 * How far back `InFlight.recentPeak` looks: long enough to span many round trips of a client
 * that sends again as soon as it is answered, short enough that clients who have left stop
 * counting soon.
 */
const ACTIVE_WINDOW_MS = 100;

/** Counts HTTP requests between arrival and the end of their answer, for drain. */
export class InFlight {
  private count = 0;
  private waiters: (() => void)[] = [];
  /** Requests read since the start. */
  entered = 0;
  /** Requests whose body is still arriving (they have not reached a batcher yet). */
  reading = 0;
  // The most requests in progress at once lately: over the current window and the one before it.
  private windowAt = 0;
  private windowPeak = 0;
  private lastPeak = 0;

  get size(): number {
    return this.count;
  }

  enter(): void {
    this.count += 1;
    this.entered += 1;
    this.observe(this.count);
  }

  private observe(size: number): void {
    const now = performance.now();
    if (now - this.windowAt >= ACTIVE_WINDOW_MS) {
      this.lastPeak = now - this.windowAt >= 2 * ACTIVE_WINDOW_MS ? 0 : this.windowPeak;
      this.windowPeak = 0;
      this.windowAt = now;
    }
    if (size > this.windowPeak) this.windowPeak = size;
  }

  /** The most requests in progress at once in the last 100-200 ms: the clients taking part lately. */
  get recentPeak(): number {
    return Math.max(this.windowPeak, this.lastPeak);
  }

  leave(): void {
    this.count -= 1;
    if (this.count === 0) for (const w of this.waiters.splice(0)) w();
  }

  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }

  // How to answer each request not yet answered, should the drain's deadline pass first.
  private readonly unanswered = new Set<(reply: ApiReply) => void>();

  /** Registers how to answer a request at once; returns the function that takes it off once it is answered. */
  answerable(answerNow: (reply: ApiReply) => void): () => void {
    this.unanswered.add(answerNow);
    return () => this.unanswered.delete(answerNow);
  }

  /** The drain's deadline passed: every request not yet answered gets `reply` now (its own answer, should it come, is dropped). */
  cutOff(reply: ApiReply): void {
    for (const answerNow of [...this.unanswered]) answerNow(reply);
    this.unanswered.clear();
  }
}

/** Resolves after the event loop has gone round twice: whatever its sockets already hold has been read. */
async function loopTurns(): Promise<void> {
  // The first resolves in this iteration's check phase; the second after the next poll phase.
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Closes a listener without dropping the connections the kernel has already accepted for it.
 * A client whose handshake completed has sent its request, but a connection still in the listen
 * queue (a thread busy running a batch has not taken it yet) is reset when its listener closes:
 * so the loop first goes round, and uWS accepts everything queued, before the listener closes.
 * Found by a drain under load with a model running on the reading threads.
 */
export async function closeListener(socket: uws.us_listen_socket): Promise<void> {
  await loopTurns();
  uws.us_listen_socket_close(socket);
}

/**
 * Resolves once no request is in progress, no stream is open, and the loop has gone round with no
 * new request read: a connection accepted as the listener closed has its request read and answered
 * before the drain ends and closes it (closing a socket that holds unread data resets it).
 */
export async function settled(inFlight: InFlight, streams: StreamHub): Promise<void> {
  for (;;) {
    await Promise.all([inFlight.idle(), streams.drain()]);
    const seen = inFlight.entered;
    await loopTurns();
    if (inFlight.size === 0 && inFlight.entered === seen) return;
  }
}

/**
 * Registers the app's clients with the thread's arrivals (scheduler/arrivals.ts), so an inline
 * model's waiting batch can tell when no client will add to it; returns the function that takes
 * them off. A request may still come while a body is arriving, at any moment on a WebSocket
 * connection, and from a connection with no request in progress, unless as many requests are in
 * progress as there have been at most lately: a connection that idles through that (a metrics
 * scraper's, a pool's spare) is not taking part, where a client that sends again as soon as it
 * is answered reaches that count on every round trip.
 */
export function watchArrivals(app: uws.TemplatedApp, inFlight: InFlight, streams: StreamHub): () => void {
  // uWS reports each socket's open (+1) and close (-1) here, and nothing when a socket becomes a
  // WebSocket or when that WebSocket closes: upgraded sockets are taken off by the hub's count.
  let sockets = 0;
  app.filter((_res, change) => {
    sockets += change;
  });
  return threadArrivals.add({
    mayArrive: () => {
      if (streams.size > 0 || inFlight.reading > 0) return true;
      const busy = inFlight.size;
      return busy < sockets - streams.upgraded && busy < inFlight.recentPeak;
    },
  });
}

/** Streamed answers (server-sent events) still open: a drain ends them, since they never end on their own. */
export class OpenStreams {
  private readonly stops = new Set<() => void>();

  add(stop: () => void): () => void {
    this.stops.add(stop);
    return () => this.stops.delete(stop);
  }

  get size(): number {
    return this.stops.size;
  }

  endAll(): void {
    for (const stop of [...this.stops]) stop();
  }
}

/**
 * Memory this thread lends for large reply bodies (a wide model's binary answers), taken back once
 * uWS has the bytes: a megabyte allocated afresh per answer kept the serving thread in full
 * collections (src/buffer-pool.ts).
 */
export class ReplyBuffers {
  private readonly pool: BufferPool;
  private readonly lent = new Set<ArrayBuffer>();

  constructor(maxBytes = 32 * 1024 * 1024) {
    this.pool = new BufferPool({ maxBytes });
  }

  /** `bytes` of memory for a reply body; small ones are plain allocations, never taken back. */
  readonly lend = (bytes: number): Buffer => {
    if (bytes < MIN_RECYCLED_BYTES) return Buffer.allocUnsafe(bytes);
    const buffer = this.pool.take(bytes);
    this.lent.add(buffer);
    return Buffer.from(buffer, 0, bytes);
  };

  /** Takes back a reply body's memory if it was lent here; anything else is left to the collector. */
  giveBack(body: Uint8Array | string | undefined): void {
    if (body === undefined || typeof body === 'string') return;
    const buffer = body.buffer as ArrayBuffer;
    if (this.lent.delete(buffer)) this.pool.recycle([buffer]);
  }

  /** Buffers out on replies not yet written (for tests). */
  get outstanding(): number {
    return this.lent.size;
  }

  /** Bytes kept for later replies (for tests). */
  get kept(): number {
    return this.pool.bytes;
  }
}

export function attachHttp(app: uws.TemplatedApp, api: ApiHandler, options: HttpOptions, inFlight: InFlight, closing: () => boolean, streams = new OpenStreams(), replies = new ReplyBuffers()): void {
  app.any('/*', (res, req) => {
    const method = req.getCaseSensitiveMethod().toUpperCase();
    const path = req.getUrl();
    const query = req.getQuery() ?? '';
    const read = new HeaderCollector();
    req.forEach(read.add);
    const headers = read.headers;
    // uWS closes the connection after the answer when the request's first Connection value is 5
    // bytes long (its test for `close`; any 5 bytes pass), and then writes no `Connection: close`.
    const libraryCloses = headers.connection !== undefined && req.getHeader('connection').length === 5;
    inFlight.enter();
    // `sending`: a reply body uWS has not taken whole yet (it goes out as the socket drains).
    const state: { aborted: boolean; done: boolean; reading: boolean; sending?: Uint8Array | string } = { aborted: false, done: false, reading: false };
    const bodyEnded = () => {
      if (!state.reading) return;
      state.reading = false;
      inFlight.reading -= 1;
    };
    let remoteAddress: string | undefined;
    const cancellation = new Cancellation();
    const sent = () => {
      replies.giveBack(state.sending);
      state.sending = undefined;
    };
    // Answered at once with a 503 (and the connection closed) if the drain's deadline passes first.
    const answered = inFlight.answerable((reply) => {
      bodyEnded();
      finish(reply, true);
      // Its work, if still queued, leaves the queue.
      cancellation.abort();
    });
    res.onAborted(() => {
      state.aborted = true;
      answered();
      bodyEnded();
      sent();
      cancellation.abort();
      if (!state.done) {
        state.done = true;
        inFlight.leave();
      }
    });

    // HEAD is GET without the body (RFC 9110 9.3.2): uWS would write one, which a client takes
    // for the start of the next answer.
    const head = method === 'HEAD';
    const compressTo = options.responseCompression && !head ? responseCoding(headers['accept-encoding']) : undefined;
    // A client that asked to close (an HTTP/1.0 client among them: the HTTP guard hands its request
    // on with `Connection: close`) gets an answer that says so, with no Keep-Alive hint, delimited
    // by its length (never streamed, which would be chunked), and the connection closes after it.
    const clientCloses = libraryCloses || asksToClose(headers);
    const write = (reply: ApiReply, close: boolean) => {
      if (state.aborted) {
        // Gone while its answer was being compressed (onAborted left this to be done here).
        replies.giveBack(reply.body);
        inFlight.leave();
        return;
      }
      state.sending = reply.body;
      // An answer that closes the connection may carry its body even to HEAD: nothing follows it.
      res.cork(() => writeReply(res, reply, close || clientCloses || closing(), head && !close, libraryCloses, sent));
      inFlight.leave();
    };
    const finish = (reply: ApiReply, close = false) => {
      if (state.aborted || state.done) {
        replies.giveBack(reply.body);
        return;
      }
      state.done = true;
      answered();
      if (reply.stream && !closing() && !close && !clientCloses && !head) {
        state.sending = reply.body;
        // Long-lived: it leaves the drain's count now and is ended by the drain instead.
        inFlight.leave();
        streamReply(res, reply, reply.stream, cancellation, streams);
        sent();
        return;
      }
      // Caches keep one answer per Accept-Encoding.
      if (options.responseCompression) reply = { ...reply, headers: { ...reply.headers, vary: 'Accept-Encoding' } };
      if (compressTo && !reply.headers['content-encoding'] && bodyBytes(reply.body) >= MIN_COMPRESSED_BYTES) {
        compressed(reply, compressTo).then((encoded) => {
          replies.giveBack(reply.body);
          write(encoded, close);
        }, () => write(reply, close));
        return;
      }
      write(reply, close);
    };
    const dispatch = (body: Uint8Array) => {
      // Stamped once the body is in: a client's slow upload is not the server's queue.
      const receivedAt = performance.timeOrigin + performance.now();
      const request: ApiRequest = {
        method: head ? 'GET' : method, path, query, headers, body, signal: cancellation, receivedAt, replyBuffer: replies.lend,
        // Read from the socket only when a route asks (the admin gate, before its answer): it is a
        // getpeername system call, about 4 µs that every infer request would pay for nothing. Once
        // the client has gone it is unknown, which the gate refuses.
        get remoteAddress(): string | undefined {
          remoteAddress ??= state.aborted || state.done ? '' : Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
          return remoteAddress === '' ? undefined : remoteAddress;
        },
      };
      api.handle(request).then((reply) => finish(reply), (err: unknown) => finish(errorReply(err)));
    };

    // A request whose end is in doubt poisons what follows it on the connection: answer and close.
    // The answer goes out on the next turn, not from this handler: uWS parses what follows in the
    // same read (the smuggled request) as soon as this handler returns with its answer written,
    // while a request that arrives behind an unanswered one makes it close the connection.
    try {
      checkFraming(read);
    } catch (err) {
      const refusal = errorReply(err);
      setImmediate(() => finish(refusal, true));
      return;
    }
    const declared = headers['content-length'];
    if (declared !== undefined && Number(declared) > options.maxBodyBytes) {
      // Not closed: a client still sending would get a reset instead of this answer. uWS reads the
      // rest of the body and drops it.
      finish(errorReply(tooLarge(options.maxBodyBytes)));
      return;
    }
    if (method === 'GET' || head || (declared === undefined && headers['transfer-encoding'] === undefined)) {
      dispatch(new Uint8Array(0));
      return;
    }
    // Refused before the body is read or parsed: under overload most requests end here, and a
    // refusal that read, parsed and handed over its body first took the model's cores. Not
    // closed, as for a body over the limit: uWS reads the rest and drops it.
    const early = api.earlyReply?.(method, path, headers);
    if (early) {
      finish(early);
      return;
    }
    let coding: Coding | undefined;
    try {
      coding = requestCoding(headers['content-encoding']);
    } catch (err) {
      // Not closed, as for a body over the limit: uWS reads the rest and drops it.
      finish(errorReply(err));
      return;
    }
    inFlight.reading += 1;
    state.reading = true;
    const arrived = (body: Uint8Array) => {
      bodyEnded();
      if (!coding) {
        dispatch(body);
        return;
      }
      decodeBody(body, coding, options.maxBodyBytes).then((decoded) => {
        if (state.aborted) return;
        // What the routes see is the body as sent before it was compressed.
        delete headers['content-encoding'];
        dispatch(decoded);
      }, (err: unknown) => finish(errorReply(err)));
    };
    readBody(res, options.maxBodyBytes, arrived, () => {
      bodyEnded();
      finish(errorReply(tooLarge(options.maxBodyBytes)));
    }, Number(declared), Number(headers['inference-header-content-length']));
  });
}

/** The reply with its body in `coding`. */
async function compressed(reply: ApiReply, coding: Coding): Promise<ApiReply> {
  const body = await encodeBody(reply.body, coding);
  return { ...reply, headers: { ...reply.headers, 'content-encoding': coding }, body };
}

/** Unsent bytes past which a streamed answer's client counts as gone (it reconnects and starts afresh). */
const STREAM_BACKLOG_BYTES = 1024 * 1024;

/** Head and first body now, then every chunk the stream writes, until it ends, the client leaves or the drain ends it. */
function streamReply(res: uws.HttpResponse, reply: ApiReply, stream: NonNullable<ApiReply['stream']>, gone: Cancellation, streams: OpenStreams): void {
  let open = true;
  let backlog = 0;
  let stop = (): void => undefined;
  let forget = (): void => undefined;
  const finish = () => {
    if (!open) return;
    open = false;
    forget();
    stop();
    if (!gone.aborted) res.cork(() => res.end());
  };
  const write = (chunk: string | Uint8Array) => {
    if (!open || gone.aborted) return;
    let ok = true;
    res.cork(() => {
      ok = res.write(chunk);
    });
    // A client that stops reading is not buffered for without bound.
    if (!ok) backlog += typeof chunk === 'string' ? chunk.length : chunk.byteLength;
    if (backlog > STREAM_BACKLOG_BYTES) finish();
  };
  res.cork(() => {
    if (reply.status !== 200) res.writeStatus(statusText(reply.status));
    for (const k in reply.headers) res.writeHeader(k, reply.headers[k]!);
    res.writeHeader('keep-alive', KEEP_ALIVE);
  });
  res.onWritable(() => {
    backlog = 0;
    return true;
  });
  if ((typeof reply.body === 'string' ? reply.body.length : reply.body.byteLength) > 0) write(reply.body);
  forget = streams.add(finish);
  stop = stream.open((chunk) => write(chunk), finish);
  if (!open) stop();
  gone.addEventListener('abort', () => {
    if (!open) return;
    open = false;
    forget();
    stop();
  });
}

function tooLarge(limit: number): UmbraError {
  return new UmbraError('PAYLOAD_TOO_LARGE', `request body is over the limit of ${limit} bytes (set --max-body-bytes to raise it)`);
}

/**
 * Reads the body into one buffer, copying each chunk (uWS reuses its memory after the callback).
 * With a binary-extension body of known length, the buffer is placed so that the binary tensors
 * (after `headerLength` bytes of JSON) start 8-byte aligned, the first on a 64-byte boundary:
 * typed-array views of them are then legal, and the parser takes them as they are instead of
 * copying each tensor to align it.
 */
function readBody(res: uws.HttpResponse, limit: number, done: (body: Uint8Array) => void, over: () => void, declared: number, headerLength: number): void {
  const preallocated = Number.isSafeInteger(declared) && declared > 0 ? alignedBuffer(declared, headerLength) : undefined;
  // The request's own memory: a large one may go to the core's thread with its event by transfer.
  if (preallocated) markOwned(preallocated.buffer, 'answered');
  let chunks: Buffer[] = [];
  let received = 0;
  let failed = false;
  res.onData((chunk, isLast) => {
    if (failed) return;
    const n = chunk.byteLength;
    if (received + n > limit || (preallocated && received + n > preallocated.length)) {
      failed = true;
      over();
      return;
    }
    if (preallocated) preallocated.set(new Uint8Array(chunk), received);
    else chunks.push(Buffer.from(chunk.slice(0)));
    received += n;
    if (isLast) {
      const body = preallocated ? preallocated.subarray(0, received) : Buffer.concat(chunks, received);
      chunks = [];
      done(body);
    }
  });
}

/**
 * `length` bytes whose byte `at` (when inside them) lies on a 64-byte boundary in memory, where
 * the addon can say where that is (so the first binary tensor reaches onnxruntime without the
 * copy onCacheLine would make), and on an 8-byte boundary of its ArrayBuffer in any case.
 */
export function alignedBuffer(length: number, at: number): Buffer {
  if (!(Number.isSafeInteger(at) && at > 0 && at < length)) return Buffer.allocUnsafe(length);
  const room = Buffer.allocUnsafe(length + 63);
  const address = addressMod64(room);
  // The buffer's own start in memory (mod 64): the offset rule holds wherever that is a multiple of 8.
  const base = address === undefined ? undefined : (address - (room.byteOffset % 64) + 64) % 64;
  const start = base === undefined || base % 8 !== 0 ? (8 - ((room.byteOffset + at) % 8)) % 8 : (64 - ((address! + at) % 64)) % 64;
  return room.subarray(start, start + length);
}

/**
 * Seconds an idle keep-alive connection is surely kept, told to clients in `Keep-Alive: timeout=`.
 * uWebSockets.js closes a connection that has sent nothing for 10 s since its last answer, on a
 * sweep every 4 s: between 8 and 12 s after the answer. A pooled client that reuses a connection
 * as that sweep closes it has its request reset, and one sweep closes every connection that idled
 * into it at once. Clients that read the hint (a node:http Agent with a `timeout`, undici and
 * so fetch, `umbra perf`) retire idle connections a second or more before it, so they never send
 * on one the server is closing. An Agent with no `timeout` ignores the hint.
 */
export const KEEP_ALIVE_TIMEOUT_S = 8;
const KEEP_ALIVE = `timeout=${KEEP_ALIVE_TIMEOUT_S}`;

/**
 * Writes the reply; `sent` runs once uWS needs nothing more of its body (now, or as the socket
 * drains). `libraryCloses`: uWS took the request for `Connection: close` and writes no
 * `Connection: close` of its own.
 */
function writeReply(res: uws.HttpResponse, reply: ApiReply, closeConnection: boolean, head: boolean, libraryCloses: boolean, sent: () => void): void {
  // uWS answers 200 OK unless told otherwise.
  if (reply.status !== 200) res.writeStatus(statusText(reply.status));
  const headers = reply.headers;
  for (const k in headers) res.writeHeader(k, headers[k]!);
  if (!closeConnection) res.writeHeader('keep-alive', KEEP_ALIVE);
  // While draining, tell keep-alive clients to go elsewhere after this answer (end() below says so
  // itself when it closes, unless uWS took the request for `Connection: close`).
  if (closeConnection && (head || libraryCloses)) res.writeHeader('connection', 'close');
  if (head) {
    // This uWS build takes no arguments here (a length or close flag leaves the answer unsent).
    res.endWithoutBody();
    sent();
    return;
  }
  if (closeConnection || typeof reply.body === 'string') {
    // end() copies whatever the socket does not take at once into uWS's own buffer.
    res.end(reply.body as uws.RecognizedString, closeConnection);
    sent();
    return;
  }
  sendWithBackpressure(res, reply.body, sent);
}

/**
 * Large answers go out as the socket drains instead of piling up in uWS's buffer. tryEnd keeps
 * no copy of what the socket refused, so the body is needed until the last of it is taken (or
 * the client goes, which the request's onAborted reports).
 */
function sendWithBackpressure(res: uws.HttpResponse, body: Uint8Array, sent: () => void): void {
  const total = body.byteLength;
  const start = res.getWriteOffset();
  const [ok, done] = res.tryEnd(body, total);
  if (ok || done) {
    sent();
    return;
  }
  res.onWritable((offset) => {
    const [ok, done] = res.tryEnd(body.subarray(offset - start), total);
    if (ok || done) sent();
    return ok;
  });
}
