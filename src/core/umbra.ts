// Umbra in-process: the model repository, the worker pool and the batchers, with no HTTP.
// The server wraps this; Node applications can embed it and call `predict()` directly.
import { availableParallelism } from 'node:os';
import { UmbraError, invalid } from '../errors.js';
import { binaryOutputsFor, elementCount, parseInferRequest, type ParseInferRequestOptions } from '../protocol/index.js';
import { DATATYPES, type DataType, type InferRequest, type InferResponse, type Tensor, type TensorData } from '../protocol/types.js';
import { ModelManager } from '../repository/manager.js';
import type { InferOptions, InferResult } from '../repository/model-version.js';
import { WorkerPool } from '../workers/pool.js';

export interface UmbraOptions {
  /** Model repository directory (Triton layout). */
  repository: string;
  /** Model worker threads; default one per core. */
  workers?: number;
  /** Reload changed models every N seconds; 0 = off. */
  pollSeconds?: number;
  /** Load every model at start (default true). */
  loadAll?: boolean;
  /** Threads onnxruntime may use inside one run; default 1. */
  intraOpThreads?: number;
}

/** A tensor for `predict()`: typed array or plain numbers, with or without a shape. */
export interface PredictInput {
  data: TensorData | number[] | boolean[];
  shape?: number[];
  datatype?: DataType;
}

export interface PredictOptions extends InferOptions {
  version?: string;
  outputs?: string[];
  id?: string;
  parameters?: Record<string, unknown>;
}

export interface BodyInferResult extends InferResult {
  /** Which outputs the request asked for as binary (Triton's binary tensor extension). */
  binaryOutputs: ReturnType<typeof binaryOutputsFor>;
}

export class Umbra {
  readonly manager: ModelManager;
  readonly pool: WorkerPool;
  private closed = false;

  private constructor(readonly options: UmbraOptions) {
    this.pool = new WorkerPool({ workers: options.workers ?? availableParallelism() });
    this.manager = new ModelManager({ repository: options.repository, pool: this.pool, intraOpThreads: options.intraOpThreads ?? 1 });
  }

  /** Starts the pool and loads the repository. Resolves when every model has loaded or failed. */
  static async open(options: UmbraOptions): Promise<Umbra> {
    const umbra = new Umbra(options);
    if (options.loadAll !== false) await umbra.manager.loadAll();
    if (options.pollSeconds && options.pollSeconds > 0) umbra.manager.startPolling(options.pollSeconds);
    return umbra;
  }

  /** Parses an Open Inference Protocol body (JSON, or JSON + binary tensors) and runs it. */
  async inferBody(model: string, version: string | undefined, body: Uint8Array, headerLength?: number, options: InferOptions = {}): Promise<BodyInferResult> {
    const mv = this.manager.get(model, version);
    const parseOpts: ParseInferRequestOptions = { signature: mv.signature };
    if (headerLength !== undefined) parseOpts.headerLength = headerLength;
    const request = parseInferRequest(body, parseOpts);
    const result = await mv.infer(request, options);
    return { ...result, binaryOutputs: binaryOutputsFor(request) };
  }

  /** Runs an already parsed request (used by transports that parse themselves). */
  infer(model: string, version: string | undefined, request: InferRequest, options: InferOptions = {}): Promise<InferResult> {
    return this.manager.get(model, version).infer(request, options);
  }

  /**
   * In-process prediction with no HTTP hop. Inputs are keyed by name; a tensor without a shape
   * is taken as one row of the model's batched input. Data is validated exactly as over HTTP.
   */
  async predict(model: string, inputs: Record<string, PredictInput>, options: PredictOptions = {}): Promise<InferResponse> {
    const mv = this.manager.get(model, options.version);
    const tensors: Tensor[] = [];
    for (const [name, input] of Object.entries(inputs)) {
      const spec = mv.signature.inputs.find((s) => s.name === name);
      if (!spec) throw new UmbraError('INVALID_INPUT', `unexpected input '${name}' for model '${model}' (inputs: ${mv.signature.inputs.map((s) => s.name).join(', ')})`);
      const datatype = input.datatype ?? spec.datatype;
      if (!DATATYPES.includes(datatype)) throw invalid('INVALID_INPUT', `one of ${DATATYPES.join(', ')}`, `the datatype of input '${name}'`, datatype);
      const shape = input.shape ?? defaultShape(spec.dims, mv.signature.maxBatchSize, input.data.length);
      tensors.push({ name, datatype, shape, data: input.data as TensorData });
    }
    // Route through the protocol validator so in-process callers get the same checks as HTTP.
    const request: Record<string, unknown> = {
      inputs: tensors.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape, data: Array.isArray(t.data) ? t.data : Array.from(t.data as ArrayLike<number>, (x) => (typeof x === 'bigint' ? Number(x) : x)) })),
    };
    if (options.id !== undefined) request.id = options.id;
    if (options.parameters) request.parameters = options.parameters;
    if (options.outputs) request.outputs = options.outputs.map((name) => ({ name }));
    const typedFastPath = tensors.every((t) => !Array.isArray(t.data) && elementCount(t.shape) === (t.data as ArrayLike<number>).length);
    const parsed = typedFastPath
      ? parseTyped(mv.signature, tensors, request)
      : parseInferRequest(Buffer.from(JSON.stringify(request)), { signature: mv.signature });
    const { response } = await mv.infer(parsed, options);
    return response;
  }

  /** Drains every model (queued and running requests finish), then stops the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.manager.drainAll();
    await this.pool.close();
  }
}

/** Typed arrays skip JSON entirely: encode them as the binary extension does and parse that. */
function parseTyped(signature: ParseInferRequestOptions['signature'], tensors: Tensor[], request: Record<string, unknown>): InferRequest {
  const chunks: Buffer[] = [];
  const inputs = tensors.map((t) => {
    const view = t.data as Exclude<TensorData, string[]>;
    const bytes = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
    chunks.push(bytes);
    return { name: t.name, datatype: t.datatype, shape: t.shape, parameters: { binary_data_size: bytes.byteLength } };
  });
  const header = Buffer.from(JSON.stringify({ ...request, inputs }));
  return parseInferRequest(Buffer.concat([header, ...chunks]), { signature, headerLength: header.byteLength });
}

function defaultShape(dims: number[], maxBatchSize: number, length: number): number[] {
  const fixed = dims.filter((d) => d >= 0).reduce((a, b) => a * b, 1);
  const free = dims.filter((d) => d < 0).length;
  const inner = free === 0 ? dims : dims.map((d) => (d < 0 ? Math.max(1, Math.floor(length / Math.max(1, fixed))) : d));
  if (maxBatchSize <= 0) return inner;
  const perRow = inner.reduce((a, b) => a * b, 1);
  return [Math.max(1, Math.floor(length / Math.max(1, perRow))), ...inner];
}
