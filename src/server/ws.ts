// uWebSockets.js front end for streaming prediction: ws://HOST:PORT/v2/stream and
// /v2/models/{m}/stream. The socket work (upgrade, copies, corking, drain events) lives here; the
// request logic is in ws-session.ts.
import { EventEmitter } from 'node:events';
import * as uws from 'uWebSockets.js';
import type { InferenceFront } from '../core/front.js';
import { CLOSE_CODES } from './ws-frames.js';
import { StreamSession } from './ws-session.js';

export interface StreamOptions {
  /** Largest frame in bytes; a bigger one closes the connection with 1009 (past twice this, uWS cuts it without a close frame). */
  maxPayloadBytes: number;
  /** Close a connection that answers nothing (not even the server's pings) for this long; 0 = never. */
  idleSeconds: number;
  /** Most requests outstanding per connection; one more closes it with 1008. */
  maxInFlight: number;
  /** Unread answer bytes above which the connection's new requests wait until the client reads. */
  backpressureBytes: number;
  /**
   * Browser origins (`scheme://host[:port]`, as `new URL(o).origin` writes them) allowed to open a
   * stream besides the server's own; `*` allows any. An upgrade with no Origin is not a browser's
   * and is always accepted.
   */
  origins?: readonly string[];
}

export const STREAM_DEFAULTS: StreamOptions = {
  maxPayloadBytes: 16 * 1024 * 1024,
  // uWS pings a quiet connection at half this. At 120 that was every 60 s, the read timeout of a
  // default nginx (and ingress-nginx, and a cloud load balancer's idle timeout), which cut quiet
  // streams at 60 s; every 25 s keeps them open behind any of these.
  idleSeconds: 50,
  maxInFlight: 256,
  backpressureBytes: 1024 * 1024,
};

interface Connection {
  model?: string;
  headers: Record<string, string>;
  session?: StreamSession;
  closed: boolean;
}

export interface StreamStats {
  connections: number;
  /** Requests received and not yet answered, over every connection. */
  outstanding: number;
  /** Of those, requests waiting for a slow reader to catch up before they start. */
  held: number;
  /** Connections whose client reads too slowly to take new requests now. */
  paused: number;
  /** The most requests one connection has had outstanding at once, since the start (bounded by --ws-max-in-flight). */
  peakOutstanding: number;
  /** The most requests one connection has had held back at once, since the start. */
  peakHeld: number;
}

/** Stats of several listeners' connections as one: counts add up, peaks are the largest. */
export function sumStreamStats(list: readonly (StreamStats | undefined)[]): StreamStats {
  const sum: StreamStats = { connections: 0, outstanding: 0, held: 0, paused: 0, peakOutstanding: 0, peakHeld: 0 };
  for (const s of list) {
    if (!s) continue;
    sum.connections += s.connections;
    sum.outstanding += s.outstanding;
    sum.held += s.held;
    sum.paused += s.paused;
    sum.peakOutstanding = Math.max(sum.peakOutstanding, s.peakOutstanding);
    sum.peakHeld = Math.max(sum.peakHeld, s.peakHeld);
  }
  return sum;
}

/**
 * The open WebSocket connections, so that drain can close them after their answers. Emits
 * 'pause' when a connection stops taking requests because its client reads slowly, and
 * 'close' with {code, reason} for every closed connection.
 */
export class StreamHub extends EventEmitter {
  private readonly sessions = new Set<StreamSession>();
  private waiters: (() => void)[] = [];
  /** Peaks of connections already closed. */
  private closedPeaks = { outstanding: 0, held: 0 };

  /** Connections upgraded since the start. */
  upgraded = 0;

  get size(): number {
    return this.sessions.size;
  }

  add(session: StreamSession): void {
    this.upgraded += 1;
    this.sessions.add(session);
  }

  remove(session: StreamSession): void {
    this.closedPeaks.outstanding = Math.max(this.closedPeaks.outstanding, session.peakOutstanding);
    this.closedPeaks.held = Math.max(this.closedPeaks.held, session.peakHeld);
    this.sessions.delete(session);
    if (this.sessions.size === 0) for (const w of this.waiters.splice(0)) w();
  }

  stats(): StreamStats {
    const stats: StreamStats = { connections: this.sessions.size, outstanding: 0, held: 0, paused: 0, peakOutstanding: this.closedPeaks.outstanding, peakHeld: this.closedPeaks.held };
    for (const s of this.sessions) {
      stats.outstanding += s.outstanding;
      stats.held += s.heldCount;
      if (s.isPaused) stats.paused += 1;
      stats.peakOutstanding = Math.max(stats.peakOutstanding, s.peakOutstanding);
      stats.peakHeld = Math.max(stats.peakHeld, s.peakHeld);
    }
    return stats;
  }

  /** The drain's deadline passed: every connection answers its unanswered requests with `err`, then closes with 1001. */
  cutOff(err: unknown): void {
    for (const s of [...this.sessions]) s.cutOff(err);
  }

