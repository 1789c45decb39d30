// Typed, validated adapter over native magnitude pruning. Counts are exact: a fraction s of n
// weights prunes round-half-up(s * n), ties at the threshold broken by layer order then index.
// Existing zeros count as pruned (they are the smallest magnitudes). NaN weights are rejected
// with an error naming the layer and index.
import { native, type NativeLayerCut } from './addon.js';
import {
  callNative, callNativeAsync, checkDimension, checkFloat32, checkFraction, checkOneOf, checkThreads,
} from './checks.js';
import { invalid, UmbraError } from '../errors.js';
import type { WeightLayout } from './kernels.js';

export interface PruneLayer {
  readonly name: string;
  /** Pruned in place by applyMask / pruneMagnitude. */
  readonly weights: Float32Array;
}

export interface SelectOptions {
  /** Fraction of weights to prune, in [0, 1]. */
  sparsity: number;
  /** false (default): one global threshold over all layers; true: each layer at `sparsity`. */
  perLayer?: boolean;
  /** Global mode only: per-layer bounds on the pruned fraction, by layer name. */
  minSparsity?: Readonly<Record<string, number>>;
  maxSparsity?: Readonly<Record<string, number>>;
  threads?: number;
}

export interface LayerCut extends NativeLayerCut {
  readonly name: string;
  readonly size: number;
  /** pruned / size (0 for an empty layer). */
  readonly sparsity: number;
}

function checkLayers(layers: readonly PruneLayer[]): { arrays: Float32Array[]; names: string[] } {
  if (!Array.isArray(layers)) throw invalid('INVALID_ARGUMENT', 'an array of { name, weights }', 'layers', layers);
  const names: string[] = [];
  const arrays: Float32Array[] = [];
  const seen = new Set<string>();
  layers.forEach((layer, i) => {
    if (layer === null || typeof layer !== 'object') throw invalid('INVALID_ARGUMENT', 'a { name, weights } object', `layers[${i}]`, layer);
    if (typeof layer.name !== 'string' || layer.name === '') throw invalid('INVALID_ARGUMENT', 'a non-empty string', `layers[${i}].name`, layer.name);
    if (seen.has(layer.name)) throw invalid('INVALID_ARGUMENT', 'unique layer names', `layers[${i}].name`, layer.name);
    seen.add(layer.name);
    names.push(layer.name);
    arrays.push(checkFloat32(layer.weights, 0, `layers[${i}].weights`));
  });
  return { arrays, names };
}

function clampArray(clamps: Readonly<Record<string, number>> | undefined, names: string[], fallback: number, what: string): Float64Array | null {
  if (clamps === undefined) return null;
  if (clamps === null || typeof clamps !== 'object') throw invalid('INVALID_ARGUMENT', 'an object of layer name to fraction', what, clamps);
  for (const key of Object.keys(clamps)) {
    if (!names.includes(key)) throw invalid('INVALID_ARGUMENT', 'names of layers being pruned', `${what} key`, key);
  }
  return Float64Array.from(names, (name) => (clamps[name] === undefined ? fallback : checkFraction(clamps[name], `${what}.${name}`)));
}

function selectArgs(layers: readonly PruneLayer[], options: SelectOptions) {
  const { arrays, names } = checkLayers(layers);
  if (options === null || typeof options !== 'object') throw invalid('INVALID_ARGUMENT', 'an options object', 'select options', options);
  const sparsity = checkFraction(options.sparsity, 'sparsity');
  const perLayer = options.perLayer ?? false;
  if (typeof perLayer !== 'boolean') throw invalid('INVALID_ARGUMENT', 'a boolean', 'perLayer', perLayer);
  const min = clampArray(options.minSparsity, names, 0, 'minSparsity');
  const max = clampArray(options.maxSparsity, names, 1, 'maxSparsity');
  if (perLayer && (min || max)) throw new UmbraError('INVALID_ARGUMENT', 'expected no minSparsity/maxSparsity for per-layer pruning but received clamps');
  return { arrays, names, sparsity, perLayer, min, max, threads: checkThreads(options.threads) };
}

function withNames(cuts: NativeLayerCut[], layers: readonly PruneLayer[]): LayerCut[] {
  return cuts.map((cut, i) => {
    const size = layers[i]?.weights.length ?? 0;
    return { ...cut, name: layers[i]?.name ?? '', size, sparsity: size === 0 ? 0 : cut.pruned / size };
  });
}

