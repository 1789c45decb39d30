// Two-sample drift tests on binned data: the reference and the live window are both histograms
// over the same bins, so every test runs in O(bins) whatever the traffic was.

/** Floor for empty bins so PSI and Jensen-Shannon stay finite (Evidently uses the same 1e-4). */
const EPSILON = 1e-4;

export type DriftTest = 'ks' | 'psi' | 'js' | 'chi2';

/** Whether a higher score means more drift (distances) or less (p-values). */
export const TEST_IS_P_VALUE: Record<DriftTest, boolean> = { ks: true, chi2: true, psi: false, js: false };

export interface TestResult {
  test: DriftTest;
  /** p-value for ks/chi2, distance for psi/js. */
  score: number;
  /** The raw statistic (D for ks, chi-square for chi2, same as score for distances). */
  statistic: number;
}

function proportions(counts: ArrayLike<number>, total: number): number[] {
  const out = new Array<number>(counts.length);
  for (let i = 0; i < counts.length; i++) out[i] = Math.max(counts[i]! / Math.max(total, 1), EPSILON);
  return out;
}

function sum(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  return s;
}

/** Population stability index: sum (live - ref) * ln(live / ref). */
export function psi(reference: ArrayLike<number>, live: ArrayLike<number>): TestResult {
  const r = proportions(reference, sum(reference));
  const l = proportions(live, sum(live));
  let s = 0;
  for (let i = 0; i < r.length; i++) s += (l[i]! - r[i]!) * Math.log(l[i]! / r[i]!);
  return { test: 'psi', score: s, statistic: s };
}

/** Jensen-Shannon distance (square root of the divergence, natural log, as scipy's default). */
export function jensenShannon(reference: ArrayLike<number>, live: ArrayLike<number>): TestResult {
  const r = proportions(reference, sum(reference));
  const l = proportions(live, sum(live));
  const rs = sum(r);
  const ls = sum(l);
  let d = 0;
  for (let i = 0; i < r.length; i++) {
    const p = r[i]! / rs;
    const q = l[i]! / ls;
    const m = (p + q) / 2;
    d += 0.5 * p * Math.log(p / m) + 0.5 * q * Math.log(q / m);
  }
  const distance = Math.sqrt(Math.max(d, 0));
  return { test: 'js', score: distance, statistic: distance };
}

/**
 * Kolmogorov-Smirnov on the two binned CDFs. With bins on the reference's distinct values (small
 * integer features) this is the exact statistic; with quantile bins it is a lower bound of it.
 */
export function kolmogorovSmirnov(reference: ArrayLike<number>, live: ArrayLike<number>): TestResult {
  const n = sum(reference);
  const m = sum(live);
  let cr = 0;
  let cl = 0;
  let d = 0;
  for (let i = 0; i < reference.length; i++) {
    cr += reference[i]! / n;
    cl += live[i]! / m;
    d = Math.max(d, Math.abs(cr - cl));
  }
  const en = Math.sqrt((n * m) / (n + m));
  return { test: 'ks', score: kolmogorovQ((en + 0.12 + 0.11 / en) * d), statistic: d };
}

/** Pearson chi-square of the live counts against the reference proportions. */
export function chiSquare(reference: ArrayLike<number>, live: ArrayLike<number>): TestResult {
  const r = proportions(reference, sum(reference));
  const rs = sum(r);
  const m = sum(live);
  let stat = 0;
  let categories = 0;
  for (let i = 0; i < r.length; i++) {
    if (reference[i]! === 0 && live[i]! === 0) continue;
    categories += 1;
    const expected = (m * r[i]!) / rs;
    stat += (live[i]! - expected) ** 2 / expected;
  }
  const df = Math.max(categories - 1, 1);
  return { test: 'chi2', score: gammaQ(df / 2, stat / 2), statistic: stat };
}

export function runTest(test: DriftTest, reference: ArrayLike<number>, live: ArrayLike<number>): TestResult {
  switch (test) {
    case 'ks': return kolmogorovSmirnov(reference, live);
    case 'psi': return psi(reference, live);
    case 'js': return jensenShannon(reference, live);
    case 'chi2': return chiSquare(reference, live);
  }
}

/** Survival function of the Kolmogorov distribution, Q(x) = 2 sum (-1)^(k-1) exp(-2 k^2 x^2). */
function kolmogorovQ(x: number): number {
  if (x < 0.2) return 1;
  let s = 0;
  let sign = 1;
  for (let k = 1; k <= 100; k++) {
    const term = sign * Math.exp(-2 * k * k * x * x);
    s += term;
    if (Math.abs(term) < 1e-12) break;
    sign = -sign;
  }
  return Math.min(Math.max(2 * s, 0), 1);
}

/** Upper regularized incomplete gamma Q(a, x): series below a + 1, continued fraction above. */
export function gammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  const lnPrefix = -x + a * Math.log(x) - logGamma(a);
  if (x < a + 1) {
    let term = 1 / a;
    let total = term;
    for (let n = 1; n < 500; n++) {
      term *= x / (a + n);
      total += term;
      if (Math.abs(term) < Math.abs(total) * 1e-15) break;
    }
    return Math.min(Math.max(1 - total * Math.exp(lnPrefix), 0), 1);
  }
  // Lentz's continued fraction.
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 500; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return Math.min(Math.max(Math.exp(lnPrefix) * h, 0), 1);
}

/** Lanczos approximation (g = 7, n = 9). */
function logGamma(z: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (z < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * z))) - logGamma(1 - z);
  const zz = z - 1;
  let x = c[0]!;
  for (let i = 1; i < 9; i++) x += c[i]! / (zz + i);
  const t = zz + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (zz + 0.5) * Math.log(t) - t + Math.log(x);
}