  /** Every connection answers what it is running, refuses the rest, and closes with 1001. */
  drain(): Promise<void> {
    for (const s of [...this.sessions]) s.shutdown();
    return this.sessions.size === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}

// uWS drops sends over maxBackpressure; sessions pause far below it, so reaching it means a client
// that keeps sending while never reading, and closing it is the only bounded answer.
function hardBackpressureLimit(options: StreamOptions): number {
  return Math.max(256 * 1024 * 1024, 4 * options.backpressureBytes);
}

function hardPayloadLimit(options: StreamOptions): number {
  return Math.min(2 * options.maxPayloadBytes, 2 ** 31 - 1);
}

export function attachWebSocket(app: uws.TemplatedApp, umbra: InferenceFront, options: StreamOptions, isAccepting: () => boolean): StreamHub {
  const hub = new StreamHub();
  const behavior = (bound: boolean): uws.WebSocketBehavior<Connection> => ({
    // uWS drops a connection over its own limit without a close frame; with twice the limit there,
    // a frame over ours but under twice it gets a proper 1009 close from the message handler.
    maxPayloadLength: hardPayloadLimit(options),
    // uWS counts idle time in 4-second ticks and wants 0 or at least 8.
    idleTimeout: options.idleSeconds === 0 ? 0 : Math.max(8, options.idleSeconds),
    sendPingsAutomatically: options.idleSeconds > 0,
    maxBackpressure: hardBackpressureLimit(options),
    closeOnBackpressureLimit: true,
    upgrade: (res, req, context) => {
      // Everything is read from req synchronously: uWS reuses it after this call returns.
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const headers: Record<string, string> = {};
      req.forEach((k, v) => {
        headers[k] = v;
      });
      // A browser lets any page open a WebSocket to any address and read what comes back (no
      // same-origin rule, no CORS), so a page of another site in the operator's browser could use a
      // server on loopback. Browsers always send Origin on an upgrade; other clients need not.
      const foreign = foreignOrigin(headers, options.origins ?? []);
      if (foreign !== undefined) {
        refuse(res, '403 Forbidden', `${foreign}: a browser page may open a stream only from the server's own origin; list other origins with --ws-origins (or UMBRA_WS_ORIGINS)`);
        return;
      }
      const connection: Connection = { headers, closed: false };
      // An unknown model is not refused here: it may still be loading; each request gets its 404.
      if (bound) {
        const raw = req.getParameter(0) ?? '';
        let model: string;
        try {
          model = decodeURIComponent(raw);
        } catch {
          refuse(res, '400 Bad Request', `malformed percent-encoding in model name '${raw}'`);
          return;
        }
        connection.model = model;
      }
      if (!isAccepting()) {
        refuse(res, '503 Service Unavailable', 'the server is shutting down');
        return;
      }
      res.upgrade(connection, key, protocol, extensions, context);
    },
    open: (ws) => {
      const connection = ws.getUserData();
      const sessionOptions: ConstructorParameters<typeof StreamSession>[2] = {
        maxInFlight: options.maxInFlight,
        backpressureBytes: options.backpressureBytes,
        headers: connection.headers,
        isAccepting,
        onPause: () => hub.emit('pause'),
      };
      if (connection.model !== undefined) sessionOptions.model = connection.model;
      const session = new StreamSession({
        send: (data, binary) => {
          if (!connection.closed) ws.send(data, binary);
        },
        bufferedAmount: () => (connection.closed ? 0 : ws.getBufferedAmount()),
        end: (code, reason) => {
          if (!connection.closed) ws.end(code, Buffer.from(reason).subarray(0, 123));
        },
        cork: (fn) => {
          if (connection.closed) fn();
          else ws.cork(fn);
        },
      }, umbra, sessionOptions);
      connection.session = session;
      hub.add(session);
    },
    // The message's memory is reused after this call, and requests outlive it: copy. Into a
    // Buffer, so a small frame lands in Node's shared allocation pool instead of getting an
    // ArrayBuffer of its own: one backing store per frame made the garbage collector's
    // background threads cost as much as a third of the main thread's time per request.
    message: (ws, message, isBinary) => {
      if (message.byteLength > options.maxPayloadBytes) {
        ws.end(CLOSE_CODES.tooBig, `frame of ${message.byteLength} bytes is over the limit of ${options.maxPayloadBytes}`);
        return;
      }
      const frame = Buffer.allocUnsafe(message.byteLength);
      frame.set(new Uint8Array(message));
      ws.getUserData().session?.receive(frame, isBinary);
    },
    drain: (ws) => {
      ws.getUserData().session?.drained();
    },
    close: (ws, code, message) => {
      const connection = ws.getUserData();
      connection.closed = true;
      if (connection.session) {
        connection.session.closed();
        hub.remove(connection.session);
      }
      hub.emit('close', { code, reason: Buffer.from(message).toString('utf8') });
    },
  });
  app.ws('/v2/stream', behavior(false));
  app.ws('/v2/models/:m/stream', behavior(true));
  return hub;
}

/** Why an upgrade's Origin may not open a stream, or undefined: none, the server's own (its Host), or one listed. */
export function foreignOrigin(headers: Record<string, string>, allowed: readonly string[]): string | undefined {
  const origin = headers.origin;
  if (origin === undefined || allowed.includes('*')) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(origin);
  } catch {
    url = undefined;
  }
  if (url !== undefined && url.host !== '') {
    if (headers.host !== undefined && url.host === headers.host.toLowerCase()) return undefined;
    if (allowed.includes(url.origin)) return undefined;
  }
  return `Origin ${JSON.stringify(origin)} is another site`;
}

function refuse(res: uws.HttpResponse, status: string, message: string): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify({ error: message }));
  });
}
