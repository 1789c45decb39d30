// The execution layer of one model version: where its batches run (inline on the event loop or
// in the worker pool), its backend, its dynamic batcher, sharding and staging. The repository
// decides which versions exist; this decides how a parsed, validated request gets computed.
import { DynamicBatcher, QUEUE_AT_BOUND, QUEUE_STANDS } from '../scheduler/batcher.js';
import { deriveQueueBound, type QueueBound } from '../scheduler/options.js';
import { concatTensors, splitTensor } from '../protocol/index.js';
import type { InferRequest, InferResponse, ModelSignature, Tensor } from '../protocol/types.js';
import { ModelRunError, UmbraError, UnbatchedAnswersError, invalid } from '../errors.js';
import { resendingLost, type WorkerPool } from '../workers/pool.js';
import { placeholderInputs, type BackendSession } from '../workers/backends/backend.js';
import { onnxruntimeBackend } from '../workers/backends/onnxruntime.js';
import { renamed, type LayerReport, type RunResult, type RunTask, type SessionSpec, type WarmResult, type WireTensor } from '../workers/messages.js';
import { runInHalves } from './halving.js';
import { join } from 'node:path';
import { sharedWeightsCopy, type SharedWeights } from '../onnx/shared-weights.js';
import { backendChoice, batchSizesOf, dispatchesWhenQuiet, INLINE_BUDGET_US, placementOf, probeRowsOf, resolveBackend, shardMinRowsOf, stagesBatches } from './placement.js';
import { threadArrivals } from '../scheduler/arrivals.js';
import type { AdmissionBoard, InferOptions, InferResult, InferTiming, VersionExecution, VersionFiles } from './types.js';
import type { PrecisionCost } from '../graph/precision-cost.js';
import type { ResolvedModelConfig } from '../repository/config.js';

interface Pending {
  inputs: Tensor[];
  rows: number;
  enqueuedAt: number;
  fault?: RunTask['fault'];
}

interface Done {
  outputs: WireTensor[];
  timing: InferTiming;
  /** This request's own failure, where its batch failed and it was run alone to find out. */
  error?: UmbraError;
}

let loadCounter = 0;

/**
 * Everything an executor needs, as plain data, so an I/O thread can build a replica of an inline
 * version from it (the config object itself does not cross threads).
 */
export interface ExecutionPlan {
  name: string;
  version: string;
  signature: ModelSignature;
  maxBatchSize: number;
  /** Batched model whose inputs have no free dimension but the batch one. */
  fixedShapes: boolean;
  session: SessionSpec;
  batching: {
    enabled: boolean;
    maxQueueDelayUs: number;
    preferredBatchSizes: number[];
    maxQueueSize: number;
    defaultTimeoutUs: number;
    priorityLevels: number;
    defaultPriorityLevel: number;
  };
  /** instance_group count; 0 = every worker may run the model. */
  instanceCount: number;
  /** Fewest rows a shard of a batch may have; 0 when batches are never sharded. */
  shardMinRows: number;
  /** Whether a full batch may wait on a busy worker (`parameters.stage_batches`). */
  stagesBatches: boolean;
  /** Whether an inline version's partial batch goes at once when no request can arrive (`parameters.dispatch_when_quiet`). */
  dispatchWhenQuiet: boolean;
  /** The queue bound and the measurement it rests on; set once the version has been timed at load. */
  queueBound: QueueBound;
}

