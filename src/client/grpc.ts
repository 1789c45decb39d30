// gRPC client for Umbra (or any Open Inference Protocol / Triton gRPC server): unary inference,
// a ModelStreamInfer stream with many requests in flight (answers matched by id), and the
// metadata, readiness, statistics and repository calls. Tensors go raw by default (as Triton's
// clients send them), typed contents on request. Node only (node:http2).
import { decodeInferResponse, decodeStreamResponse, encodeInferRequest, type ParameterMap, type TensorContents, type WireInferRequest, type WireInferResponse, type WireTensor } from '../protocol/proto/infer-messages.js';
import { GrpcChannel, type CallOptions, type GrpcReply } from './grpc-channel.js';
import { UmbraClientError, inSharedMemory, type SharedMemoryRegionStatus, tensorBytes, tensorFromBytes, type ClientInferRequest, type ClientInferResponse, type ClientTensor, type ClientTensorData, type DataType } from './tensors.js';

/** A call that ended with a gRPC status other than OK, or a stream answer with an error_message. */
export class UmbraGrpcError extends UmbraClientError {
  constructor(message: string, readonly code: number, id?: unknown, retryAfter?: number) {
    super(message, 0, id, retryAfter);
  }
}

export interface GrpcClientOptions {
  /** Sent with every call, e.g. {authorization: 'Bearer ...'} for the repository calls. */
  metadata?: Record<string, string>;
}

export interface GrpcInferOptions extends CallOptions {
  version?: string;
  /** Send tensors as raw_input_contents (default) or as typed contents (FP16 has no typed form). */
  raw?: boolean;
}

export interface LoadModelOptions {
  /** The model configuration (Triton's fields), as an object or JSON text. */
  config?: Record<string, unknown> | string;
  /** Files of the model by path inside its folder, e.g. {'1/model.onnx': bytes}; needs `config`. */
  files?: Record<string, Uint8Array>;
}

const PATH = '/inference.GRPCInferenceService/';

function failure(reply: GrpcReply, id?: unknown): UmbraGrpcError {
  const pushback = reply.trailers['grpc-retry-pushback-ms'];
  const retryAfter = typeof pushback === 'string' && /^\d+$/.test(pushback) ? Number(pushback) / 1000 : undefined;
  return new UmbraGrpcError(reply.details || `gRPC status ${reply.status}`, reply.status, id, retryAfter);
}

export class UmbraGrpcClient {
  readonly channel: GrpcChannel;

  /** `address`: host:port (or http://host:port) of the server's gRPC port. */
  constructor(address: string, options: GrpcClientOptions = {}) {
    this.channel = new GrpcChannel(address, options.metadata);
  }

  async infer(model: string, request: ClientInferRequest, options: GrpcInferOptions = {}): Promise<ClientInferResponse> {
    const reply = await this.channel.unary(`${PATH}ModelInfer`, encodeInferRequest(wireRequest(model, request, options)), options);
    if (reply.status !== 0 || !reply.message) throw failure(reply, request.id);
    return clientResponse(decodeInferResponse(reply.message));
  }

  /** Opens a ModelStreamInfer stream. */
  async stream(options: CallOptions = {}): Promise<UmbraGrpcStream> {
    const stream = new UmbraGrpcStream();
    await stream.open(this.channel, options);
    return stream;
  }

  private async control(method: string, request: Record<string, unknown>, options: CallOptions = {}): Promise<Record<string, unknown>> {
    // Loaded on first use: the .proto reader is Node-only, and umbra/client also loads in browsers.
    const { INFERENCE_SERVICE, protoMethod } = await import('../protocol/proto/files.js');
    const definition = protoMethod(INFERENCE_SERVICE, method);
    const reply = await this.channel.unary(`${PATH}${method}`, definition.requestSerialize(request), options);
    if (reply.status !== 0 || !reply.message) throw failure(reply);
    return definition.responseDeserialize(reply.message) as Record<string, unknown>;
  }

  async serverLive(): Promise<boolean> {
    return (await this.control('ServerLive', {})).live === true;
  }

  async serverReady(): Promise<boolean> {
    return (await this.control('ServerReady', {})).ready === true;
  }

  async modelReady(name: string, version = ''): Promise<boolean> {
    return (await this.control('ModelReady', { name, version })).ready === true;
  }

  serverMetadata(): Promise<Record<string, unknown>> {
    return this.control('ServerMetadata', {});
  }

  modelMetadata(name: string, version = ''): Promise<Record<string, unknown>> {
    return this.control('ModelMetadata', { name, version });
  }

  /** The model's configuration in force (Triton's model configuration extension), as REST's GET /v2/models/{m}/config. */
  async modelConfig(name: string, version = ''): Promise<Record<string, unknown>> {
    return (await this.control('ModelConfig', { name, version })).config as Record<string, unknown>;
  }

  modelStatistics(name = '', version = ''): Promise<Record<string, unknown>> {
    return this.control('ModelStatistics', { name, version });
  }

