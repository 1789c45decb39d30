// Sparse or dense, per layer, by measurement. A pruned layer can run on the packed dense GEMM
// or on the CSR panel SpMM; which is faster depends on its density, its size (a small layer
// lives in L1 and the dense kernel's regular loads win even at 90% sparsity), the batch and the
// host's caches, so no fixed density cut is right for every layer. At load the executor runs
// both on the batch sizes the model will see, alternating them round by round, and runs the layer
// sparse only where that is no slower than dense on any of them: pruning must never make a model
// slower at a batch size it serves.
import type { BoundGemm } from '../native/kernels.js';
import { threadCpuMicrosNow } from '../thread-cpu.js';
import type { LayerInfo } from './executor.js';
import type { CudaLayerInfo } from './cuda-executor.js';

export type LayerFormat = 'packed' | 'csr';

/**
 * What decided a layer's format: `measured` (timed both ways at load), `given` (the plan of an
 * earlier measurement of the same load, so every worker runs the same formats), `threshold` (a
 * fixed density rule the caller asked for), `too-dense` (the sparse format would hold more bytes
 * than the dense one, so the sparse kernel cannot win and is not timed).
 */
export type LayerBasis = 'measured' | 'given' | 'threshold' | 'too-dense';

/** Both formats timed on one batch size. */
export interface LayerTiming {
  /** Rows of the model's batch. */
  batch: number;
  /** Rows the layer multiplied (the batch times rows per sample). */
  rows: number;
  /** Fastest call of each format, in microseconds. */
  packedUs: number;
  csrUs: number;
  /** Timed calls per format. */
  calls: number;
}

/**
 * Layers denser than this are not timed: CSR panels store 6 bytes per non-zero against 4 per
 * weight dense, so above two thirds the sparse form is the bigger one to stream, and the kernels
 * measured about even at 50% density (bench/RESULTS-native.md).
 */
export const MEASURE_DENSITY_MAX = 2 / 3;

/** Batch sizes timed when the caller names none: one request, a small batch and a full one. */
export const DEFAULT_TUNE_BATCH_SIZES: readonly number[] = [1, 8, 64];

/** A timing round lasts at least this long, so a layer of a few microseconds is timed over many calls. */
const ROUND_MIN_US = 300;
const MIN_ROUNDS = 3;
const MAX_ROUNDS = 7;
/** After MIN_ROUNDS, stop once one format is this much faster: more rounds would not change the choice. */
const DECISIVE_RATIO = 1.5;
/** Stop adding rounds once both formats have had this much time on one batch size. */
const BATCH_BUDGET_US = 400_000;

/** Seeded values in (-1, 1): timing on zeros could flatter a kernel that skips work. */
export function seededInput(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 31 - 1;
  }
  return data;
}

/**
 * What a timing round counts. 'thread-cpu': the time this thread was on a CPU, where the host
 * tells it (Linux), so a round the scheduler interrupted (another process on the host's cores)
 * is not charged to the kernel that happened to be running; the wall time when that is shorter
 * (the clock reads themselves). 'wall': elapsed time, for work that waits off the CPU by design
 * (a GPU kernel the thread synchronizes with).
 */
export type TimingClock = 'thread-cpu' | 'wall';

/** Mean time per call of `call` over `reps` calls in a row, in microseconds. */
function timeRound(call: () => void, reps: number, clock: TimingClock): number {
  const c0 = clock === 'thread-cpu' ? threadCpuMicrosNow() : undefined;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) call();
  let us = (performance.now() - t0) * 1000;
  if (c0 !== undefined) {
    const c1 = threadCpuMicrosNow();
    if (c1 !== undefined) us = Math.min(us, c1 - c0);
  }
  return us / reps;
}

/**
 * Times both formats of one layer on X [m, k], alternating them round by round (the order
 * swapping each round) so load from elsewhere on the host falls on both alike, and keeps each
 * one's fastest round: on a busy host the slower rounds include time the thread was preempted,
 * which the 'thread-cpu' clock leaves out altogether (CUDA layers time with 'wall').
 */
export function timeLayer(packed: BoundGemm, csr: BoundGemm, x: Float32Array, m: number, out: Float32Array, batch: number, clock: TimingClock = 'wall'): LayerTiming {
  const runPacked = () => { packed(x, m, out); };
  const runCsr = () => { csr(x, m, out); };
  // The first call of each pages in its scratch and weights; the second sizes the rounds.
  runPacked();
  runCsr();
  const single = Math.max(timeRound(runPacked, 1, 'wall'), timeRound(runCsr, 1, 'wall'), 0.01);
  const reps = Math.max(1, Math.ceil(ROUND_MIN_US / single));
  let packedUs = Infinity;
  let csrUs = Infinity;
  let spent = 0;
  let rounds = 0;
  while (rounds < MAX_ROUNDS) {
    const [a, b] = rounds % 2 === 0 ? [runPacked, runCsr] : [runCsr, runPacked];
    const ta = timeRound(a, reps, clock);
    const tb = timeRound(b, reps, clock);
    const [p, c] = rounds % 2 === 0 ? [ta, tb] : [tb, ta];
    packedUs = Math.min(packedUs, p);
    csrUs = Math.min(csrUs, c);
    spent += (p + c) * reps;
    rounds++;
    if (rounds >= MIN_ROUNDS && (Math.max(packedUs, csrUs) / Math.min(packedUs, csrUs) >= DECISIVE_RATIO || spent >= BATCH_BUDGET_US)) break;
  }
  return { batch, rows: m, packedUs, csrUs, calls: rounds * reps };
}