export function planOf(args: ExecutionArgs, backend = resolveBackend(args.config.backend, args.modelPath)): ExecutionPlan {
  const config = args.config;
  const signature = config.signature();
  loadCounter += 1;
  const db = config.dynamicBatching;
  const session: SessionSpec = {
    key: `${args.name}/${args.version}#${loadCounter}@${process.pid}`,
    modelPath: args.modelPath,
    backend,
    executionProviders: config.executionProviders,
    device: config.device,
    intraOpThreads: args.intraOpThreads,
  };
  if (config.precision === 'tf32' || config.precision === 'bf16') session.precision = config.precision;
  // Outputs that are not tensors (skl2onnx's ZipMap): the backend opens the graph as it is served.
  if (config.outputNotes.length > 0) session.servedGraph = true;
  // The native backend on the CPU times each pruned layer's formats at open, on these sizes.
  if (session.backend === 'native' && session.device !== 'cuda') session.batchSizes = batchSizesOf(config);
  return {
    name: args.name,
    version: args.version,
    signature,
    maxBatchSize: config.maxBatchSize,
    fixedShapes: config.maxBatchSize > 0 && signature.inputs.every((spec) => spec.dims.every((d) => d >= 0)),
    session,
    batching: {
      enabled: db.enabled,
      maxQueueDelayUs: db.maxQueueDelayUs,
      preferredBatchSizes: db.preferredBatchSizes,
      maxQueueSize: db.maxQueueSize,
      defaultTimeoutUs: db.defaultTimeoutUs,
      priorityLevels: db.priorityLevels,
      defaultPriorityLevel: db.defaultPriorityLevel,
    },
    instanceCount: config.instanceCount,
    // Sharding spreads one batch over several workers, so only a model that may use every
    // worker (no instance_group) and whose outputs all split by row (a batching model) shards.
    shardMinRows: config.maxBatchSize > 0 && config.instanceCount === 0 ? shardMinRowsOf(config) : 0,
    stagesBatches: stagesBatches(config),
    dispatchWhenQuiet: dispatchesWhenQuiet(config),
    // Replaced by queueBoundOf once the warm-up has timed a batch.
    queueBound: { maxQueueSize: db.maxQueueSize, source: 'config' },
  };
}

/**
 * The copy of the version's model whose weights every session shares, where it applies (to an
 * onnxruntime model, the caller checks): one with enough inline weights (the native backend packs weights its own way,
 * and a graph rewritten at open, `servedGraph`, loads from bytes that cannot point at a data
 * file). `parameters.share_weights: "false"` keeps a model's own file.
 */
async function shareWeights(args: ExecutionArgs): Promise<SharedWeights | undefined> {
  const config = args.config;
  if (!args.sharedWeights || config.parameters.share_weights === 'false' || config.outputNotes.length > 0) return undefined;
  return sharedWeightsCopy(args.modelPath, join(args.sharedWeights.dir, encodeURIComponent(args.name), args.version), args.sharedWeights.minBytes);
}

/** The first output whose first dim did not follow the batch in one of the warm-up's runs, as a reason. */
export function strayOutput(runs: NonNullable<WarmResult['outputRows']>): string | undefined {
  for (const run of runs) {
    for (const [name, rows] of Object.entries(run.outputs)) {
      if (rows === run.rows) continue;
      const batch = `a ${run.rows}-row batch${run.length > 1 ? ` of length ${run.length}` : ''}`;
      return `its output "${name}" ${rows < 0 ? 'has no dims' : `has ${rows} row${rows === 1 ? '' : 's'}`} for ${batch} (its first dim is not the batch)`;
    }
  }
  return undefined;
}

export class Executor implements VersionExecution {
  readonly name: string;
  readonly version: string;
  /** Gains `tuned` once the first worker has opened it (so later opens run the same plan). */
  session: SessionSpec;
  /** Native backend: how each dense layer runs and why, as measured at load. */
  layers: LayerReport[] | undefined;
  /** Native backend on a GPU below fp32: the precision's cost, measured at load. */
  accuracy: PrecisionCost | undefined;
  /** onnxruntime: why the version runs on other execution providers than the first its config lists. */
  providerNote: string | undefined;
  /** `backend: auto`: which backend it chose and why. */
  backendNote: string | undefined;
  readonly signature: ModelSignature;
  private batcher!: DynamicBatcher<Pending, Done>;
  /**
   * The batcher's admission state (AdmissionState) where other threads read it: an I/O thread
   * refuses a request for this version before reading its body while it is not 0.
   */
  private readonly admissionFlag = new Int32Array(new SharedArrayBuffer(4));
  /** The event-loop session, when this version's batches run inline. */
  private inline: BackendSession | undefined;
  /** Measured fastest run time of a probe batch on the event loop (µs); undefined when not probed. */
  placementCostUs: number | undefined;
  /** Why the batches run where they do, when it is not the probe's cost against the budget. */
  placementReason: string | undefined;
  /** The length the probe gave inputs' dynamic dims besides the batch, where it timed them. */
  placementLength: number | undefined;
  /** Where the version's sessions read one shared copy of its weights from, if they do. */
  sharedWeights: SharedWeights | undefined;
  /** Why the shared copy could not be written, where it could not (each session reads the model's own file). */
  sharedWeightsError: string | undefined;

