// Rollout analysis: evidence about a candidate version next to the primary, and the pure rules
// that turn it into pass, fail or inconclusive by confidence bounds (estimators.ts). Too little
// evidence for a rule is inconclusive, never a pass and never a failure.
import { UmbraError } from '../errors.js';
import type { Comparison } from './compare.js';
import { badInput, onlyFields, readFraction, readObject } from './policy.js';
import { medianBounds, proportionBounds, shiftBounds, type Bounds } from './estimators.js';
import { AgreementStats, LATENCY_FLOOR_MS, Reservoir, SideStats, round } from './stats.js';

export type Verdict = 'pass' | 'fail' | 'inconclusive';

export interface AnalysisRules {
  /** Highest acceptable share of failed candidate answers (internal errors, timeouts, queue full). */
  max_error_rate: number;
  /** Highest acceptable candidate/primary latency ratio at the median (queue + compute). */
  max_latency_ratio: number;
  /** A slowdown smaller than this many milliseconds at the median never fails (0 = ratio alone). */
  latency_slack_ms: number;
  /** Lowest acceptable share of rows on which the candidate agrees with the primary. */
  min_agreement: number;
  /**
   * One-sided confidence of the bound a rule passes by. A rule fails by a bound at ten times less
   * risk (0.999 for 0.99): a rollout looks at its evidence many times, and a false rollback is
   * the costly mistake.
   */
  confidence: number;
  /** Fewer observations than this for a rule make that rule inconclusive, whatever its bounds. */
  min_samples: number;
  /** A version's first answers after it loads, left out of latency (cold caches, lazy setup). */
  warmup: number;
  /** Consecutive inconclusive step verdicts (at max_seconds) that pause a rollout. */
  max_inconclusive: number;
  /**
   * Monitoring: fail on a drift verdict of the candidate against the reference profile. Unset = on
   * when monitoring is on and the model has a reference profile (resolved when a rollout starts).
   */
  drift?: boolean;
  /** Monitoring: lowest live accuracy of the candidate (needs feedback). */
  min_accuracy?: number;
}

export const DEFAULT_RULES: Readonly<AnalysisRules> = {
  max_error_rate: 0.01,
  max_latency_ratio: 1.5,
  latency_slack_ms: 0,
  min_agreement: 0.95,
  confidence: 0.99,
  min_samples: 20,
  warmup: 50,
  max_inconclusive: 2,
};

/** What src/monitor can tell about a version; absent fields mean "not known". */
export interface MonitorEvidence {
  drift?: { verdict: Verdict; detail?: unknown };
  accuracy?: { value: number; samples: number };
}

export interface RuleResult {
  rule: string;
  verdict: Verdict;
  value: number | string | null;
  threshold: number | string;
  samples: number;
  /** The confidence bounds the verdict was read from (absent when there were none). */
  bounds?: { lower: number | null; upper: number | null; confidence: number };
  reason: string;
}

export interface AnalysisResult {
  verdict: Verdict;
  rules: RuleResult[];
}

/**
 * Evidence of one window. The candidate side counts canary-served requests and shadow runs
 * separately (steps gate on one or the other); errors combine both. Latency is kept two ways:
 * canary answers and primary answers, queue + compute (compared unpaired, same window), and for
 * shadow runs the log ratio of the shadow's compute to the primary's on the same request
 * (compared paired). Every sample is a bounded reservoir.
 */
export class Evidence {
  /** Every candidate answer, canary and shadow: errors only (latency is kept per kind below). */
  readonly candidate = new SideStats();
  readonly canary = new SideStats();
  readonly primary = new SideStats();
  readonly agreement = new AgreementStats();
  /** log(shadow compute / primary compute) per shadowed request, and the primary's compute of those. */
  readonly pairs = new Reservoir(1024, 0x9a1d);
  readonly pairedPrimary = new Reservoir(1024, 0x9a1e, true);
  canaryRequests = 0;
  shadowRequests = 0;

  constructor(readonly since: number) {}

