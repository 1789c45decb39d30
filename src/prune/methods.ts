// Runs one pruning method over a model's weights through the native adapter, and measures each
// weight before and after (zeros, norm kept).
import { UmbraError } from '../errors.js';
import { pruneMagnitude, pruneNM, pruneOutputs, type LayerCut, type PruneLayer } from '../native/prune.js';
import { pruneMagnitudeCuda } from '../native/cuda-prune.js';
import type { PrunableModel } from './model-file.js';
import type { MatrixLayout } from './model-weights.js';
import { resolveTargets, type LayerTarget, type TargetRules } from './targets.js';

export type PruneMethod = 'global' | 'layer' | 'nm' | 'structured';
export const PRUNE_METHODS: readonly PruneMethod[] = ['global', 'layer', 'nm', 'structured'];
export type NormKind = 'l1' | 'l2';

export interface PruneSettings {
  method: PruneMethod;
  /** Fraction to prune (global: over all pruned weights together; layer/structured: per weight). Unused by nm. */
  sparsity: number;
  /** N:M: keep n of every m consecutive weights along the input dimension. */
  nm?: { n: number; m: number };
  /** Structured: the norm that ranks output units; every method reports the fraction of this norm kept. */
  norm?: NormKind;
  exclude?: readonly string[];
  /** Per-weight targets (global, layer, structured). In global mode a weight with a target is pruned to it on its own. */
  layers?: readonly LayerTarget[];
  /**
   * Structured: prune output layers too. Off by default: zeroing an output unit of a model's last
   * layer removes that output (a class of a classifier) rather than a hidden unit.
   */
  includeOutputLayer?: boolean;
  /** Global mode: bounds on each weight's pruned fraction. */
  minLayerSparsity?: number;
  maxLayerSparsity?: number;
  threads?: number;
  /** Where global and per-layer magnitude selection runs: cpu (default) or cuda (no min/max layer bounds). */
  device?: 'cpu' | 'cuda';
}

export interface LayerReport {
  name: string;
  nodes: readonly string[];
  op: string;
  shape: readonly number[];
  layout: MatrixLayout;
  size: number;
  status: 'pruned' | 'excluded';
  /** Why an excluded weight was left alone: an --exclude pattern, or the output layer kept by structured pruning. */
  excludedBy?: 'pattern' | 'output-layer';
  /** The fraction this weight was asked for (null: global threshold, or excluded, or N:M). */
  target: number | null;
  sparsityBefore: number;
  sparsityAfter: number;
  /** norm(after) / norm(before) in the run's norm (1 for an all-zero weight). */
  normKept: number;
  /** Magnitude cut for unstructured methods: weights below it (and some ties at it) were zeroed. */
  threshold?: number;
  /** Structured: output units zeroed. */
  prunedOutputs?: number;
}

export interface PruneTotals {
  weights: number;
  zerosBefore: number;
  zerosAfter: number;
  sparsityBefore: number;
  sparsityAfter: number;
}

export interface PruneProgress {
  /** Weights pruned so far, of `total`. */
  done: number;
  total: number;
  layer?: string;
}

interface Measure { zeros: number; norm: number }

function measure(values: Float32Array, norm: NormKind): Measure {
  let zeros = 0;
  let sum = 0;
  if (norm === 'l1') {
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (v === 0) zeros++;
      sum += Math.abs(v);
    }
    return { zeros, norm: sum };
  }
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v === 0) zeros++;
    sum += v * v;
  }
  return { zeros, norm: Math.sqrt(sum) };
}

export function checkSettings(s: PruneSettings): void {
  const fraction = (v: number | undefined, what: string) => {
    if (v !== undefined && !(typeof v === 'number' && v >= 0 && v <= 1)) throw new UmbraError('INVALID_ARGUMENT', `expected a number in [0, 1] for ${what} but received ${String(v)}`);
  };
  if (!PRUNE_METHODS.includes(s.method)) throw new UmbraError('INVALID_ARGUMENT', `expected one of ${PRUNE_METHODS.join(', ')} for method but received ${String(s.method)}`);
  if (s.method !== 'nm') fraction(s.sparsity, 'sparsity');
  for (const l of s.layers ?? []) fraction(l.sparsity, `the target of layer ${l.pattern}`);
  fraction(s.minLayerSparsity, 'min layer sparsity');
  fraction(s.maxLayerSparsity, 'max layer sparsity');
  if (s.method === 'nm') {
    const nm = s.nm;
    if (!nm || !Number.isInteger(nm.m) || !Number.isInteger(nm.n) || nm.m < 1 || nm.m > 1024 || nm.n < 0 || nm.n > nm.m) {
      throw new UmbraError('INVALID_ARGUMENT', `expected N:M with integers 0 <= N <= M <= 1024 for nm but received ${nm ? `${nm.n}:${nm.m}` : 'none'}`);
    }
    if ((s.layers ?? []).length > 0) throw new UmbraError('INVALID_ARGUMENT', 'expected no per-layer targets for N:M pruning (use exclusions) but received some');
  }
  if (s.method !== 'global' && (s.minLayerSparsity !== undefined || s.maxLayerSparsity !== undefined)) {
    throw new UmbraError('INVALID_ARGUMENT', `expected min/max layer sparsity only with the global method but received them with ${s.method}`);
  }
  if (s.device === 'cuda' && (s.method === 'nm' || s.method === 'structured' || s.minLayerSparsity !== undefined || s.maxLayerSparsity !== undefined)) {
    throw new UmbraError('INVALID_ARGUMENT', `expected the global or layer method without min/max layer sparsity on the GPU but received ${s.method}${s.method === 'global' ? ' with bounds' : ''}`);
  }
  if (s.minLayerSparsity !== undefined && s.maxLayerSparsity !== undefined && s.minLayerSparsity > s.maxLayerSparsity) {
    throw new UmbraError('INVALID_ARGUMENT', `expected min layer sparsity <= max layer sparsity but received ${s.minLayerSparsity} > ${s.maxLayerSparsity}`);
  }
}