export interface FormatChoice {
  format: LayerFormat;
  /** Why, with the figures: "csr 4.1x faster at batch 1, 3.9x at 8". */
  reason: string;
}

function ratio(x: number): string {
  return `${x >= 10 ? x.toFixed(0) : x.toFixed(2)}x`;
}

/**
 * CSR may be this much slower than dense at some timed batch size and still be kept (when it is
 * faster at another): the spread of fastest-call timings on a busy host, not a real loss.
 */
export const CSR_SLOWDOWN_MAX = 1.05;

/**
 * CSR where it is faster at some timed batch size and no slower (within CSR_SLOWDOWN_MAX) at any;
 * otherwise dense. Where the formats cross over (CSR faster on full batches, slower on single
 * rows), dense stays: the model then runs as its dense original does at every batch size, rather
 * than trading one batch size's speed for another's.
 */
export function chooseFormat(timings: readonly LayerTiming[]): FormatChoice {
  if (timings.length === 0) throw new Error('chooseFormat: no timings');
  const csrOverPacked = timings.map((t) => t.csrUs / t.packedUs);
  const format: LayerFormat = Math.max(...csrOverPacked) <= CSR_SLOWDOWN_MAX && Math.min(...csrOverPacked) < 1 ? 'csr' : 'packed';
  const parts = timings.map((t) => {
    const [mine, other] = format === 'csr' ? [t.csrUs, t.packedUs] : [t.packedUs, t.csrUs];
    return `${other >= mine ? `${ratio(other / mine)} faster` : `${ratio(mine / other)} slower`} at batch ${t.batch}`;
  });
  return { format, reason: `${format} ${parts.join(', ')} (fastest of ${timings.map((t) => t.calls).join('/')} timed calls each)` };
}

/** One layer's format and what decided it (LayerInfo's format, basis, reason and timings). */
export interface FormatDecision {
  format: LayerFormat;
  basis: LayerBasis;
  reason: string;
  timings?: LayerTiming[];
}

export interface FormatRules {
  /** A fixed density cut the caller asked for, instead of timing. */
  sparseBelow?: number;
  /** The format an earlier open of the same load measured (every worker runs the same formats). */
  given?: LayerFormat;
  /** The cut that decides when the layer cannot be timed. */
  fallbackBelow: number;
}

/**
 * One layer's format, by the same rules on every device: the caller's fixed cut; else the plan of
 * an earlier open; else dense where the sparse form would be the bigger one; else both formats timed
 * by `measure` (timeLayer per batch size) and chooseFormat's verdict. `measure` returns a reason
 * instead of timings when the layer cannot be timed, and the fallback cut decides.
 */
export function decideLayerFormat(density: number, rules: FormatRules, measure: () => LayerTiming[] | string): FormatDecision {
  const percent = `${(density * 100).toFixed(1)}% non-zero`;
  const cut = (below: number): LayerFormat => (density < below ? 'csr' : 'packed');
  if (rules.sparseBelow !== undefined) {
    const format = cut(rules.sparseBelow);
    return { format, basis: 'threshold', reason: `${percent}, ${format === 'csr' ? 'under' : 'not under'} the fixed cut of ${rules.sparseBelow * 100}%` };
  }
  if (rules.given) return { format: rules.given, basis: 'given', reason: `${rules.given}, as measured when this load was first opened` };
  if (density > MEASURE_DENSITY_MAX) return { format: 'packed', basis: 'too-dense', reason: `${percent}: the sparse form would hold more bytes than the dense one` };
  const timings = measure();
  if (typeof timings === 'string') {
    return { format: cut(rules.fallbackBelow), basis: 'threshold', reason: `${percent}, not timed (${timings}); the fixed cut of ${rules.fallbackBelow * 100}% decided` };
  }
  const choice = chooseFormat(timings);
  return { format: choice.format, basis: 'measured', reason: choice.reason, timings };
}

const micros = (us: number) => Math.round(us * 1000) / 1000;

/** Layer reports as the API shows them (snake_case, as the rest of the protocol's JSON). */
export function layerReportJson(layers: readonly (LayerInfo | CudaLayerInfo)[]): Record<string, unknown>[] {
  return layers.map((l) => ({
    name: l.name, k: l.k, n: l.n, density: l.density, format: l.format, activation: l.activation, bias: l.bias,
    ...('device' in l ? { device: `cuda:${l.device}`, precision: l.precision } : {}),
    basis: l.basis,
    reason: l.reason,
    ...(l.timings ? { timings: l.timings.map((t) => ({ batch: t.batch, rows: t.rows, packed_us: micros(t.packedUs), csr_us: micros(t.csrUs), calls: t.calls })) } : {}),
  }));
}

/** What decided a layer's format, with its device and precision on a GPU. */
export function layerWhy(l: LayerInfo | CudaLayerInfo): string {
  return `${'device' in l ? `cuda:${l.device} ${l.precision}, ` : ''}${l.basis}: ${l.reason}`;
}

/** One line per model for the server log: each layer's format and what decided it. */
export function layerSummary(layers: readonly (LayerInfo | CudaLayerInfo)[]): string {
  return layers.map((l) => `${l.name || '(unnamed)'} ${l.format} (${layerWhy(l)})`).join('; ');
}