  /**
   * Loads a version: opens and warms its session on every worker, then decides where its batches
   * run (see `placement`). Resolves once it can serve.
   */
  static async create(args: ExecutionArgs): Promise<Executor> {
    const placement = placementOf(args.config);
    const { backend, note: backendNote } = backendChoice(args.config.backend, args.modelPath);
    let shared: SharedWeights | undefined;
    let sharingError: string | undefined;
    try {
      shared = backend === 'onnxruntime' ? await shareWeights(args) : undefined;
    } catch (err) {
      // No room or no right to write the copy: each session reads the model's own file, as before.
      sharingError = (err as Error).message;
    }
    const mv = new Executor(planOf(shared ? { ...args, modelPath: shared.path } : args, backend), args.pool);
    mv.sharedWeights = shared;
    mv.sharedWeightsError = sharingError;
    mv.backendNote = backendNote;
    const rows = probeRowsOf(args.config.maxBatchSize);
    // The probe runs in a worker, so timing a heavy model never blocks the event loop. It decides
    // the placement and the queue bound, so every version is timed.
    const warmed = await args.pool.warm(mv.session, rows);
    if (args.config.maxBatchSize > 0) {
      const stray = strayOutput(warmed.outputRows ?? []);
      if (stray) {
        args.pool.evict(mv.session.key);
        throw new UnbatchedAnswersError(stray);
      }
    }
    // Inputs with a length (a dynamic dim besides the batch): a request's cost grows with its own
    // length, so the probe at PROBE_LENGTH is the one that counts (the first ran them at 1).
    const length = warmed.probeLength;
    const costUs = length ? ('micros' in length ? length.micros : undefined) : warmed.probeMicros;
    mv.placementCostUs = costUs;
    if (length && 'micros' in length) mv.placementLength = length.length;
    // Every later open (the inline session, an I/O thread's replica) follows the measured plan.
    if (warmed.tuned) mv.session = mv.plan.session = { ...mv.session, tuned: warmed.tuned };
    mv.layers = warmed.layers;
    mv.accuracy = warmed.accuracy;
    mv.providerNote = warmed.providerNote;
    const cheap = costUs !== undefined && costUs <= (args.inlineBudgetUs ?? INLINE_BUDGET_US);
    // A GPU model stays in the workers whatever its cost: an inline session would be a second
    // device session, uploading the weights twice.
    const onCpu = (mv.session.device ?? 'cpu') === 'cpu';
    if (placement === 'inline') mv.placementReason = 'parameters.execution: inline';
    else if (placement === 'worker') mv.placementReason = 'parameters.execution: worker';
    else if (!onCpu) mv.placementReason = `device ${mv.session.device}`;
    else if (length && 'error' in length) {
      mv.placementReason = `its inputs' dynamic dims besides the batch could not be timed at length ${length.length} (${length.error}), so what a request costs is not known`;
    }
    if (placement === 'inline' || (placement === 'auto' && cheap && onCpu)) {
      mv.inline = await openInline(mv.session);
      // Its batches run on the reading threads' sessions: the workers' sessions (opened for the
      // warm-up and the probe) would only hold memory, one copy of the weights each, until a
      // batch job's runBatch reopens one.
      args.pool.park(mv.session.key);
    }
    const slots = mv.inline ? 1 : args.config.instanceCount > 0 ? args.config.instanceCount : args.pool.size;
    mv.plan.queueBound = queueBoundOf(args.config, rows, costUs ?? warmed.probeMicros, slots, length && 'micros' in length ? length.length : undefined);
    mv.batcher = mv.createBatcher();
    return mv;
  }

  /**
   * An inline version's replica on this thread (an I/O thread answering the version's requests
   * itself): its own session and its own batcher, from the plan of the version on the core's thread.
   */
  static async replica(plan: ExecutionPlan): Promise<Executor> {
    const mv = new Executor(plan, undefined);
    mv.inline = await openInline(plan.session);
    mv.batcher = mv.createBatcher();
    return mv;
  }

  private constructor(private readonly plan: ExecutionPlan, private readonly pool: WorkerPool | undefined) {
    this.name = plan.name;
    this.version = plan.version;
    this.signature = plan.signature;
    this.session = plan.session;
  }

  /** The queue bound and the measurement it was derived from. */
  get queueBound(): QueueBound {
    return this.plan.queueBound;
  }

