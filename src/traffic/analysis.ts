// Rollout analysis: evidence about a candidate version next to the primary, and the pure rules
// that turn it into pass, fail or inconclusive. Too little evidence for a rule is inconclusive,
// never a pass and never a failure.
import { UmbraError } from '../errors.js';
import type { Comparison } from './compare.js';
import { badInput, onlyFields, readFraction, readObject } from './policy.js';
import { AgreementStats, SideStats, round } from './stats.js';

export type Verdict = 'pass' | 'fail' | 'inconclusive';

export interface AnalysisRules {
  max_error_rate: number;
  /** Candidate p99 may be at most this times the primary's p99 (plus p99_slack_ms). */
  max_p99_ratio: number;
  /** Absolute slack so sub-millisecond jitter cannot fail a rollout on its own. */
  p99_slack_ms: number;
  min_agreement: number;
  /** Fewer observations than this for a rule make that rule inconclusive. */
  min_samples: number;
  /** Consecutive inconclusive step verdicts that pause a rollout. */
  max_inconclusive: number;
  /** Monitoring: fail on a drift verdict of the candidate (needs src/monitor). */
  drift: boolean;
  /** Monitoring: lowest live accuracy of the candidate (needs src/monitor). */
  min_accuracy?: number;
}

export const DEFAULT_RULES: AnalysisRules = {
  max_error_rate: 0.01,
  max_p99_ratio: 1.5,
  p99_slack_ms: 1,
  min_agreement: 0.95,
  min_samples: 20,
  max_inconclusive: 2,
  drift: false,
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
  reason: string;
}

export interface AnalysisResult {
  verdict: Verdict;
  rules: RuleResult[];
}

/**
 * Evidence of one window. The candidate side counts canary-served requests and shadow runs
 * separately (steps gate on one or the other); errors and latency combine both.
 */
export class Evidence {
  readonly candidate = new SideStats();
  readonly primary = new SideStats();
  readonly agreement = new AgreementStats();
  canaryRequests = 0;
  shadowRequests = 0;

  constructor(readonly since: number) {}

  observeCandidate(kind: 'canary' | 'shadow', ok: boolean, latencyMs?: number): void {
    if (kind === 'canary') this.canaryRequests += 1;
    else this.shadowRequests += 1;
    this.candidate.record(ok, latencyMs);
  }

  observePrimary(ok: boolean, latencyMs?: number): void {
    this.primary.record(ok, latencyMs);
  }

  observeComparison(c: Comparison): void {
    this.agreement.add(c);
  }

  summary(): Record<string, unknown> {
    return {
      since: new Date(this.since).toISOString(),
      candidate: {
        requests: this.candidate.requests,
        canary_requests: this.canaryRequests,
        shadow_requests: this.shadowRequests,
        errors: this.candidate.errors,
        error_rate: round(this.candidate.errorRate),
        p50_ms: round(this.candidate.latency.quantile(0.5), 4),
        p99_ms: round(this.candidate.latency.quantile(0.99), 4),
      },
      primary: {
        requests: this.primary.requests,
        errors: this.primary.errors,
        error_rate: round(this.primary.errorRate),
        p50_ms: round(this.primary.latency.quantile(0.5), 4),
        p99_ms: round(this.primary.latency.quantile(0.99), 4),
      },
      agreement: round(this.agreement.agreement),
      compared_rows: this.agreement.rows,
      mean_abs_diff: round(this.agreement.meanAbsDiff),
      mean_rel_diff: round(this.agreement.meanRelDiff),
    };
  }
}

/**
 * Judges errors and latency on `step` and answers on `answers` (agreement is a property of the
 * model, not of the load, so a rollout accumulates it across steps; the 100% step has no primary
 * traffic to compare with). `baseline` gives the primary's latency.
 */
