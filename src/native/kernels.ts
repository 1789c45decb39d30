// Typed, validated adapter over the native fp32 kernels. Everything is row-major fp32.
// Sync calls block the calling thread (use them inside worker threads, with threads: 1 when the
// worker pool already fills the cores); *Async calls run on the libuv pool and return Promises.
import { native } from './addon.js';
import {
  callNative, callNativeAsync, checkDimension, toUmbraError, checkFloat32, checkInt32, checkOneOf, checkThreads, checkUint16,
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

/** Columns per panel of SparseWeights (kSparsePanel in native/include/umbra_kernels.h). */
export const SPARSE_PANEL = 512;

/**
 * Lanes of the transposed activations the sparse kernel works on for `m` rows (spmm_lanes in
 * umbra_kernels.h): X [m, k] as Xt [sparseInputRows(k), lanes], Y [m, n] as Yt [n, lanes].
 */
export function spmmLanes(m: number): number {
  return m <= 8 ? 8 : Math.ceil(m / 16) * 16;
}

/**
 * A zeroed Float32Array whose data starts on a 64-byte boundary: storage for transposed
 * activations handed to spmm (BoundSpmm.lanes), whose rows the kernel streams as whole vectors.
 */
export function alignedFloat32(n: number): Float32Array {
  checkDimension(n, 'n');
  return callNative(() => native().alignedFloat32(n));
}

let cacheLine: { addressMod64(view: ArrayBufferView): number; alignedFloat32(n: number): Float32Array } | null | undefined;

/** The addon's two calls onCacheLine needs, once per thread; null without the addon or in a build before them. */
function resolveCacheLine(): typeof cacheLine {
  try {
    const binding = native();
    if (typeof binding.addressMod64 !== 'function') return null;
    return { addressMod64: binding.addressMod64.bind(binding), alignedFloat32: binding.alignedFloat32.bind(binding) };
  } catch {
    return null; // no addon: where it is required, its own load error says so
  }
}

/** A typed array of any element type (what `onCacheLine` copies). */
type AnyTypedArray = Exclude<ArrayBufferView, DataView>;

/**
 * `data` itself when its first byte lies on a 64-byte boundary, else a copy that does. For a
 * library whose vectorised loops peel to an aligned address, so that the order they sum in (and
 * the last bits of the answer) depends on where the data lies: onnxruntime's ReduceSum gives one
 * of two answers for one input at 4 or 8 bytes past a 16-byte boundary. `data` itself too where
 * the addon cannot say (an older build).
 */
export function onCacheLine<T extends AnyTypedArray>(data: T): T {
  if (data.byteLength === 0) return data;
  const calls = (cacheLine ??= resolveCacheLine());
  if (!calls || calls.addressMod64(data) === 0) return data;
  const room = alignedBytes(data.byteLength);
  room.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  const Storage = data.constructor as new (buffer: ArrayBufferLike, byteOffset: number, length: number) => T;
  return new Storage(room.buffer, room.byteOffset, data.byteLength / (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT);
}

/** The address of the view's first byte modulo 64; undefined without the addon to say. */
export function addressMod64(view: ArrayBufferView): number | undefined {
  const calls = (cacheLine ??= resolveCacheLine());
  return calls ? calls.addressMod64(view) : undefined;
}

/** `n` zeroed bytes starting on a 64-byte boundary (anywhere, without the addon to say where). */
export function alignedBytes(n: number): Uint8Array<ArrayBuffer> {
  const calls = (cacheLine ??= resolveCacheLine());
  if (!calls) return new Uint8Array(n);
  const room = calls.alignedFloat32(Math.ceil(n / 4));
  return new Uint8Array(room.buffer as ArrayBuffer, room.byteOffset, n);
}

/** Rows of Xt a sparse layer with `cols` inputs reads: whole panels. */
export function sparseInputRows(cols: number): number {
  return Math.ceil(cols / SPARSE_PANEL) * SPARSE_PANEL;
}

/**
 * A CSR weight cut once (at model load) into column panels of SPARSE_PANEL inputs, the format
 * spmm reads fastest: entries panel by panel, row by row; panelPtr[q * (rows + 1) + r] is where
 * row r of panel q starts; colIdx is the column within the panel.
 */
export interface SparseWeights {
  readonly kind: 'sparse';
  readonly rows: number;
  readonly cols: number;
  readonly panelPtr: Int32Array;
  readonly colIdx: Uint16Array;
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
  /** CSR (packed into panels on every call) or SparseWeights from packSparse (packed once). */
  weights: CsrWeights | SparseWeights;
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

/** A gemm with everything but X (and Y) fixed: checked once by boundGemm, so each call checks only those. */
export type BoundGemm = (x: Float32Array, m: number, out?: Float32Array) => Float32Array;

/**
 * Binds weights, bias, activation and threads once (a model layer at load) and returns the call
 * that runs them on X [m, k]. A small model's whole run is a few such calls, and there the
 * per-call argument checks and request objects of gemm() cost more than the kernels.
 */
export function boundGemm(weights: DenseWeights | PackedWeights, options: { bias?: Float32Array; activation?: Activation; threads?: number } = {}): BoundGemm {
  const a = gemmArgs({ x: new Float32Array(0), m: 0, weights, ...options, out: new Float32Array(0) });
  const { w, bias, k, n, layout, act, threads } = a;
  const binding = native();
  return (x, m, given) => {
    checkDimension(m, 'm');
    checkFloat32(x, m * k, 'x');
    const out = given === undefined ? new Float32Array(m * n) : checkFloat32(given, m * n, 'out');
    try {
      binding.gemmF32(x, w, bias, out, m, k, n, layout, act, threads);
    } catch (err) {
      throw toUmbraError(err);
    }
    return out;
  };
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

function checkCsr(w: CsrWeights) {
  const n = checkDimension(w.rows, 'weights.rows');
  const k = checkDimension(w.cols, 'weights.cols');
  const rowPtr = checkInt32(w.rowPtr, n + 1, 'weights.rowPtr');
  const nnz = rowPtr[n] ?? 0;
  const colIdx = checkInt32(w.colIdx, nnz, 'weights.colIdx');
  const values = checkFloat32(w.values, nnz, 'weights.values');
  return { n, k, rowPtr, colIdx, values };
}

/** Cuts CSR weights into column panels once, so later spmm calls skip the per-call packing. Blocks. */
export function packSparse(weights: CsrWeights): SparseWeights {
  if (weights === null || typeof weights !== 'object') throw invalid('INVALID_ARGUMENT', 'CSR weights', 'weights', weights);
  const w = checkCsr(weights);
  const packed = callNative(() => native().sparsePackF32(w.rowPtr, w.colIdx, w.values, w.n, w.k));
  return { kind: 'sparse', rows: w.n, cols: w.k, ...packed };
}

type SpmmOperands =
  | { packed: true; n: number; k: number; ptr: Int32Array; colIdx: Uint16Array; values: Float32Array }
  | { packed: false; n: number; k: number; ptr: Int32Array; colIdx: Int32Array; values: Float32Array };

function spmmOperands(w: CsrWeights | SparseWeights): SpmmOperands {
  if ('kind' in w && w.kind === 'sparse') {
    const n = checkDimension(w.rows, 'weights.rows');
    const k = checkDimension(w.cols, 'weights.cols');
    const pointers = Math.ceil(k / SPARSE_PANEL) * (n + 1);
    const ptr = checkInt32(w.panelPtr, pointers, 'weights.panelPtr');
    const nnz = pointers === 0 ? 0 : ptr[pointers - 1] ?? 0;
    return { packed: true, n, k, ptr, colIdx: checkUint16(w.colIdx, nnz, 'weights.colIdx'), values: checkFloat32(w.values, nnz, 'weights.values') };
  }
  const c = checkCsr(w as CsrWeights);
  return { packed: false, n: c.n, k: c.k, ptr: c.rowPtr, colIdx: c.colIdx, values: c.values };
}

function spmmArgs(req: SpmmRequest) {
  if (req === null || typeof req !== 'object') throw invalid('INVALID_ARGUMENT', 'an spmm request object', 'spmm', req);
  const w = req.weights;
  if (w === null || typeof w !== 'object') throw invalid('INVALID_ARGUMENT', 'CSR weights or packSparse() weights', 'spmm weights', w);
  const m = checkDimension(req.m, 'm');
  const operands = spmmOperands(w);
  const { n, k } = operands;
  const x = checkFloat32(req.x, m * k, 'x');
  const bias = req.bias === undefined ? null : checkFloat32(req.bias, n, 'bias');
  const out = req.out === undefined ? new Float32Array(m * n) : checkFloat32(req.out, m * n, 'out');
  return { operands, x, bias, out, m, act: activationCode(req.activation, 'activation'), threads: checkThreads(req.threads) };
}

function callSpmm(a: ReturnType<typeof spmmArgs>, sync: true): void;
function callSpmm(a: ReturnType<typeof spmmArgs>, sync: false): Promise<void>;
function callSpmm(a: ReturnType<typeof spmmArgs>, sync: boolean): void | Promise<void> {
  const addon = native();
  const o = a.operands;
  if (o.packed) {
    const fn = sync ? addon.spmmPanelsF32 : addon.spmmPanelsF32Async;
    return fn.call(addon, a.x, o.ptr, o.colIdx, o.values, a.bias, a.out, a.m, o.n, o.k, a.act, a.threads, 0, 0);
  }
  const fn = sync ? addon.spmmCsrF32 : addon.spmmCsrF32Async;
  return fn.call(addon, a.x, o.ptr, o.colIdx, o.values, a.bias, a.out, a.m, o.n, o.k, a.act, a.threads);
}

/** Y = act(X . Wᵀ + bias) with W [N, K] in CSR or packed panels. Blocks; returns Y. */
export function spmm(req: SpmmRequest): Float32Array {
  const a = spmmArgs(req);
  callNative(() => callSpmm(a, true));
  return a.out;
}

/**
 * A bound sparse layer: called as a BoundGemm on row-major X and Y; `lanes` runs it on transposed
 * activations (see spmmLanes), so a chain of sparse layers passes each one's Yt to the next as
 * its Xt without transposing in between. `input`/`output` say which side is transposed.
 */
export interface BoundSpmm extends BoundGemm {
  lanes(x: Float32Array, m: number, out: Float32Array, transposed: { input: boolean; output: boolean }): Float32Array;
}

/**
 * Binds packed sparse weights, bias, activation and threads once (a model layer at load) and
 * returns the call that runs them on X [m, weights.cols], as boundGemm does for dense weights, so
 * a layer costs the same per call outside its kernel whichever format it is in.
 */
export function boundSpmm(weights: SparseWeights, options: { bias?: Float32Array; activation?: Activation; threads?: number } = {}): BoundSpmm {
  if (weights === null || typeof weights !== 'object' || weights.kind !== 'sparse') {
    throw invalid('INVALID_ARGUMENT', 'weights from packSparse()', 'spmm weights', weights);
  }
  const a = spmmArgs({ x: new Float32Array(0), m: 0, weights, ...options, out: new Float32Array(0) });
  const o = a.operands;
  const { bias, act, threads } = a;
  const binding = native();
  const colIdx = o.colIdx as Uint16Array;
  const call = (x: Float32Array, m: number, out: Float32Array, xLanes: number, yLanes: number): Float32Array => {
    try {
      binding.spmmPanelsF32(x, o.ptr, colIdx, o.values, bias, out, m, o.n, o.k, act, threads, xLanes, yLanes);
    } catch (err) {
      throw toUmbraError(err);
    }
    return out;
  };
  const rows: BoundGemm = (x, m, given) => {
    checkDimension(m, 'm');
    checkFloat32(x, m * o.k, 'x');
    return call(x, m, given === undefined ? new Float32Array(m * o.n) : checkFloat32(given, m * o.n, 'out'), 0, 0);
  };
  return Object.assign(rows, {
    lanes(x: Float32Array, m: number, out: Float32Array, transposed: { input: boolean; output: boolean }): Float32Array {
      checkDimension(m, 'm');
      const lanes = spmmLanes(m);
      checkFloat32(x, transposed.input ? sparseInputRows(o.k) * lanes : m * o.k, transposed.input ? 'x (transposed)' : 'x');
      checkFloat32(out, transposed.output ? o.n * lanes : m * o.n, transposed.output ? 'out (transposed)' : 'out');
      return call(x, m, out, transposed.input ? lanes : 0, transposed.output ? lanes : 0);
    },
  });
}

/** As spmm, on the libuv pool. */
export async function spmmAsync(req: SpmmRequest): Promise<Float32Array> {
  const a = spmmArgs(req);
  await callNativeAsync(() => callSpmm(a, false));
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