  /**
   * A canary answer with its queue + compute, or a shadow run with its compute and the primary's
   * compute on the same request. A shadow never queues for its own version (one at a time, started
   * when the primary's queue is empty), so what it waits is spent behind primary work; compute
   * against compute compares the two versions on the same rows. Times are undefined for a failed
   * answer or one inside its version's warm-up.
   */
  observeCandidate(kind: 'canary' | 'shadow', ok: boolean, latencyMs?: number, primaryComputeMs?: number): void {
    if (kind === 'canary') {
      this.canaryRequests += 1;
      this.canary.record(ok, latencyMs);
      this.candidate.record(ok);
      return;
    }
    this.shadowRequests += 1;
    this.candidate.record(ok);
    if (latencyMs !== undefined && primaryComputeMs !== undefined) {
      this.pairs.add(Math.log(Math.max(latencyMs, LATENCY_FLOOR_MS) / Math.max(primaryComputeMs, LATENCY_FLOOR_MS)));
      this.pairedPrimary.add(primaryComputeMs);
    }
  }

  observePrimary(ok: boolean, latencyMs?: number): void {
    this.primary.record(ok, latencyMs);
  }

  observeComparison(c: Comparison): void {
    this.agreement.add(c);
  }

  summary(): Record<string, unknown> {
    const side = (s: SideStats) => ({
      requests: s.requests,
      errors: s.errors,
      error_rate: round(s.errorRate),
      latency_samples: s.latency.total,
      p50_ms: round(s.latency.quantile(0.5), 4),
      p99_ms: round(s.latency.quantile(0.99), 4),
    });
    return {
      since: new Date(this.since).toISOString(),
      candidate: { requests: this.candidate.requests, errors: this.candidate.errors, error_rate: round(this.candidate.errorRate), canary_requests: this.canaryRequests, shadow_requests: this.shadowRequests },
      canary: side(this.canary),
      primary: side(this.primary),
      paired_compute: { pairs: this.pairs.total, primary_p50_ms: round(this.pairedPrimary.quantile(0.5), 4), median_ratio: this.pairs.size > 0 ? round(Math.exp(this.pairs.quantile(0.5)!), 4) : null },
      agreement: round(this.agreement.agreement),
      compared_rows: this.agreement.rows,
      mean_abs_diff: round(this.agreement.meanAbsDiff),
      mean_rel_diff: round(this.agreement.meanRelDiff),
    };
  }
}

/** Which windows a judgement reads. */
export interface AnalysisInput {
  /** The current step: errors, canary latency, paired shadow compute. */
  step: Evidence;
  /** The whole rollout: errors and agreement accumulate (they are properties of the model, not of the load). */
  rollout: Evidence;
  /** A shadow step judges latency on pairs only; a canary step on canary answers against primary ones too. */
  shadowStep: boolean;
}

function pct(x: number): string {
  return `${round(x * 100, 3)}%`;
}

/** Answers without a single failure an exact bound needs before it can pass `threshold`: (1 - t)^n <= 1 - c. */
function answersToPass(threshold: number, confidence: number): number {
  return Math.ceil(Math.log(1 - confidence) / Math.log(1 - threshold));
}

/** The confidence a rule fails at (see AnalysisRules.confidence). */
export function failConfidence(rules: AnalysisRules): number {
  return 1 - (1 - rules.confidence) / 10;
}

function errorRule(input: AnalysisInput, rules: AnalysisRules): RuleResult {
  const t = rules.max_error_rate;
  const c = rules.confidence;
  const cf = failConfidence(rules);
  const base = { rule: 'error_rate', threshold: t };
  for (const [window, e] of [['this step', input.step], ['the rollout', input.rollout]] as const) {
    const n = e.candidate.requests;
    if (n < rules.min_samples) continue;
    const b = proportionBounds(e.candidate.errors, n, cf);
    if (b.lower > t) {
      return { ...base, verdict: 'fail', value: round(b.estimate), samples: n, bounds: { lower: round(b.lower), upper: round(b.upper), confidence: cf }, reason: `${e.candidate.errors} errors in ${n} candidate answers in ${window}: the rate is above ${pct(b.lower)} (${pct(cf)} confidence), over the limit ${pct(t)}` };
    }
  }
  const e = input.rollout;
  const n = e.candidate.requests;
  const b = proportionBounds(e.candidate.errors, n, c);
  const bounds = { lower: n > 0 ? round(b.lower) : null, upper: n > 0 ? round(b.upper) : null, confidence: c };
  const value = n > 0 ? round(b.estimate) : null;
  if (n >= rules.min_samples && b.upper <= t) {
    return { ...base, verdict: 'pass', value, samples: n, bounds, reason: `${e.candidate.errors} errors in ${n} candidate answers: the rate is below ${pct(b.upper)} (${pct(c)} confidence)` };
  }
  const need = Math.max(rules.min_samples, answersToPass(t, c));
  return { ...base, verdict: 'inconclusive', value, samples: n, bounds, reason: `${e.candidate.errors} errors in ${n} candidate answers: the rate may be up to ${pct(n > 0 ? b.upper : 1)}, so not yet shown below ${pct(t)} (without errors that takes ${need} answers)` };
}

