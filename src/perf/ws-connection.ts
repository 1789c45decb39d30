// WebSocket transport for `--protocol ws`: Umbra's /v2/stream text framing (an OIP request JSON
// with `model_name` and `id`; answers matched by `id`), many requests in flight per connection.
//
// Like the HTTP transport beside it, this is a lean client of its own over a raw socket, so the
// generator measures the server rather than a client library: requests are pre-encoded, each
// frame is masked as RFC 6455 requires (a fresh key per frame), and an answer is read only as far
// as its id, unless it is an error. Applications use umbra/client or any WebSocket library.
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { UmbraError } from '../errors.js';

export type WsDone = (error: string | null) => void;

const HANDSHAKE_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const HEAD_END = Buffer.from('\r\n\r\n');
const ID_KEY = Buffer.from('"id":"');
const SUCCESS_START = Buffer.from('{"model_name":');
const QUOTE = 0x22;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;

/** Masking keys come from one random pool, refilled when used up. */
class MaskPool {
  private readonly pool = Buffer.allocUnsafe(4096);
  private at = this.pool.length;

  take(into: Buffer, offset: number): void {
    if (this.at + 4 > this.pool.length) {
      randomFillSync(this.pool);
      this.at = 0;
    }
    this.pool.copy(into, offset, this.at, this.at + 4);
    this.at += 4;
  }
}
const masks = new MaskPool();

/** One client frame: FIN, `opcode`, masked `payload` (bytes from `parts`, concatenated). */
function clientFrame(opcode: number, parts: readonly (Buffer | string)[]): Buffer {
  let length = 0;
  for (const p of parts) length += typeof p === 'string' ? Buffer.byteLength(p) : p.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const start = 2 + lengthBytes + 4;
  const frame = Buffer.allocUnsafe(start + length);
  frame[0] = 0x80 | opcode;
  if (lengthBytes === 0) frame[1] = 0x80 | length;
  else if (lengthBytes === 2) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  masks.take(frame, start - 4);
  let at = start;
  for (const p of parts) at += typeof p === 'string' ? frame.write(p, at, 'utf8') : p.copy(frame, at);
  const m0 = frame[start - 4]!, m1 = frame[start - 3]!, m2 = frame[start - 2]!, m3 = frame[start - 1]!;
  let i = start;
  const end = start + length;
  for (; i + 4 <= end; i += 4) {
    frame[i] = frame[i]! ^ m0;
    frame[i + 1] = frame[i + 1]! ^ m1;
    frame[i + 2] = frame[i + 2]! ^ m2;
    frame[i + 3] = frame[i + 3]! ^ m3;
  }
  for (let k = 0; i < end; i++, k++) frame[i] = frame[i]! ^ frame[start - 4 + k]!;
  return frame;
}

/** The id of an answer, read without parsing it (ids this client sends need no escaping). */
function idAt(message: Buffer, from: number, to: number): string | undefined {
  const key = message.indexOf(ID_KEY, from);
  if (key < 0 || key >= to) return undefined;
  const start = key + ID_KEY.length;
  const end = message.indexOf(QUOTE, start);
  return end < 0 || end > to ? undefined : message.toString('latin1', start, end);
}

export class WsConnection {
  private readonly socket: net.Socket;
  private readonly waiting = new Map<string, { done: WsDone; sentAt: number }>();
  private nextId = 0;
  private dead = false;
  private upgraded = false;
  private buffer: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private fragmentOpcode = 0;
  readonly opened: Promise<void>;