/** Which weights a run prunes: the patterns, and for structured pruning the output layers kept unless asked for. */
export function targetRules(settings: PruneSettings): TargetRules {
  return {
    exclude: settings.exclude ?? [],
    layers: settings.layers ?? [],
    keepOutputLayers: settings.method === 'structured' && settings.includeOutputLayer !== true,
  };
}

/** Prunes `model.values` in place by `settings`; returns one report per prunable weight (excluded ones too). */
export async function pruneWeights(model: PrunableModel, settings: PruneSettings, onProgress?: (p: PruneProgress) => void): Promise<{ layers: LayerReport[]; totals: PruneTotals }> {
  checkSettings(settings);
  const norm = settings.norm ?? 'l2';
  const threads = settings.threads ?? 1;
  const { targets, excluded, keptOutputLayers } = resolveTargets(model.weights, targetRules(settings));
  const before = model.values.map((v) => measure(v, norm));
  const layerOf = (index: number): PruneLayer => ({ name: model.weights[index]!.name, weights: model.values[index]! });
  const total = targets.reduce((n, t) => n + model.weights[t.index]!.size, 0);
  let done = 0;
  const step = (index: number) => {
    done += model.weights[index]!.size;
    onProgress?.({ done, total, layer: model.weights[index]!.name });
  };
  onProgress?.({ done, total });

  const thresholds = new Map<number, number>();
  const outputsPruned = new Map<number, number>();
  const targetOf = new Map<number, number | null>();
  const keepCuts = (indices: number[], cuts: LayerCut[]) => cuts.forEach((c, j) => thresholds.set(indices[j]!, c.threshold));

  if (settings.method === 'global' || settings.method === 'layer') {
    const magnitude = settings.device === 'cuda' ? pruneMagnitudeCuda : pruneMagnitude;
    // Weights sharing one target are cut together: one call per distinct target.
    const groups = new Map<number, number[]>();
    const pool: number[] = [];
    for (const t of targets) {
      const fixed = t.override ?? (settings.method === 'layer' ? settings.sparsity : null);
      targetOf.set(t.index, fixed);
      if (fixed === null) pool.push(t.index);
      else groups.set(fixed, [...(groups.get(fixed) ?? []), t.index]);
    }
    for (const [sparsity, indices] of groups) {
      keepCuts(indices, await magnitude(indices.map(layerOf), { sparsity, perLayer: true, threads }));
      indices.forEach(step);
    }
    if (pool.length > 0) {
      const names = pool.map((i) => model.weights[i]!.name);
      const bound = (v: number | undefined) => (v === undefined ? undefined : Object.fromEntries(names.map((n) => [n, v])));
      const options = { sparsity: settings.sparsity, threads, ...(bound(settings.minLayerSparsity) && { minSparsity: bound(settings.minLayerSparsity)! }), ...(bound(settings.maxLayerSparsity) && { maxSparsity: bound(settings.maxLayerSparsity)! }) };
      keepCuts(pool, await magnitude(pool.map(layerOf), options));
      pool.forEach(step);
    }
  } else {
    for (const t of targets) {
      const w = model.weights[t.index]!;
      const shape = { name: w.name, rows: w.rows, cols: w.cols, layout: w.layout };
      if (settings.method === 'nm') {
        targetOf.set(t.index, null);
        pruneNM(model.values[t.index]!, shape, settings.nm!.n, settings.nm!.m);
      } else {
        const sparsity = t.override ?? settings.sparsity;
        targetOf.set(t.index, sparsity);
        outputsPruned.set(t.index, pruneOutputs(model.values[t.index]!, shape, sparsity, norm).length);
      }
      step(t.index);
    }
  }

  const excludedSet = new Set(excluded);
  const keptSet = new Set(keptOutputLayers);
  const after = model.weights.map((w, i) => (excludedSet.has(w.name) ? before[i]! : measure(model.values[i]!, norm)));
  const layers = model.weights.map((w, i): LayerReport => {
    const b = before[i]!;
    const a = after[i]!;
    const report: LayerReport = {
      name: w.name, nodes: w.nodes, op: w.op, shape: w.dims, layout: w.layout, size: w.size,
      status: excludedSet.has(w.name) ? 'excluded' : 'pruned',
      target: targetOf.get(i) ?? null,
      sparsityBefore: w.size === 0 ? 0 : b.zeros / w.size,
      sparsityAfter: w.size === 0 ? 0 : a.zeros / w.size,
      normKept: b.norm === 0 ? 1 : a.norm / b.norm,
    };
    if (excludedSet.has(w.name)) report.excludedBy = keptSet.has(w.name) ? 'output-layer' : 'pattern';
    if (thresholds.has(i)) report.threshold = thresholds.get(i)!;
    if (outputsPruned.has(i)) report.prunedOutputs = outputsPruned.get(i)!;
    return report;
  });
  const weights = model.weights.reduce((n, w) => n + w.size, 0);
  const zerosBefore = before.reduce((n, m) => n + m.zeros, 0);
  const zerosAfter = after.reduce((n, m) => n + m.zeros, 0);
  return {
    layers,
    totals: {
      weights, zerosBefore, zerosAfter,
      sparsityBefore: weights === 0 ? 0 : zerosBefore / weights,
      sparsityAfter: weights === 0 ? 0 : zerosAfter / weights,
    },
  };
}
