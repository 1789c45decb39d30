// A progressive rollout as a pure state machine: steps (shadow, then canary weights), evidence
// per step, and the decision after each observation or clock tick. No server, no timers: the
// controller feeds it events and a clock, so tests drive it directly.
import { UmbraError } from '../errors.js';
import { analyse, DEFAULT_RULES, Evidence, parseRules, type AnalysisResult, type AnalysisRules, type MonitorEvidence, type Verdict } from './analysis.js';
import type { Comparison } from './compare.js';
import { badInput, onlyFields, readFraction, readObject, readVersion, type TrafficPolicy } from './policy.js';

export interface RolloutStep {
  /** A shadow step: the candidate sees copies of primary traffic and answers nobody. */
  shadow?: boolean;
  /** A canary step: this fraction of unversioned traffic is answered by the candidate. */
  weight?: number;
  /** Candidate observations the step takes at least (shadow runs or canary requests). */
  min_requests: number;
  min_seconds: number;
  /** A step whose rules are still inconclusive after this long is judged inconclusive. */
  max_seconds: number;
}

export interface RolloutSpec {
  candidate: string;
  steps: RolloutStep[];
  analysis: AnalysisRules;
  /** Fraction of primary traffic shadowed to the candidate during every step (agreement evidence). */
  shadow_sample: number;
}

export type RolloutState = 'running' | 'paused' | 'promoted' | 'rolled_back';
export type Action = 'start' | 'advance' | 'retry' | 'pause' | 'resume' | 'promote' | 'rollback' | 'restart';

export interface Decision {
  at: string;
  step: number;
  action: Action;
  verdict?: Verdict;
  reason: string;
  evidence?: Record<string, unknown>;
}

/** Everything persisted: enough to resume after a restart at the same step. */
export interface RolloutRecord {
  spec: RolloutSpec;
  /** The primary when the rollout started; a rollback leaves it serving. */
  baseline: string;
  state: RolloutState;
  step: number;
  inconclusiveStreak: number;
  startedAt: number;
  history: Decision[];
}

export const DEFAULT_STEPS: readonly Omit<RolloutStep, 'max_seconds'>[] = [
  { shadow: true, min_requests: 200, min_seconds: 0 },
  { weight: 0.01, min_requests: 100, min_seconds: 0 },
  { weight: 0.05, min_requests: 200, min_seconds: 0 },
  { weight: 0.25, min_requests: 200, min_seconds: 0 },
  { weight: 0.5, min_requests: 200, min_seconds: 0 },
  { weight: 1, min_requests: 200, min_seconds: 0 },
];
const DEFAULT_MAX_SECONDS = 600;
const HISTORY_LIMIT = 200;
/**
 * Analysis sorts bounded samples (a millisecond at most), so it runs when a step's observations
 * have doubled since the last look (at least 8), every 10 s on the clock (monitor evidence
 * changes by itself), when the step reaches its minimum and at its deadline: O(log n) looks per
 * step, not one per request.
 */
const ANALYSE_EVERY = 8;
const ANALYSE_GROWTH = 1;
const ANALYSE_MS = 10_000;

/** A step's `min_requests`: a whole number of requests (1.5 was read as 1 before, without a word). */
function requestCount(value: unknown, what: string): number {
  const n = count(value, what, 100);
  if (!Number.isSafeInteger(n)) throw badInput('a whole number of requests', what, value);
  return n;
}

function count(value: unknown, what: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw badInput('a non-negative number', what, value);
  return value;
}

export function parseStep(value: unknown, what: string): RolloutStep {
  const obj = readObject(value, what);
  onlyFields(obj, what, ['shadow', 'weight', 'min_requests', 'min_seconds', 'max_seconds']);
  const step: RolloutStep = {
    min_requests: requestCount(obj.min_requests, `${what}.min_requests`),
    min_seconds: count(obj.min_seconds, `${what}.min_seconds`, 0),
    max_seconds: 0,
  };
  step.max_seconds = count(obj.max_seconds, `${what}.max_seconds`, Math.max(DEFAULT_MAX_SECONDS, step.min_seconds * 10));
  if (step.max_seconds < step.min_seconds) throw badInput(`a number >= min_seconds (${step.min_seconds})`, `${what}.max_seconds`, obj.max_seconds);
  const isShadow = obj.shadow !== undefined && obj.shadow !== false;
  if (obj.shadow !== undefined && typeof obj.shadow !== 'boolean') throw badInput('true or false', `${what}.shadow`, obj.shadow);
  if (isShadow === (obj.weight !== undefined)) throw new UmbraError('INVALID_ARGUMENT', `${what}: a step is either {"shadow": true} or {"weight": w}, exactly one of them`);
  if (isShadow) step.shadow = true;
  else {
    step.weight = readFraction(obj.weight, `${what}.weight`);
    if (step.weight === 0) throw badInput('a weight in (0, 1]', `${what}.weight`, 0);
  }
  return step;
}

