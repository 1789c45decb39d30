// One WebSocket connection's requests, independent of uWebSockets.js: frames in, answers out,
// many requests in flight, per-request errors, backpressure and the close on drain. ws.ts feeds
// it from the socket; the requests go through the same Umbra core (and batchers) as HTTP.
import { Cancellation } from '../scheduler/cancellation.js';
import { UmbraError, describeValue, invalid, toErrorBody } from '../errors.js';
import { encodeInferResponse, parseRequestJson } from '../protocol/index.js';
import type { InferenceFront } from '../core/front.js';
import type { RequestContext } from '../core/hooks.js';
import type { InferResponse } from '../protocol/types.js';
import { CLOSE_CODES, frameFromBody, joinFrame, splitFrame } from './ws-frames.js';

/** What a session needs from its socket. */
export interface StreamSocket {
  send(data: Uint8Array | string, binary: boolean): void;
  /** Bytes written but not yet taken by the client. */
  bufferedAmount(): number;
  /** Sends a close frame; the transport then calls `StreamSession.closed()`. */
  end(code: number, reason: string): void;
  /** Batches the writes `fn` makes into one syscall. */
  cork(fn: () => void): void;
}

export interface StreamSessionOptions {
  /** Most requests outstanding (running or held back) on the connection; one more closes it with 1008. */
  maxInFlight: number;
  /** Above this many unsent bytes the session starts no new request until the socket drains. */
  backpressureBytes: number;
  /** Set for /v2/models/{m}/stream: every request goes to this model. */
  model?: string;
  /** The upgrade request's headers (lower-case), handed to routing and observer hooks. */
  headers: Record<string, string>;
  isAccepting: () => boolean;
  /** Told when the client's unread answers pass backpressureBytes and new requests start waiting. */
  onPause?: () => void;
}

interface Prepared {
  /** The client's id, or the one assigned; errors echo a non-string id as it came. */
  id: unknown;
  /** The client sent no id (or an empty one): an answer carries the core's, which feedback joins to. */
  idAssigned: boolean;
  binary: boolean;
  model: string;
  version?: string;
  /** What `inferBody` reads: the text frame, or the binary frame after its length prefix. */
  body: Uint8Array;
  /** The frame's JSON, parsed once here and handed on so the core does not parse it again. */
  header: Record<string, unknown>;
  headerLength?: number;
  /** A binary request that says nothing about binary outputs gets every output as bytes. */
  allBinary: boolean;
  routingKey?: string;
  error?: UmbraError;
}

class FrameViolation extends Error {}

export class StreamSession {
  /** Requests started and not yet answered. */
  private readonly running = new Set<Prepared>();
  private readonly held: Prepared[] = [];
  private paused = false;
  private isClosed = false;
  private ending = false;
  private assigned = 0;
  /** Answers waiting for this turn's corked write. */
  private outbox: { data: Uint8Array | string; binary: boolean }[] = [];
  // One cancellation for the connection: when it closes, its queued requests leave the batchers.
  // Each running request listens on it; the in-flight cap bounds how many.
  private readonly abort = new Cancellation();

  /** The most requests this connection has had outstanding, and held back, at once. */
  peakOutstanding = 0;
  peakHeld = 0;

  constructor(private readonly socket: StreamSocket, private readonly umbra: InferenceFront, private readonly options: StreamSessionOptions) {}

  /** Requests received and not yet answered. */
  get outstanding(): number {
    return this.running.size + this.held.length;
  }

