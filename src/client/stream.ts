// WebSocket client for /v2/stream: many requests in flight on one connection, answers matched by
// id in whatever order they come. Uses the platform WebSocket (browsers, Node 22+) or the `ws`
// package on Node 20.
import { joinFrame, splitFrame } from '../server/ws-frames.js';
import { decodeJsonResponse, decodeResponse, encodeBinaryRequest, encodeJsonRequest, UmbraClientError, type ClientInferRequest, type ClientInferResponse } from './tensors.js';

/** The part of the WebSocket API the client uses (browser WebSocket and `ws` both fit). */
export interface WebSocketLike {
  binaryType: string;
  readonly bufferedAmount: number;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface StreamConnectOptions {
  /** A WebSocket implementation; default the global one, else the `ws` package. */
  WebSocket?: WebSocketConstructor;
  /** Gives up opening (e.g. `AbortSignal.timeout(5000)`): the socket is closed and connect rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface StreamInferOptions {
  /** model_version for the request. */
  version?: string;
  /** Send a binary frame (raw tensor bytes) and receive a binary answer; default a JSON text frame. */
  binary?: boolean;
  /**
   * Stops waiting for the answer (e.g. `AbortSignal.timeout(1000)`): infer rejects with the
   * signal's reason, the stream stays open, and the answer, if it still comes, is dropped. Its id
   * stays taken until then.
   */
  signal?: AbortSignal;
}

export interface StreamCloseEvent {
  code: number;
  reason: string;
}

interface Waiting {
  resolve: (response: ClientInferResponse) => void;
  reject: (err: UmbraClientError) => void;
}

/** ws://host:port/v2/stream, or /v2/models/{m}/stream when `model` is given, from an http(s) or ws(s) base URL. */
export function streamUrl(baseUrl: string, model?: string): string {
  const base = baseUrl.replace(/^http/, 'ws').replace(/\/+$/, '');
  return model === undefined ? `${base}/v2/stream` : `${base}/v2/models/${encodeURIComponent(model)}/stream`;
}

export class UmbraStreamClient {
  private readonly waiting = new Map<string, Waiting>();
  /** Ids of requests the caller stopped waiting for, whose answers may still come. */
  private readonly abandoned = new Set<string>();
  private next = 0;
  private closeEvent: StreamCloseEvent | undefined;
  /** Settles when the connection closes, with the close code and reason. */
  readonly closed: Promise<StreamCloseEvent>;

  private constructor(private readonly socket: WebSocketLike) {
    socket.binaryType = 'arraybuffer';
    socket.onmessage = (event) => this.onMessage(event.data);
    this.closed = new Promise((resolve) => {
      socket.onclose = (event) => {
        this.closeEvent = { code: event.code, reason: event.reason };
        const err = new UmbraClientError(`the stream closed (${event.code}${event.reason ? ` ${event.reason}` : ''}) before the answer came`, 0, undefined, undefined, event.code);
        for (const w of this.waiting.values()) w.reject(err);
        this.waiting.clear();
        this.abandoned.clear();
        resolve(this.closeEvent);
      };
    });
  }

  /** Opens a stream; `url` from `streamUrl()`. Rejects when the upgrade fails. */
  static async connect(url: string, options: StreamConnectOptions = {}): Promise<UmbraStreamClient> {
    const Impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? (await loadWs());
    const signal = options.signal;
    signal?.throwIfAborted();
    const socket = new Impl(url);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        socket.onopen = socket.onclose = null;
        // Closing a socket still opening reports an error (the `ws` package throws it where no one listens).
        socket.onerror = () => undefined;
        socket.close();
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const settle = () => signal?.removeEventListener('abort', onAbort);
      socket.onerror = () => {
        settle();
        reject(new UmbraClientError(`could not open a WebSocket to ${url}`, 0));
      };
      socket.onclose = (event) => {
        settle();
        reject(new UmbraClientError(`the WebSocket to ${url} closed while opening (${event.code})`, 0, undefined, undefined, event.code));
      };
      socket.onopen = () => {
        settle();
        socket.onerror = null;
        resolve(new UmbraStreamClient(socket));
      };
    });
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.waiting.size;
  }

  /** Bytes queued in the socket that the server has not taken yet. */
  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  /**
   * Sends one request and resolves with its answer. `model` names the model on /v2/stream; on a
   * stream bound to a model pass undefined. Rejects with UmbraClientError on an error answer.
   */
  infer(model: string | undefined, request: ClientInferRequest, options: StreamInferOptions = {}): Promise<ClientInferResponse> {
    if (this.closeEvent) return Promise.reject(new UmbraClientError(`the stream is closed (${this.closeEvent.code})`, 0, request.id, undefined, this.closeEvent.code));
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = request.id ?? `c${++this.next}`;
    if (this.waiting.has(id) || this.abandoned.has(id)) return Promise.reject(new UmbraClientError(`a request with id '${id}' is already in flight on this stream`, 0, id));
    const extra: Record<string, unknown> = { id };
    if (model !== undefined) extra.model_name = model;
    if (options.version !== undefined) extra.model_version = options.version;
    let frame: string | Uint8Array;
    if (options.binary) {
      const { header, tensors } = encodeBinaryRequest(request, extra);
      frame = joinFrame(header, tensors);
    } else {
      frame = encodeJsonRequest(request, extra);
    }
    return new Promise((resolve, reject) => {
      if (!signal) {
        this.waiting.set(id, { resolve, reject });
        this.socket.send(frame);
        return;
      }
      const onAbort = () => {
        if (this.waiting.get(id)?.reject !== settled.reject) return;
        this.waiting.delete(id);
        // Its answer may still come: the id stays taken until it does, so a new request under
        // the same id never receives this one's answer.
        this.abandoned.add(id);
        reject(signal.reason);
      };
      const settled: Waiting = {
        resolve: (response) => {
          signal.removeEventListener('abort', onAbort);
          resolve(response);
        },
        reject: (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.set(id, settled);
      this.socket.send(frame);
    });
  }

  /** Closes the stream; requests still in flight reject. */
  close(code = 1000, reason = ''): Promise<StreamCloseEvent> {
    if (!this.closeEvent) this.socket.close(code, reason);
    return this.closed;
  }

  private onMessage(data: unknown): void {
    let response: ClientInferResponse;
    let id: unknown;
    try {
      if (typeof data === 'string') {
        response = decodeJsonResponse(data);
      } else {
        const split = splitFrame(new Uint8Array(data as ArrayBuffer));
        if (!split) throw new UmbraClientError('the server sent a binary frame without a valid header', 0);
        response = decodeResponse(split.body, split.headerLength);
      }
      id = response.id;
    } catch (err) {
      if (!(err instanceof UmbraClientError)) throw err;
      this.abandoned.delete(String(err.id));
      const w = this.waiting.get(String(err.id));
      if (w) {
        this.waiting.delete(String(err.id));
        w.reject(err);
      }
      return;
    }
    this.abandoned.delete(String(id));
    const w = this.waiting.get(String(id));
    if (!w) return;
    this.waiting.delete(String(id));
    w.resolve(response);
  }
}

async function loadWs(): Promise<WebSocketConstructor> {
  // A variable specifier keeps bundlers and the type checker from requiring `ws` where a global exists.
  const name = 'ws';
  try {
    const mod = (await import(name)) as { WebSocket: WebSocketConstructor };
    return mod.WebSocket;
  } catch {
    throw new UmbraClientError('no WebSocket implementation: use Node 22+, install the `ws` package, or pass options.WebSocket', 0);
  }
}
