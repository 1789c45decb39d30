// gRPC transports for `--protocol grpc` (unary ModelInfer, one HTTP/2 stream per request) and
// `--protocol grpc-stream` (ModelStreamInfer, many requests in flight on one stream, answers
// matched by id), with pre-encoded messages, so the generator measures the server and not a client
// library. Unary calls go as frames on a socket (h2-connection.ts: node:http2's client costs more
// CPU per call than the server it measures); a stream runs on umbra/client's node:http2 channel,
// where one call carries many requests. A unary answer is judged by its grpc-status alone, a
// stream answer is read only as far as its id and error_message.
import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2';
import { GrpcChannel, authorityOf, type GrpcReply } from '../client/grpc-channel.js';
import { UmbraError } from '../errors.js';
import { encodeInferRequest, type ParameterMap, type WireInferRequest } from '../protocol/proto/infer-messages.js';
import { INFERENCE_SERVICE, protoMethod } from '../protocol/proto/files.js';
import { ProtoReader, WIRE_LENGTH, stringSize } from '../protocol/proto/wire.js';
import type { ModelMetadata, Payload } from './payload.js';
import { H2GrpcConnection, grpcHeaderBlock } from './h2-connection.js';

export type GrpcDone = (error: string | null) => void;

const PATH = `/${INFERENCE_SERVICE}/`;

/** The payload as a ModelInferRequest with raw contents (as Triton's perf_analyzer sends it). */
export function grpcRequest(payload: Payload, model: string, version: string | undefined): Buffer {
  const request: WireInferRequest = {
    modelName: model,
    modelVersion: version ?? '',
    id: '',
    inputs: payload.tensors.map((t) => (t.parameters ? { name: t.name, datatype: t.datatype, shape: t.shape, parameters: t.parameters as ParameterMap } : { name: t.name, datatype: t.datatype, shape: t.shape })),
    outputs: (payload.outputs ?? []).map((o) => ({ name: o.name, parameters: o.parameters as ParameterMap })),
    // Inputs in shared memory have no raw entry.
    rawInputContents: payload.tensors.filter((t) => t.parameters?.['shared_memory_region'] === undefined).map((t) => t.bytes),
  };
  return encodeInferRequest(request);
}

/** A gRPC frame of `message` with an id field appended (protobuf takes fields in any order). */
function frameWithId(message: Buffer, id: string): Buffer {
  const idBytes = 1 + stringSize(id);
  const frame = Buffer.allocUnsafe(5 + message.length + idBytes);
  frame[0] = 0;
  frame.writeUInt32BE(message.length + idBytes, 1);
  message.copy(frame, 5);
  let at = 5 + message.length;
  frame[at++] = (3 << 3) | WIRE_LENGTH;
  frame[at++] = id.length; // ids this generator makes are short ASCII
  frame.write(id, at, 'latin1');
  return frame;
}

/** The id and error flag of a ModelStreamInferResponse, without decoding its tensors. */
function streamAnswer(message: Buffer): { id: string; failed: boolean } {
  const r = new ProtoReader(message);
  let id = '';
  let failed = false;
  while (!r.done) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WIRE_LENGTH)) {
      const length = r.span();
      r.pos += length;
      if (length > 0) failed = true;
    } else if (tag === ((2 << 3) | WIRE_LENGTH)) {
      const length = r.span();
      const end = r.pos + length;
      const sub = new ProtoReader(message, r.pos, end);
      while (!sub.done) {
        const t = sub.tag();
        if (t === ((3 << 3) | WIRE_LENGTH)) id = sub.string();
        else sub.skip(t & 7);
      }
      r.pos = end;
    } else r.skip(tag & 7);
  }
  return { id, failed };
}

export class GrpcLoadConnection {
  private readonly channel: GrpcChannel;
  /** Unary calls over plain-text HTTP/2 (TLS, https://, goes through the channel). */
  private readonly lean: H2GrpcConnection | undefined;
  private session: ClientHttp2Session | undefined;
  private stream: { write(message: Uint8Array): boolean; stream: ClientHttp2Stream } | undefined;
  private readonly unaryInFlight = new Set<{ stream: ClientHttp2Stream; sentAt: number; done: GrpcDone }>();
  private readonly waiting = new Map<string, { done: GrpcDone; sentAt: number }>();
  private nextId = 0;
  private dead = false;
  readonly opened: Promise<void>;

  constructor(address: string, private readonly streaming: boolean, private readonly prefix: string) {
    this.channel = new GrpcChannel(address);
    const url = new URL(authorityOf(address));
    if (!streaming && url.protocol === 'http:') {
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
      this.lean = new H2GrpcConnection(host, Number(url.port || 80), grpcHeaderBlock(`${PATH}ModelInfer`, url.host));
    }
    this.opened = this.open(address);
    this.opened.catch(() => undefined);
  }