export function analyse(step: Evidence, answers: Evidence, baseline: Evidence, rules: AnalysisRules, monitor: MonitorEvidence = {}): AnalysisResult {
  const results: RuleResult[] = [];
  const n = rules.min_samples;

  const requests = step.candidate.requests;
  const errorRate = step.candidate.errorRate;
  if (requests < n || errorRate === undefined) {
    results.push({ rule: 'error_rate', verdict: 'inconclusive', value: round(errorRate), threshold: rules.max_error_rate, samples: requests, reason: `${requests} of ${n} candidate requests needed` });
  } else {
    const ok = errorRate <= rules.max_error_rate;
    results.push({ rule: 'error_rate', verdict: ok ? 'pass' : 'fail', value: round(errorRate), threshold: rules.max_error_rate, samples: requests, reason: `${step.candidate.errors} errors in ${requests} candidate requests` });
  }

  const cLat = step.candidate.latency;
  const pLat = baseline.primary.latency;
  if (cLat.size < n || pLat.size < n) {
    results.push({ rule: 'p99_ratio', verdict: 'inconclusive', value: null, threshold: rules.max_p99_ratio, samples: Math.min(cLat.size, pLat.size), reason: `latency samples: candidate ${cLat.size}, primary ${pLat.size}, ${n} each needed` });
  } else {
    const c99 = cLat.quantile(0.99)!;
    const p99 = pLat.quantile(0.99)!;
    const ratio = p99 > 0 ? c99 / p99 : c99 > 0 ? Infinity : 1;
    const ok = c99 <= rules.max_p99_ratio * p99 + rules.p99_slack_ms;
    results.push({ rule: 'p99_ratio', verdict: ok ? 'pass' : 'fail', value: round(ratio, 4), threshold: rules.max_p99_ratio, samples: Math.min(cLat.size, pLat.size), reason: `candidate p99 ${c99.toFixed(3)} ms, primary p99 ${p99.toFixed(3)} ms (slack ${rules.p99_slack_ms} ms)` });
  }

  const rows = answers.agreement.rows;
  const agreement = answers.agreement.agreement;
  if (rows < n || agreement === undefined) {
    results.push({ rule: 'agreement', verdict: 'inconclusive', value: round(agreement), threshold: rules.min_agreement, samples: rows, reason: `${rows} of ${n} compared rows needed` });
  } else {
    const ok = agreement >= rules.min_agreement;
    results.push({ rule: 'agreement', verdict: ok ? 'pass' : 'fail', value: round(agreement), threshold: rules.min_agreement, samples: rows, reason: `${answers.agreement.agreeingRows} of ${rows} rows agree with the primary` });
  }

  if (rules.drift) {
    const d = monitor.drift;
    results.push(d
      ? { rule: 'drift', verdict: d.verdict, value: d.verdict, threshold: 'no drift', samples: 0, reason: 'drift verdict from the monitor' }
      : { rule: 'drift', verdict: 'inconclusive', value: null, threshold: 'no drift', samples: 0, reason: 'the monitor has no drift verdict yet' });
  }
  if (rules.min_accuracy !== undefined) {
    const a = monitor.accuracy;
    if (!a || a.samples < n) {
      results.push({ rule: 'accuracy', verdict: 'inconclusive', value: a ? round(a.value) : null, threshold: rules.min_accuracy, samples: a?.samples ?? 0, reason: `${a?.samples ?? 0} of ${n} labelled predictions needed` });
    } else {
      const ok = a.value >= rules.min_accuracy;
      results.push({ rule: 'accuracy', verdict: ok ? 'pass' : 'fail', value: round(a.value), threshold: rules.min_accuracy, samples: a.samples, reason: 'live accuracy from the monitor' });
    }
  }

  const verdict: Verdict = results.some((r) => r.verdict === 'fail') ? 'fail' : results.some((r) => r.verdict === 'inconclusive') ? 'inconclusive' : 'pass';
  return { verdict, rules: results };
}

const RULE_FIELDS = ['max_error_rate', 'max_p99_ratio', 'p99_slack_ms', 'min_agreement', 'min_samples', 'max_inconclusive', 'drift', 'min_accuracy'] as const;

function positive(value: unknown, what: string, integer: boolean, min: number): number {
  const ok = typeof value === 'number' && Number.isFinite(value) && value >= min && (!integer || Number.isSafeInteger(value));
  if (!ok) throw badInput(integer ? `an integer >= ${min}` : `a number >= ${min}`, what, value);
  return value;
}

/** Validates analysis rules (POST body, model config, query string of GET /analysis). */
export function parseRules(value: unknown, what = 'analysis', base: AnalysisRules = DEFAULT_RULES): AnalysisRules {
  if (value === undefined) return { ...base };
  const obj = readObject(value, what);
  onlyFields(obj, what, RULE_FIELDS);
  const out: AnalysisRules = { ...base };
  if (obj.max_error_rate !== undefined) out.max_error_rate = readFraction(obj.max_error_rate, `${what}.max_error_rate`);
  if (obj.max_p99_ratio !== undefined) out.max_p99_ratio = positive(obj.max_p99_ratio, `${what}.max_p99_ratio`, false, 1);
  if (obj.p99_slack_ms !== undefined) out.p99_slack_ms = positive(obj.p99_slack_ms, `${what}.p99_slack_ms`, false, 0);
  if (obj.min_agreement !== undefined) out.min_agreement = readFraction(obj.min_agreement, `${what}.min_agreement`);
  if (obj.min_samples !== undefined) out.min_samples = positive(obj.min_samples, `${what}.min_samples`, true, 1);
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
    if (!(RULE_FIELDS as readonly string[]).includes(k)) throw new UmbraError('INVALID_ARGUMENT', `unknown query parameter "${k}" (known: ${RULE_FIELDS.join(', ')})`);
    obj[k] = k === 'drift' ? v === 'true' : v.trim() === '' ? v : Number(v);
  }
  return parseRules(obj, 'the analysis query');
}
