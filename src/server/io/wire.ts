// The messages between I/O threads and the core's thread, in one file (piscina's src/types.ts
// habit). Messages travel in envelopes: every message one side produces in one turn of its event
// loop goes in one postMessage, and every tensor of those messages is copied once into one slab
// (an ArrayBuffer that is transferred, not cloned). A hop then costs one postMessage per turn, not
// one per request, and no tensor's whole backing buffer is cloned (a tensor split from a batch is
// a view of the batch's outputs; cloning a view would clone every row of the batch).
import { MOVE_MIN_BYTES, takeOwned } from '../../owned-buffers.js';
import type { SharedRegion } from '../../protocol/shared-memory.js';
import type { QueueCounts } from '../../scheduler/options.js';
import type { ErrorCode } from '../../errors.js';
import { UmbraError, isUmbraError, ERROR_CODES } from '../../errors.js';
import { typedArrayView } from '../../protocol/datatype.js';
import type { InferRequest, InferResponse, ModelSignature, RequestedOutput, Tensor, TensorData } from '../../protocol/types.js';
import type { Outcome, RequestContext, TrafficRole } from '../../core/hooks.js';
import type { ExecutionPlan } from '../../execution/executor.js';
import type { AdmissionBoard, InferTiming } from '../../execution/types.js';
import type { StreamStats } from '../ws.js';
import { WireDecoder, WireEncoder, type EncodedTurn } from './codec.js';

/** A tensor whose data lives in the envelope's slab (at, length) or, for BYTES, in `strings`. */
export interface PackedTensor {
  name: string;
  datatype: Tensor['datatype'];
  shape: number[];
  parameters?: Record<string, unknown>;
  /** Byte offset in the slab, or in the moved buffer. */
  at: number;
  length: number;
  strings?: string[];
  /** Index of the envelope's moved buffer holding the data (transferred, not copied). */
  moved?: number;
}

/** Where a message's tensors are: the turn's slab, and the buffers moved with it. */
export type SlabSource = ArrayBuffer | { slab: ArrayBuffer | undefined; moved: ArrayBuffer[] } | undefined;

function slabOf(source: SlabSource): ArrayBuffer | undefined {
  return source instanceof ArrayBuffer || source === undefined ? source : source.slab;
}

export interface PackedRequest {
  id?: string;
  parameters: Record<string, unknown>;
  inputs: PackedTensor[];
  outputs?: RequestedOutput[];
  binaryDataOutput?: boolean;
}

export interface PackedResponse {
  model_name: string;
  model_version: string;
  id?: string;
  parameters?: Record<string, unknown>;
  outputs: PackedTensor[];
}

/** What crosses for a request: the headers the hooks read, the routing key, the transport. */
export type WireContext = Pick<RequestContext, 'routingKey' | 'headers' | 'transport'>;

/** An InferEvent of a request an I/O thread answered itself. */
export interface PackedEvent {
  model: string;
  version: string;
  role: TrafficRole;
  outcome: Outcome;
  context: WireContext;
  request?: PackedRequest;
  response?: PackedResponse;
  error?: WireError;
  timing?: InferTiming;
  durationMs: number;
}

export interface WireError {
  /** Absent for an internal fault (answered 500). */
  code?: ErrorCode;
  message: string;
  retryAfter?: number;
}

export type { QueueCounts };

/** Sums queue counts by "model/version" over threads. */
export function sumQueues(list: readonly Record<string, QueueCounts>[]): Record<string, QueueCounts> {
  const out: Record<string, QueueCounts> = {};
  for (const queues of list) {
    for (const [key, q] of Object.entries(queues)) {
      const sum = (out[key] ??= { pending: 0, inFlight: 0, executingRequests: 0, maxQueueSize: 0, fullest: 0 });
      sum.pending += q.pending;
      sum.maxQueueSize += q.maxQueueSize;
      // Requests are refused by the queue that is full, not by the sum: its fill is what matters.
      sum.fullest = Math.max(sum.fullest, q.fullest);
      sum.inFlight += q.inFlight;
      sum.executingRequests += q.executingRequests;
    }
  }
  return out;
}