  async repositoryIndex(ready = false): Promise<Record<string, unknown>[]> {
    return (await this.control('RepositoryIndex', { repository_name: '', ready })).models as Record<string, unknown>[];
  }

  /** Loads (or reloads) a model; with `config` and `files`, one given here rather than in the repository. */
  async loadModel(name: string, options: LoadModelOptions = {}, call: CallOptions = {}): Promise<void> {
    const parameters: Record<string, Record<string, unknown>> = {};
    if (options.config !== undefined) parameters.config = { string_param: typeof options.config === 'string' ? options.config : JSON.stringify(options.config) };
    for (const [path, bytes] of Object.entries(options.files ?? {})) parameters[`file:${path}`] = { bytes_param: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
    await this.control('RepositoryModelLoad', { repository_name: '', model_name: name, parameters }, call);
  }

  async unloadModel(name: string, call: CallOptions = {}): Promise<void> {
    await this.control('RepositoryModelUnload', { repository_name: '', model_name: name }, call);
  }

  /**
   * Registers `byteSize` bytes from `offset` of the shared-memory object `key` (shm_open's name,
   * "/name") as region `name` (the server runs with --shared-memory on; an admin call).
   */
  async registerSystemSharedMemory(name: string, key: string, byteSize: number, offset = 0, call: CallOptions = {}): Promise<void> {
    await this.control('SystemSharedMemoryRegister', { name, key, offset, byte_size: byteSize }, call);
  }

  /** Unregisters region `name`, or every region. */
  async unregisterSystemSharedMemory(name = '', call: CallOptions = {}): Promise<void> {
    await this.control('SystemSharedMemoryUnregister', { name }, call);
  }

  /** The registered regions (all, or the one named). */
  async systemSharedMemoryStatus(name = ''): Promise<SharedMemoryRegionStatus[]> {
    const regions = (await this.control('SystemSharedMemoryStatus', { name })).regions as Record<string, SharedMemoryRegionStatus>;
    return Object.values(regions).map((r) => ({ name: r.name, key: r.key, offset: Number(r.offset), byte_size: Number(r.byte_size) }));
  }

  close(): void {
    this.channel.close();
  }
}

/** Requests in flight on one ModelStreamInfer stream, each answer matched to its request by id. */
export class UmbraGrpcStream {
  private readonly waiting = new Map<string, { resolve: (r: ClientInferResponse) => void; reject: (e: Error) => void }>();
  private handle: Awaited<ReturnType<GrpcChannel['stream']>> | undefined;
  private closed: UmbraGrpcError | undefined;
  private seq = 0;
  private readonly prefix = `s${Math.random().toString(36).slice(2, 8)}-`;

  async open(channel: GrpcChannel, options: CallOptions): Promise<void> {
    this.handle = await channel.stream(`${PATH}ModelStreamInfer`, (message) => this.answer(message), (reply) => this.closedWith(reply), options);
  }

  /** Sends a request; resolves with its answer. The request's id is assigned when absent. */
  infer(model: string, request: ClientInferRequest, options: Omit<GrpcInferOptions, keyof CallOptions> = {}): Promise<ClientInferResponse> {
    if (this.closed) return Promise.reject(this.closed);
    const id = request.id ?? `${this.prefix}${++this.seq}`;
    if (this.waiting.has(id)) return Promise.reject(new UmbraClientError(`a request with id ${JSON.stringify(id)} is already in flight on this stream`, 0, id));
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.handle!.write(encodeInferRequest(wireRequest(model, { ...request, id }, options)));
    });
  }

  get inFlight(): number {
    return this.waiting.size;
  }

  /** Half-closes: the server answers what it has, then ends the stream. */
  end(): void {
    this.handle?.end();
  }

  private closedWith(reply: GrpcReply): void {
    this.closed = reply.status === 0 ? new UmbraGrpcError('the stream has ended', 0) : failure(reply);
    for (const [id, w] of this.waiting) w.reject(reply.status === 0 ? new UmbraGrpcError('the stream ended before this request was answered', 0, id) : failure(reply, id));
    this.waiting.clear();
  }

  cancel(): void {
    this.handle?.cancel();
  }

  private answer(message: Buffer): void {
    const decoded = decodeStreamResponse(message);
    const id = decoded.response?.id ?? '';
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    if (decoded.errorMessage !== '') w.reject(new UmbraGrpcError(decoded.errorMessage, 2, id));
    else w.resolve(clientResponse(decoded.response!));
  }
}

/** Plain parameter values as InferParameters (objects, which have no kind of their own, as JSON text). */
function wireParameters(params: Record<string, unknown> | undefined): ParameterMap | undefined {
  if (params === undefined) return undefined;
  const out: ParameterMap = {};
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue;
    out[k] = typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string' || typeof v === 'bigint' ? v : JSON.stringify(v);
  }
  return out;
}