/** One latency comparison a step can make, judged on log ms. */
interface LatencyComparison {
  how: string;
  samples: number;
  /** The primary's median in ms, for the slack. */
  primaryMedian: number | undefined;
  bounds(confidence: number): Bounds;
}

function latencyComparisons(input: AnalysisInput, n: number): { comparisons: LatencyComparison[]; missing: string } {
  const step = input.step;
  const comparisons: LatencyComparison[] = [];
  // Canary steps: canary answers against primary answers of the same window (at weight 1 the
  // primary serves nothing, so its answers over the rollout).
  const canary = step.canary.latency;
  const primary = step.primary.latency.size >= n ? step.primary.latency : input.rollout.primary.latency;
  if (!input.shadowStep && canary.size >= n && primary.size >= n) {
    const x = canary.ascending();
    const y = primary.ascending();
    let estimate: number | undefined;
    comparisons.push({
      how: `median shift of ${canary.total} canary answers against ${primary.total} primary answers, queue + compute (Hodges-Lehmann, Mann-Whitney bounds)`,
      samples: canary.size,
      primaryMedian: primary.quantile(0.5),
      bounds: (conf) => {
        const b = shiftBounds(x, y, conf, estimate);
        estimate = b.estimate;
        return b;
      },
    });
  }
  // Every step with shadow runs: the candidate's compute against the primary's on the same requests.
  if (step.pairs.size >= n) {
    const d = step.pairs.ascending();
    comparisons.push({
      how: `median of ${step.pairs.total} per-request shadow/primary compute ratios (sign test bounds)`,
      samples: step.pairs.size,
      primaryMedian: step.pairedPrimary.quantile(0.5),
      bounds: (conf) => medianBounds(d, conf),
    });
  }
  const missing = input.shadowStep ? `${step.pairs.total} paired shadow answers past warm-up; ${n} needed` : `${canary.total} canary answers and ${step.pairs.total} paired shadow answers past warm-up; ${n} of either needed`;
  return { comparisons, missing };
}

/**
 * The candidate is slower than the limit when any comparison the step can make says so with
 * confidence, and within it only when every one says so: a canary at a small share of the load
 * queues less than the primary, a shadow runs its request alone; each blind spot is covered by
 * the other comparison or by a later step.
 */
