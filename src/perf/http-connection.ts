// A minimal HTTP/1.1 keep-alive client connection: one request in flight, pre-encoded request
// bytes, a response parser that reads only the status line, Content-Length and chunked framing.
// It does far less work per request than node:http or fetch, so the generator stays out of the way.
import { connect, type Socket } from 'node:net';

/** How much of an error answer's body is kept, to show what the server said. */
const ERROR_BODY_BYTES = 400;

/** `status` is the HTTP status, or 0 with `error` naming a transport failure. */
export type HttpDone = (status: number, error: string | null) => void;

const CRLF2 = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');
const READ_BUFFER_BYTES = 64 * 1024;
/** How long before the server's keep-alive timeout an idle connection stops being reused. */
const KEEP_ALIVE_MARGIN_MS = 1000;

const enum State { Idle, Head, Body, ChunkSize, ChunkData }

export class HttpConnection {
  private readonly socket: Socket;
  private state = State.Idle;
  private pending: Buffer | null = null;
  private remaining = 0;
  private status = 0;
  /** The body of an error answer (status 400 or more), kept up to ERROR_BODY_BYTES: what the server said was wrong. */
  private errorBody: Buffer[] | null = null;
  private errorBytes = 0;
  /** The last error answer's body, as text. */
  lastErrorBody: string | undefined;
  private closeAfter = false;
  /** The server's keep-alive hint less the margin, in ms; 0 when it gave none. */
  private keepAliveMs = 0;
  private done: HttpDone | null = null;
  private dead = false;
  /** performance.now() when the current request was written; 0 when idle. */
  sentAt = 0;
  /**
   * performance.now() past which this idle connection is not to be reused: the server's
   * `Keep-Alive: timeout=N` hint less a second, counted from its last answer, as node:http's Agent
   * reads it. The server closes idle connections after that, and a request sent as it does is reset.
   */
  private reuseUntil = Infinity;

