// Umbra in-process: the model repository, the worker pool and the batchers, with no HTTP.
// The server wraps this; Node applications can embed it and call `predict()` directly.
import { withClassification } from '../protocol/classification.js';
import { usableCores } from '../cores.js';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { UmbraError, invalid } from '../errors.js';
import { binaryOutputsFor, parseInferRequest, placeSharedOutputs, type ParseInferRequestOptions } from '../protocol/index.js';
import { checkRequestObject, checkStorage, checkedRequest, parseTensors } from './checked-request.js';
import { SharedMemoryRegistry } from './shared-memory.js';
import { DATATYPES, type DataType, type ModelSignature, type InferRequest, type InferResponse, type RequestedOutput, type Tensor, type TensorData } from '../protocol/types.js';
import { ModelManager } from '../repository/manager.js';
import type { ModelVersion } from '../repository/model-version.js';
import { Executor } from '../execution/executor.js';
import type { InferOptions, InferResult } from '../execution/types.js';
import { SignatureChanged, type BodyInferResult, type InferBodyOptions, type InferenceFront } from './front.js';
import { HookSet, outcomeOf, type InferEvent, type RequestContext, type TrafficRole, type UmbraHooks } from './hooks.js';
import { WorkerPool } from '../workers/pool.js';
import { ThreadRegistry, osThreadId } from './threads.js';
import type { IdAssigner } from './ids.js';
import type { QueueCounts } from '../scheduler/options.js';
import { ownedTensor, type RunResult, type WireTensor } from '../workers/messages.js';

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
  /**
   * CPU models whose 16-row probe batch runs within this many µs run inline, on the thread that
   * reads their requests, instead of in the workers (default 100; the server raises it where
   * every core reads requests: READERS_INLINE_BUDGET_US).
   */
  inlineBudgetUs?: number;
  /**
   * Where state lives; models given in load requests go to STATE/models. Unset: they go to a
   * temporary folder, created at the first such load and removed by close(), so they do not
   * outlive the process (nothing is written into the repository).
   */
  stateDir?: string;
  /**
   * One copy of a version's weights for all its sessions (src/onnx/shared-weights.ts), written
   * under STATE/weights: on by default where there is a state directory; `false` turns it off,
   * `minBytes` sets the inline weights from which a model is copied (default 16 MiB).
   */
  sharedWeights?: false | { minBytes?: number };
  /**
   * Triton's system shared-memory extension: clients on this host may register POSIX
   * shared-memory regions and have tensors read from and answers written to them (default off:
   * registering makes the server read and write an object of the client's choosing).
   */
  sharedMemory?: boolean;
}

/** A tensor for `predict()`: typed array or plain numbers, with or without a shape. */
export interface PredictInput {
  data: TensorData | number[] | boolean[];
  shape?: number[];
  datatype?: DataType;
}

/**
 * A request object for `infer()` as a caller builds it: checked and parsed against the model
 * before it runs, so `parameters` may be left out and a tensor's data may be plain numbers (strings
 * for BYTES), as for `predict()`. A parsed InferRequest is one too.
 */
export interface InferRequestInput {
  id?: string;
  parameters?: Record<string, unknown>;
  inputs: (Omit<Tensor, 'data'> & { data: PredictInput['data'] | bigint[] })[];
  outputs?: RequestedOutput[];
  binaryDataOutput?: boolean;
}

export interface PredictOptions extends InferOptions {
  version?: string;
  outputs?: string[];
  id?: string;
  parameters?: Record<string, unknown>;
}

export type { BodyInferResult } from './front.js';

export class Umbra implements InferenceFront {
  readonly manager: ModelManager;
  readonly pool: WorkerPool;
  /** Extension points for traffic routing, monitoring and logging (see hooks.ts). */
  readonly hooks = new HookSet();
  /** The process's threads by kind, for CPU accounting (threads.ts). */
  readonly threads = new ThreadRegistry();
  /** Assigns ids to requests that bring none; set by a capability that needs them (monitoring's feedback join). */
  ids: IdAssigner | undefined;
  /**
   * The queues of other copies of inline versions in this process (the I/O threads' replicas), by
   * "model/version"; set by the transport that runs them. The queue gauges add them to each
   * version's own, so a scrape counts every thread's queue.
   */
  replicaQueues: (() => Promise<Record<string, QueueCounts>>) | undefined;
  /** System shared-memory regions clients registered (off until a server turns it on). */
  readonly sharedMemory: SharedMemoryRegistry;
  /** Without a state directory, where models given in load requests live until close(). */
  private readonly temporaryModels: string | undefined;
  /** The close under way or done: every call to close() waits for the same one. */
  private closing: Promise<void> | undefined;
  /** Events of answered requests waiting for the hooks (see emit). */
  private events: InferEvent[] = [];
  private readonly eventSources: (() => Promise<void>)[] = [];

