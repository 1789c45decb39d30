// What the rest of Umbra sees of the execution layer: one version's way of computing parsed,
// validated requests (the batcher path) and already formed batches (batch jobs).
import type { InferResponse, InferRequest } from '../protocol/types.js';
import type { AbortLike } from '../scheduler/cancellation.js';
import type { BatcherStats } from '../scheduler/batcher.js';
import type { UmbraError } from '../errors.js';
import type { QueueBound } from '../scheduler/options.js';
import type { LayerReport, RunResult, SessionSpec, WireTensor } from '../workers/messages.js';
import type { ResolvedModelConfig } from '../repository/config.js';
import type { PrecisionCost } from '../graph/precision-cost.js';
import type { ExecutionPlan } from './executor.js';

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
  /** Aborts the request while it waits in the queue (client went away): an AbortSignal, or the transports' lighter Cancellation. */
  signal?: AbortLike;
  /**
   * When the transport read the request, as `performance.timeOrigin + performance.now()` (a clock
   * every thread of the process shares): the time since counts as queue time.
   */
  receivedAt?: number;
}

export interface VersionExecution {
  /** The session every worker (and an inline executor) opens for this version. */
  readonly session: SessionSpec;
  /** Where batches run: 'inline' on the event-loop thread, or 'worker' in the pool. */
  readonly placement: 'inline' | 'worker';
  /** Measured fastest run time of a probe batch (µs); undefined when not probed. */
  readonly placementCostUs: number | undefined;
  /** Why the batches run where they do, when it is not the probe's cost against the inline budget. */
  readonly placementReason: string | undefined;
  /** The length the probe gave inputs' dynamic dims besides the batch (a sequence's), where it timed them. */
  readonly placementLength: number | undefined;
  /** The queue bound and the measurement it was derived from. */
  readonly queueBound: QueueBound;
  /** Native backend: how each dense layer runs and why, as measured at load. */
  readonly layers: LayerReport[] | undefined;
  /** Native backend on a GPU below fp32: the precision's cost against fp32, measured at load. */
  readonly accuracy: PrecisionCost | undefined;
  /** onnxruntime: why the version runs on other execution providers than the first its config lists. */
  readonly providerNote: string | undefined;
  /** `backend: auto`: which backend it chose and why. */
  readonly backendNote?: string | undefined;
  /** The copy of the model whose weights every session of the version shares, where it has one. */
  readonly sharedWeights?: { path: string; bytes: number; written: boolean } | undefined;
  /** Why the shared copy could not be written, where it could not. */
  readonly sharedWeightsError?: string | undefined;
  /** Queued requests (not yet executing). */
  readonly pending: number;
  readonly inFlight: number;
  /** Runs one parsed, validated request through the dynamic batcher. */
  infer(request: InferRequest, options?: InferOptions): Promise<InferResult>;
  /** Runs an already formed batch on one worker, bypassing the batcher. */
  runBatch(inputs: WireTensor[]): Promise<RunResult>;
  /** Stops taking requests and resolves once queued and executing ones are done. */
  drain(): Promise<void>;
  /** Frees the version's sessions (workers and inline). */
  release(): Promise<void>;
  stats(): BatcherStats;
  /** For a version whose batches run inline: the plain-data plan another thread can build a replica from. */
  replicaPlan?(): ExecutionPlan | undefined;
  /**
   * The QUEUE_FULL error any request would get now whatever it holds (counted as a refusal), or
   * undefined: lets a transport refuse before it reads and parses the body.
   */
  refuseEarly?(): UmbraError | undefined;
  /** Where other threads read the same (see AdmissionBoard). */
  admission?(): AdmissionBoard;
  /** Counts a refusal another thread made on the published state. */
  countRefused?(): void;
}

/**
 * A version's admission state in shared memory: one Int32 the batcher keeps at its AdmissionState
 * (0 admits), and the refusal's message for each other state.
 */
export interface AdmissionBoard {
  flag: SharedArrayBuffer;
  refusals: Record<number, string>;
}

/** What the repository hands the execution layer to open a version. */
export interface VersionFiles {
  name: string;
  version: string;
  modelPath: string;
  config: ResolvedModelConfig;
}

/** Opens a version for serving (warm-up and placement included); the repository calls it on load. */
export type OpenExecution = (files: VersionFiles) => Promise<VersionExecution>;
