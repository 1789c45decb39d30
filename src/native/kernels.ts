// Typed, validated adapter over the native fp32 kernels. Everything is row-major fp32.
// Sync calls block the calling thread (use them inside worker threads, with threads: 1 when the
// worker pool already fills the cores); *Async calls run on the libuv pool and return Promises.
import { native } from './addon.js';
import {
  callNative, callNativeAsync, checkDimension, checkFloat32, checkInt32, checkOneOf, checkThreads,
} from './checks.js';
import { invalid } from '../errors.js';

export const ACTIVATIONS = ['none', 'relu', 'sigmoid', 'tanh', 'gelu'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

/** 'kxn': W is [K,N] (ONNX MatMul, Gemm transB=0); 'nxk': W is [N,K] (Gemm transB=1, PyTorch Linear). */
export const WEIGHT_LAYOUTS = ['kxn', 'nxk'] as const;
export type WeightLayout = (typeof WEIGHT_LAYOUTS)[number];

/** A weight repacked once (at model load) into the panel format gemm reads fastest. */
export interface PackedWeights {
  readonly kind: 'packed';
  readonly k: number;
  readonly n: number;
  readonly data: Float32Array;
}

export interface DenseWeights {
  readonly kind: 'dense';
  readonly k: number;
  readonly n: number;
  readonly layout: WeightLayout;
  readonly data: Float32Array;
}

/** CSR over output rows: W is [rows = N outputs, cols = K inputs]; rowPtr has rows + 1 entries. */
export interface CsrWeights {
  readonly rows: number;
  readonly cols: number;
  readonly rowPtr: Int32Array;
  readonly colIdx: Int32Array;
  readonly values: Float32Array;
}

export interface GemmRequest {
  /** X [m, k] */
  x: Float32Array;
  m: number;
  weights: DenseWeights | PackedWeights;
  bias?: Float32Array;
  activation?: Activation;
  threads?: number;
  /** Y [m, n]; allocated when absent. Must not overlap x or the weights. */
  out?: Float32Array;
}

export interface SpmmRequest {
  /** X [m, k] with k = weights.cols */
  x: Float32Array;
  m: number;
  weights: CsrWeights;
  bias?: Float32Array;
  activation?: Activation;
  threads?: number;
  /** Y [m, weights.rows]; allocated when absent. */
  out?: Float32Array;
}

const LAYOUT_CODE: Record<WeightLayout | 'packed', number> = { kxn: 0, nxk: 1, packed: 2 };

function activationCode(value: unknown, what: string): number {
  return ACTIVATIONS.indexOf(checkOneOf(value ?? 'none', ACTIVATIONS, what));
}

/** The instruction set the kernels were dispatched on at load. */
export function kernelIsa(): 'avx512' | 'avx2' | 'portable' {
  return native().kernelIsa();
}

/** Describes a dense weight for gemm; checks its size. */
export function denseWeights(data: Float32Array, k: number, n: number, layout: WeightLayout): DenseWeights {
  checkDimension(k, 'k');
  checkDimension(n, 'n');
  checkOneOf(layout, WEIGHT_LAYOUTS, 'layout');
  checkFloat32(data, k * n, 'weights', true);
  return { kind: 'dense', k, n, layout, data };
}

/** Repacks a dense weight once so later gemm calls skip the per-call packing. Blocks. */
export function packWeights(weights: DenseWeights, threads?: number): PackedWeights {
  const w = denseWeights(weights.data, weights.k, weights.n, weights.layout);
  const t = checkThreads(threads);
  const data = callNative(() => native().gemmPackF32(w.data, w.k, w.n, LAYOUT_CODE[w.layout], t));
  return { kind: 'packed', k: w.k, n: w.n, data };
}

function gemmArgs(req: GemmRequest) {
  if (req === null || typeof req !== 'object') throw invalid('INVALID_ARGUMENT', 'a gemm request object', 'gemm', req);
  const w = req.weights;
  if (w === null || typeof w !== 'object' || (w.kind !== 'dense' && w.kind !== 'packed')) {
    throw invalid('INVALID_ARGUMENT', 'weights from denseWeights() or packWeights()', 'gemm weights', w);
  }
  const m = checkDimension(req.m, 'm');
  const k = checkDimension(w.k, 'weights.k');
  const n = checkDimension(w.n, 'weights.n');
  const x = checkFloat32(req.x, m * k, 'x');
  if (w.kind === 'dense') checkFloat32(w.data, k * n, 'weights', true);
  else checkFloat32(w.data, Math.ceil(n / 32) * 32 * k, 'packed weights', true);
  const bias = req.bias === undefined ? null : checkFloat32(req.bias, n, 'bias');
  const out = req.out === undefined ? new Float32Array(m * n) : checkFloat32(req.out, m * n, 'out');
  const layout = w.kind === 'packed' ? LAYOUT_CODE.packed : LAYOUT_CODE[checkOneOf(w.layout, WEIGHT_LAYOUTS, 'weights.layout')];
  return { x, w: w.data, bias, out, m, k, n, layout, act: activationCode(req.activation, 'activation'), threads: checkThreads(req.threads) };
}

/** Y = act(X . W + bias). Blocks the calling thread; returns Y. */
export function gemm(req: GemmRequest): Float32Array {
  const a = gemmArgs(req);
  callNative(() => native().gemmF32(a.x, a.w, a.bias, a.out, a.m, a.k, a.n, a.layout, a.act, a.threads));
  return a.out;
}

/** As gemm, on the libuv pool. Do not touch the arrays until it settles. */
export async function gemmAsync(req: GemmRequest): Promise<Float32Array> {
  const a = gemmArgs(req);
  await callNativeAsync(() => native().gemmF32Async(a.x, a.w, a.bias, a.out, a.m, a.k, a.n, a.layout, a.act, a.threads));
  return a.out;
}

/** Compresses W [rows, cols] (rows = outputs) to CSR, keeping every non-zero. Blocks. */
export function csrFromDense(w: Float32Array, rows: number, cols: number): CsrWeights {
  checkDimension(rows, 'rows');
  checkDimension(cols, 'cols');
  checkFloat32(w, rows * cols, 'weights', true);
  const csr = callNative(() => native().csrFromDenseF32(w, rows, cols));
  return { rows, cols, ...csr };
}

function spmmArgs(req: SpmmRequest) {
  if (req === null || typeof req !== 'object') throw invalid('INVALID_ARGUMENT', 'an spmm request object', 'spmm', req);
  const w = req.weights;
  if (w === null || typeof w !== 'object') throw invalid('INVALID_ARGUMENT', 'CSR weights', 'spmm weights', w);
  const m = checkDimension(req.m, 'm');
  const n = checkDimension(w.rows, 'weights.rows');
  const k = checkDimension(w.cols, 'weights.cols');
  const rowPtr = checkInt32(w.rowPtr, n + 1, 'weights.rowPtr');
  const nnz = rowPtr[n] ?? 0;
  const colIdx = checkInt32(w.colIdx, nnz, 'weights.colIdx');
  const values = checkFloat32(w.values, nnz, 'weights.values');
  const x = checkFloat32(req.x, m * k, 'x');
  const bias = req.bias === undefined ? null : checkFloat32(req.bias, n, 'bias');
  const out = req.out === undefined ? new Float32Array(m * n) : checkFloat32(req.out, m * n, 'out');
  return { x, rowPtr, colIdx, values, bias, out, m, n, k, act: activationCode(req.activation, 'activation'), threads: checkThreads(req.threads) };
}

/** Y = act(X . Wᵀ + bias) with W in CSR [N, K]. Blocks; returns Y. */
export function spmm(req: SpmmRequest): Float32Array {
  const a = spmmArgs(req);
  callNative(() => native().spmmCsrF32(a.x, a.rowPtr, a.colIdx, a.values, a.bias, a.out, a.m, a.n, a.k, a.act, a.threads));
  return a.out;
}

/** As spmm, on the libuv pool. */
export async function spmmAsync(req: SpmmRequest): Promise<Float32Array> {
  const a = spmmArgs(req);
  await callNativeAsync(() => native().spmmCsrF32Async(a.x, a.rowPtr, a.colIdx, a.values, a.bias, a.out, a.m, a.n, a.k, a.act, a.threads));
  return a.out;
}

/** data[r, c] = act(data[r, c] + bias[c]) in place. Blocks. */
export function biasActivation(data: Float32Array, rows: number, cols: number, options: { bias?: Float32Array; activation?: Activation } = {}): void {
  checkDimension(rows, 'rows');
  checkDimension(cols, 'cols');
  checkFloat32(data, rows * cols, 'data');
  const bias = options.bias === undefined ? null : checkFloat32(options.bias, cols, 'bias');
  const act = activationCode(options.activation, 'activation');
  callNative(() => native().biasActivationF32(data, rows, cols, bias, act));
}

/** Numerically stable softmax over each row, in place. Blocks. */
export function softmax(data: Float32Array, rows: number, cols: number): void {
  checkDimension(rows, 'rows');
  checkDimension(cols, 'cols');
  checkFloat32(data, rows * cols, 'data');
  callNative(() => native().softmaxF32(data, rows, cols));
}
