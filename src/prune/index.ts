// `umbra prune` as a library call: open a model, optionally score it, prune (or sweep several
// sparsities), write the result, score it again. Transport- and terminal-free; the CLI renders.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UmbraError } from '../errors.js';
import { evalPlan, evaluateModel, evaluateNative, readEvalData, type EvalResult } from './evaluate.js';
import type { GpuPrecision } from '../repository/config.js';
import { PrunableModel } from './model-file.js';
import { checkSettings, pruneWeights, targetRules, type LayerReport, type PruneProgress, type PruneSettings, type PruneTotals } from './methods.js';
import { sweepSvg } from './plot.js';
import { isLayerWeight, type SkippedInitializer } from './model-weights.js';
import { resolveTargets } from './targets.js';

export { PrunableModel } from './model-file.js';
export { findPrunable, isLayerWeight, matrixSides, type MatrixLayout, type PrunableWeight, type SkippedInitializer } from './model-weights.js';
export { pruneWeights, checkSettings, targetRules, PRUNE_METHODS, type LayerReport, type NormKind, type PruneMethod, type PruneProgress, type PruneSettings, type PruneTotals } from './methods.js';
export { globToRegExp, resolveTargets, TargetPatternError, type LayerTarget } from './targets.js';
export { evalPlan, evaluateModel, evaluateNative, readEvalData, type EvalData, type EvalResult } from './evaluate.js';
export { sweepSvg, type SweepPoint } from './plot.js';
export { formatReport } from './report.js';

export interface EvalOptions {
  data: string;
  label: string;
  filter?: { column: string; value: string };
  /** Output to score; default an integer output (a label), else the first. */
  output?: string;
  /** Also score before and after on a GPU through the native backend, at each of these precisions. */
  precisions?: readonly GpuPrecision[];
}

/** The model scored on a GPU at one precision, before and after pruning. */
export interface PrecisionEval {
  precision: GpuPrecision;
  before: number;
  after: number | null;
}

export interface PruneRunOptions extends PruneSettings {
  input: string;
  /** Where to write the pruned model; optional only for a sweep. */
  output?: string;
  eval?: EvalOptions;
  /** Sparsities to prune and score one after another (needs eval). */
  sweep?: readonly number[];
  /** SVG file for the sweep's curve. */
  plot?: string;
  onProgress?: (event: RunProgress) => void;
}

export type RunProgress =
  | { stage: 'load' | 'write' | 'eval'; message: string }
  | { stage: 'prune'; progress: PruneProgress; sparsity: number | null }
  | { stage: 'sweep'; done: number; total: number; sparsity: number };

export interface SweepResult {
  /** The requested sparsity. */
  sparsity: number;
  /** Fraction of all prunable weights that ended up zero. */
  totalSparsity: number;
  value: number;
}

export interface PruneRunReport {
  input: string;
  output: string | null;
  files: string[];
  method: PruneSettings['method'];
  sparsity: number | null;
  nm: string | null;
  norm: 'l1' | 'l2';
  threads: number;
  layers: LayerReport[];
  skipped: readonly SkippedInitializer[];
  totals: PruneTotals | null;
  /**
   * Weights this run zeroed whole (none was zero before, every one is now): that layer's output no
   * longer depends on its input. Global pruning does this to a layer whose weights all sit under
   * the one threshold (PyTorch initialises a Linear by its fan-in, so a wide layer's are small).
   */
  wholeLayers: string[];
  eval?: { metric: EvalResult['metric']; output: string; rows: number; before: number; after: number | null; precisions?: PrecisionEval[] };
  sweep?: SweepResult[];
  plot?: string;
  seconds: { load: number; prune: number; write: number; eval: number };
}

const since = (t: number) => (performance.now() - t) / 1000;