/** Validates a POST /rollout body or a model config `rollout` block (candidate optional there). */
export function parseRolloutSpec(value: unknown, what = 'the rollout', candidateRequired = true): Omit<RolloutSpec, 'candidate'> & { candidate?: string } {
  const obj = readObject(value, what);
  onlyFields(obj, what, ['candidate', 'steps', 'analysis', 'shadow_sample', 'auto']);
  const out: Omit<RolloutSpec, 'candidate'> & { candidate?: string } = {
    steps: [],
    analysis: parseRules(obj.analysis, `${what}.analysis`, DEFAULT_RULES),
    shadow_sample: obj.shadow_sample === undefined ? 1 : readFraction(obj.shadow_sample, `${what}.shadow_sample`),
  };
  if (obj.candidate !== undefined || candidateRequired) out.candidate = readVersion(obj.candidate, `${what}.candidate`);
  if (obj.steps === undefined) {
    out.steps = DEFAULT_STEPS.map((s, i) => parseStep(s, `${what}.steps[${i}]`));
  } else {
    if (!Array.isArray(obj.steps) || obj.steps.length === 0 || obj.steps.length > 32) throw badInput('an array of 1 to 32 steps', `${what}.steps`, obj.steps);
    out.steps = obj.steps.map((s, i) => parseStep(s, `${what}.steps[${i}]`));
  }
  let last = 0;
  out.steps.forEach((s, i) => {
    if (s.weight === undefined) return;
    if (s.weight < last) throw new UmbraError('INVALID_ARGUMENT', `${what}.steps[${i}]: canary weights must not decrease (${s.weight} after ${last})`);
    last = s.weight;
  });
  if (out.analysis.min_agreement > 0 && out.shadow_sample === 0 && out.steps.every((s) => !s.shadow)) {
    throw new UmbraError('INVALID_ARGUMENT', `${what}: min_agreement needs shadow traffic; add a shadow step or a shadow_sample above 0`);
  }
  return out;
}

export class Rollout {
  /** Errors, latency and request counts of the current step. */
  private stepEvidence: Evidence;
  /** Answers and the primary's latency accumulate over the whole rollout. */
  private readonly whole: Evidence;
  private stepStartedAt: number;
  /** Step observations and clock at the last full analysis. */
  private analysedAt = 0;
  private analysedAtMs: number;
  /** Whether the step has been judged since it reached its minimum traffic and time. */
  private judgedAtMinimum = false;

  constructor(readonly record: RolloutRecord, private readonly now: () => number) {
    this.stepStartedAt = now();
    this.analysedAtMs = this.stepStartedAt;
    this.stepEvidence = new Evidence(this.stepStartedAt);
    this.whole = new Evidence(this.stepStartedAt);
  }

  static start(spec: RolloutSpec, baseline: string, now: () => number): Rollout {
    const record: RolloutRecord = { spec, baseline, state: 'running', step: 0, inconclusiveStreak: 0, startedAt: now(), history: [] };
    const r = new Rollout(record, now);
    r.decide('start', `rollout of version ${spec.candidate} over primary ${baseline} with ${spec.steps.length} steps`);
    return r;
  }

  /** After a restart: same step, fresh evidence window (counters were not persisted). */
  static resume(record: RolloutRecord, now: () => number): Rollout {
    const r = new Rollout(record, now);
    if (r.active) r.decide('restart', `resumed at step ${record.step} after a restart; evidence gathering starts again`);
    return r;
  }

  get candidate(): string {
    return this.record.spec.candidate;
  }

  /** When this rollout's evidence began (its start, or its resumption after a restart): labels count only for predictions made since. */
  get evidenceSince(): number {
    return this.whole.since;
  }

  get state(): RolloutState {
    return this.record.state;
  }

  get active(): boolean {
    return this.record.state === 'running' || this.record.state === 'paused';
  }

  get step(): RolloutStep | undefined {
    return this.record.spec.steps[this.record.step];
  }

  /** `latencyMs` undefined: failed, or inside the candidate's warm-up. */
  observeCanary(ok: boolean, latencyMs?: number): void {
    if (this.record.state !== 'running') return;
    this.stepEvidence.observeCandidate('canary', ok, latencyMs);
    this.whole.observeCandidate('canary', ok, latencyMs);
  }