  constructor(host: string, port: number, private readonly onDead: (c: HttpConnection) => void) {
    // Reads land in one buffer of the connection's own (node:net's `onread`), handed over without
    // the readable stream's machinery or a fresh Buffer per read: the generator's cost per request
    // is taken from the same cores as the server's it measures. Bytes kept past a read are copied.
    const reads = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    this.socket = connect({
      host, port, noDelay: true,
      onread: {
        buffer: reads,
        callback: (n: number) => {
          this.onData(reads.subarray(0, n));
          return true;
        },
      },
    });
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.fail(err.code ?? err.message));
    // The server's end of the connection: nothing more will be answered on it (close follows).
    this.socket.on('end', () => this.fail('connection closed'));
    this.socket.on('close', () => this.fail('connection closed'));
  }

  get idle(): boolean {
    return this.state === State.Idle && !this.dead;
  }

  get alive(): boolean {
    return !this.dead;
  }

  /**
   * Whether this idle connection may carry another request at `now`: false once it has idled into
   * the time the server said it may close it (then it is closed here, as dead).
   */
  reusable(now: number): boolean {
    if (this.dead) return false;
    if (now < this.reuseUntil) return true;
    this.close();
    this.onDead(this);
    return false;
  }

  send(request: Buffer, done: HttpDone, now: number): void {
    this.done = done;
    this.state = State.Head;
    this.sentAt = now;
    this.socket.write(request);
  }

  /** Gives up on the current request (timeout) and closes the connection. */
  abort(reason: string): void {
    this.fail(reason);
    this.socket.destroy();
  }

  close(): void {
    this.dead = true;
    this.done = null;
    this.socket.destroy();
  }

  private fail(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    const done = this.done;
    this.done = null;
    this.state = State.Idle;
    this.onDead(this);
    done?.(0, reason);
  }

  /** Keeps the start of an error answer's body (`part` lies in the read buffer: copied). */
  private keepError(part: Buffer): void {
    if (this.errorBody === null || this.errorBytes >= ERROR_BODY_BYTES) return;
    const kept = Buffer.from(part.subarray(0, ERROR_BODY_BYTES - this.errorBytes));
    this.errorBody.push(kept);
    this.errorBytes += kept.length;
  }

  private finish(): void {
    const done = this.done;
    const status = this.status;
    if (this.errorBody !== null) {
      this.lastErrorBody = Buffer.concat(this.errorBody).toString('utf8');
      this.errorBody = null;
      this.errorBytes = 0;
    }
    this.done = null;
    this.state = State.Idle;
    this.pending = null;
    this.sentAt = 0;
    if (this.keepAliveMs > 0) this.reuseUntil = performance.now() + this.keepAliveMs;
    if (this.closeAfter) {
      // The server said Connection: close; this connection is spent, the answer still counts.
      this.dead = true;
      this.socket.destroy();
      this.onDead(this);
    }
    done?.(status, null);
  }

  /** `chunk` lies in the read buffer, which the next read overwrites: whatever is kept is copied. */
  private onData(chunk: Buffer): void {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    for (;;) {
      switch (this.state) {
        case State.Idle:
          return; // stray bytes after an answer: ignored
        case State.Head: {
          const end = buf.indexOf(CRLF2);
          if (end < 0) {
            this.pending = Buffer.from(buf);
            return;
          }
          const bodyless = this.parseHead(buf.toString('latin1', 0, end));
          buf = buf.subarray(end + 4);
          if (bodyless) {
            this.finish();
            return;
          }
          break;
        }
        case State.Body: {
          this.keepError(buf.subarray(0, this.remaining));
          if (buf.length < this.remaining) {
            this.remaining -= buf.length;
            return;
          }
          buf = buf.subarray(this.remaining);
          this.finish();
          return;
        }
        case State.ChunkSize: {
          const end = buf.indexOf(CRLF);
          if (end < 0) {
            this.pending = Buffer.from(buf);
            return;
          }
          const size = parseInt(buf.toString('latin1', 0, end), 16);
          buf = buf.subarray(end + 2);
          if (size === 0) {
            // Last chunk (trailers unsupported); its closing CRLF is ignored when it arrives.
            this.finish();
            return;
          }
          this.remaining = size + 2;
          this.state = State.ChunkData;
          break;
        }
        case State.ChunkData: {
          // The chunk's data, not its closing CRLF (the last 2 of `remaining`).
          this.keepError(buf.subarray(0, Math.max(0, this.remaining - 2)));
          if (buf.length < this.remaining) {
            this.remaining -= buf.length;
            return;
          }
          buf = buf.subarray(this.remaining);
          this.state = State.ChunkSize;
          break;
        }
      }
      if (buf.length === 0) return;
    }
  }

  /** Reads the status and framing; true when the answer has no body to wait for. */
  private parseHead(head: string): boolean {
    this.status = Number(head.slice(9, 12));
    this.errorBody = this.status >= 400 ? [] : null;
    this.errorBytes = 0;
    const lower = head.toLowerCase();
    const cl = /\r\ncontent-length:\s*(\d+)/.exec(lower);
    this.closeAfter = /\r\nconnection:\s*close/.test(lower);
    // A hint of a second or less: not reused at all (node:http's Agent reads it the same way).
    const hint = /\r\nkeep-alive:[^\r]*\btimeout=(\d+)/.exec(lower);
    this.keepAliveMs = hint ? Math.max(1, Number(hint[1]) * 1000 - KEEP_ALIVE_MARGIN_MS) : 0;
    if (cl) {
      this.remaining = Number(cl[1]);
      this.state = State.Body;
      return this.remaining === 0;
    }
    if (/\r\ntransfer-encoding:[^\r]*chunked/.test(lower)) {
      this.state = State.ChunkSize;
      return false;
    }
    // 1xx/204/304 carry no body; anything else unframed ends at close: count the answer now.
    if (!(this.status === 204 || this.status === 304 || (this.status >= 100 && this.status < 200))) this.closeAfter = true;
    return true;
  }
}

/** The request bytes for one POST, head and body together, written in one syscall. */
export function encodeHttpRequest(host: string, path: string, body: Buffer, headers: Record<string, string>): Buffer {
  let head = `POST ${path} HTTP/1.1\r\nhost: ${host}\r\ncontent-length: ${body.byteLength}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), body]);
}
