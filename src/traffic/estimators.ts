// The statistics rollout rules judge by: one-sided confidence bounds for a proportion (exact
// Clopper-Pearson), for the shift between two latency samples (Hodges-Lehmann with the Mann-Whitney
// interval) and for the median of paired differences (sign test). Rank-based, so one cold stall
// of 29 ms among answers of 0.3 ms moves an estimate by one rank, not by 100x.

/** Standard normal CDF by its Taylor series (exact to ~1e-12 for |x| <= 4, which is all we ask). */
function normalCdf(x: number): number {
  if (x < -8) return 0;
  if (x > 8) return 1;
  const u = x / Math.SQRT2;
  // erf(u) = 2/sqrt(pi) * sum (-1)^n u^(2n+1) / (n! (2n+1))
  let term = u;
  let sum = u;
  for (let n = 1; n < 200; n++) {
    term *= (-u * u) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17) break;
  }
  return 0.5 * (1 + (2 / Math.sqrt(Math.PI)) * sum);
}

const quantiles = new Map<number, number>();

/** z with P(Z <= z) = p, by bisection on the CDF; cached (rules use one or two confidences). */
export function normalQuantile(p: number): number {
  const cached = quantiles.get(p);
  if (cached !== undefined) return cached;
  let lo = -6;
  let hi = 6;
  for (let i = 0; i < 80; i++) {
    const mid = (lo + hi) / 2;
    if (normalCdf(mid) < p) lo = mid;
    else hi = mid;
  }
  const z = (lo + hi) / 2;
  quantiles.set(p, z);
  return z;
}

export interface Bounds {
  /** Point estimate. */
  estimate: number;
  /** One-sided lower and upper bounds, each at the confidence asked for. */
  lower: number;
  upper: number;
}

/**
 * log P(X <= k) for X ~ Binomial(n, p): terms from P(X = 0) by the ratio of successive ones,
 * summed in log space, since (1 - p)^n underflows for large n.
 */
function logTail(k: number, n: number, p: number): number {
  if (p <= 0) return 0;
  if (p >= 1) return k >= n ? 0 : -Infinity;
  let logTerm = n * Math.log1p(-p);
  let logSum = logTerm;
  const odds = Math.log(p) - Math.log1p(-p);
  for (let j = 0; j < k; j++) {
    logTerm += Math.log((n - j) / (j + 1)) + odds;
    logSum = logSum > logTerm ? logSum + Math.log1p(Math.exp(logTerm - logSum)) : logTerm + Math.log1p(Math.exp(logSum - logTerm));
  }
  return logSum;
}

/** P(X <= k) for X ~ Binomial(n, p), summing whichever tail is shorter. */
function binomialCdf(k: number, n: number, p: number): number {
  if (k < 0) return 0;
  if (k >= n) return 1;
  if (k <= n / 2) return Math.exp(logTail(k, n, p));
  // P(X <= k) = 1 - P(X >= k + 1) = 1 - P(Y <= n - k - 1) with Y = n - X ~ Binomial(n, 1 - p).
  return 1 - Math.exp(logTail(n - k - 1, n, 1 - p));
}

/** Counts above this on both sides are bounded by Wilson's formula, which is then as good and O(1). */
const EXACT_LIMIT = 100;

function wilson(successes: number, trials: number, z: number): Bounds {
  const p = successes / trials;
  const z2n = (z * z) / trials;
  const centre = (p + z2n / 2) / (1 + z2n);
  const half = (z / (1 + z2n)) * Math.sqrt((p * (1 - p)) / trials + z2n / (4 * trials));
  return { estimate: p, lower: Math.max(0, centre - half), upper: Math.min(1, centre + half) };
}