  /** A shadow run's compute and the primary's on the same request (undefined inside either's warm-up). */
  observeShadow(ok: boolean, computeMs: number | undefined, primaryComputeMs: number | undefined, comparison: Comparison | undefined): void {
    if (this.record.state !== 'running') return;
    this.stepEvidence.observeCandidate('shadow', ok, computeMs, primaryComputeMs);
    this.whole.observeCandidate('shadow', ok, computeMs, primaryComputeMs);
    if (comparison) {
      this.stepEvidence.observeComparison(comparison);
      this.whole.observeComparison(comparison);
    }
  }

  observePrimary(ok: boolean, latencyMs?: number): void {
    if (this.record.state !== 'running') return;
    this.stepEvidence.observePrimary(ok, latencyMs);
    this.whole.observePrimary(ok, latencyMs);
  }

  analysis(monitor: MonitorEvidence = {}): AnalysisResult {
    return analyse({ step: this.stepEvidence, rollout: this.whole, shadowStep: this.step?.shadow === true }, this.record.spec.analysis, monitor);
  }

  /** Observations that count toward the step's min_requests. */
  stepRequests(): number {
    return this.step?.shadow ? this.stepEvidence.shadowRequests : this.stepEvidence.canaryRequests;
  }

  /**
   * Decides when the evidence allows: a failing rule rolls back at once, whatever the step; a
   * step past its minimum traffic and time advances once every rule passes; a step still
   * inconclusive at max_seconds gathers again, and max_inconclusive such steps in a row pause the
   * rollout. Returns the decision, if any.
   */
  tick(monitor: MonitorEvidence = {}): Decision | undefined {
    if (this.record.state !== 'running') return undefined;
    const step = this.step!;
    const now = this.now();
    const elapsed = (now - this.stepStartedAt) / 1000;
    const enough = this.stepRequests() >= step.min_requests && elapsed >= step.min_seconds;
    const timedOut = elapsed >= step.max_seconds;
    const seen = this.stepEvidence.candidate.requests + this.stepEvidence.primary.requests;
    const grown = seen - this.analysedAt >= Math.max(ANALYSE_EVERY, this.analysedAt * ANALYSE_GROWTH);
    const due = grown || now - this.analysedAtMs >= ANALYSE_MS || (enough && !this.judgedAtMinimum);
    if (!due && !timedOut) return undefined;
    this.analysedAt = seen;
    this.analysedAtMs = now;
    if (enough) this.judgedAtMinimum = true;
    const result = this.analysis(monitor);
    if (result.verdict === 'fail') {
      const failed = result.rules.filter((r) => r.verdict === 'fail').map((r) => `${r.rule}: ${r.reason}`).join('; ');
      this.record.state = 'rolled_back';
      return this.decide('rollback', `step ${this.record.step} failed: ${failed}`, result);
    }
    if (enough && result.verdict === 'pass') {
      this.record.inconclusiveStreak = 0;
      const passed = result.rules.map((r) => `${r.rule} ${r.value ?? '-'}`).join(', ');
      if (this.record.step + 1 >= this.record.spec.steps.length) {
        this.record.state = 'promoted';
        return this.decide('promote', `every step passed (last: ${passed}); version ${this.candidate} is the primary`, result);
      }
      const d = this.decide('advance', `step ${this.record.step} passed after ${this.stepRequests()} ${step.shadow ? 'shadow runs' : 'canary answers'} (${passed})`, result);
      this.enterStep(this.record.step + 1);
      return d;
    }
    if (!timedOut) return undefined;
    this.record.inconclusiveStreak += 1;
    const missing = result.rules.filter((r) => r.verdict === 'inconclusive').map((r) => `${r.rule}: ${r.reason}`).join('; ');
    const why = enough ? `after ${Math.round(elapsed)} s still inconclusive: ${missing}` : `only ${this.stepRequests()} of ${step.min_requests} ${step.shadow ? 'shadow runs' : 'canary answers'} after ${Math.round(elapsed)} s${missing ? `; ${missing}` : ''}`;
    if (this.record.inconclusiveStreak >= this.record.spec.analysis.max_inconclusive) {
      this.record.state = 'paused';
      return this.decide('pause', `step ${this.record.step} inconclusive ${this.record.inconclusiveStreak} times in a row (${why}); resume, promote or abort by hand`, { ...result, verdict: 'inconclusive' });
    }
    const d = this.decide('retry', `step ${this.record.step} inconclusive, gathering again: ${why}`, { ...result, verdict: 'inconclusive' });
    this.enterStep(this.record.step);
    return d;
  }

  /** By hand: promote now, whatever the evidence. */
  promote(): Decision {
    if (!this.active) throw new UmbraError('CONFLICT', `the rollout of version ${this.candidate} is already ${this.record.state}`);
    this.record.state = 'promoted';
    return this.decide('promote', 'promoted by hand', this.analysis());
  }