  constructor(url: string, private readonly prefix: string) {
    const u = new URL(url);
    const secure = u.protocol === 'wss:';
    const port = Number(u.port || (secure ? 443 : 80));
    const host = u.hostname.replace(/^\[|\]$/g, '');
    this.socket = secure ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host }) : net.connect({ host, port });
    this.socket.setNoDelay(true);
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1').update(key + HANDSHAKE_GUID).digest('base64');
    this.opened = new Promise((resolve, reject) => {
      const fail = (why: string) => {
        this.failAll(why);
        reject(new UmbraError('INVALID_ARGUMENT', `could not open ${url}: ${why}`));
      };
      this.socket.once(secure ? 'secureConnect' : 'connect', () => {
        this.socket.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      });
      this.socket.on('data', (chunk: Buffer) => {
        this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
        if (!this.upgraded) {
          const end = this.buffer.indexOf(HEAD_END);
          if (end < 0) return;
          const head = this.buffer.toString('latin1', 0, end);
          this.buffer = this.buffer.subarray(end + HEAD_END.length);
          const acceptLine = /\r\nsec-websocket-accept:\s*(\S+)/i.exec(head);
          if (!head.startsWith('HTTP/1.1 101') || acceptLine?.[1] !== accept) {
            fail(`the server did not accept the WebSocket upgrade (${head.split('\r\n')[0]})`);
            this.socket.destroy();
            return;
          }
          this.upgraded = true;
          resolve();
        }
        this.readFrames();
      });
      this.socket.once('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
      this.socket.once('close', () => fail('connection closed'));
    });
    this.opened.catch(() => undefined);
  }

  get inFlight(): number {
    return this.waiting.size;
  }

  get alive(): boolean {
    return !this.dead;
  }

  /** `json` is an OIP request body (an object literal in text); the id is spliced in. */
  send(json: Buffer, done: WsDone, now: number): void {
    if (this.dead) {
      done('connection closed');
      return;
    }
    const id = `${this.prefix}${this.nextId++}`;
    this.waiting.set(id, { done, sentAt: now });
    this.socket.write(clientFrame(OP_TEXT, ['{"id":"', id, '",', json.subarray(1)]));
  }

  /** Fails requests older than `deadline` (performance.now() units). */
  expire(deadline: number): void {
    for (const [id, w] of this.waiting) {
      if (w.sentAt < deadline) {
        this.waiting.delete(id);
        w.done('timeout');
      }
    }
  }

  close(): void {
    this.dead = true;
    this.waiting.clear();
    this.socket.destroy();
  }

  /** Takes every whole frame off the buffer (server frames are never masked). */
  private readFrames(): void {
    let buf = this.buffer;
    while (buf.length >= 2) {
      const opcode = buf[0]! & 0x0f;
      const fin = (buf[0]! & 0x80) !== 0;
      let length = buf[1]! & 0x7f;
      let at = 2;
      if (length === 126) {
        if (buf.length < 4) break;
        length = buf.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (buf.length < 10) break;
        length = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      if (buf.length < at + length) break;
      const payload = buf.subarray(at, at + length);
      buf = buf.subarray(at + length);
      if (opcode === OP_PING) this.socket.write(clientFrame(0xa, [payload]));
      else if (opcode === OP_CLOSE) {
        this.failAll('connection closed');
        this.socket.end();
      } else if (opcode === OP_TEXT || opcode === OP_BINARY || opcode === OP_CONTINUATION) {
        if (opcode !== OP_CONTINUATION) this.fragmentOpcode = opcode;
        if (!fin) this.fragments.push(Buffer.from(payload));
        else if (this.fragments.length > 0) {
          this.fragments.push(payload);
          const whole = Buffer.concat(this.fragments);
          this.fragments = [];
          this.onMessage(whole, this.fragmentOpcode === OP_BINARY);
        } else this.onMessage(payload, opcode === OP_BINARY);
      }
    }
    this.buffer = buf;
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    // Binary answer: [u32 LE header length][JSON header][tensor bytes].
    const from = isBinary ? 4 : 0;
    const to = isBinary ? (data.length >= 4 ? Math.min(data.length, 4 + data.readUInt32LE(0)) : 0) : data.length;
    // An answer starts with its model name, then the id; an error starts with the id.
    if (data.length >= from + SUCCESS_START.length && data.compare(SUCCESS_START, 0, SUCCESS_START.length, from, from + SUCCESS_START.length) === 0) {
      const id = idAt(data, from, to);
      const w = id === undefined ? undefined : this.waiting.get(id);
      if (!w) return;
      this.waiting.delete(id!);
      w.done(null);
      return;
    }
    let answer: { id?: unknown; error?: unknown; status?: unknown };
    try {
      answer = JSON.parse(data.toString('utf8', from, to)) as typeof answer;
    } catch {
      return;
    }
    const id = typeof answer.id === 'string' ? answer.id : undefined;
    const w = id === undefined ? undefined : this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id!);
    // Errors are keyed by the status the answer carries, as HTTP errors are by theirs.
    if (answer.error === undefined) w.done(null);
    else w.done(typeof answer.status === 'number' ? String(answer.status) : 'ws error');
  }

  private failAll(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    for (const w of this.waiting.values()) w.done(reason);
    this.waiting.clear();
  }
}