  /** The plan a replica is built from: only for a version whose batches run inline. */
  replicaPlan(): ExecutionPlan | undefined {
    return this.inline ? this.plan : undefined;
  }

  private createBatcher(): DynamicBatcher<Pending, Done> {
    const plan = this.plan;
    const db = plan.batching;
    const batching = plan.maxBatchSize > 0 && db.enabled;
    const slots = plan.instanceCount > 0 ? plan.instanceCount : this.pool?.size ?? 1;
    return new DynamicBatcher<Pending, Done>({
      maxBatchSize: batching ? plan.maxBatchSize : 0,
      maxQueueDelayUs: db.maxQueueDelayUs,
      preferredBatchSizes: db.preferredBatchSizes,
      maxQueueSize: plan.queueBound.maxQueueSize,
      admissionBudgetUs: (plan.queueBound.budgetMs ?? 0) * 1000,
      defaultTimeoutUs: db.defaultTimeoutUs,
      priorityLevels: db.priorityLevels,
      defaultPriorityLevel: db.defaultPriorityLevel,
      // Each instance is one batch executing on one worker at a time; without an explicit
      // instance_group every worker of the pool may run this model.
      // Inline models run on this thread, one batch at a time.
      maxInFlight: this.inline ? 1 : slots,
      coalesce: this.inline !== undefined,
      // Only inline batches: they are fed by this thread's own clients alone, where a worker
      // model's batcher on the core's thread also takes what the I/O threads hand over.
      ...(this.inline && plan.dispatchWhenQuiet ? { quiet: threadArrivals.quiet } : {}),
      // A full batch waits on a busy worker (see WorkerPool.run's `staged`) when every worker is
      // busy, so the worker goes on to it at once.
      maxStaged: this.inline || !plan.stagesBatches ? 0 : slots,
      execute: (items, batch) => this.execute(items, batch.staged),
      onAdmission: (state) => Atomics.store(this.admissionFlag, 0, state),
    });
  }

  /** The QUEUE_FULL error any request would get now, counted; undefined when one may be admitted. */
  refuseEarly(): UmbraError | undefined {
    return this.batcher.refuseEarly();
  }

  /**
   * Where other threads read whether this version refuses every request now, and the errors'
   * messages by state (see AdmissionState); `countRefused` counts a refusal they made on it.
   */
  admission(): AdmissionBoard {
    return { flag: this.admissionFlag.buffer as SharedArrayBuffer, refusals: { [QUEUE_AT_BOUND]: this.batcher.refusal(QUEUE_AT_BOUND).message, [QUEUE_STANDS]: this.batcher.refusal(QUEUE_STANDS).message } };
  }

  countRefused(): void {
    this.batcher.countRefused();
  }

  /** Where batches run: 'inline' on the event-loop thread, or 'worker' in the pool. */
  get placement(): 'inline' | 'worker' {
    return this.inline ? 'inline' : 'worker';
  }

  /** Queued requests (not yet executing). */
  get pending(): number {
    return this.batcher.pending;
  }

  get inFlight(): number {
    return this.batcher.inFlight;
  }

  /** Runs one parsed, validated request through the batcher. */
  async infer(request: InferRequest, options: InferOptions = {}): Promise<InferResult> {
    const batched = this.plan.maxBatchSize > 0;
    const inputs = inSignatureOrder(this.signature, request.inputs);
    const rows = batched ? (inputs[0]?.shape[0] ?? 1) : 1;
    // The parser has checked each input against its spec: when no spec has a free dimension past
    // the batch one, every complete request has the same shapes and they all batch together.
    const shapeKey = this.plan.fixedShapes && inputs.length === this.signature.inputs.length ? '' : shapeKeyOf(inputs, batched);
    const params = request.parameters;
    const priority = optionalInteger(params.priority, 'parameters.priority', 0);
    const timeoutUs = optionalInteger(params.timeout, 'parameters.timeout', 0);
    const pending: Pending = { inputs, rows, enqueuedAt: performance.now() };
    const fault = params.umbra_fault;
    if (fault === 'crash' || fault === 'throw') pending.fault = fault;
    const submit: Parameters<DynamicBatcher<Pending, Done>['submit']>[1] = { rows, shapeKey };
    if (priority > 0) submit.priority = priority;
    if (timeoutUs > 0) submit.timeoutUs = timeoutUs;
    if (options.signal) submit.signal = options.signal;
    if (options.receivedAt !== undefined) submit.waitedUs = (performance.timeOrigin + performance.now() - options.receivedAt) * 1000;
    const done = await this.batcher.submit(pending, submit);
    if (done.error) throw done.error;
    return { response: this.respond(request, done.outputs), timing: done.timing };
  }