/** I/O thread -> core. */
export type ToCore =
  /** A request the I/O thread parsed against the signature with fingerprint `fp`. */
  | { t: 'infer'; id: number; model: string; version?: string; fp: string; request: PackedRequest; context: WireContext; receivedAt?: number }
  /** A request the I/O thread could not parse itself (unknown signature, or a bad body: the core words the error). */
  | { t: 'body'; id: number; model: string; version?: string; body: PackedTensor; headerLength?: number; header?: unknown; context: WireContext; receivedAt?: number }
  /** Any other route: the core's API answers it. */
  | { t: 'api'; id: number; method: string; path: string; query: string; headers: Record<string, string>; body: PackedTensor; remoteAddress?: string }
  /** The client went away: abort the request if it has not started. */
  | { t: 'cancel'; id: number }
  /** A request the thread answered itself (an inline replica): the hooks see it on the core's thread. */
  | { t: 'event'; event: PackedEvent }
  /**
   * A request the thread refused before reading its body, on the admission state the core's
   * version published (see Catalog.admission): counted there and seen by the hooks.
   */
  | { t: 'refused'; model: string; version: string; role: 'primary' | 'direct'; context: WireContext; error: WireError }
  /** A block of prediction ids for requests the thread answers itself. */
  | { t: 'ids'; id: number; count: number }
  /** Everything the thread sent before this has been sent (answers a 'flush'). */
  | { t: 'flushed'; seq: number };

/** Core -> I/O thread. */
export type ToIo =
  | { t: 'ok'; id: number; response: PackedResponse; timing: InferTiming; binaryOutputs?: Set<string> | 'all' | 'none' }
  | { t: 'err'; id: number; error: WireError }
  /** The version the core routed to has another signature than the one parsed against: send the body. */
  | { t: 'retry'; id: number }
  | { t: 'ids'; id: number; start: number }
  /** An API answer; a byte body travels in the slab. */
  | { t: 'reply'; id: number; status: number; headers: Record<string, string>; text?: string; bytes?: PackedTensor; stream?: true }
  /** The next chunk of a streamed API answer, and its end. */
  | { t: 'chunk'; id: number; text: string }
  | { t: 'end'; id: number };

/**
 * One turn's messages in their binary form (codec.ts: the hot messages written into a transferred
 * buffer, the rest cloned in their place), and the slab their tensors were copied into. Cloning
 * the same object graphs cost the sender and the receiver several times as much.
 */
export interface Envelope<M> {
  turn: EncodedTurn;
  slab: ArrayBuffer | undefined;
  /** Buffers that went by transfer (SlabWriter's moves), indexed by PackedTensor.moved. */
  moved?: ArrayBuffer[];
  /** Only for the type: the kind of message inside. */
  readonly of?: M;
}

/** The receiving end of one link: every envelope the link carries must go through it, in order. */
export class Inbox<M> {
  private readonly decoder = new WireDecoder();

  open(envelope: Envelope<M>): M[] {
    return this.decoder.decode<M>(envelope.turn);
  }
}

/** Control messages on the thread's own port (not batched). */
export type Control =
  /** `generation` counts the core's catalogs; the thread says when it applied one. */
  | { t: 'catalog'; catalog: Catalog; generation: number }
  | { t: 'drain' }
  /** The drain's deadline passed: answer every request still unanswered now, then 'cut-off'. */
  | { t: 'deadline'; drainSeconds: number }
  | { t: 'stop' }
  /**
   * The process is exiting (process.exit() with the server running): close every uWS socket now and
   * set `signal[index]` to 1 once they are closed, while the core's thread waits on it.
   */
  | { t: 'exit'; signal: Int32Array; index: number }
  | { t: 'stats' }
  /** Send everything waiting now, then 'flushed' on the data channel. */
  | { t: 'flush'; seq: number };