  /** Requests waiting for the client to read before they start. */
  get heldCount(): number {
    return this.held.length;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** One frame from the client. The session owns `frame` (the transport copied it). */
  receive(frame: Uint8Array, binary: boolean): void {
    if (this.isClosed) return;
    let prepared: Prepared;
    try {
      prepared = this.prepare(frame, binary);
    } catch (err) {
      if (!(err instanceof FrameViolation)) throw err;
      this.end(CLOSE_CODES.invalidFrame, err.message);
      return;
    }
    if (this.outstanding >= this.options.maxInFlight) {
      this.end(CLOSE_CODES.policyViolation, `more than ${this.options.maxInFlight} requests in flight`);
      return;
    }
    // While the client reads slowly, hold requests back instead of adding to its unread answers.
    if (this.paused) this.held.push(prepared);
    else this.start(prepared);
    if (this.outstanding > this.peakOutstanding) this.peakOutstanding = this.outstanding;
    if (this.held.length > this.peakHeld) this.peakHeld = this.held.length;
  }

  /** The socket's buffer went down: resume work held back by backpressure. */
  drained(): void {
    if (this.isClosed || this.socket.bufferedAmount() > this.options.backpressureBytes) return;
    this.paused = false;
    while (!this.paused && !this.isClosed && this.held.length > 0) this.start(this.held.shift()!);
    this.endIfDone();
  }

  /** Server drain: answer what is running, refuse the rest, then close with 1001. */
  shutdown(): void {
    if (this.isClosed || this.ending) return;
    this.ending = true;
    for (const p of this.held.splice(0)) this.replyError(p, notReady());
    this.endIfDone();
  }

  /**
   * The drain's deadline passed: every request not yet answered gets `err` now (an answer that
   * comes later is dropped), then the close frame follows them (endIfDone, once they are written).
   */
  cutOff(err: unknown): void {
    if (this.isClosed) return;
    this.ending = true;
    const unanswered = [...this.running, ...this.held.splice(0)];
    this.running.clear();
    for (const p of unanswered) this.replyError(p, err);
    // Their work, if still queued, leaves the batchers.
    this.abort.abort();
    this.endIfDone();
  }

  /** The transport saw the connection close (either side, any reason). */
  closed(): void {
    this.isClosed = true;
    this.held.length = 0;
    this.abort.abort();
  }

  private start(p: Prepared): void {
    if (p.error) {
      this.replyError(p, p.error);
      return;
    }
    if (this.ending || !this.options.isAccepting()) {
      this.replyError(p, notReady());
      return;
    }
    const context: RequestContext = { transport: 'ws', headers: this.options.headers };
    if (p.routingKey !== undefined) context.routingKey = p.routingKey;
    // While its version refuses every request, refused before its tensors are parsed or handed over.
    const refused = this.umbra.refuseEarly?.(p.model, p.version, context);
    if (refused) {
      this.replyError(p, refused);
      return;
    }
    this.running.add(p);
    this.umbra.inferBody(p.model, p.version, p.body, p.headerLength, { signal: this.abort, context, header: p.header, receivedAt: performance.timeOrigin + performance.now() }).then(
      (result) => {
        // Not running any more: answered already (cut off by the drain's deadline).
        if (!this.running.delete(p) || this.isClosed) return;
        const binaryOutputs = p.binary ? (p.allBinary ? 'all' : result.binaryOutputs) : 'none';
        let encoded: ReturnType<typeof encodeInferResponse>;
        try {
          // The core's own id where it gave one (monitoring records the prediction under it), as HTTP answers.
          const id = p.idAssigned && result.response.id !== undefined && result.response.id !== '' ? result.response.id : p.id;
          encoded = encodeInferResponse(withId(result.response, id), { binaryOutputs });
        } catch (err) {
          this.replyError(p, err);
          return;
        }
        const frame = p.binary ? frameFromBody(encoded.body, encoded.headerLength ?? encoded.body.byteLength) : encoded.body;
        this.post(frame, p.binary);
      },
      (err: unknown) => {
        if (!this.running.delete(p) || this.isClosed) return;
        this.replyError(p, err);
      },
    );
  }

  /**
   * Queues one answer. A batch settles many of this connection's requests in one turn; their
   * answers go out together in one corked write (one syscall) once every settled request has
   * posted, which is much of what makes a stream cheaper than one HTTP connection per request.
   * The flush is a microtask: the settled requests' answer chains run breadth-first, step by step,
   * so each has posted by the time it runs, and it runs before the nextTick in which the core
   * hands the batch's events to the hooks (metrics, drift, the prediction log): answers do not
   * wait for monitoring, as on HTTP, where the answer is written in the chain itself.
   */
  private post(data: Uint8Array | string, binary: boolean): void {
    this.outbox.push({ data, binary });
    if (this.outbox.length === 1) queueMicrotask(this.flush);
  }

  private readonly flush = (): void => {
    const out = this.outbox;
    this.outbox = [];
    if (!this.isClosed && out.length > 0) {
      this.socket.cork(() => {
        for (const m of out) this.send(m.data, m.binary);
      });
    }
    this.endIfDone();
  };

  private send(data: Uint8Array | string, binary: boolean): void {
    if (this.isClosed) return;
    this.socket.send(data, binary);
    if (!this.paused && this.socket.bufferedAmount() > this.options.backpressureBytes) {
      this.paused = true;
      this.options.onPause?.();
    }
  }

  private replyError(p: Prepared, err: unknown): void {
    const { status, body, retryAfter } = toErrorBody(err);
    const message: Record<string, unknown> = { id: p.id, error: body.error, status };
    if (retryAfter !== undefined) message.retry_after = retryAfter;
    const json = JSON.stringify(message);
    this.post(p.binary ? joinFrame(json) : json, p.binary);
  }

  private endIfDone(): void {
    if (this.ending && !this.isClosed && this.running.size === 0 && this.held.length === 0 && this.outbox.length === 0) this.end(CLOSE_CODES.goingAway, 'server shutting down');
  }

  private end(code: number, reason: string): void {
    if (this.isClosed) return;
    this.socket.end(code, reason);
    // The transport normally reports the close at once; do not rely on it.
    this.closed();
  }

  /** Reads what the session needs before queueing: id, model, version. Bad framing throws FrameViolation. */
  private prepare(frame: Uint8Array, binary: boolean): Prepared {
    let header: unknown;
    let body = frame;
    let headerLength: number | undefined;
    if (binary) {
      const split = splitFrame(frame);
      if (!split) throw new FrameViolation('binary frame: the length prefix does not fit the frame');
      header = parseJson(split.header, 'binary frame');
      body = split.body;
      headerLength = split.headerLength;
    } else {
      header = parseJson(frame, 'text frame');
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new FrameViolation(`${binary ? 'binary' : 'text'} frame: the JSON is not an object`);
    const fields = header as Record<string, unknown>;
    const p: Prepared = { id: fields.id ?? `umbra-${++this.assigned}`, idAssigned: fields.id === undefined || fields.id === '', binary, model: '', body, header: fields, allBinary: false };
    if (headerLength !== undefined) p.headerLength = headerLength;
    if (binary) p.allBinary = !mentionsBinaryOutputs(fields);
    try {
      if (typeof p.id !== 'string') throw invalid('INVALID_INPUT', 'a string', 'id', p.id);
      p.model = this.modelOf(fields.model_name);
      const version = fields.model_version;
      if (version !== undefined) {
        if (typeof version !== 'string' || version === '') throw invalid('INVALID_INPUT', 'a non-empty string', 'model_version', version);
        p.version = version;
      }
      const parameters = fields.parameters as Record<string, unknown> | undefined;
      const key = parameters?.routing_key ?? this.options.headers['x-umbra-key'];
      if (typeof key === 'string' && key !== '') p.routingKey = key;
    } catch (err) {
      p.error = err as UmbraError;
    }
    return p;
  }

  private modelOf(name: unknown): string {
    const bound = this.options.model;
    if (bound !== undefined) {
      if (name !== undefined && name !== bound) {
        throw new UmbraError('INVALID_INPUT', `expected "${bound}" or no model_name for model_name on a stream bound to model "${bound}" but received ${describeValue(name)}`);
      }
      return bound;
    }
    if (typeof name !== 'string' || name === '') throw invalid('INVALID_INPUT', 'the model\'s name (this stream is not bound to a model)', 'model_name', name);
    return name;
  }
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return parseRequestJson(bytes);
  } catch (err) {
    throw new FrameViolation(`${what}: malformed JSON (${(err as Error).message.slice(0, 60)})`);
  }
}

function mentionsBinaryOutputs(fields: Record<string, unknown>): boolean {
  const parameters = fields.parameters as Record<string, unknown> | undefined;
  if (parameters?.binary_data_output !== undefined) return true;
  const outputs = fields.outputs;
  if (!Array.isArray(outputs)) return false;
  return outputs.some((o) => (o as { parameters?: Record<string, unknown> } | null)?.parameters?.binary_data !== undefined);
}

function withId(response: InferResponse, id: unknown): InferResponse {
  if (response.id === id) return response;
  const out: InferResponse = { model_name: response.model_name, model_version: response.model_version, id: id as string, outputs: response.outputs };
  if (response.parameters !== undefined) out.parameters = response.parameters;
  return out;
}

function notReady(): UmbraError {
  return new UmbraError('NOT_READY', 'the server is shutting down', { retryAfter: 1 });
}