  private respond(request: InferRequest, outputs: WireTensor[]): InferResponse {
    const wanted = request.outputs;
    const chosen = wanted ? wanted.map((w) => {
      const found = outputs.find((o) => o.name === w.name);
      if (!found) throw new UmbraError('INVALID_INPUT', `unexpected inference output '${w.name}' for model '${this.name}'`);
      return found;
    }) : outputs;
    const response: InferResponse = { model_name: this.name, model_version: this.version, outputs: chosen };
    if (request.id !== undefined) response.id = request.id;
    return response;
  }

  private async execute(items: Pending[], staged: boolean): Promise<Done[]> {
    const started = performance.now();
    const fault = items.find((i) => i.fault)?.fault;
    const inline = this.inline;
    const batchRows = items.reduce((a, i) => a + i.rows, 0);
    let r: RunResult;
    try {
      if (inline) {
        r = await runInline(inline, items.length === 1 ? items[0]!.inputs : merge(items), fault);
      } else {
        // A batch lost with a worker that died before reaching it (staged behind the task that
        // killed it), or after answering it, goes again, whole, to the next free worker: its
        // merged inputs left with the dead worker; the requests' own are intact.
        r = await resendingLost((attempt) => this.runInWorkers(items, batchRows, fault, staged && attempt === 1));
      }
    } catch (err) {
      if (!(err instanceof ModelRunError)) throw err;
      // The model refused something in this batch: halves of it run again, down to single
      // requests where they fail, so a client's bad input (an id past the embedding table) fails
      // that request alone, and its batch-mates are answered as if it had not been there.
      if (items.length === 1) throw await this.refusals(err);
      return this.isolate(items, started);
    }
    return answers(items, r, started) ?? this.oneByOne(items, started);
  }

  /**
   * A batch whose answers could not be cut by request, run again one request at a time: each is
   * answered with what the model gives its inputs alone.
   */
  private async oneByOne(items: Pending[], started: number): Promise<Done[]> {
    const done: Done[] = [];
    for (const item of items) {
      try {
        const r = this.inline ? await runInline(this.inline, item.inputs, undefined) : await this.runInWorkers([item], item.rows, undefined, false);
        done.push(answers([item], r, started)![0]!);
      } catch (err) {
        if (!(err instanceof ModelRunError)) throw err;
        done.push(this.refused(item, started, this.refusal(err)));
      }
    }
    return done;
  }

  /** A failed batch's requests, each answered or failed with its own refusal (see `refusals`). */
  private async isolate(items: Pending[], started: number): Promise<Done[]> {
    const done = await runInHalves(items, async (part) => {
      const rows = part.reduce((a, i) => a + i.rows, 0);
      const r = this.inline ? await runInline(this.inline, part.length === 1 ? part[0]!.inputs : merge(part), undefined) : await this.runInWorkers(part, rows, undefined, false);
      return answers(part, r, started) ?? this.oneByOne(part, started);
    });
    // Where a batch-mate ran, the model works: the others' inputs are at fault.
    if (done.some((d) => !(d instanceof ModelRunError))) {
      return done.map((d, i) => (d instanceof ModelRunError ? this.refused(items[i]!, started, this.refusal(d)) : d));
    }
    const broken = await this.brokenSince(done[0] as ModelRunError);
    return items.map((item, i) => this.refused(item, started, broken ?? this.refusal(done[i] as ModelRunError)));
  }

  private refused(item: Pending, started: number, error: UmbraError): Done {
    return { outputs: [], timing: { queueMs: started - item.enqueuedAt, computeMs: 0, rows: item.rows, batchRows: item.rows }, error };
  }

  /**
   * What to answer when no request of a batch ran, not even alone: a 400 when the model still
   * runs the placeholder batch it warmed up on at load (so these requests' inputs, their values
   * or their shapes, are what it refuses: a token id past the embedding table, a sequence longer
   * than its positions), else a 500 (the model or the host has failed, and no client's input is to blame).
   */
  private async refusals(err: ModelRunError): Promise<UmbraError> {
    return (await this.brokenSince(err)) ?? this.refusal(err);
  }