/** I/O thread -> core, on the thread's control port. */
export type ControlReply =
  | { t: 'listening'; port: number; tid: number }
  | { t: 'listen-failed'; message: string }
  | { t: 'drained' }
  | { t: 'cut-off' }
  | { t: 'catalog-applied'; generation: number }
  | ({ t: 'stats'; queues: Record<string, QueueCounts> } & StreamStats)
  | { t: 'stream-event'; event: 'pause' } | { t: 'stream-event'; event: 'close'; code: number; reason: string };

/** What an I/O thread needs to parse requests itself: each loaded version's signature. */
export interface Catalog {
  models: Record<string, {
    /** Signature fingerprint of each loaded version. */
    versions: Record<string, string>;
    /** The fingerprint every version shares (an unversioned request may go to any), else null. */
    uniform: string | null;
    /** The version an unversioned request goes to when no hook claims the model. */
    default: string | null;
    /** A hook (a traffic policy) may route this model's requests elsewhere: they go to the core. */
    claimed: boolean;
  }>;
  signatures: Record<string, ModelSignature>;
  /** Inline versions an I/O thread may answer itself, by "model/version". */
  replicas: Record<string, ExecutionPlan>;
  /** A hook may answer requests without the model (a prediction store): every request goes to the core. */
  answering: boolean;
  /** A hook may read request headers: they cross with requests and events (else they stay on the thread). */
  headers: boolean;
  /** Prefix of the ids the core assigns; null when it assigns none. */
  idPrefix: string | null;
  /** The registered system shared-memory regions (their descriptors are the process's); absent while the extension is off. */
  sharedMemory?: SharedRegion[];
  /**
   * Each version's admission state as its batcher on the core's thread keeps it, by
   * "model/version" (shared memory: read at each request, not sent on change).
   */
  admission: Record<string, AdmissionBoard>;
}

/**
 * Copies tensors into one slab as messages are added; `finish` hands the slab over. Where moves
 * are allowed (an I/O thread's side), a large tensor whose buffer the request owns
 * (src/owned-buffers.ts) goes whole by transfer instead, in `takeMoved`.
 */
export class SlabWriter {
  private parts: Uint8Array[] = [];
  private offsets: number[] = [];
  private size = 0;
  private moved: ArrayBuffer[] = [];

  constructor(private readonly allowMoves = false) {}

  /** `answered`: the tensor's request has been answered (its event), so its body may move too. */
  add(t: Tensor, answered = false): PackedTensor {
    const packed: PackedTensor = { name: t.name, datatype: t.datatype, shape: t.shape, at: 0, length: t.data.length };
    if (t.parameters !== undefined) packed.parameters = t.parameters;
    const data = t.data;
    if (Array.isArray(data)) {
      packed.strings = data;
      return packed;
    }
    if (this.allowMoves && data.byteLength >= MOVE_MIN_BYTES) {
      const buffer = data.buffer;
      const known = this.moved.indexOf(buffer as ArrayBuffer);
      if (known >= 0 || takeOwned(buffer, answered)) {
        packed.moved = known >= 0 ? known : this.moved.push(buffer as ArrayBuffer) - 1;
        packed.at = data.byteOffset;
        return packed;
      }
    }
    packed.at = this.addBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return packed;
  }

  /** The buffers moved since the last call, for the turn's transfer list. */
  takeMoved(): ArrayBuffer[] | undefined {
    if (this.moved.length === 0) return undefined;
    const moved = this.moved;
    this.moved = [];
    return moved;
  }

  /** Raw bytes (a body), as a UINT8 tensor. */
  addBody(bytes: Uint8Array): PackedTensor {
    return { name: '', datatype: 'UINT8', shape: [bytes.byteLength], at: this.addBytes(bytes), length: bytes.byteLength };
  }

  private addBytes(bytes: Uint8Array): number {
    // 8-byte aligned, so every view of the 64-bit datatypes is legal on the other side.
    const at = (this.size + 7) & ~7;
    this.parts.push(bytes);
    this.offsets.push(at);
    this.size = at + bytes.byteLength;
    return at;
  }