function latencyRule(input: AnalysisInput, rules: AnalysisRules): RuleResult {
  const c = rules.confidence;
  const cf = failConfidence(rules);
  const { comparisons, missing } = latencyComparisons(input, rules.min_samples);
  // A slack in ms is a ratio limit that depends on the primary's own median.
  const limitOf = (cmp: LatencyComparison) => Math.max(rules.max_latency_ratio, cmp.primaryMedian !== undefined && cmp.primaryMedian > 0 ? 1 + rules.latency_slack_ms / cmp.primaryMedian : 1);
  if (comparisons.length === 0) return { rule: 'latency', threshold: rules.max_latency_ratio, verdict: 'inconclusive', value: null, samples: 0, reason: missing };
  const judged = comparisons.map((cmp) => {
    const limit = limitOf(cmp);
    const strict = cmp.bounds(cf);
    const estimate = Math.exp(strict.estimate);
    const base = { rule: 'latency', threshold: round(limit, 4)!, samples: cmp.samples, value: round(estimate, 4) };
    if (Math.exp(strict.lower) > limit) {
      const bounds = { lower: round(Math.exp(strict.lower), 4), upper: round(Math.exp(strict.upper), 4), confidence: cf };
      return { ...base, verdict: 'fail' as const, bounds, reason: `candidate/primary latency ${estimate.toFixed(3)}x, above ${bounds.lower}x (${pct(cf)} confidence), over the limit ${limit.toFixed(3)}x; ${cmp.how}` };
    }
    const b = cmp.bounds(c);
    const bounds = { lower: round(Math.exp(b.lower), 4), upper: round(Math.exp(b.upper), 4), confidence: c };
    const said = `candidate/primary latency ${estimate.toFixed(3)}x, between ${bounds.lower}x and ${bounds.upper}x (${pct(c)} confidence each side), limit ${limit.toFixed(3)}x; ${cmp.how}`;
    if (Math.exp(b.upper) <= limit) return { ...base, verdict: 'pass' as const, bounds, reason: said };
    return { ...base, verdict: 'inconclusive' as const, bounds, reason: `${said}: not yet clear of the limit` };
  });
  const failed = judged.find((r) => r.verdict === 'fail');
  if (failed) return failed;
  const open = judged.find((r) => r.verdict === 'inconclusive');
  if (open) return open;
  // All pass: report the comparison closest to its limit.
  return judged.reduce((a, b) => ((b.value ?? 0) / b.threshold > (a.value ?? 0) / a.threshold ? b : a));
}

/** A proportion that must be at least `min`: fails once surely below, passes once surely at or above. */
function atLeastRule(rule: string, successes: number, trials: number, min: number, rules: AnalysisRules, what: string): RuleResult {
  const c = rules.confidence;
  const cf = failConfidence(rules);
  const said = `${successes} of ${trials} ${what}`;
  if (trials >= rules.min_samples) {
    const strict = proportionBounds(successes, trials, cf);
    if (strict.upper < min) {
      return { rule, threshold: min, samples: trials, value: round(strict.estimate), bounds: { lower: round(strict.lower), upper: round(strict.upper), confidence: cf }, verdict: 'fail', reason: `${said}: at most ${pct(strict.upper)} (${pct(cf)} confidence), under ${pct(min)}` };
    }
  }
  const b = proportionBounds(successes, trials, c);
  const value = trials > 0 ? round(b.estimate) : null;
  const bounds = { lower: trials > 0 ? round(b.lower) : null, upper: trials > 0 ? round(b.upper) : null, confidence: c };
  const base = { rule, threshold: min, samples: trials, value, bounds };
  if (trials < rules.min_samples) return { ...base, verdict: 'inconclusive', reason: `${said}; ${rules.min_samples} needed` };
  if (b.lower >= min) return { ...base, verdict: 'pass', reason: `${said}: at least ${pct(b.lower)} (${pct(c)} confidence)` };
  return { ...base, verdict: 'inconclusive', reason: `${said}: between ${pct(b.lower)} and ${pct(b.upper)}, not yet clear of ${pct(min)}` };
}

/**
 * Judges a candidate. A rule fails only when its bound is past the limit at the rules'
 * confidence, passes only when its other bound is inside it, and is inconclusive in between:
 * a decision waits until the evidence is clear either way.
 */
export function analyse(input: AnalysisInput, rules: AnalysisRules, monitor: MonitorEvidence = {}): AnalysisResult {
  const results: RuleResult[] = [errorRule(input, rules), latencyRule(input, rules)];
  const a = input.rollout.agreement;
  results.push(atLeastRule('agreement', a.agreeingRows, a.rows, rules.min_agreement, rules, 'compared rows agree with the primary'));
  if (rules.drift) {
    const d = monitor.drift;
    results.push(d
      ? { rule: 'drift', verdict: d.verdict, value: d.verdict, threshold: 'no drift', samples: 0, reason: 'drift verdict of the candidate against the reference profile' }
      : { rule: 'drift', verdict: 'inconclusive', value: null, threshold: 'no drift', samples: 0, reason: 'the monitor has no drift verdict for the candidate yet' });
  }
  if (rules.min_accuracy !== undefined) {
    const acc = monitor.accuracy;
    const labelled = acc?.samples ?? 0;
    results.push(atLeastRule('accuracy', Math.round((acc?.value ?? 0) * labelled), labelled, rules.min_accuracy, rules, 'labelled candidate predictions correct'));
  }
  const verdict: Verdict = results.some((r) => r.verdict === 'fail') ? 'fail' : results.some((r) => r.verdict === 'inconclusive') ? 'inconclusive' : 'pass';
  return { verdict, rules: results };
}