  /** The 500 to answer when the version no longer runs its warm-up batch; undefined while it does. */
  private async brokenSince(err: ModelRunError): Promise<UmbraError | undefined> {
    const spec = this.signature.inputs;
    const batched = this.plan.maxBatchSize > 0;
    const placeholder = placeholderInputs(spec.map((t) => ({ name: t.name, datatype: t.datatype, shape: batched ? [1, ...t.dims] : t.dims })));
    try {
      const inline = this.inline;
      if (inline) await runInline(inline, placeholder, undefined);
      else await this.workerPool().run(this.session, placeholder, []);
    } catch (probe) {
      if (!(probe instanceof ModelRunError)) throw probe;
      return new UmbraError('INTERNAL', `model '${this.name}' version ${this.version} no longer runs even the placeholder batch it warmed up on: ${probe.message} (the request's own run: ${err.message})`);
    }
    return undefined;
  }

  /**
   * A request the model would not run: a client error. A batch-mate ran, or the version still
   * runs its warm-up batch, so what it refused is in this request's inputs.
   */
  private refusal(err: ModelRunError): UmbraError {
    return new UmbraError('INVALID_INPUT', `model '${this.name}' version ${this.version} could not run on this request's inputs: ${err.message}`);
  }

  /**
   * Runs a batch in the pool. A batch that arrives while other workers idle is split by rows
   * across them (shards of at least shardMinRows rows) and reassembled in order: the batch
   * finishes sooner, and under load, when no worker idles, every batch runs whole on one worker.
   */
  private runInWorkers(items: Pending[], rows: number, fault: RunTask['fault'], staged: boolean): Promise<RunResult> {
    const pool = this.workerPool();
    const minRows = this.plan.shardMinRows;
    const shards = minRows > 0 && !fault && !staged ? Math.min(pool.idle, Math.floor(rows / minRows)) : 1;
    // One request's inputs go as they are, and the pool copies them (into buffers it reuses): the
    // transfer must not detach the request, which observers read after it is answered. A merge of
    // several is a copy already, and moves.
    const single = items.length === 1;
    const inputs = single ? items[0]!.inputs : merge(items);
    if (shards <= 1) return pool.run(this.session, inputs, [], { staged, borrowed: single, ...(fault ? { fault } : {}) });
    // Shards are views the pool copies before transferring, whether or not they are the request's.
    return pool.runSharded(this.session, inputs, [], rows, Math.ceil(rows / shards));
  }

  private workerPool(): WorkerPool {
    if (!this.pool) throw new UmbraError('INTERNAL', `model '${this.name}' version ${this.version} has no worker pool on this thread`);
    return this.pool;
  }

  /** Stops taking requests and resolves once queued and executing ones are done. */
  drain(): Promise<void> {
    return this.batcher.drain();
  }

  /**
   * One already formed batch straight to the pool (batch jobs form full batches themselves, so
   * the online batcher's queueing would only add delay, and max_batch_size would cut them into
   * many small, costly tasks).
   */
  runBatch(inputs: WireTensor[]): Promise<RunResult> {
    // Borrowed (copied into the pool's reused buffers, not moved): a batch the model refuses
    // runs again in halves from the same tensors (batch/job.ts).
    return resendingLost(() => this.workerPool().run(this.session, inputs, [], { borrowed: true }));
  }

  /** Evicts this version's worker sessions and releases its event-loop session, if any. */
  async release(): Promise<void> {
    this.pool?.evict(this.session.key);
    const inline = this.inline;
    this.inline = undefined;
    if (inline) await inline.release();
  }

  stats(): ReturnType<DynamicBatcher<Pending, Done>['stats']> {
    return this.batcher.stats();
  }
}

/**
 * A config's max_queue_size, or the bound derived from the warm-up's measured batch (see
 * deriveQueueBound). Either way requests that arrive behind a standing backlog are refused,
 * unless the config asks for an unbounded queue (max_queue_size 0).
 */