export async function runPrune(options: PruneRunOptions): Promise<PruneRunReport> {
  const seconds = { load: 0, prune: 0, write: 0, eval: 0 };
  const progress = options.onProgress ?? (() => undefined);
  const sweep = options.sweep ?? [];
  if (sweep.length > 0 && !options.eval) throw new UmbraError('INVALID_ARGUMENT', 'expected eval data for a sweep but received none');
  if (sweep.length > 0 && options.method === 'nm') throw new UmbraError('INVALID_ARGUMENT', 'expected the global, layer or structured method for a sweep but received nm (N:M has one sparsity)');
  if (options.output === undefined && sweep.length === 0) throw new UmbraError('INVALID_ARGUMENT', 'expected an output path but received none');

  checkSettings(options);
  let t = performance.now();
  progress({ stage: 'load', message: `reading ${options.input}` });
  const model = PrunableModel.open(options.input);
  seconds.load = since(t);
  if (model.weights.length === 0) {
    // The initializers some layer reads as its weight, and why each is left alone (a tied weight
    // also read by a Transpose, FP16): without them the user cannot tell what to change.
    const near = model.skipped.filter(isLayerWeight);
    const why = near.slice(0, 3).map((s) => `"${s.name}" (${s.reason})`).join(', ');
    const more = near.length > 3 ? ` and ${near.length - 3} more` : '';
    throw new UmbraError('INVALID_ARGUMENT', `expected ${options.input} to have prunable weights (FP32 initializers read only as MatMul/Gemm/Conv weights) but it has none${near.length > 0 ? `; left alone: ${why}${more}` : ''}`);
  }
  // Pattern mistakes surface before any slow work.
  resolveTargets(model.weights, targetRules(options));
  const evalData = options.eval ? await readEvalData(options.eval.data, { label: options.eval.label, ...(options.eval.filter && { filter: options.eval.filter }) }) : null;
  const plan = evalData ? evalPlan(model.model, evalData, options.eval!.output) : null;
  const threads = options.threads ?? 1;

  let before: EvalResult | null = null;
  const precisions = options.eval?.precisions ?? [];
  const onGpu: PrecisionEval[] = [];
  if (evalData && plan) {
    t = performance.now();
    progress({ stage: 'eval', message: `scoring the input on ${evalData.rows} rows` });
    before = await evaluateModel(options.input, plan, evalData, threads);
    for (const precision of precisions) {
      progress({ stage: 'eval', message: `scoring the input on the GPU at ${precision}` });
      onGpu.push({ precision, before: (await evaluateNative(options.input, plan, evalData, { device: 'cuda', precision }, threads)).value, after: null });
    }
    seconds.eval += since(t);
  }

  const report: PruneRunReport = {
    input: options.input, output: options.output ?? null, files: [], method: options.method,
    sparsity: options.method === 'nm' || options.output === undefined ? null : options.sparsity,
    nm: options.method === 'nm' && options.nm ? `${options.nm.n}:${options.nm.m}` : null,
    norm: options.norm ?? 'l2', threads, layers: [], skipped: model.skipped, totals: null, wholeLayers: [], seconds,
  };

  if (sweep.length > 0 && evalData && plan && before) {
    model.keepOriginals();
    const points: SweepResult[] = [];
    const scratch = mkdtempSync(join(tmpdir(), 'umbra-prune-sweep-'));
    try {
      for (const [i, sparsity] of sweep.entries()) {
        progress({ stage: 'sweep', done: i, total: sweep.length, sparsity });
        if (i > 0) model.reset();
        t = performance.now();
        const run = await pruneWeights(model, { ...options, sparsity }, (p) => progress({ stage: 'prune', progress: p, sparsity }));
        seconds.prune += since(t);
        const file = join(scratch, `sweep-${i}.onnx`);
        t = performance.now();
        model.write(file);
        seconds.write += since(t);
        t = performance.now();
        const scored = await evaluateModel(file, plan, evalData, threads);
        seconds.eval += since(t);
        points.push({ sparsity, totalSparsity: run.totals.sparsityAfter, value: scored.value });
      }
      progress({ stage: 'sweep', done: sweep.length, total: sweep.length, sparsity: sweep.at(-1)! });
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
    model.reset();
    report.sweep = points;
    if (options.plot) {
      const curve = [{ sparsity: 0, value: before.value }, ...points.map((p) => ({ sparsity: p.totalSparsity, value: p.value }))];
      writeFileSync(options.plot, sweepSvg(curve, { title: `${before.metric} vs sparsity (${options.method}) - ${options.input}`, metric: before.metric }));
      report.plot = options.plot;
    }
  }

  let after: EvalResult | null = null;
  if (options.output !== undefined) {
    t = performance.now();
    const run = await pruneWeights(model, options, (p) => progress({ stage: 'prune', progress: p, sparsity: options.method === 'nm' ? null : options.sparsity }));
    seconds.prune += since(t);
    report.layers = run.layers;
    report.totals = run.totals;
    report.wholeLayers = run.layers.filter((l) => l.status === 'pruned' && l.sparsityBefore < 1 && l.sparsityAfter === 1).map((l) => l.name);
    t = performance.now();
    progress({ stage: 'write', message: `writing ${options.output}` });
    report.files = model.write(options.output);
    seconds.write += since(t);
    if (evalData && plan) {
      t = performance.now();
      progress({ stage: 'eval', message: `scoring the pruned model on ${evalData.rows} rows` });
      after = await evaluateModel(options.output, plan, evalData, threads);
      for (const scored of onGpu) {
        progress({ stage: 'eval', message: `scoring the pruned model on the GPU at ${scored.precision}` });
        scored.after = (await evaluateNative(options.output, plan, evalData, { device: 'cuda', precision: scored.precision }, threads)).value;
      }
      seconds.eval += since(t);
    }
  }
  if (before) report.eval = { metric: before.metric, output: before.output, rows: before.rows, before: before.value, after: after?.value ?? null, ...(onGpu.length > 0 ? { precisions: onGpu } : {}) };
  return report;
}