  get empty(): boolean {
    return this.parts.length === 0;
  }

  finish(): ArrayBuffer | undefined {
    if (this.parts.length === 0) return undefined;
    const slab = new ArrayBuffer(this.size);
    const view = new Uint8Array(slab);
    for (let i = 0; i < this.parts.length; i++) view.set(this.parts[i]!, this.offsets[i]!);
    this.parts = [];
    this.offsets = [];
    this.size = 0;
    return slab;
  }
}

export function unpackTensor(p: PackedTensor, source: SlabSource): Tensor {
  let data: TensorData;
  const from = p.moved !== undefined && source !== undefined && !(source instanceof ArrayBuffer) ? source.moved[p.moved] : slabOf(source);
  if (p.strings !== undefined) data = p.strings;
  else if (p.length === 0 || from === undefined) data = typedArrayView(p.datatype, new ArrayBuffer(0), 0, 0);
  else data = typedArrayView(p.datatype, from, p.at, p.length);
  const t: Tensor = { name: p.name, datatype: p.datatype, shape: p.shape, data };
  if (p.parameters !== undefined) t.parameters = p.parameters;
  return t;
}

export function unpackBody(p: PackedTensor, source: SlabSource): Uint8Array {
  const slab = slabOf(source);
  return slab === undefined || p.length === 0 ? new Uint8Array(0) : new Uint8Array(slab, p.at, p.length);
}

/** `answered`: the request has been answered (its event): its body's buffer may move rather than be copied. */
export function packRequest(request: InferRequest, slab: SlabWriter, answered = false): PackedRequest {
  const packed: PackedRequest = { parameters: request.parameters, inputs: request.inputs.map((t) => slab.add(t, answered)) };
  if (request.id !== undefined) packed.id = request.id;
  if (request.outputs !== undefined) packed.outputs = request.outputs;
  if (request.binaryDataOutput !== undefined) packed.binaryDataOutput = request.binaryDataOutput;
  return packed;
}

export function unpackRequest(p: PackedRequest, slab: SlabSource): InferRequest {
  const request: InferRequest = { parameters: p.parameters, inputs: p.inputs.map((t) => unpackTensor(t, slab)) };
  if (p.id !== undefined) request.id = p.id;
  if (p.outputs !== undefined) request.outputs = p.outputs;
  if (p.binaryDataOutput !== undefined) request.binaryDataOutput = p.binaryDataOutput;
  return request;
}

export function packResponse(response: InferResponse, slab: SlabWriter): PackedResponse {
  const packed: PackedResponse = { model_name: response.model_name, model_version: response.model_version, outputs: response.outputs.map((t) => slab.add(t)) };
  if (response.id !== undefined) packed.id = response.id;
  if (response.parameters !== undefined) packed.parameters = response.parameters;
  return packed;
}

export function unpackResponse(p: PackedResponse, slab: SlabSource): InferResponse {
  const response: InferResponse = { model_name: p.model_name, model_version: p.model_version, outputs: p.outputs.map((t) => unpackTensor(t, slab)) };
  if (p.id !== undefined) response.id = p.id;
  if (p.parameters !== undefined) response.parameters = p.parameters;
  return response;
}

/** What of a request's context crosses to the core; its headers only when a hook may read them. */
export function wireContext(context: RequestContext | undefined, headers = true): WireContext {
  const out: WireContext = {};
  if (!context) return out;
  if (context.routingKey !== undefined) out.routingKey = context.routingKey;
  if (headers && context.headers !== undefined) out.headers = context.headers;
  if (context.transport !== undefined) out.transport = context.transport;
  return out;
}

export function wireError(err: unknown): WireError {
  if (isUmbraError(err)) {
    const out: WireError = { code: err.code, message: err.message };
    if (err.retryAfter !== undefined) out.retryAfter = err.retryAfter;
    return out;
  }
  return { message: err instanceof Error ? err.message : String(err) };
}

