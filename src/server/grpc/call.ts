// One gRPC call on one HTTP/2 stream (the wire format of grpc/doc/PROTOCOL-HTTP2.md): requests
// are length-prefixed messages (a compressed flag and a 4-byte big-endian length before each),
// answers the same, and the status travels in trailers (grpc-status, grpc-message
// percent-encoded), or alone in the headers when nothing was sent first. The call also owns what
// ends it early: the client's deadline (grpc-timeout), its reset or its connection going away
// (the cancellation the core's queue listens to), and a message over the size limit.
import { constants, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { gunzip, inflate } from 'node:zlib';
import { FRAME_PREFIX_BYTES, frameMessage } from '../../protocol/proto/grpc-frame.js';
import { UmbraError } from '../../errors.js';
import { Cancellation } from '../../scheduler/cancellation.js';
import { Status, StatusError, toStatus, type StatusMetadata } from './status.js';

const RESPONSE_HEADERS: OutgoingHttpHeaders = { ':status': 200, 'content-type': 'application/grpc' };
const OK_TRAILERS: OutgoingHttpHeaders = { 'grpc-status': '0' };
const RESPOND_OPTIONS = { waitForTrailers: true };
const END_OPTIONS = { endStream: true };
/** setTimeout's largest delay; a longer deadline is as good as none. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const TIMEOUT_UNITS_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** grpc-timeout ("100m", "5S": at most 8 digits and a unit) in milliseconds; undefined when malformed. */
export function parseTimeout(value: string): number | undefined {
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * TIMEOUT_UNITS_MS[match[2]!]!;
}

/** grpc-message's encoding: UTF-8, with bytes outside printable ASCII and '%' as %XX. */
export function percentEncode(text: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(text)) return text;
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function statusHeaders(code: Status, details: string, metadata: StatusMetadata | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { 'grpc-status': String(code) };
  if (details !== '') out['grpc-message'] = percentEncode(details);
  if (metadata) for (const key in metadata) {
    const value = metadata[key]!;
    out[key] = typeof value === 'string' ? value : value.toString('base64');
  }
  return out;
}

export interface CallLimits {
  /** Largest request message; a longer length prefix ends the call RESOURCE_EXHAUSTED. */
  maxMessageBytes: number;
}

function ignore(): void {}

/** The call a stream serves, for listeners shared by every stream (no closures per call). */
const CALL = Symbol('gRPC call');
type CallStream = ServerHttp2Stream & { [CALL]: GrpcCall };

function onStreamData(this: CallStream, chunk: Buffer): void {
  this[CALL].push(chunk);
}

function onStreamEnd(this: CallStream): void {
  this[CALL].ended();
}

function onStreamClose(this: CallStream): void {
  this[CALL].closed();
}

function onWantTrailers(this: CallStream): void {
  this.sendTrailers(this[CALL].trailers);
}

export class GrpcCall {
  /** Aborted when the call ends before its answer: client reset, deadline, lost connection. */
  readonly cancellation = new Cancellation();
  /** The status went out (or the stream is gone): nothing more is written. */
  finished = false;
  private headersSent = false;
  /** What goes out once the last answer is written. */
  trailers: OutgoingHttpHeaders = OK_TRAILERS;
  /**
   * A message begun but not whole, in the chunks it came in: joined once, when the last of it
   * arrives (joining at every chunk recopied the message so far each time, quadratic in its size).
   */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** The bytes the pending message needs, length prefix included; 0 while the prefix is not whole. */
  private pendingNeed = 0;
  private messageHandler: ((message: Buffer) => void) | undefined;
  private endHandler: (() => void) | undefined;
  /** Set while a compressed message inflates: later messages and the end wait their turn. */
  private inflating: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** performance.now() when the client's deadline passes, and how early a reset still counts as it (see closed). */
  private deadlineAt: number | undefined;
  private deadlineSlackMs = 0;

  constructor(readonly stream: ServerHttp2Stream, readonly headers: IncomingHttpHeaders, private readonly limits: CallLimits) {
    (stream as CallStream)[CALL] = this;
    stream.on('error', ignore);
    stream.on('close', onStreamClose);
    const timeout = this.metadata('grpc-timeout');
    if (timeout !== undefined) {
      const ms = parseTimeout(timeout);
      if (ms === undefined) {
        this.fail(new StatusError(Status.INVALID_ARGUMENT, `expected grpc-timeout as up to 8 digits and a unit (H, M, S, m, u, n) but received ${JSON.stringify(timeout)}`));
        return;
      }
      if (ms <= MAX_TIMER_MS) {
        this.timer = setTimeout(() => this.deadlinePassed(), Math.ceil(ms));
        this.deadlineAt = performance.now() + ms;
        this.deadlineSlackMs = Math.min(50, Math.max(5, ms * 0.1));
      }
    }
  }

  /** A text metadata entry (the first, when sent more than once). */
  metadata(name: string): string | undefined {
    const value = this.headers[name];
    return typeof value === 'string' ? value : Array.isArray(value) ? value[0] : undefined;
  }

  /** The text metadata as the core's request headers: lower-case names, no pseudo-headers or -bin entries. */
  textMetadata(): Record<string, string> {
    const out: Record<string, string> = {};
    const headers = this.headers;
    for (const key in headers) {
      if (key.charCodeAt(0) === 58 || key.endsWith('-bin')) continue; // ':'
      const value = headers[key];
      if (typeof value === 'string') out[key] = value;
      else if (Array.isArray(value) && value.length > 0) out[key] = value.join(', ');
    }
    return out;
  }

  get remoteAddress(): string | undefined {
    return this.stream.session?.socket?.remoteAddress;
  }

  /** Reads the request messages: `onMessage` for each, then `onEnd` once the client half-closes. */
  read(onMessage: (message: Buffer) => void, onEnd: () => void): void {
    this.messageHandler = onMessage;
    this.endHandler = onEnd;
    this.stream.on('data', onStreamData);
    this.stream.on('end', onStreamEnd);
  }

  /** A unary request: exactly one message, then `onRequest` with it. */
  readOne(what: string, onRequest: (message: Buffer) => void): void {
    let request: Buffer | undefined;
    let count = 0;
    this.read((message) => {
      count++;
      request = message;
    }, () => {
      if (count === 1) onRequest(request!);
      else this.fail(new StatusError(Status.INVALID_ARGUMENT, `expected one ${what} message in the call but received ${count}`));
    });
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  /** Sends one answer message; false when the client is not keeping up (wait for 'drain'). */
  write(message: Uint8Array): boolean {
    if (this.finished) return true;
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(RESPONSE_HEADERS, RESPOND_OPTIONS);
      this.stream.once('wantTrailers', onWantTrailers);
    }
    return this.stream.write(frameMessage(message));
  }

  /** A unary answer: the message and status OK. */
  answer(message: Uint8Array): void {
    if (this.finished) return;
    this.write(message);
    this.finish(Status.OK, '');
  }

  /** Ends the call with a status (OK, or an error's). */
  finish(code: Status, details: string, metadata?: StatusMetadata): void {
    if (this.finished) return;
    this.finished = true;
    this.clearDeadline();
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    if (this.headersSent) {
      if (code !== Status.OK || details !== '' || metadata) this.trailers = statusHeaders(code, details, metadata);
      stream.end();
      // Whatever the client still sends is read and dropped; it ends its half on the status.
      if (!stream.readableEnded) stream.resume();
      return;
    }
    // Trailers-only: the status in the one HEADERS frame. Sent before the client finished
    // sending (an error mid-request), the stream is then reset with NO_ERROR, as HTTP/2 lets a
    // server end a request it has answered.
    stream.respond({ ...RESPONSE_HEADERS, ...statusHeaders(code, details, metadata) }, END_OPTIONS);
    if (!stream.readableEnded) stream.close(constants.NGHTTP2_NO_ERROR);
  }

  /** Ends the call with `err`'s status (anything but a StatusError or UmbraError is INTERNAL). */
  fail(err: unknown): void {
    const status = toStatus(err);
    this.finish(status.code, status.details, status.metadata);
    this.cancellation.abort();
  }

  on(event: 'drain', listener: () => void): void {
    this.stream.on(event, listener);
  }

  private deadlinePassed(): void {
    this.timer = undefined;
    if (this.finished) return;
    this.finish(Status.DEADLINE_EXCEEDED, 'deadline exceeded');
    // The client's timeout, as `parameters.timeout` is over HTTP: the request counts as timed out.
    this.cancellation.abort(deadlineError());
  }

  private clearDeadline(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * The stream closed: before the status went out, the client reset it or the connection went.
   * A client cancels at its own deadline, which it counted from before the server saw the call, so
   * its reset can come a little before the server's timer: one within the slack of the deadline
   * is the deadline passing (counted timeout, as the timer would), not the client going away.
   */
  closed(): void {
    if (this.finished) return;
    this.finished = true;
    this.clearDeadline();
    const atDeadline = this.deadlineAt !== undefined && performance.now() >= this.deadlineAt - this.deadlineSlackMs;
    this.cancellation.abort(atDeadline ? deadlineError() : undefined);
  }

  /** Splits what arrived into messages, across chunk boundaries. */
  push(chunk: Buffer): void {
    if (this.finished) return;
    let data = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingNeed > 0 && this.pendingBytes < this.pendingNeed) return;
      data = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
      this.pendingNeed = 0;
    }
    while (data.length >= FRAME_PREFIX_BYTES) {
      const flag = data[0]!;
      const length = data.readUInt32BE(1);
      if (flag > 1) {
        this.fail(new StatusError(Status.INVALID_ARGUMENT, `expected a message's compressed flag to be 0 or 1 but received ${flag}`));
        return;
      }
      if (length > this.limits.maxMessageBytes) {
        this.fail(new StatusError(Status.RESOURCE_EXHAUSTED, `received a message of ${length} bytes, larger than the server's limit of ${this.limits.maxMessageBytes} (--max-body-bytes)`));
        return;
      }
      if (data.length < FRAME_PREFIX_BYTES + length) break;
      this.deliver(flag, data.subarray(FRAME_PREFIX_BYTES, FRAME_PREFIX_BYTES + length));
      if (this.finished) return;
      data = data.subarray(FRAME_PREFIX_BYTES + length);
    }
    if (data.length > 0) {
      this.pending = [data];
      this.pendingBytes = data.length;
      // The loop stopped inside a message whose prefix it checked, or inside the prefix itself.
      this.pendingNeed = data.length >= FRAME_PREFIX_BYTES ? FRAME_PREFIX_BYTES + data.readUInt32BE(1) : 0;
    }
  }

  private deliver(flag: number, body: Buffer): void {
    if (flag === 0 && this.inflating === undefined) {
      this.messageHandler!(body);
      return;
    }
    const decoded = flag === 0 ? Promise.resolve(body) : this.decompress(body);
    const before = this.inflating ?? Promise.resolve();
    const turn = Promise.all([decoded, before]).then(([message]) => {
      if (!this.finished) this.messageHandler!(message);
    }, (err: unknown) => this.fail(err));
    this.inflating = turn;
    void turn.then(() => {
      if (this.inflating === turn) this.inflating = undefined;
    });
  }

  /** A compressed request message (gzip or deflate, as grpc-encoding names it). */
  private decompress(body: Buffer): Promise<Buffer> {
    const encoding = this.metadata('grpc-encoding') ?? 'identity';
    const codec = encoding === 'gzip' ? gunzip : encoding === 'deflate' ? inflate : undefined;
    if (!codec) {
      const err = encoding === 'identity'
        ? new StatusError(Status.INVALID_ARGUMENT, 'received a message flagged compressed but no grpc-encoding names how')
        : new StatusError(Status.UNIMPLEMENTED, `expected grpc-encoding gzip, deflate or identity but received ${JSON.stringify(encoding)}`);
      if (encoding !== 'identity') err.metadata = { 'grpc-accept-encoding': 'identity,deflate,gzip' };
      return Promise.reject(err);
    }
    const limit = this.limits.maxMessageBytes;
    return new Promise((resolve, reject) => {
      codec(body, { maxOutputLength: Math.max(1, limit) }, (err, out) => {
        if (!err) resolve(out);
        else if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') reject(new StatusError(Status.RESOURCE_EXHAUSTED, `a compressed message inflates past the server's limit of ${limit} bytes (--max-body-bytes)`));
        else reject(new StatusError(Status.INVALID_ARGUMENT, `the message does not decompress as ${encoding}: ${err.message}`));
      });
    });
  }

  /** The client half-closed: the request is whole (or was cut short). */
  ended(): void {
    if (this.finished) return;
    if (this.inflating) {
      void this.inflating.then(() => this.ended());
      return;
    }
    if (this.pendingBytes > 0) {
      this.fail(new StatusError(Status.INVALID_ARGUMENT, `the call ended inside a message (${this.pendingBytes} bytes of it arrived; the length prefix is 5 bytes, then the message)`));
      return;
    }
    this.endHandler!();
  }
}

function deadlineError(): UmbraError {
  return new UmbraError('TIMEOUT', 'the call\'s deadline (grpc-timeout) passed before its answer');
}