function queueBoundOf(config: ResolvedModelConfig, rows: number, probeMicros: number | undefined, slots: number, length: number | undefined): QueueBound {
  const db = config.dynamicBatching;
  const derived = deriveQueueBound({
    batchMicros: probeMicros ?? 1000,
    batchRows: rows,
    ...(length !== undefined ? { batchLength: length } : {}),
    slots,
    maxBatchSize: config.maxBatchSize,
    ...(db.queueBudgetMs > 0 ? { budgetMs: db.queueBudgetMs } : {}),
  });
  if (!db.maxQueueSizeSet) return derived;
  const bound: QueueBound = { maxQueueSize: db.maxQueueSize, source: 'config' };
  if (db.maxQueueSize > 0) Object.assign(bound, { budgetMs: derived.budgetMs, budgetSource: derived.budgetSource, batchRows: derived.batchRows, batchMs: derived.batchMs, slots: derived.slots, ...(length !== undefined ? { batchLength: length } : {}) });
  return bound;
}

export interface ExecutionArgs extends VersionFiles {
  pool: WorkerPool;
  intraOpThreads: number;
  /** Where versions' shared weights are written (sharedWeightsCopy), and from what size; absent: not shared. */
  sharedWeights?: { dir: string; minBytes?: number };
  /** A CPU version whose probe batch runs within this many µs runs inline (default INLINE_BUDGET_US). */
  inlineBudgetUs?: number;
}

/** Several requests' inputs as one batch: new arrays, so a transfer detaches no request. */
function merge(items: Pending[]): WireTensor[] {
  return items[0]!.inputs.map((t, j) => renamed(concatTensors(items.map((i) => i.inputs[j]!)), t.name));
}

async function openInline(session: SessionSpec): Promise<BackendSession> {
  const backend = session.backend === 'native' ? (await import('../workers/backends/native.js')).nativeBackend : onnxruntimeBackend;
  return backend.open(session);
}

/** Each request's share of a batch's outputs, cut by its rows. */
function answers(items: Pending[], r: { outputs: WireTensor[]; computeMs: number }, started: number): Done[] | undefined {
  const counts = items.map((i) => i.rows);
  const batchRows = counts.reduce((a, b) => a + b, 0);
  // A batch of one request is its answer as it is: a model that does not batch (max_batch_size 0)
  // may answer with any first dim (a reduction, a count of its own), which there is no cutting by.
  if (items.length === 1) return [{ outputs: r.outputs, timing: { queueMs: started - items[0]!.enqueuedAt, computeMs: r.computeMs, rows: items[0]!.rows, batchRows } }];
  // An output without a row per batch row (one whose length depends on the data, which the
  // warm-up's zeros did not show): there is no telling whose rows are whose.
  if (r.outputs.some((o) => o.shape[0] !== batchRows)) return undefined;
  const perOutput = r.outputs.map((o) => splitTensor(o, counts));
  return items.map((item, k) => ({
    // splitTensor's pieces already carry the output's name.
    outputs: perOutput.map((pieces) => pieces[k]!),
    timing: { queueMs: started - item.enqueuedAt, computeMs: r.computeMs, rows: item.rows, batchRows },
  }));
}

async function runInline(session: BackendSession, inputs: WireTensor[], fault: RunTask['fault']): Promise<{ outputs: WireTensor[]; computeMs: number }> {
  if (fault && process.env.UMBRA_FAULT_INJECTION === '1') throw new Error('injected fault');
  const t0 = performance.now();
  let outputs: WireTensor[];
  try {
    outputs = session.runSync ? session.runSync(inputs, []) : await session.run(inputs, []);
  } catch (err) {
    throw new ModelRunError(err instanceof Error ? err.message : String(err));
  }
  return { outputs, computeMs: performance.now() - t0 };
}

/** The request's inputs in signature order, so requests that list them differently batch together. */
function inSignatureOrder(signature: ModelSignature, given: Tensor[]): Tensor[] {
  const specs = signature.inputs;
  if (given.length === specs.length && given.every((t, i) => t.name === specs[i]!.name)) return given;
  return specs.map((s) => given.find((t) => t.name === s.name)).filter((t): t is Tensor => t !== undefined);
}

/** Requests batch together only when their inputs' names, datatypes and non-batch dims agree. */
function shapeKeyOf(inputs: Tensor[], batched: boolean): string {
  return inputs.map((t) => `${t.name}:${t.datatype}:${t.shape.slice(batched ? 1 : 0).join('x')}`).join('|');
}

function optionalInteger(value: unknown, what: string, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid('INVALID_INPUT', 'a non-negative integer', what, value);
  }
  return value;
}
