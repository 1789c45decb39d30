// WebSocket transport for `--protocol ws`: Umbra's /v2/stream text framing (an OIP request JSON
// with `model_name` and `id`; answers matched by `id`), many requests in flight per connection.
import type WebSocketType from 'ws';
import { UmbraError } from '../errors.js';

export type WsDone = (error: string | null) => void;

type WebSocketClass = typeof WebSocketType;
let loaded: WebSocketClass | undefined;

/** `ws` is loaded on first use so the HTTP paths need nothing beyond Node. */
export async function loadWebSocket(): Promise<WebSocketClass> {
  if (loaded) return loaded;
  try {
    loaded = (await import('ws')).default;
    return loaded;
  } catch {
    throw new UmbraError('INVALID_ARGUMENT', '--protocol ws needs the "ws" package: npm install ws');
  }
}

export class WsConnection {
  private readonly socket: WebSocketType;
  private readonly waiting = new Map<string, { done: WsDone; sentAt: number }>();
  private nextId = 0;
  private dead = false;
  readonly opened: Promise<void>;

  constructor(WebSocket: WebSocketClass, url: string, private readonly prefix: string) {
    this.socket = new WebSocket(url, { perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('open', () => resolve());
      this.socket.once('error', (err) => reject(new UmbraError('INVALID_ARGUMENT', `could not open ${url}: ${err.message}`)));
    });
    this.opened.catch(() => undefined);
    this.socket.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    this.socket.on('close', () => this.failAll('connection closed'));
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.failAll(err.code ?? err.message));
  }

  get inFlight(): number {
    return this.waiting.size;
  }

  get alive(): boolean {
    return !this.dead;
  }

  /** `json` is an OIP request body (an object literal in text); the id and model name are spliced in. */
  send(json: string, done: WsDone, now: number): void {
    if (this.dead) {
      done('connection closed');
      return;
    }
    const id = `${this.prefix}${this.nextId++}`;
    this.waiting.set(id, { done, sentAt: now });
    this.socket.send(`{"id":"${id}",${json.slice(1)}`);
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
    this.socket.terminate();
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    let header: string;
    if (isBinary) {
      // Binary answer: [u32 LE header length][JSON header][tensor bytes].
      const n = data.byteLength >= 4 ? data.readUInt32LE(0) : 0;
      header = data.toString('utf8', 4, 4 + n);
    } else header = data.toString('utf8');
    let answer: { id?: unknown; error?: unknown; status?: unknown };
    try {
      answer = JSON.parse(header) as typeof answer;
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
