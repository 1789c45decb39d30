// Shadow traffic: after the primary has answered, a copy of the request runs on each shadow
// version, and the two answers are compared. Shadows never touch the primary's answer: each
// shadow version has its own bounded queue (full = drop and count), at most `concurrency` runs
// in flight, and none starts while the primary has queued work, so under overload shadow work
// is what gets dropped. On models with priority levels shadows also ask for the lowest one.
import type { InferRequest, InferResponse } from '../protocol/types.js';
import type { InferResult, InferTiming, ModelVersion } from '../repository/model-version.js';
import { compareModeOf, compareOutputs, tensorForLog, DEFAULT_TOLERANCE, type Comparison } from './compare.js';
import { AgreementStats, Reservoir, SideStats, round } from './stats.js';

export interface ShadowJob {
  request: InferRequest;
  primary: InferResponse;
  /** Queue + compute time of the primary run (GET /shadow shows both latencies). */
  primaryLatencyMs: number;
  /** Compute of the batch that carried the primary run, to compare with the shadow's on the same rows. */
  primaryComputeMs?: number;
  /** False while the primary version was still in its warm-up (its latency is not evidence). */
  primaryWarm?: boolean;
}

export interface ShadowOptions {
  /** Jobs waiting per shadow version before new ones are dropped. */
  queueCapacity: number;
  /** Shadow runs in flight per shadow version. */
  concurrency: number;
  /** Disagreements kept per model (a uniform sample of all seen). */
  logCapacity: number;
}

export const DEFAULT_SHADOW_OPTIONS: ShadowOptions = { queueCapacity: 64, concurrency: 1, logCapacity: 50 };

/**
 * What one finished shadow run tells rollout analysis and the other observers (metrics, drift,
 * feedback, the prediction log), which see it as an answer like any other.
 */
export interface ShadowOutcome {
  model: string;
  version: string;
  ok: boolean;
  /** The shadow's own queue + compute (its queue is all wait behind primary work: it runs alone). */
  latencyMs?: number;
  primaryLatencyMs: number;
  primaryComputeMs?: number;
  primaryWarm: boolean;
  comparison?: Comparison;
  error?: unknown;
  /** The copy the shadow ran (same id and inputs as the primary's request) and its answer. */
  request: InferRequest;
  response?: InferResponse;
  timing?: InferTiming;
}

export interface ShadowHost {
  /** The loaded version to run on, or undefined (unloaded: the job is skipped). */
  resolve(model: string, version: string): ModelVersion | undefined;
  /** The primary version currently serving, whose queue gates shadow starts. */
  primaryOf(model: string): ModelVersion | undefined;
  /** Runs a shadow copy on its version through the core's one entry point (the hooks see it, role 'shadow'). */
  run(mv: ModelVersion, request: InferRequest): Promise<InferResult>;
  onOutcome(outcome: ShadowOutcome): void;
  onDropped(model: string, version: string): void;
  random(): number;
}

class Lane {
  readonly queue: ShadowJob[] = [];
  running = 0;
  dropped = 0;
  skipped = 0;
  readonly shadow = new SideStats();
  readonly primaryLatency = new Reservoir();
  readonly agreement = new AgreementStats();
  constructor(readonly model: string, readonly version: string) {}
}

export interface DisagreementEntry {
  at: string;
  version: string;
  id?: string;
  rows: number;
  agreeing_rows: number;
  mean_abs_diff: number | null;
  mismatched_outputs?: string[];
  inputs: ReturnType<typeof tensorForLog>[];
  primary: ReturnType<typeof tensorForLog>[];
  shadow: ReturnType<typeof tensorForLog>[];
}

