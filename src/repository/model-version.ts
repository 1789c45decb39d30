// One loaded model version: its resolved config, its worker sessions and its dynamic batcher.
// Everything an inference needs after the transport has parsed the request.
import { DynamicBatcher } from '../scheduler/batcher.js';
import { concatTensors, splitTensor } from '../protocol/index.js';
import type { InferRequest, InferResponse, ModelSignature, Tensor } from '../protocol/types.js';
import { UmbraError, invalid } from '../errors.js';
import type { WorkerPool } from '../workers/pool.js';
import { copiedTensor, type RunTask, type SessionSpec, type WireTensor } from '../workers/messages.js';
import type { ResolvedModelConfig } from './config.js';
import { nativeRefusal } from '../graph/index.js';

export type TrafficRole = 'primary' | 'canary' | 'shadow' | 'direct';

/** Timings of one request, for metrics and the statistics endpoint. */
export interface InferTiming {
  queueMs: number;
  computeMs: number;
  rows: number;
  batchRows: number;
}

export interface InferResult {
  response: InferResponse;
  timing: InferTiming;
}

export interface InferOptions {
  /** Aborts the request while it waits in the queue (client went away). */
  signal?: AbortSignal;
}

interface Pending {
  inputs: Tensor[];
  rows: number;
  enqueuedAt: number;
  fault?: RunTask['fault'];
}

interface Done {
  outputs: WireTensor[];
  timing: InferTiming;
}

let loadCounter = 0;

/** 'auto' serves on the native backend when it can run every node, else on onnxruntime. */
function resolveBackend(choice: ResolvedModelConfig['backend'], modelPath: string): SessionSpec['backend'] {
  if (choice !== 'auto') return choice;
  return nativeRefusal(modelPath) === null ? 'native' : 'onnxruntime';
}

export class ModelVersion {
  readonly name: string;
  readonly version: string;
  readonly config: ResolvedModelConfig;
  readonly session: SessionSpec;
  readonly signature: ModelSignature;
  readonly loadedAt = Date.now();
  private readonly batcher: DynamicBatcher<Pending, Done>;

  constructor(args: { name: string; version: string; modelPath: string; config: ResolvedModelConfig; pool: WorkerPool; intraOpThreads: number }) {
    this.name = args.name;
    this.version = args.version;
    this.config = args.config;
    this.signature = args.config.signature();
    loadCounter += 1;
    this.session = {
      key: `${args.name}/${args.version}#${loadCounter}@${process.pid}`,
      modelPath: args.modelPath,
      backend: resolveBackend(args.config.backend, args.modelPath),
      executionProviders: args.config.executionProviders,
      intraOpThreads: args.intraOpThreads,
    };
    const pool = args.pool;
    const db = args.config.dynamicBatching;
    const batching = args.config.maxBatchSize > 0 && db.enabled;
    this.batcher = new DynamicBatcher<Pending, Done>({
      maxBatchSize: batching ? args.config.maxBatchSize : 0,
      maxQueueDelayUs: db.maxQueueDelayUs,
      preferredBatchSizes: db.preferredBatchSizes,
      maxQueueSize: db.maxQueueSize,
      defaultTimeoutUs: db.defaultTimeoutUs,
      priorityLevels: db.priorityLevels,
      defaultPriorityLevel: db.defaultPriorityLevel,
      // Each instance is one batch executing on one worker at a time; without an explicit
      // instance_group every worker of the pool may run this model.
      maxInFlight: args.config.instanceGroups.length > 0 ? Math.max(1, args.config.instanceCount) : pool.size,
      execute: (items) => this.execute(pool, items),
    });
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
    const batched = this.config.maxBatchSize > 0;
    // Signature order, so requests that list inputs differently still batch together.
    const inputs = this.signature.inputs.map((s) => request.inputs.find((t) => t.name === s.name)).filter((t): t is Tensor => t !== undefined);
    const rows = batched ? (inputs[0]?.shape[0] ?? 1) : 1;
    const shapeKey = inputs.map((t) => `${t.name}:${t.datatype}:${t.shape.slice(batched ? 1 : 0).join('x')}`).join('|');
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
    const done = await this.batcher.submit(pending, submit);
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

  private async execute(pool: WorkerPool, items: Pending[]): Promise<Done[]> {
    const started = performance.now();
    const first = items[0]!;
    const fault = items.find((i) => i.fault)?.fault;
    // Merging copies the inputs (even for one request), so the transfer to the worker never
    // detaches the caller's request: observers (shadow, drift, logs) still read it afterwards.
    const merged = items.length === 1
      ? first.inputs.map(copiedTensor)
      : first.inputs.map((t, j) => ({ ...concatTensors(items.map((i) => i.inputs[j]!)), name: t.name }));
    const counts = items.map((i) => i.rows);
    const batchRows = counts.reduce((a, b) => a + b, 0);
    const r = await pool.run(this.session, merged, [], fault);
    const perOutput = r.outputs.map((o) => splitTensor(o, counts));
    return items.map((item, k) => ({
      outputs: r.outputs.map((o, j) => ({ ...perOutput[j]![k]!, name: o.name })),
      timing: { queueMs: started - item.enqueuedAt, computeMs: r.computeMs, rows: item.rows, batchRows },
    }));
  }

  /** Stops taking requests and resolves once queued and executing ones are done. */
  drain(): Promise<void> {
    return this.batcher.drain();
  }

  stats(): ReturnType<DynamicBatcher<Pending, Done>['stats']> {
    return this.batcher.stats();
  }
}

function optionalInteger(value: unknown, what: string, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid('INVALID_INPUT', 'a non-negative integer', what, value);
  }
  return value;
}