  private constructor(readonly options: UmbraOptions) {
    if (typeof options !== 'object' || options === null) throw invalid('INVALID_ARGUMENT', 'an options object such as { repository: \'models\' }', 'Umbra.open()', options);
    if (typeof options.repository !== 'string' || options.repository === '') throw invalid('INVALID_ARGUMENT', 'the model repository\'s folder as a string', 'Umbra option repository', options.repository);
    // Checked here, not where they are used: a fraction or NaN failed each model's load with an
    // internal message (maxInFlight, "reading 'outputRows'"), or none at all.
    for (const key of ['workers', 'intraOpThreads'] as const) {
      const value = options[key];
      if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) throw invalid('INVALID_ARGUMENT', 'a positive integer', `Umbra option ${key}`, value);
    }
    this.threads.add('core', osThreadId());
    this.sharedMemory = new SharedMemoryRegistry(options.sharedMemory === true);
    this.pool = new WorkerPool({ workers: options.workers ?? usableCores(), onWorkerThread: (tid) => this.threads.add('model', tid), onWorkerEnded: () => this.threads.replaced('model') });
    const intraOpThreads = options.intraOpThreads ?? 1;
    // A name no other process guesses: the folder is created at the first load with files, if any.
    this.temporaryModels = options.stateDir ? undefined : join(tmpdir(), `umbra-models-${process.pid}-${randomBytes(8).toString('hex')}`);
    this.manager = new ModelManager({
      repository: options.repository,
      open: (files) => Executor.create({
        ...files, pool: this.pool, intraOpThreads,
        ...(options.inlineBudgetUs !== undefined ? { inlineBudgetUs: options.inlineBudgetUs } : {}),
        ...(options.stateDir && options.sharedWeights !== false ? { sharedWeights: { dir: join(options.stateDir, 'weights'), ...options.sharedWeights } } : {}),
      }),
      overridesDir: this.temporaryModels ?? join(options.stateDir!, 'models'),
    });
  }

  /** Starts the pool and loads the repository. Resolves when every model has loaded or failed. */
  static async open(options: UmbraOptions): Promise<Umbra> {
    const umbra = new Umbra(options);
    if (options.loadAll !== false) {
      try {
        await umbra.manager.loadAll();
      } catch (err) {
        // A repository that cannot be read: the caller never gets this Umbra to close, so its
        // worker threads would outlive the call (two each time an embedder retries, say).
        await umbra.close();
        throw err;
      }
    }
    if (options.pollSeconds && options.pollSeconds > 0) umbra.manager.startPolling(options.pollSeconds);
    return umbra;
  }

  /** Parses an Open Inference Protocol body (JSON, or JSON + binary tensors) and runs it. */
  async inferBody(model: string, version: string | undefined, body: Uint8Array, headerLength?: number, options: InferBodyOptions = {}): Promise<BodyInferResult> {
    const startedAt = performance.now();
    const context = options.context ?? {};
    let { version: mv, role } = this.route(model, version, context);
    const parseOpts: ParseInferRequestOptions = { signature: mv.signature };
    if (headerLength !== undefined) parseOpts.headerLength = headerLength;
    if (options.header !== undefined) parseOpts.header = options.header;
    if (this.sharedMemory.enabled) parseOpts.sharedMemory = this.sharedMemory.table;
    let request: InferRequest | undefined;
    try {
      request = parseInferRequest(body, parseOpts);
      // A routing key in the body (parameters.routing_key) is only known after parsing: route
      // again with it, and parse again only if that picks another version (its own signature).
      if (routingKeyFromBody(request.parameters, context)) {
        const again = this.route(model, version, context);
        if (again.version !== mv) request = parseInferRequest(body, { ...parseOpts, signature: again.version.signature });
        ({ version: mv, role } = again);
      }
    } catch (err) {
      this.emitInvalid(mv, role, context, err, startedAt);
      throw err;
    }
    const result = await this.run(mv, role, request, options, context, startedAt);
    // Fields spelled out, not `{ ...result, binaryOutputs }`: see withData in workers/messages.ts.
    return { response: placeSharedOutputs(request, result.response, this.sharedMemory.table), timing: result.timing, binaryOutputs: binaryOutputsFor(request) };
  }

  /**
   * Runs a request object. Without `accepts` (a request built by the caller) it is checked against
   * the routed version's signature as an HTTP body is, and a bad one is rejected with
   * INVALID_INPUT. `accepts` is for transports that parsed the request themselves (gRPC, the I/O
   * threads): it checks the routed version's signature against the one the request was parsed
   * with, and the request is not checked again; on a mismatch this rejects with SignatureChanged
   * before anything runs.
   */
  infer(model: string, version: string | undefined, request: InferRequestInput, options: InferOptions & { context?: RequestContext; accepts?: (signature: ModelSignature) => boolean } = {}): Promise<InferResult> {
    const startedAt = performance.now();
    const context = options.context ?? {};
    let routed: ReturnType<Umbra['route']> | undefined;
    let parsed: InferRequest;
    try {
      // A caller's object is read only once it is one (its parameters may be missing, or not an
      // object); one that is not is counted on the version its model routes to without it, as
      // inferBody counts a body that is not an object.
      if (!options.accepts) {
        try {
          checkRequestObject(request);
        } catch (err) {
          routed = this.route(model, version, context);
          throw err;
        }
      }
      routingKeyFromBody(request.parameters, context);
      routed = this.route(model, version, context);
      if (options.accepts) {
        if (!options.accepts(routed.version.signature)) return Promise.reject(new SignatureChanged());
        parsed = request as InferRequest; // parsed by the transport that passes `accepts`
      } else {
        parsed = checkedRequest(routed.version.signature, request);
      }
    } catch (err) {
      // An unknown model or one a hook holds out of service: a rejection, as from inferBody. A bad
      // request for a version it was routed to is counted invalid there too.
      if (routed) this.emitInvalid(routed.version, routed.role, context, err, startedAt);
      return Promise.reject(err);
    }
    return this.run(routed.version, routed.role, parsed, options, context, startedAt);
  }

  /**
   * Refuses a request for (model, version) before its body is read, where the version it would
   * run on refuses every request now (its queue at its bound, or standing): under overload a
   * refusal then costs the transport a few microseconds instead of reading, parsing and handing
   * over a body only to refuse it, and the model keeps the cores. Only where the route needs
   * nothing from the request: no hook may answer it without the model (a prediction store) or
   * send an unversioned request elsewhere (a traffic policy). Otherwise, or while the version
   * admits, undefined: the request goes the usual way. A refusal is counted and seen by the hooks
   * as the batcher's own is.
   */
  refuseEarly(model: string, version: string | undefined, context: RequestContext): UmbraError | undefined {
    if (this.hooks.hasAnswering) return undefined;
    const named = version !== undefined && version !== '';
    if (!named && this.hooks.claims(model)) return undefined;
    let mv: ModelVersion;
    try {
      mv = this.manager.get(model, named ? version : undefined);
    } catch {
      return undefined; // the usual way words it (404)
    }
    const refusal = mv.execution.refuseEarly?.();
    if (refusal) this.emit({ model: mv.name, version: mv.version, role: named ? 'direct' : 'primary', outcome: 'rejected', context, error: refusal, durationMs: 0 });
    return refusal;
  }

  /** A refusal another thread made on a version's published admission state (see refuseEarly): counted, and seen by the hooks. */
  refusedElsewhere(model: string, version: string, role: TrafficRole, context: RequestContext, error: unknown): void {
    let mv: ModelVersion | undefined;
    try {
      mv = this.manager.get(model, version);
    } catch {
      mv = undefined; // unloaded since: the hooks still see the refusal
    }
    mv?.execution.countRefused?.();
    this.emit({ model, version, role, outcome: 'rejected', context, error, durationMs: 0 });
  }

  /**
   * Ready to serve: every known model serves (the repository's rule) and no hook holds one out of
   * service (a model whose traffic state is damaged cannot route its requests).
   */
  isReady(): boolean {
    return this.manager.isReady() && !this.hooks.holdsAny;
  }

  /** One model (or one version of it) ready: loaded, and, for its unversioned requests, not held by a hook. */
  isModelReady(name: string, version?: string): boolean {
    return this.manager.isModelReady(name, version) && (version !== undefined || this.hooks.holds(name) === undefined);
  }

  /** Which version serves: a routing hook (canary) may choose, else the named or newest version. */
  /**
   * The version `model`'s unversioned requests are meant for: a traffic policy's primary, else the
   * newest. What its metadata describes (a canary takes only a share of those requests).
   */
  defaultVersion(model: string): ModelVersion {
    return this.hooks.primary(model) ?? this.manager.get(model);
  }

  private route(model: string, version: string | undefined, context: RequestContext): { version: ModelVersion; role: TrafficRole } {
    const routed = this.hooks.route(model, version, context);
    if (routed) return routed;
    return { version: this.manager.get(model, version), role: version ? 'direct' : 'primary' };
  }

  /**
   * Runs a parsed request on a chosen version with the hooks around it (prepare, answer, the
   * result event). Every caller reaches the model through here: the transports (via inferBody /
   * infer), predict(), and shadow copies (role 'shadow', chosen by the traffic policy).
   */
  execute(mv: ModelVersion, request: InferRequest, options: InferOptions & { role: TrafficRole; context?: RequestContext }): Promise<InferResult> {
    return this.run(mv, options.role, request, options, options.context ?? {}, performance.now());
  }

  /**
   * Runs an already formed batch (a batch job's) on the version's workers, past the online
   * batcher and the hooks: its rows are not served requests, they go to a prediction store.
   */
  runBatch(mv: ModelVersion, inputs: WireTensor[]): Promise<RunResult> {
    return mv.execution.runBatch(inputs);
  }

  private async run(mv: ModelVersion, role: TrafficRole, request: InferRequest, options: InferOptions, context: RequestContext, startedAt: number): Promise<InferResult> {
    this.ids?.assign(request);
    this.hooks.prepare(mv, request, context);
    try {
      // A shadow copy exists to compute the candidate: never answered from elsewhere (a store).
      const answering = role === 'shadow' ? undefined : this.hooks.answer(mv, request, context);
      const answered = answering && await answering;
      if (answered) {
        const rows = mv.signature.maxBatchSize > 0 ? (request.inputs[0]?.shape[0] ?? 1) : 1;
        // No timing in the event: nothing was queued or computed, so compute metrics stay untouched.
        this.emit({ model: mv.name, version: mv.version, role, outcome: 'success', context, request, response: answered, durationMs: performance.now() - startedAt });
        return { response: withClassification(request, answered, mv.signature), timing: { queueMs: 0, computeMs: 0, rows, batchRows: 0 } };
      }
      const result = await mv.infer(request, options);
      if (context.responseParameters) result.response.parameters = Object.assign({}, result.response.parameters, context.responseParameters);
      this.emit({ model: mv.name, version: mv.version, role, outcome: 'success', context, request, response: result.response, timing: result.timing, durationMs: performance.now() - startedAt });
      // The hooks (drift, feedback, the log) see the model's outputs; the client gets what it asked for.
      const answer = withClassification(request, result.response, mv.signature);
      return answer === result.response ? result : { response: answer, timing: result.timing };
    } catch (err) {
      this.emit({ model: mv.name, version: mv.version, role, outcome: outcomeOf(err), context, request, error: err, durationMs: performance.now() - startedAt });
      throw err;
    }
  }

  /** A request refused before it ran, for what it holds: counted invalid and seen by the hooks, whatever the road it came by. */
  private emitInvalid(mv: ModelVersion, role: TrafficRole, context: RequestContext, error: unknown, startedAt: number): void {
    this.emit({ model: mv.name, version: mv.version, role, outcome: 'invalid', context, error, durationMs: performance.now() - startedAt });
  }

  /**
   * An event of a request answered elsewhere (an I/O thread that ran an inline model itself):
   * the hooks see it as if this thread had answered it.
   */
  emitEvent(event: InferEvent): void {
    this.emit(event);
  }

  /** Registers where events of requests answered on other threads come from (see settleEvents). */
  addEventSource(settle: () => Promise<void>): () => void {
    this.eventSources.push(settle);
    return () => {
      const i = this.eventSources.indexOf(settle);
      if (i >= 0) this.eventSources.splice(i, 1);
    };
  }

  /**
   * Resolves once the hooks have seen every request answered before the call, on any thread:
   * feedback for an answer a client already holds always finds its prediction.
   */
  async settleEvents(): Promise<void> {
    await Promise.all(this.eventSources.map((settle) => settle()));
    this.flushEvents();
  }

  /**
   * The hooks (metrics, drift, feedback, the prediction log, shadow copies) see each event once the
   * current microtasks are done: the transport writes the answer in those microtasks, so what the
   * hooks cost stays out of the answer's latency, and they still run before the next I/O event, so
   * a client that has its answer finds them done.
   */
  private emit(event: InferEvent): void {
    if (this.events.push(event) === 1) process.nextTick(this.flushEventsNextTick);
  }

  /**
   * One tick later still: an answer bound for an I/O thread is posted by a tick its transport
   * queues in the same microtasks as this event, so the hooks (on a 64 x 4096 answer, a
   * millisecond of monitoring) run after it is on its way, not before. Both ticks run before the
   * next I/O event.
   */
  private readonly flushEventsNextTick = (): void => {
    process.nextTick(this.flushEvents);
  };

  /** Hands the waiting events to the hooks now. */
  private readonly flushEvents = (): void => {
    const events = this.events;
    if (events.length === 0) return;
    this.events = [];
    for (const event of events) this.hooks.emit(event);
  };

  /**
   * In-process prediction with no HTTP hop. Inputs are keyed by name; a tensor without a shape
   * is taken as one row of the model's batched input. Data is validated exactly as over HTTP.
   */
  async predict(model: string, inputs: Record<string, PredictInput>, options: PredictOptions = {}): Promise<InferResponse> {
    const startedAt = performance.now();
    const mv = this.manager.get(model, options.version);
    const role: TrafficRole = options.version ? 'direct' : 'primary';
    let parsed: InferRequest;
    try {
      // A JavaScript caller's mistakes as the HTTP path words them, not a TypeError from reading them.
      if (typeof inputs !== 'object' || inputs === null || Array.isArray(inputs)) throw invalid('INVALID_INPUT', 'an object of tensors by input name', `the inputs of model '${model}'`, inputs);
      const tensors: Tensor[] = [];
      for (const [name, input] of Object.entries(inputs)) {
        if (typeof input !== 'object' || input === null || Array.isArray(input)) throw invalid('INVALID_INPUT', 'an object ({ data, shape?, datatype? })', `input '${name}'`, input);
        const spec = mv.signature.inputs.find((s) => s.name === name);
        if (!spec) throw new UmbraError('INVALID_INPUT', `unexpected input '${name}' for model '${model}' (inputs: ${mv.signature.inputs.map((s) => s.name).join(', ')})`);
        const datatype = input.datatype ?? spec.datatype;
        if (!DATATYPES.includes(datatype)) throw invalid('INVALID_INPUT', `one of ${DATATYPES.join(', ')}`, `the datatype of input '${name}'`, datatype);
        checkStorage(name, datatype, input.data);
        const shape = input.shape ?? defaultShape(spec.dims, mv.signature.maxBatchSize, input.data.length);
        tensors.push({ name, datatype, shape, data: input.data as TensorData });
      }
      // Route through the protocol validator so in-process callers get the same checks as HTTP.
      const request: Record<string, unknown> = {};
      if (options.id !== undefined) request.id = options.id;
      if (options.parameters) request.parameters = options.parameters;
      if (options.outputs) request.outputs = options.outputs.map((name) => ({ name }));
      parsed = parseTensors(mv.signature, tensors, request);
    } catch (err) {
      this.emitInvalid(mv, role, {}, err, startedAt);
      this.flushEvents();
      throw err;
    }
    let response: InferResponse;
    try {
      ({ response } = await this.run(mv, role, parsed, options, {}, startedAt));
    } finally {
      // A caller that reads metrics or the log right after its prediction finds it there.
      this.flushEvents();
    }
    // Small results may be views of a shared slab (the native backend carves them from one), and
    // the caller may keep its answer for as long as it likes: each output gets its own buffer, so
    // a kept answer holds its own bytes and not the slab around them.
    response.outputs = response.outputs.map(ownedTensor);
    return response;
  }

  /** Drains every model (queued and running requests finish), then stops the workers. */
  close(): Promise<void> {
    // A second caller (another shutdown hook) must not go on, or exit, while the drain still runs.
    this.closing ??= (async () => {
      await this.manager.drainAll();
      await this.pool.close();
      this.sharedMemory.close();
      if (this.temporaryModels) await rm(this.temporaryModels, { recursive: true, force: true });
    })();
    return this.closing;
  }
}

/** Copies a string `parameters.routing_key` into the context when no header set one; true if it did. */
function routingKeyFromBody(parameters: InferRequest['parameters'] | undefined, context: RequestContext): boolean {
  const key = parameters?.routing_key;
  if (context.routingKey !== undefined || typeof key !== 'string' || key === '') return false;
  context.routingKey = key;
  return true;
}

function defaultShape(dims: number[], maxBatchSize: number, length: number): number[] {
  const fixed = dims.filter((d) => d >= 0).reduce((a, b) => a * b, 1);
  const free = dims.filter((d) => d < 0).length;
  const inner = free === 0 ? dims : dims.map((d) => (d < 0 ? Math.max(1, Math.floor(length / Math.max(1, fixed))) : d));
  if (maxBatchSize <= 0) return inner;
  const perRow = inner.reduce((a, b) => a * b, 1);
  return [Math.max(1, Math.floor(length / Math.max(1, perRow))), ...inner];
}