export class ShadowRunner {
  private readonly lanes = new Map<string, Lane>();
  private readonly logs = new Map<string, { seen: number; entries: DisagreementEntry[] }>();
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly host: ShadowHost, readonly options: ShadowOptions = DEFAULT_SHADOW_OPTIONS) {}

  private lane(model: string, version: string): Lane {
    const key = `${model}\0${version}`;
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = new Lane(model, version);
      this.lanes.set(key, lane);
    }
    return lane;
  }

  /** Queues a copy for one shadow version; false when its queue is full (the job is dropped). */
  offer(model: string, version: string, job: ShadowJob): boolean {
    if (this.closed) return false;
    const lane = this.lane(model, version);
    if (lane.queue.length >= this.options.queueCapacity) {
      lane.dropped += 1;
      this.host.onDropped(model, version);
      return false;
    }
    lane.queue.push(job);
    this.pump(lane);
    return true;
  }

  /** Starts waiting jobs of a model's lanes if the primary has no queued work (called after every primary answer). */
  pumpModel(model: string): void {
    for (const lane of this.lanes.values()) if (lane.model === model && lane.queue.length > 0) this.pump(lane);
  }

  private pump(lane: Lane): void {
    while (lane.queue.length > 0 && lane.running < this.options.concurrency) {
      const primary = this.host.primaryOf(lane.model);
      if (primary && primary.pending > 0) {
        // The primary is queueing: wait, and look again shortly even if no answer arrives.
        this.scheduleRetry();
        return;
      }
      const job = lane.queue.shift()!;
      this.start(lane, job);
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      for (const lane of this.lanes.values()) if (lane.queue.length > 0) this.pump(lane);
    }, 2);
    this.retryTimer.unref();
  }

  private start(lane: Lane, job: ShadowJob): void {
    const mv = this.host.resolve(lane.model, lane.version);
    if (!mv) {
      lane.skipped += 1;
      return;
    }
    lane.running += 1;
    const request = shadowRequest(job.request, mv);
    this.host.run(mv, request).then(({ response, timing }) => {
      const latencyMs = timing.queueMs + timing.computeMs;
      const primaryMv = this.host.resolve(lane.model, job.primary.model_version);
      const parameters = primaryMv?.config.parameters ?? mv.config.parameters;
      const mode = compareModeOf(parameters, (primaryMv ?? mv).signature.outputs);
      const comparison = compareOutputs(job.primary.outputs, response.outputs, mv.signature.maxBatchSize > 0, { mode, ...DEFAULT_TOLERANCE });
      lane.shadow.record(true, latencyMs);
      lane.primaryLatency.add(job.primaryLatencyMs);
      lane.agreement.add(comparison);
      if (comparison.agreeingRows < comparison.rows) this.logDisagreement(lane, job, response, comparison);
      this.host.onOutcome({ model: lane.model, version: lane.version, ok: true, latencyMs, primaryLatencyMs: job.primaryLatencyMs, ...(job.primaryComputeMs !== undefined ? { primaryComputeMs: job.primaryComputeMs } : {}), primaryWarm: job.primaryWarm !== false, comparison, request, response, timing });
    }, (error: unknown) => {
      lane.shadow.record(false);
      lane.primaryLatency.add(job.primaryLatencyMs);
      this.host.onOutcome({ model: lane.model, version: lane.version, ok: false, primaryLatencyMs: job.primaryLatencyMs, primaryWarm: job.primaryWarm !== false, error, request });
    }).finally(() => {
      lane.running -= 1;
      this.pump(lane);
    }).catch(() => undefined);
  }

  /** Reservoir sampling: every disagreement has the same chance to be in the bounded log. */
  private logDisagreement(lane: Lane, job: ShadowJob, response: InferResponse, c: Comparison): void {
    let log = this.logs.get(lane.model);
    if (!log) {
      log = { seen: 0, entries: [] };
      this.logs.set(lane.model, log);
    }
    log.seen += 1;
    const cap = this.options.logCapacity;
    let slot = log.entries.length;
    if (slot >= cap) {
      slot = Math.floor(this.host.random() * log.seen);
      if (slot >= cap) return;
    }
    const entry: DisagreementEntry = {
      at: new Date().toISOString(),
      version: lane.version,
      rows: c.rows,
      agreeing_rows: c.agreeingRows,
      mean_abs_diff: round(c.elements === 0 ? undefined : c.absDiffSum / c.elements),
      inputs: job.request.inputs.map((t) => tensorForLog(t)),
      primary: job.primary.outputs.map((t) => tensorForLog(t)),
      shadow: response.outputs.map((t) => tensorForLog(t)),
    };
    if (job.request.id !== undefined) entry.id = job.request.id;
    if (c.mismatched.length > 0) entry.mismatched_outputs = c.mismatched;
    log.entries[slot] = entry;
  }

  /** The GET /v2/models/{m}/shadow document. */
  snapshot(model: string): { versions: Record<string, unknown>; disagreements: DisagreementEntry[]; disagreements_seen: number } {
    const versions: Record<string, unknown> = {};
    for (const lane of this.lanes.values()) {
      if (lane.model !== model) continue;
      versions[lane.version] = {
        requests: lane.shadow.requests,
        errors: lane.shadow.errors,
        agreement: round(lane.agreement.agreement),
        compared_rows: lane.agreement.rows,
        mean_abs_diff: round(lane.agreement.meanAbsDiff),
        mean_rel_diff: round(lane.agreement.meanRelDiff),
        dropped: lane.dropped,
        skipped: lane.skipped,
        queued: lane.queue.length,
        in_flight: lane.running,
        latency_ms: {
          shadow_p50: round(lane.shadow.latency.quantile(0.5), 4),
          shadow_p99: round(lane.shadow.latency.quantile(0.99), 4),
          primary_p50: round(lane.primaryLatency.quantile(0.5), 4),
          primary_p99: round(lane.primaryLatency.quantile(0.99), 4),
        },
      };
    }
    const log = this.logs.get(model);
    return { versions, disagreements: log ? [...log.entries] : [], disagreements_seen: log?.seen ?? 0 };
  }

  agreementOf(model: string, version: string): number | undefined {
    return this.lanes.get(`${model}\0${version}`)?.agreement.agreement;
  }

  /** Jobs waiting or running for a model (tests wait on this instead of sleeping). */
  busy(model?: string): number {
    let n = 0;
    for (const lane of this.lanes.values()) if (model === undefined || lane.model === model) n += lane.queue.length + lane.running;
    return n;
  }

  /** Forgets a model's counters and log (policy reset, model unloaded). */
  forget(model: string): void {
    for (const [key, lane] of this.lanes) if (lane.model === model && lane.running === 0 && lane.queue.length === 0) this.lanes.delete(key);
    this.logs.delete(model);
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const lane of this.lanes.values()) lane.queue.length = 0;
  }
}

/** The copy a shadow runs: same inputs and outputs, lowest priority, no client timeout or fault. */
export function shadowRequest(request: InferRequest, mv: ModelVersion): InferRequest {
  const parameters: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(request.parameters)) {
    if (k !== 'priority' && k !== 'timeout' && k !== 'umbra_fault') parameters[k] = v;
  }
  const levels = mv.config.dynamicBatching.priorityLevels;
  if (levels > 0) parameters.priority = levels;
  const copy: InferRequest = { parameters, inputs: request.inputs };
  if (request.id !== undefined) copy.id = request.id;
  if (request.outputs) copy.outputs = request.outputs;
  return copy;
}