/** Finds the exact magnitude cut per layer without sorting. Reads only; blocks. */
export function selectThreshold(layers: readonly PruneLayer[], options: SelectOptions): LayerCut[] {
  const a = selectArgs(layers, options);
  return withNames(callNative(() => native().thresholdSelectF32(a.arrays, a.names, a.sparsity, a.perLayer, a.min, a.max, a.threads)), layers);
}

/** As selectThreshold, on the libuv pool. */
export async function selectThresholdAsync(layers: readonly PruneLayer[], options: SelectOptions): Promise<LayerCut[]> {
  const a = selectArgs(layers, options);
  return withNames(await callNativeAsync(() => native().thresholdSelectF32Async(a.arrays, a.names, a.sparsity, a.perLayer, a.min, a.max, a.threads)), layers);
}

function maskArgs(layers: readonly PruneLayer[], cuts: readonly Pick<NativeLayerCut, 'thresholdKey' | 'ties'>[], threads?: number) {
  const { arrays, names } = checkLayers(layers);
  if (!Array.isArray(cuts) || cuts.length !== arrays.length) {
    throw invalid('INVALID_ARGUMENT', `an array of ${arrays.length} cuts from selectThreshold`, 'cuts', cuts);
  }
  const plain = cuts.map((c) => ({ thresholdKey: c.thresholdKey, ties: c.ties }));
  return { arrays, names, plain, threads: checkThreads(threads) };
}

/** Zeroes what selectThreshold chose, in place; returns how many weights it zeroed. Blocks. */
export function applyMask(layers: readonly PruneLayer[], cuts: readonly Pick<NativeLayerCut, 'thresholdKey' | 'ties'>[], threads?: number): number {
  const a = maskArgs(layers, cuts, threads);
  return callNative(() => native().maskApplyF32(a.arrays, a.names, a.plain, a.threads));
}

export async function applyMaskAsync(layers: readonly PruneLayer[], cuts: readonly Pick<NativeLayerCut, 'thresholdKey' | 'ties'>[], threads?: number): Promise<number> {
  const a = maskArgs(layers, cuts, threads);
  return callNativeAsync(() => native().maskApplyF32Async(a.arrays, a.names, a.plain, a.threads));
}

/** Unstructured magnitude pruning in place (select, then mask), off the JS thread. */
export async function pruneMagnitude(layers: readonly PruneLayer[], options: SelectOptions): Promise<LayerCut[]> {
  const cuts = await selectThresholdAsync(layers, options);
  await applyMaskAsync(layers, cuts, options.threads);
  return cuts;
}

export interface MatrixShape {
  name: string;
  rows: number;
  cols: number;
  /** 'nxk': rows are outputs, K runs along a row; 'kxn': rows are inputs, K runs down a column. */
  layout: WeightLayout;
}

/** N:M in place: in every group of m consecutive weights along K keep the n largest. Returns zeroed count. */
export function pruneNM(weights: Float32Array, shape: MatrixShape, n: number, m: number): number {
  const rows = checkDimension(shape.rows, 'rows');
  const cols = checkDimension(shape.cols, 'cols');
  checkFloat32(weights, rows * cols, `weights of ${shape.name}`, true);
  const layout = checkOneOf(shape.layout, ['nxk', 'kxn'] as const, 'layout');
  if (!Number.isInteger(m) || m < 1 || m > 1024) throw invalid('INVALID_ARGUMENT', 'an integer m in [1, 1024]', 'N:M group size', m);
  if (!Number.isInteger(n) || n < 0 || n > m) throw invalid('INVALID_ARGUMENT', `an integer n in [0, ${m}]`, 'N:M kept count', n);
  return callNative(() => native().nmPruneF32(weights, rows, cols, n, m, layout === 'nxk', String(shape.name)));
}

/** Structured: zeroes whole output units with the smallest L1/L2 norm; returns their indices, ascending. */
export function pruneOutputs(weights: Float32Array, shape: MatrixShape, sparsity: number, norm: 'l1' | 'l2' = 'l2'): Int32Array {
  const rows = checkDimension(shape.rows, 'rows');
  const cols = checkDimension(shape.cols, 'cols');
  checkFloat32(weights, rows * cols, `weights of ${shape.name}`, true);
  const layout = checkOneOf(shape.layout, ['nxk', 'kxn'] as const, 'layout');
  checkFraction(sparsity, 'sparsity');
  const normCode = checkOneOf(norm, ['l1', 'l2'] as const, 'norm') === 'l1' ? 1 : 2;
  return callNative(() => native().rowsPruneF32(weights, rows, cols, sparsity, normCode, layout === 'nxk', String(shape.name)));
}