export function wireRequest(model: string, request: ClientInferRequest, options: Omit<GrpcInferOptions, keyof CallOptions>): WireInferRequest {
  const raw = options.raw ?? true;
  const out: WireInferRequest = {
    modelName: model,
    modelVersion: options.version ?? '',
    id: request.id ?? '',
    inputs: [],
    outputs: (request.outputs ?? []).map((o) => {
      const parameters = wireParameters(o.parameters);
      return parameters ? { name: o.name, parameters } : { name: o.name };
    }),
    rawInputContents: [],
  };
  const parameters = wireParameters(request.parameters);
  if (parameters) out.parameters = parameters;
  for (const t of request.inputs) {
    const tensor: WireTensor = { name: t.name, datatype: t.datatype, shape: t.shape };
    const tp = wireParameters(t.parameters);
    if (tp) tensor.parameters = tp;
    // In shared memory: no contents, and no raw_input_contents entry.
    if (inSharedMemory(t)) {
      // Nothing of it in the message.
    } else if (raw) out.rawInputContents.push(tensorBytes(t));
    else tensor.contents = typedContents(t);
    out.inputs.push(tensor);
  }
  return out;
}

function typedContents(t: ClientTensor): TensorContents {
  const d = t.data as ArrayLike<number | bigint | boolean | string>;
  const numbers = () => Array.from(d, (v) => Number(v));
  const bigints = () => Array.from(d, (v) => (typeof v === 'bigint' ? v : BigInt(v as number)));
  switch (t.datatype) {
    case 'BOOL': return { bool: Uint8Array.from(d, (v) => (v ? 1 : 0)) };
    case 'INT8': case 'INT16': case 'INT32': return { int: Int32Array.from(numbers()) };
    case 'UINT8': case 'UINT16': case 'UINT32': return { uint: Uint32Array.from(numbers()) };
    case 'INT64': return { int64: BigInt64Array.from(bigints()) };
    case 'UINT64': return { uint64: BigUint64Array.from(bigints()) };
    case 'FP32': return { fp32: t.data instanceof Float32Array ? t.data : Float32Array.from(numbers()) };
    case 'FP64': return { fp64: t.data instanceof Float64Array ? t.data : Float64Array.from(numbers()) };
    case 'BYTES': return { bytes: (t.data as string[]).map((s) => Buffer.from(s, 'utf8')) };
    case 'FP16': throw new UmbraClientError(`input ${JSON.stringify(t.name)} is FP16, which travels only raw: leave options.raw on`, 0);
  }
}

/** A decoded answer in umbra/client's shape: typed arrays per datatype, raw or typed alike. */
export function clientResponse(wire: WireInferResponse): ClientInferResponse {
  const out: ClientInferResponse = { model_name: wire.modelName, model_version: wire.modelVersion, outputs: [] };
  if (wire.id !== '') out.id = wire.id;
  if (wire.parameters) out.parameters = { ...wire.parameters };
  const raw = wire.rawOutputContents.length > 0;
  wire.outputs.forEach((o, i) => {
    const datatype = o.datatype as DataType;
    let data: ClientTensorData;
    // Written to its region: the answer carries none of it (a raw answer keeps an empty entry).
    if (o.parameters?.['shared_memory_region'] !== undefined) data = [];
    else if (raw) {
      const bytes = wire.rawOutputContents[i];
      if (bytes === undefined) throw new UmbraClientError(`the answer has no raw_output_contents entry for output ${JSON.stringify(o.name)}`, 0);
      data = tensorFromBytes(bytes, 0, bytes.byteLength, datatype, o.shape);
    } else data = fromContents(o.contents ?? {}, datatype);
    const tensor: ClientTensor = { name: o.name, datatype, shape: o.shape, data };
    if (o.parameters) tensor.parameters = { ...o.parameters };
    out.outputs.push(tensor);
  });
  return out;
}

function fromContents(c: TensorContents, datatype: DataType): ClientTensorData {
  switch (datatype) {
    case 'BOOL': return c.bool ?? new Uint8Array(0);
    case 'INT8': return Int8Array.from(c.int ?? []);
    case 'INT16': return Int16Array.from(c.int ?? []);
    case 'INT32': return c.int ?? new Int32Array(0);
    case 'UINT8': return Uint8Array.from(c.uint ?? []);
    case 'UINT16': return Uint16Array.from(c.uint ?? []);
    case 'UINT32': return c.uint ?? new Uint32Array(0);
    case 'INT64': return c.int64 ?? new BigInt64Array(0);
    case 'UINT64': return c.uint64 ?? new BigUint64Array(0);
    case 'FP32': return c.fp32 ?? new Float32Array(0);
    case 'FP64': return c.fp64 ?? new Float64Array(0);
    case 'BYTES': return (c.bytes ?? []).map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8'));
    case 'FP16': throw new UmbraClientError('an FP16 output came as typed contents, which FP16 has none of', 0);
  }
}