  /** By hand: back to the baseline at once. */
  abort(): Decision {
    if (!this.active) throw new UmbraError('CONFLICT', `the rollout of version ${this.candidate} is already ${this.record.state}`);
    this.record.state = 'rolled_back';
    return this.decide('rollback', 'aborted by hand', this.analysis());
  }

  /** Paused from outside the evidence (a version it needs was unloaded): resume, promote or abort by hand. */
  pauseFor(reason: string): Decision {
    if (this.record.state !== 'running') throw new UmbraError('CONFLICT', `only a running rollout can pause; this one is ${this.record.state}`);
    this.record.state = 'paused';
    return this.decide('pause', reason);
  }

  resume(): Decision {
    if (this.record.state !== 'paused') throw new UmbraError('CONFLICT', `only a paused rollout can resume; this one is ${this.record.state}`);
    this.record.state = 'running';
    this.record.inconclusiveStreak = 0;
    this.enterStep(this.record.step);
    return this.decide('resume', `resumed by hand at step ${this.record.step}`);
  }

  private enterStep(index: number): void {
    this.record.step = index;
    this.stepStartedAt = this.now();
    this.stepEvidence = new Evidence(this.stepStartedAt);
    this.analysedAt = 0;
    this.analysedAtMs = this.stepStartedAt;
    this.judgedAtMinimum = false;
  }

  private decide(action: Action, reason: string, result?: AnalysisResult): Decision {
    const d: Decision = { at: new Date(this.now()).toISOString(), step: this.record.step, action, reason };
    if (result) {
      d.verdict = result.verdict;
      d.evidence = { rules: result.rules, ...this.stepEvidence.summary() };
    }
    this.record.history.push(d);
    if (this.record.history.length > HISTORY_LIMIT) this.record.history.splice(0, this.record.history.length - HISTORY_LIMIT);
    return d;
  }

  /** The traffic policy this rollout implies on top of the policy it started from. */
  applyTo(base: TrafficPolicy): TrafficPolicy {
    const cand = this.candidate;
    const shadows = base.shadows.filter((s) => s.version !== cand);
    const state = this.record.state;
    if (state === 'promoted') return { primary: cand, canary: null, shadows };
    if (state === 'rolled_back') return { primary: this.record.baseline, canary: null, shadows };
    const step = this.step!;
    const sample = this.record.spec.shadow_sample;
    if (step.shadow) return { primary: this.record.baseline, canary: null, shadows: [...shadows, { version: cand, sample: sample > 0 ? sample : 1 }] };
    const withShadow = sample > 0 && (step.weight ?? 0) < 1 ? [...shadows, { version: cand, sample }] : shadows;
    return { primary: this.record.baseline, canary: { version: cand, weight: step.weight ?? 0 }, shadows: withShadow };
  }

  /** GET /rollout document. */
  view(monitor: MonitorEvidence = {}): Record<string, unknown> {
    const r = this.record;
    const out: Record<string, unknown> = {
      state: r.state,
      candidate: r.spec.candidate,
      baseline: r.baseline,
      step: r.step,
      steps: r.spec.steps,
      analysis_rules: r.spec.analysis,
      shadow_sample: r.spec.shadow_sample,
      started_at: new Date(r.startedAt).toISOString(),
      inconclusive_streak: r.inconclusiveStreak,
      history: r.history,
    };
    if (this.active) {
      out.step_started_at = new Date(this.stepStartedAt).toISOString();
      out.step_requests = this.stepRequests();
      out.evidence = { step: this.stepEvidence.summary(), rollout: this.whole.summary() };
      out.analysis = this.analysis(monitor);
    }
    return out;
  }
}

/** Checks a persisted record's shape (a hand-edited or truncated state file must not crash start). */
export function parseRecord(value: unknown, what: string): RolloutRecord {
  const obj = readObject(value, what);
  const spec = parseRolloutSpec(obj.spec, `${what}.spec`);
  const states: RolloutState[] = ['running', 'paused', 'promoted', 'rolled_back'];
  if (!states.includes(obj.state as RolloutState)) throw badInput(`one of ${states.join(', ')}`, `${what}.state`, obj.state);
  const step = obj.step;
  if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0 || step >= spec.steps.length) throw badInput(`a step index below ${spec.steps.length}`, `${what}.step`, step);
  return {
    spec: spec as RolloutSpec,
    baseline: readVersion(obj.baseline, `${what}.baseline`),
    state: obj.state as RolloutState,
    step,
    inconclusiveStreak: typeof obj.inconclusiveStreak === 'number' ? obj.inconclusiveStreak : 0,
    startedAt: typeof obj.startedAt === 'number' ? obj.startedAt : Date.now(),
    history: Array.isArray(obj.history) ? (obj.history as Decision[]) : [],
  };
}
