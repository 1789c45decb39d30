// A lean HTTP/2 client connection for `umbra perf --protocol grpc`: unary gRPC calls written as
// frames straight onto a TCP socket, as the HTTP/1.1 generator (http-connection.ts) writes its
// requests. node:http2's client costs 70-100 µs of CPU per call on a two-core host (a
// ClientHttp2Stream object, its events and its duplex stream), more than the server it measures;
// here a call is one pre-encoded HEADERS frame and its DATA frames in one write, and an answer is
// judged by the grpc-status of its trailers.
//
// What it keeps of HTTP/2 (RFC 9113): the preface and SETTINGS exchange (acknowledged both ways),
// flow control in both directions (a request larger than the server's windows waits for its
// WINDOW_UPDATEs; the connection's receive window is topped up as answers arrive), the server's
// MAX_CONCURRENT_STREAMS and MAX_FRAME_SIZE, PING, RST_STREAM, GOAWAY, padded and continued
// header blocks. Response header blocks are decoded with hpack.js (the server may index into its
// dynamic table); request blocks use the static table only, so one block serves every call.
import { connect, type Socket } from 'node:net';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// hpack.js has no type declarations: the two calls this file makes.
interface HpackDecompressor {
  write(block: Buffer): void;
  execute(): void;
  read(): { name: string; value: string } | null;
}
const hpack = require('hpack.js') as { decompressor: { create(options: { table: { size: number } }): HpackDecompressor } };

/** null when the call succeeded (grpc-status 0); otherwise what went wrong, e.g. `grpc-14`. */
export type H2Done = (error: string | null) => void;