  private async open(address: string): Promise<void> {
    if (this.lean) {
      try {
        await this.lean.opened;
      } catch (err) {
        throw new UmbraError('INVALID_ARGUMENT', `could not connect to the gRPC server at ${address}: ${(err as Error).message}; check --url (the server's gRPC port)`);
      }
      return;
    }
    try {
      this.session = await this.channel.connect();
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `could not connect to the gRPC server at ${address}: ${(err as Error).message}; check --url (the server's gRPC port)`);
    }
    this.session.once('close', () => this.failAll('connection closed'));
    if (this.streaming) {
      this.stream = await this.channel.stream(`${PATH}ModelStreamInfer`, (m) => this.onAnswer(m), (reply) => this.failAll(reply.status === 0 ? 'stream ended' : `grpc-${reply.status}`));
    }
  }

  get alive(): boolean {
    return !this.dead && (this.lean?.alive ?? true);
  }

  /** One request: `message` is a pre-encoded ModelInferRequest without an id. */
  send(message: Buffer, frame: Buffer, done: GrpcDone, now: number): void {
    if (this.lean) {
      this.lean.send(frame, done, now);
      return;
    }
    if (this.dead || !this.session) {
      done('connection closed');
      return;
    }
    if (this.stream) {
      const id = `${this.prefix}${this.nextId++}`;
      this.waiting.set(id, { done, sentAt: now });
      this.stream.stream.write(frameWithId(message, id));
      return;
    }
    const entry = { stream: undefined as unknown as ClientHttp2Stream, sentAt: now, done };
    this.unaryInFlight.add(entry);
    entry.stream = GrpcChannel.call(this.session, this.channel.headers(`${PATH}ModelInfer`), frame, (reply: GrpcReply) => {
      if (!this.unaryInFlight.delete(entry)) return;
      done(reply.status === 0 ? null : `grpc-${reply.status}`);
    });
  }

  /** Fails requests older than `deadline` (performance.now() units). */
  expire(deadline: number): void {
    this.lean?.expire(deadline);
    for (const e of this.unaryInFlight) {
      if (e.sentAt >= deadline) continue;
      this.unaryInFlight.delete(e);
      e.stream.close(8);
      e.done('timeout');
    }
    for (const [id, w] of this.waiting) {
      if (w.sentAt >= deadline) continue;
      this.waiting.delete(id);
      w.done('timeout');
    }
  }

  close(): void {
    this.dead = true;
    this.unaryInFlight.clear();
    this.waiting.clear();
    this.lean?.close();
    // Now: an open stream (grpc-stream) would keep a graceful close waiting for ever.
    this.channel.destroy();
  }

  private onAnswer(message: Buffer): void {
    let answer: { id: string; failed: boolean };
    try {
      answer = streamAnswer(message);
    } catch {
      return;
    }
    const w = this.waiting.get(answer.id);
    if (!w) return;
    this.waiting.delete(answer.id);
    w.done(answer.failed ? 'grpc-stream-error' : null);
  }

  private failAll(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    for (const e of this.unaryInFlight) e.done(reason);
    this.unaryInFlight.clear();
    for (const w of this.waiting.values()) w.done(reason);
    this.waiting.clear();
  }
}

/** A model's metadata over gRPC (ModelMetadata), in the shape the HTTP metadata route gives. */
export async function fetchGrpcModelMetadata(address: string, model: string): Promise<ModelMetadata> {
  const definition = protoMethod(INFERENCE_SERVICE, 'ModelMetadata');
  const channel = new GrpcChannel(address);
  try {
    const reply = await channel.unary(`${PATH}ModelMetadata`, definition.requestSerialize({ name: model, version: '' }));
    if (reply.status !== 0 || !reply.message) throw new UmbraError('INVALID_ARGUMENT', `model metadata of ${model} from the gRPC server at ${address} failed (status ${reply.status}): ${reply.details}; check --url (the server's gRPC port) and --model`);
    const meta = definition.responseDeserialize(reply.message) as ModelMetadata;
    return { name: meta.name || model, inputs: meta.inputs, outputs: meta.outputs };
  } finally {
    channel.close();
  }
}

/** The statistics extension over gRPC (ModelStatistics), as the HTTP route's JSON body. */
export async function fetchGrpcStatistics(address: string, model: string, version?: string): Promise<unknown> {
  const definition = protoMethod(INFERENCE_SERVICE, 'ModelStatistics');
  const channel = new GrpcChannel(address);
  try {
    const reply = await channel.unary(`${PATH}ModelStatistics`, definition.requestSerialize({ name: model, version: version ?? '' }), { deadlineMs: 2000 });
    return reply.status === 0 && reply.message ? definition.responseDeserialize(reply.message) : null;
  } finally {
    channel.close();
  }
}