/** The p where the monotone `f` crosses `target` (f rising in p when `rising`). */
function solve(f: (p: number) => number, target: number, rising: boolean): number {
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 50; i++) {
    const mid = (lo + hi) / 2;
    if ((f(mid) < target) === rising) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/**
 * Clopper-Pearson bounds of a proportion `successes / trials`, each one-sided at `confidence`:
 * exact, so 2 errors in the first 20 answers bound the rate below by 0.8%, not the 2.3% a normal
 * or Wilson interval claims (at 99%). At 0 of n the upper bound is 1 - (1 - c)^(1/n), about 4.6 / n
 * at 99%. With both counts above 100, Wilson's interval stands in (the two agree there).
 */
export function proportionBounds(successes: number, trials: number, confidence: number): Bounds {
  if (trials <= 0) return { estimate: NaN, lower: 0, upper: 1 };
  const k = successes;
  const n = trials;
  if (Math.min(k, n - k) > EXACT_LIMIT) return wilson(k, n, normalQuantile(confidence));
  const alpha = 1 - confidence;
  // Lower: the p at which k or more successes has probability alpha; upper: k or fewer.
  const lower = k === 0 ? 0 : solve((p) => 1 - binomialCdf(k - 1, n, p), alpha, true);
  const upper = k === n ? 1 : solve((p) => binomialCdf(k, n, p), alpha, false);
  return { estimate: k / n, lower, upper };
}

/** #{(i, j): x[i] - y[j] <= t} for ascending x and y, in O(n + m). */
function countDifferencesAtMost(x: Float64Array, y: Float64Array, t: number): number {
  let count = 0;
  let j = y.length - 1;
  // As x[i] grows, fewer y[j] satisfy y[j] >= x[i] - t; walk j down once over all i.
  for (let i = x.length - 1; i >= 0; i--) {
    const need = x[i]! - t;
    while (j >= 0 && y[j]! >= need) j--;
    count += y.length - 1 - j;
  }
  return count;
}

/** The k-th smallest (1-based) of x[i] - y[j], by bisection on the value with O(n + m) counts. */
function kthDifference(x: Float64Array, y: Float64Array, k: number): number {
  let lo = x[0]! - y[y.length - 1]!;
  let hi = x[x.length - 1]! - y[0]!;
  if (k <= 1) return lo;
  if (k >= x.length * y.length) return hi;
  // Log latencies: 1e-6 is a ratio known to six digits, reached in about 25 halvings.
  for (let i = 0; i < 64 && hi - lo > 1e-6; i++) {
    const mid = (lo + hi) / 2;
    if (countDifferencesAtMost(x, y, mid) >= k) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * Shift of x against y (both ascending): the Hodges-Lehmann estimate (median of all x[i] - y[j])
 * and its one-sided bounds from the Mann-Whitney U distribution (normal approximation, fine from
 * about 10 per side). On log latencies the shift is the log of the candidate/primary latency
 * ratio at the median, whatever the shape of the distributions.
 */
export function shiftBounds(x: Float64Array, y: Float64Array, confidence: number, knownEstimate?: number): Bounds {
  const n = x.length;
  const m = y.length;
  const pairs = n * m;
  const z = normalQuantile(confidence);
  const sd = Math.sqrt((n * m * (n + m + 1)) / 12);
  const k = Math.max(1, Math.floor(pairs / 2 - z * sd));
  const median = knownEstimate ?? (kthDifference(x, y, Math.floor((pairs + 1) / 2)) + kthDifference(x, y, Math.ceil((pairs + 1) / 2))) / 2;
  return { estimate: median, lower: kthDifference(x, y, k), upper: kthDifference(x, y, pairs + 1 - k) };
}

/**
 * Median of paired differences (ascending) and its one-sided sign-test bounds: order statistics
 * picked from the Binomial(n, 1/2) distribution (normal approximation). Needs no symmetry, so a
 * stall on either side of a pair weighs no more than any other pair.
 */
export function medianBounds(d: Float64Array, confidence: number): Bounds {
  const n = d.length;
  const z = normalQuantile(confidence);
  const k = Math.max(1, Math.floor(n / 2 - (z * Math.sqrt(n)) / 2));
  const median = n % 2 === 1 ? d[(n - 1) / 2]! : (d[n / 2 - 1]! + d[n / 2]!) / 2;
  return { estimate: median, lower: d[k - 1]!, upper: d[n - k]! };
}