const enum Frame { Data = 0, Headers = 1, RstStream = 3, Settings = 4, PushPromise = 5, Ping = 6, GoAway = 7, WindowUpdate = 8, Continuation = 9 }
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const MAX_WINDOW = 2 ** 31 - 1;
const DEFAULT_WINDOW = 65_535;
/** The connection's receive window is topped up once this much of it has been used. */
const TOP_UP = 2 ** 30;

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInteger(value: number, prefixBits: number, firstByte: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByte | value];
  const out = [firstByte | max];
  value -= max;
  while (value >= 128) {
    out.push((value & 127) | 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

function hpackString(text: string): number[] {
  const bytes = Buffer.from(text, 'latin1');
  return [...hpackInteger(bytes.length, 7, 0), ...bytes];
}

/**
 * A gRPC call's request headers as one HPACK block that uses no dynamic table (indexed static
 * entries and literals without indexing), so the same bytes are valid on every stream.
 */
export function grpcHeaderBlock(path: string, authority: string, metadata: Record<string, string> = {}): Buffer {
  const out: number[] = [0x83, 0x86]; // :method POST, :scheme http (static 3 and 6)
  out.push(...hpackInteger(4, 4, 0), ...hpackString(path)); // :path (static name 4)
  out.push(...hpackInteger(1, 4, 0), ...hpackString(authority)); // :authority (static name 1)
  out.push(...hpackInteger(31, 4, 0), ...hpackString('application/grpc')); // content-type (static name 31)
  for (const [name, value] of [['te', 'trailers'], ...Object.entries(metadata)] as [string, string][]) {
    out.push(0, ...hpackString(name.toLowerCase()), ...hpackString(value));
  }
  return Buffer.from(out);
}

function frameHeader(target: Buffer, at: number, length: number, type: Frame, flags: number, stream: number): void {
  target[at] = length >>> 16;
  target[at + 1] = (length >>> 8) & 0xff;
  target[at + 2] = length & 0xff;
  target[at + 3] = type;
  target[at + 4] = flags;
  target.writeUInt32BE(stream, at + 5);
}

function frame(type: Frame, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(9 + payload.length);
  frameHeader(out, 0, payload.length, type, flags, stream);
  payload.copy(out, 9);
  return out;
}

function windowUpdate(stream: number, increment: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(increment, 0);
  return frame(Frame.WindowUpdate, 0, stream, payload);
}

interface Call {
  id: number;
  body: Buffer;
  /** How much of `body` has gone out. */
  sent: number;
  /** The server's window for this stream. */
  window: number;
  sentAt: number;
  done: H2Done;
  grpcStatus: string | undefined;
  httpStatus: string | undefined;
}

export class H2GrpcConnection {
  private readonly socket: Socket;
  private readonly decoder = hpack.decompressor.create({ table: { size: 4096 } });
  private readonly calls = new Map<number, Call>();
  /** Calls waiting for a stream slot (MAX_CONCURRENT_STREAMS) or for send window. */
  private readonly waiting: Call[] = [];
  private received: Buffer | undefined;
  private nextStream = 1;
  private sendWindow = DEFAULT_WINDOW;
  private initialStreamWindow = DEFAULT_WINDOW;
  private maxFrame = 16_384;
  private maxStreams = Infinity;
  private consumed = 0;
  /** A header block spread over HEADERS and CONTINUATION frames. */
  private block: { stream: number; endStream: boolean; parts: Buffer[] } | undefined;
  private dead: string | undefined;
  private settled = false;
  readonly opened: Promise<void>;

  constructor(host: string, port: number, private readonly headerBlock: Buffer) {
    this.socket = connect({ host, port, noDelay: true });
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('connect', () => {
        // SETTINGS: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 2^31-1; then open the connection's window.
        const settings = Buffer.alloc(12);
        settings.writeUInt16BE(0x2, 0);
        settings.writeUInt32BE(0, 2);
        settings.writeUInt16BE(0x4, 6);
        settings.writeUInt32BE(MAX_WINDOW, 8);
        this.socket.write(Buffer.concat([PREFACE, frame(Frame.Settings, 0, 0, settings), windowUpdate(0, MAX_WINDOW - DEFAULT_WINDOW)]));
      });
      this.onSettled = (error) => (error === undefined ? resolve() : reject(new Error(error)));
    });
    this.opened.catch(() => undefined);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.fail(err.code ?? err.message));
    this.socket.on('close', () => this.fail('connection closed'));
  }

  /** Settles `opened`: at the server's first SETTINGS, or with why the connection died first. */
  private onSettled: (error?: string) => void = () => undefined;

  get alive(): boolean {
    return this.dead === undefined;
  }

  /** Calls whose answer has not arrived. */
  get inFlight(): number {
    return this.calls.size + this.waiting.length;
  }

  /** One unary call: `body` is the gRPC-framed request message (flag byte, length, message). */
  send(body: Buffer, done: H2Done, now: number): void {
    if (this.dead !== undefined) {
      done(this.dead);
      return;
    }
    const call: Call = { id: 0, body, sent: 0, window: 0, sentAt: now, done, grpcStatus: undefined, httpStatus: undefined };
    if (this.waiting.length > 0 || this.calls.size >= this.maxStreams) this.waiting.push(call);
    else this.start(call);
  }

  /** Fails calls sent before `deadline` (performance.now() units) and resets their streams. */
  expire(deadline: number): void {
    for (const call of [...this.calls.values()]) {
      if (call.sentAt >= deadline) continue;
      this.calls.delete(call.id);
      const code = Buffer.alloc(4);
      code.writeUInt32BE(8, 0); // CANCEL
      this.socket.write(frame(Frame.RstStream, 0, call.id, code));
      call.done('timeout');
    }
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const call = this.waiting[i]!;
      if (call.sentAt >= deadline || call.id !== 0) continue;
      this.waiting.splice(i, 1);
      call.done('timeout');
    }
    this.pump();
  }

  close(): void {
    this.fail('connection closed');
    this.socket.destroy();
  }

  /** Opens the call's stream: its HEADERS and as much of its body as the windows allow, one write. */
  private start(call: Call): void {
    call.id = this.nextStream;
    this.nextStream += 2;
    call.window = this.initialStreamWindow;
    this.calls.set(call.id, call);
    const block = this.headerBlock;
    const allowed = Math.min(call.body.length, this.sendWindow, call.window);
    if (allowed === call.body.length && allowed <= this.maxFrame) {
      // The usual case: HEADERS and one DATA frame that ends the stream.
      const out = Buffer.allocUnsafe(18 + block.length + allowed);
      frameHeader(out, 0, block.length, Frame.Headers, END_HEADERS, call.id);
      block.copy(out, 9);
      frameHeader(out, 9 + block.length, allowed, Frame.Data, END_STREAM, call.id);
      call.body.copy(out, 18 + block.length);
      this.sendWindow -= allowed;
      call.window -= allowed;
      call.sent = allowed;
      this.socket.write(out);
      return;
    }
    this.socket.write(frame(Frame.Headers, END_HEADERS, call.id, block));
    if (!this.sendBody(call)) this.waiting.unshift(call);
  }

  /** Sends what the windows allow of a call's body; true once all of it has gone. */
  private sendBody(call: Call): boolean {
    while (call.sent < call.body.length) {
      const size = Math.min(call.body.length - call.sent, this.sendWindow, call.window, this.maxFrame);
      if (size <= 0) return false;
      const last = call.sent + size === call.body.length;
      this.socket.write(frame(Frame.Data, last ? END_STREAM : 0, call.id, call.body.subarray(call.sent, call.sent + size)));
      call.sent += size;
      this.sendWindow -= size;
      call.window -= size;
    }
    return true;
  }

  /** Goes on with waiting calls, oldest first, as windows and stream slots allow. */
  private pump(): void {
    while (this.waiting.length > 0 && this.dead === undefined) {
      const call = this.waiting[0]!;
      if (call.id !== 0) {
        if (!this.calls.has(call.id)) { this.waiting.shift(); continue; } // answered or reset meanwhile
        if (!this.sendBody(call)) return;
        this.waiting.shift();
        continue;
      }
      if (this.calls.size >= this.maxStreams || this.sendWindow <= 0) return;
      this.waiting.shift();
      this.start(call);
      if (this.waiting[0] === call) return; // its body waits for window
    }
  }

  private onData(chunk: Buffer): void {
    let data = this.received ? Buffer.concat([this.received, chunk]) : chunk;
    this.received = undefined;
    let at = 0;
    while (data.length - at >= 9) {
      const length = (data[at]! << 16) | (data[at + 1]! << 8) | data[at + 2]!;
      if (data.length - at < 9 + length) break;
      const type = data[at + 3]!;
      const flags = data[at + 4]!;
      const stream = data.readUInt32BE(at + 5) & 0x7fffffff;
      this.onFrame(type, flags, stream, data.subarray(at + 9, at + 9 + length));
      at += 9 + length;
      if (this.dead !== undefined) return;
    }
    if (at < data.length) this.received = data.subarray(at);
    this.pump();
  }

  private onFrame(type: number, flags: number, stream: number, payload: Buffer): void {
    switch (type) {
      case Frame.Data: {
        this.consumed += payload.length;
        if (this.consumed >= TOP_UP) {
          this.socket.write(windowUpdate(0, this.consumed));
          this.consumed = 0;
        }
        if (flags & END_STREAM) this.finish(stream);
        return;
      }
      case Frame.Headers: {
        let body = payload;
        if (flags & PADDED) body = body.subarray(1, body.length - body[0]!);
        if (flags & PRIORITY) body = body.subarray(5);
        this.block = { stream, endStream: (flags & END_STREAM) !== 0, parts: [body] };
        if (flags & END_HEADERS) this.headerBlockDone();
        return;
      }
      case Frame.Continuation:
        if (!this.block || this.block.stream !== stream) return this.protocolError('a CONTINUATION frame outside a header block');
        this.block.parts.push(payload);
        if (flags & END_HEADERS) this.headerBlockDone();
        return;
      case Frame.RstStream: {
        const call = this.calls.get(stream);
        if (!call) return;
        this.calls.delete(stream);
        call.done(`reset ${payload.length >= 4 ? payload.readUInt32BE(0) : '?'}`);
        return;
      }
      case Frame.Settings:
        if (flags & ACK) return;
        for (let i = 0; i + 6 <= payload.length; i += 6) {
          const id = payload.readUInt16BE(i);
          const value = payload.readUInt32BE(i + 2);
          if (id === 0x3) this.maxStreams = value;
          else if (id === 0x5) this.maxFrame = value;
          else if (id === 0x4) {
            const delta = value - this.initialStreamWindow;
            this.initialStreamWindow = value;
            for (const call of this.calls.values()) call.window += delta;
          }
        }
        this.socket.write(frame(Frame.Settings, ACK, 0));
        if (!this.settled) {
          this.settled = true;
          this.onSettled();
        }
        return;
      case Frame.Ping:
        if (!(flags & ACK)) this.socket.write(frame(Frame.Ping, ACK, 0, payload));
        return;
      case Frame.GoAway:
        this.fail(`goaway ${payload.length >= 8 ? payload.readUInt32BE(4) : '?'}`);
        this.socket.end();
        return;
      case Frame.WindowUpdate: {
        const increment = payload.readUInt32BE(0) & 0x7fffffff;
        if (stream === 0) this.sendWindow += increment;
        else {
          const call = this.calls.get(stream);
          if (call) call.window += increment;
        }
        return;
      }
      case Frame.PushPromise:
        return this.protocolError('PUSH_PROMISE after SETTINGS_ENABLE_PUSH 0');
      default:
        // PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).
        return;
    }
  }

  private headerBlockDone(): void {
    const block = this.block!;
    this.block = undefined;
    // Every block goes through the decoder, answered call or not: it keeps the dynamic table.
    this.decoder.write(block.parts.length === 1 ? block.parts[0]! : Buffer.concat(block.parts));
    this.decoder.execute();
    const call = this.calls.get(block.stream);
    for (let h = this.decoder.read(); h; h = this.decoder.read()) {
      if (!call) continue;
      if (h.name === 'grpc-status') call.grpcStatus = h.value;
      else if (h.name === ':status') call.httpStatus = h.value;
    }
    if (block.endStream) this.finish(block.stream);
  }

  private finish(stream: number): void {
    const call = this.calls.get(stream);
    if (!call) return;
    this.calls.delete(stream);
    if (call.grpcStatus === '0') call.done(null);
    else if (call.grpcStatus !== undefined) call.done(`grpc-${call.grpcStatus}`);
    else call.done(call.httpStatus !== undefined && call.httpStatus !== '200' ? `http-${call.httpStatus}` : 'no grpc-status');
  }

  private protocolError(what: string): void {
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(this.nextStream > 1 ? this.nextStream - 2 : 0, 0);
    payload.writeUInt32BE(1, 4); // PROTOCOL_ERROR
    this.socket.write(frame(Frame.GoAway, 0, 0, payload));
    this.fail(`protocol error: ${what}`);
    this.socket.destroy();
  }

  private fail(reason: string): void {
    if (this.dead !== undefined) return;
    this.dead = reason;
    if (!this.settled) {
      this.settled = true;
      this.onSettled(reason);
    }
    const calls = [...this.calls.values(), ...this.waiting.filter((c) => c.id === 0)];
    this.calls.clear();
    this.waiting.length = 0;
    for (const call of calls) call.done(reason);
  }
}
