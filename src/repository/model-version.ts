// One loaded model version as the repository knows it: name, version, resolved config and
// signature, and the execution that computes its requests (src/execution). The repository
// decides which versions serve; it never schedules.
import type { ModelSignature } from '../protocol/types.js';
import type { InferOptions, InferResult, VersionExecution } from '../execution/types.js';
import type { InferRequest } from '../protocol/types.js';
import type { ResolvedModelConfig } from './config.js';

export type { InferTiming, InferResult, InferOptions } from '../execution/types.js';
export type { TrafficRole } from '../core/hooks.js';

export class ModelVersion {
  readonly signature: ModelSignature;
  readonly loadedAt = Date.now();

  constructor(
    readonly name: string,
    readonly version: string,
    readonly config: ResolvedModelConfig,
    readonly execution: VersionExecution,
  ) {
    this.signature = config.signature();
  }

  get session(): VersionExecution['session'] {
    return this.execution.session;
  }

  get placement(): VersionExecution['placement'] {
    return this.execution.placement;
  }

  get placementCostUs(): number | undefined {
    return this.execution.placementCostUs;
  }

  get placementReason(): string | undefined {
    return this.execution.placementReason;
  }

  get placementLength(): number | undefined {
    return this.execution.placementLength;
  }

  get queueBound(): VersionExecution['queueBound'] {
    return this.execution.queueBound;
  }

  /** Native backend: each dense layer's format and what decided it. */
  get layers(): VersionExecution['layers'] {
    return this.execution.layers;
  }

  /** The copy of the model whose weights every session shares (src/onnx/shared-weights.ts), if any. */
  get sharedWeights(): VersionExecution['sharedWeights'] {
    return this.execution.sharedWeights;
  }

  get sharedWeightsError(): string | undefined {
    return this.execution.sharedWeightsError;
  }

  /** Native backend on a GPU below fp32: what the precision costs against fp32. */
  get accuracy(): VersionExecution['accuracy'] {
    return this.execution.accuracy;
  }

  /** onnxruntime: why the version runs on other execution providers than the first its config lists. */
  get providerNote(): string | undefined {
    return this.execution.providerNote;
  }

  /** `backend: auto`: which backend it chose and why. */
  get backendNote(): string | undefined {
    return this.execution.backendNote;
  }

  /** Queued requests (not yet executing). */
  get pending(): number {
    return this.execution.pending;
  }

  get inFlight(): number {
    return this.execution.inFlight;
  }

  /** Runs one parsed, validated request through the version's batcher. */
  infer(request: InferRequest, options: InferOptions = {}): Promise<InferResult> {
    return this.execution.infer(request, options);
  }

  drain(): Promise<void> {
    return this.execution.drain();
  }

  release(): Promise<void> {
    return this.execution.release();
  }

  stats(): ReturnType<VersionExecution['stats']> {
    return this.execution.stats();
  }
}