const RULE_FIELDS = ['max_error_rate', 'max_latency_ratio', 'latency_slack_ms', 'min_agreement', 'confidence', 'min_samples', 'warmup', 'max_inconclusive', 'drift', 'min_accuracy'] as const;
/** Names of earlier releases, still accepted: the latency rule judged p99 then, the median now. */
const RENAMED: Readonly<Record<string, (typeof RULE_FIELDS)[number]>> = { max_p99_ratio: 'max_latency_ratio', p99_slack_ms: 'latency_slack_ms' };
const ACCEPTED = [...RULE_FIELDS, ...Object.keys(RENAMED)];

function positive(value: unknown, what: string, integer: boolean, min: number): number {
  const ok = typeof value === 'number' && Number.isFinite(value) && value >= min && (!integer || Number.isSafeInteger(value));
  if (!ok) throw badInput(integer ? `an integer >= ${min}` : `a number >= ${min}`, what, value);
  return value;
}

/** Validates analysis rules (POST body, model config, query string of GET /analysis). */
export function parseRules(value: unknown, what = 'analysis', base: Readonly<AnalysisRules> = DEFAULT_RULES): AnalysisRules {
  if (value === undefined) return { ...base };
  const given = readObject(value, what);
  onlyFields(given, what, ACCEPTED);
  const obj: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(given)) {
    const name = RENAMED[key] ?? key;
    if (obj[name] !== undefined) throw new UmbraError('INVALID_ARGUMENT', `${what}: "${key}" is the earlier name of "${name}"; give one of them`);
    obj[name] = v;
  }
  const out: AnalysisRules = { ...base };
  if (obj.max_error_rate !== undefined) out.max_error_rate = readFraction(obj.max_error_rate, `${what}.max_error_rate`);
  if (obj.max_latency_ratio !== undefined) out.max_latency_ratio = positive(obj.max_latency_ratio, `${what}.max_latency_ratio`, false, 1);
  if (obj.latency_slack_ms !== undefined) out.latency_slack_ms = positive(obj.latency_slack_ms, `${what}.latency_slack_ms`, false, 0);
  if (obj.min_agreement !== undefined) out.min_agreement = readFraction(obj.min_agreement, `${what}.min_agreement`);
  if (obj.confidence !== undefined) {
    const c = obj.confidence;
    if (typeof c !== 'number' || !(c >= 0.5 && c <= 0.9999)) throw badInput('a confidence in 0.5..0.9999', `${what}.confidence`, c);
    out.confidence = c;
  }
  if (obj.min_samples !== undefined) out.min_samples = positive(obj.min_samples, `${what}.min_samples`, true, 5);
  if (obj.warmup !== undefined) out.warmup = positive(obj.warmup, `${what}.warmup`, true, 0);
  if (obj.max_inconclusive !== undefined) out.max_inconclusive = positive(obj.max_inconclusive, `${what}.max_inconclusive`, true, 1);
  if (obj.drift !== undefined) {
    if (typeof obj.drift !== 'boolean') throw badInput('true or false', `${what}.drift`, obj.drift);
    out.drift = obj.drift;
  }
  if (obj.min_accuracy !== undefined) out.min_accuracy = readFraction(obj.min_accuracy, `${what}.min_accuracy`);
  return out;
}

/** Rules from a query string (numbers as text), for Argo's web provider URLs. */
export function rulesFromQuery(query: string): AnalysisRules {
  if (!query) return { ...DEFAULT_RULES };
  const params = new URLSearchParams(query);
  const obj: Record<string, unknown> = {};
  for (const [k, v] of params) {
    if (!ACCEPTED.includes(k)) throw new UmbraError('INVALID_ARGUMENT', `unknown query parameter "${k}" (known: ${RULE_FIELDS.join(', ')})`);
    obj[k] = k === 'drift' ? v === 'true' : v.trim() === '' ? v : Number(v);
  }
  return parseRules(obj, 'the analysis query');
}