/** The error as the core's thread would have thrown it, so transports word it the same way. */
export function errorFromWire(e: WireError): Error {
  if (e.code !== undefined && e.code in ERROR_CODES) return new UmbraError(e.code, e.message, e.retryAfter === undefined ? {} : { retryAfter: e.retryAfter });
  return new Error(e.message);
}

/**
 * Messages of one turn, sent together. `post` runs once per turn at most: `schedule` decides when
 * (setImmediate on an I/O thread, after the poll phase that read the turn's requests; nextTick on
 * the core's thread, after the microtasks that settled a batch's requests).
 */
export class Outbox<M> {
  private msgs: M[] = [];
  readonly slab: SlabWriter;
  private scheduled = false;
  private readonly encoder = new WireEncoder();

  /** `allowMoves`: large tensors the requests own go by transfer (an I/O thread's side only). */
  constructor(private readonly post: (envelope: Envelope<M>, transfer: ArrayBuffer[]) => void, private readonly schedule: (fn: () => void) => void, allowMoves = false) {
    this.slab = new SlabWriter(allowMoves);
  }

  /** Where the tensors of an envelope this link carried are. */
  static source(envelope: Envelope<unknown>): SlabSource {
    return envelope.moved ? { slab: envelope.slab, moved: envelope.moved } : envelope.slab;
  }

  push(msg: M): void {
    this.msgs.push(msg);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.msgs.length === 0) return;
    const msgs = this.msgs;
    this.msgs = [];
    const slab = this.slab.finish();
    const moved = this.slab.takeMoved();
    const turn = this.encoder.encode(msgs, jsonFaithful);
    const transfer: ArrayBuffer[] = slab ? [slab, turn.bytes] : [turn.bytes];
    if (moved) transfer.push(...moved);
    this.post(moved ? { turn, slab, moved } : { turn, slab }, transfer);
  };
}

/**
 * Whether the parts of a message that cross as JSON text (parameters, requested outputs, errors)
 * read back as they were: not so for what callers put in, parameters holding a gRPC client's NaN
 * double or 64-bit integer, or a set of binary outputs. Such a message is cloned instead.
 */
function jsonFaithful(msg: unknown): boolean {
  const m = msg as Partial<Record<'request' | 'response' | 'event' | 'binaryOutputs', unknown>>;
  if (m.binaryOutputs instanceof Set) return false;
  if (m.request !== undefined && !requestFaithful(m.request as PackedRequest)) return false;
  if (m.response !== undefined && !responseFaithful(m.response as PackedResponse)) return false;
  const e = m.event as PackedEvent | undefined;
  if (e !== undefined) {
    if (!Number.isFinite(e.durationMs)) return false;
    if (e.request !== undefined && !requestFaithful(e.request)) return false;
    if (e.response !== undefined && !responseFaithful(e.response)) return false;
  }
  return true;
}

function requestFaithful(r: PackedRequest): boolean {
  if (!valueFaithful(r.parameters)) return false;
  for (const t of r.inputs) if (t.parameters !== undefined && !valueFaithful(t.parameters)) return false;
  if (r.outputs) for (const o of r.outputs) if (o.parameters !== undefined && !valueFaithful(o.parameters)) return false;
  return true;
}

function responseFaithful(r: PackedResponse): boolean {
  if (r.parameters !== undefined && !valueFaithful(r.parameters)) return false;
  for (const t of r.outputs) if (t.parameters !== undefined && !valueFaithful(t.parameters)) return false;
  return true;
}

function valueFaithful(v: unknown): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0);
    case 'object': {
      if (v === null) return true;
      if (Array.isArray(v)) return v.every((x) => x !== undefined && valueFaithful(x));
      if (Object.getPrototypeOf(v) !== Object.prototype) return false;
      for (const k in v) {
        // A key holding undefined is dropped by JSON and reads back as undefined all the same.
        const x = (v as Record<string, unknown>)[k];
        if (x !== undefined && !valueFaithful(x)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}
