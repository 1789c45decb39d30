// Typed, validated adapter over the addon's CUDA backend. Weights go to the device once
// (uploadDense / uploadCsr / uploadVector) and stay there until releaseCuda() or garbage
// collection; each worker creates one CudaStream and passes it to every call. Sync calls block the
// calling thread (meant for worker threads); *Async calls run on the libuv pool. Without a usable
// device every call except the queries throws an UmbraError whose message carries the reason.
import { native, type NativeCudaDevice, type NativeCudaHandle, type NativeCudaStatus, type NativeLayerCut } from './addon.js';
import { checkDimension, checkFloat32, checkFraction, checkOneOf } from './checks.js';
import { ACTIVATIONS, type Activation, type CsrWeights, type DenseWeights } from './kernels.js';
import { invalid, UmbraError } from '../errors.js';

export const CUDA_PRECISIONS = ['fp32', 'tf32', 'bf16'] as const;
/** fp32: exact fp32 FMAs; tf32 / bf16: tensor cores with fp32 accumulation (inputs rounded). */
export type CudaPrecision = (typeof CUDA_PRECISIONS)[number];
export type CudaDevice = NativeCudaDevice;
export type CudaStatus = NativeCudaStatus;

export interface CudaResident {
  readonly device: number;
  /** Device bytes this upload holds (0 once released). */
  readonly bytes: number;
  /** @internal */ readonly handle: NativeCudaHandle;
}
export interface CudaDenseWeights extends CudaResident {
  readonly kind: 'cuda-dense';
  readonly k: number;
  readonly n: number;
  readonly layout: DenseWeights['layout'];
}
export interface CudaCsrWeights extends CudaResident {
  readonly kind: 'cuda-csr';
  readonly rows: number;
  readonly cols: number;
  readonly nnz: number;
}
export interface CudaVector extends CudaResident {
  readonly kind: 'cuda-vector';
  readonly length: number;
}

const NO_BLAS: NativeCudaStatus['blas'] = { library: 'cuBLASLt', found: false, path: '', version: 0, reason: 'the loaded addon predates the CUDA backend; rebuild it', tried: [] };

/** How dense layers on the GPU are computed, in a line: the vendor BLAS found, or why Umbra's own kernels. */
export function describeGpuBlas(status: CudaStatus = cudaStatus()): string {
  const b = status.blas;
  return b.found ? `cuBLASLt ${b.version} (${b.path})` : `Umbra's own kernels (${b.reason})`;
}

/**
 * Never throws: whether CUDA was compiled in, whether a device is usable, and if not, why; and
 * `blas`, whether cuBLASLt was found (dense fp32/tf32 layers run through it) and where it looked.
 */
export function cudaStatus(): CudaStatus {
  const binding = native();
  if (typeof binding.cudaStatus !== 'function') {
    return { compiled: false, available: false, reason: 'the loaded addon predates the CUDA backend; rebuild it', deviceCount: 0, runtimeVersion: 0, driverVersion: 0, blas: NO_BLAS };
  }
  const status = binding.cudaStatus();
  // An addon built before the vendor BLAS was loaded at run time reports none.
  return status.blas ? status : { ...status, blas: { ...NO_BLAS, reason: 'the loaded addon predates cuBLASLt support; rebuild it' } };
}

export function cudaAvailable(): boolean {
  return cudaStatus().available;
}

/** The usable devices; [] when there are none. */
export function cudaDevices(): CudaDevice[] {
  return cudaAvailable() ? callCuda(() => native().cudaDevices()) : [];
}

/** Device bytes Umbra holds right now (uploads, stream scratch), across devices. */
export function cudaMemoryInUse(): number {
  return cudaStatus().compiled ? native().cudaMemoryInUse() : 0;
}

/** Throws an UmbraError carrying cudaStatus().reason unless a device is usable. */
export function requireCuda(what: string): void {
  const status = cudaStatus();
  if (!status.available) throw new UmbraError('INVALID_ARGUMENT', `expected a usable CUDA device for ${what} but ${status.reason}`);
}

// CUDA runtime failures (CudaError: "CUDA error: <call> failed ... at <file>:<line>") are faults
// of the device, not of the caller's arguments.
export function callCuda<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw toUmbra(err);
  }
}
export async function callCudaAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toUmbra(err);
  }
}
function toUmbra(err: unknown): unknown {
  if (err instanceof UmbraError || !(err instanceof Error)) return err;
  const code = err.message.startsWith('CUDA error:') ? 'INTERNAL' : 'INVALID_ARGUMENT';
  return new UmbraError(code, err.message, { cause: err });
}

function checkDevice(device: unknown): number {
  const d = checkDimension(device ?? 0, 'device');
  const count = cudaStatus().deviceCount;
  if (d >= count) throw invalid('INVALID_ARGUMENT', `a CUDA device index below ${count}`, 'device', d);
  return d;
}

/** One per worker: a CUDA stream with its own pinned staging buffers. */
export class CudaStream {
  /** @internal */ readonly handle: NativeCudaHandle;
  private constructor(readonly device: number, handle: NativeCudaHandle) {
    this.handle = handle;
  }
  static create(device = 0): CudaStream {
    requireCuda('a CUDA stream');
    const d = checkDevice(device);
    return new CudaStream(d, callCuda(() => native().cudaCreateStream(d)));
  }
}

const threadStreams = new Map<number, CudaStream>();

/** The calling thread's stream for a device, created on first use: one per worker thread. */
export function threadStream(device = 0): CudaStream {
  let stream = threadStreams.get(device);
  if (!stream) {
    stream = CudaStream.create(device);
    threadStreams.set(device, stream);
  }
  return stream;
}

function resident<T extends object>(fields: T, handle: NativeCudaHandle, device: number): T & CudaResident {
  return Object.defineProperties({ ...fields, device, handle } as T & CudaResident, {
    bytes: { enumerable: true, get: () => native().cudaHandleBytes(handle) },
  });
}

/** Copies a dense weight to the device once. Blocks. */
export function uploadDense(weights: DenseWeights, device = 0): CudaDenseWeights {
  requireCuda('uploadDense');
  const d = checkDevice(device);
  const k = checkDimension(weights.k, 'weights.k');
  const n = checkDimension(weights.n, 'weights.n');
  const layout = checkOneOf(weights.layout, ['kxn', 'nxk'] as const, 'weights.layout');
  checkFloat32(weights.data, k * n, 'weights', true);
  const handle = callCuda(() => native().cudaUploadDense(weights.data, k, n, layout === 'kxn' ? 0 : 1, d));
  return resident({ kind: 'cuda-dense' as const, k, n, layout }, handle, d);
}

/** Copies a CSR weight ([rows = N outputs, cols = K inputs]) to the device once, after checking it. Blocks. */
export function uploadCsr(weights: CsrWeights, device = 0): CudaCsrWeights {
  requireCuda('uploadCsr');
  const d = checkDevice(device);
  const rows = checkDimension(weights.rows, 'weights.rows');
  const cols = checkDimension(weights.cols, 'weights.cols');
  if (!(weights.rowPtr instanceof Int32Array) || weights.rowPtr.length < rows + 1) {
    throw invalid('INVALID_ARGUMENT', `an Int32Array of at least ${rows + 1} elements`, 'weights.rowPtr', weights.rowPtr);
  }
  const nnz = weights.rowPtr[rows] ?? 0;
  const handle = callCuda(() => native().cudaUploadCsr(weights.rowPtr, weights.colIdx, weights.values, rows, cols, d));
  return resident({ kind: 'cuda-csr' as const, rows, cols, nnz }, handle, d);
}

/** Copies a vector (a bias) to the device once. Blocks. */
export function uploadVector(data: Float32Array, device = 0): CudaVector {
  requireCuda('uploadVector');
  const d = checkDevice(device);
  checkFloat32(data, 0, 'data');
  const handle = callCuda(() => native().cudaUploadF32(data, d));
  return resident({ kind: 'cuda-vector' as const, length: data.length }, handle, d);
}

/** Frees an upload now (or when an in-flight async call using it ends). Returns the bytes freed. */
export function releaseCuda(upload: CudaResident): number {
  return callCuda(() => native().cudaRelease(upload.handle));
}

export interface CudaGemmRequest {
  x: Float32Array;
  m: number;
  weights: CudaDenseWeights;
  bias?: CudaVector;
  activation?: Activation;
  precision?: CudaPrecision;
  out?: Float32Array;
  /** 'auto' (default): cuBLASLt where it was found (cudaStatus().blas), else Umbra's kernels; 'own': always Umbra's kernels. */
  kernels?: 'auto' | 'own';
}
export interface CudaSpmmRequest {
  x: Float32Array;
  m: number;
  weights: CudaCsrWeights;
  bias?: CudaVector;
  activation?: Activation;
  out?: Float32Array;
}

function activationCode(value: unknown): number {
  return ACTIVATIONS.indexOf(checkOneOf(value ?? 'none', ACTIVATIONS, 'activation'));
}

function checkStream(stream: unknown): CudaStream {
  if (!(stream instanceof CudaStream)) throw invalid('INVALID_ARGUMENT', 'a CudaStream from CudaStream.create()', 'stream', stream);
  return stream;
}

function gemmArgs(stream: CudaStream, req: CudaGemmRequest) {
  checkStream(stream);
  if (req?.weights?.kind !== 'cuda-dense') throw invalid('INVALID_ARGUMENT', 'weights from uploadDense()', 'weights', req?.weights);
  if (req.bias !== undefined && (req.bias.kind !== 'cuda-vector' || req.bias.length < req.weights.n)) {
    throw invalid('INVALID_ARGUMENT', `a vector from uploadVector() of at least ${req.weights.n} elements`, 'bias', req.bias);
  }
  const m = checkDimension(req.m, 'm');
  const x = checkFloat32(req.x, m * req.weights.k, 'x');
  const out = req.out === undefined ? new Float32Array(m * req.weights.n) : checkFloat32(req.out, m * req.weights.n, 'out');
  const precision = CUDA_PRECISIONS.indexOf(checkOneOf(req.precision ?? 'fp32', CUDA_PRECISIONS, 'precision'));
  const vendor = checkOneOf(req.kernels ?? 'auto', ['auto', 'own'] as const, 'kernels') === 'auto';
  return { x, out, m, act: activationCode(req.activation), precision, vendor, bias: req.bias?.handle ?? null };
}

/** Y = act(X . W + bias) on the GPU: uploads X, runs, downloads Y. Blocks; returns Y. */
export function cudaGemm(stream: CudaStream, req: CudaGemmRequest): Float32Array {
  const a = gemmArgs(stream, req);
  callCuda(() => native().cudaGemmF32(stream.handle, a.x, req.weights.handle, a.bias, a.out, a.m, a.act, a.precision, a.vendor));
  return a.out;
}

/** As cudaGemm, on the libuv pool. Do not touch the arrays until it settles. */
export async function cudaGemmAsync(stream: CudaStream, req: CudaGemmRequest): Promise<Float32Array> {
  const a = gemmArgs(stream, req);
  await callCudaAsync(() => native().cudaGemmF32Async(stream.handle, a.x, req.weights.handle, a.bias, a.out, a.m, a.act, a.precision, a.vendor));
  return a.out;
}

function spmmArgs(stream: CudaStream, req: CudaSpmmRequest) {
  checkStream(stream);
  if (req?.weights?.kind !== 'cuda-csr') throw invalid('INVALID_ARGUMENT', 'weights from uploadCsr()', 'weights', req?.weights);
  if (req.bias !== undefined && (req.bias.kind !== 'cuda-vector' || req.bias.length < req.weights.rows)) {
    throw invalid('INVALID_ARGUMENT', `a vector from uploadVector() of at least ${req.weights.rows} elements`, 'bias', req.bias);
  }
  const m = checkDimension(req.m, 'm');
  const x = checkFloat32(req.x, m * req.weights.cols, 'x');
  const out = req.out === undefined ? new Float32Array(m * req.weights.rows) : checkFloat32(req.out, m * req.weights.rows, 'out');
  return { x, out, m, act: activationCode(req.activation), bias: req.bias?.handle ?? null };
}

/** Y = act(X . Wᵀ + bias) with W in CSR on the GPU. Blocks; returns Y. */
export function cudaSpmm(stream: CudaStream, req: CudaSpmmRequest): Float32Array {
  const a = spmmArgs(stream, req);
  callCuda(() => native().cudaSpmmCsrF32(stream.handle, a.x, req.weights.handle, a.bias, a.out, a.m, a.act));
  return a.out;
}

export async function cudaSpmmAsync(stream: CudaStream, req: CudaSpmmRequest): Promise<Float32Array> {
  const a = spmmArgs(stream, req);
  await callCudaAsync(() => native().cudaSpmmCsrF32Async(stream.handle, a.x, req.weights.handle, a.bias, a.out, a.m, a.act));
  return a.out;
}

function elementwise(stream: CudaStream, data: Float32Array, rows: number, cols: number, op: number, bias: Float32Array | null, act: number): void {
  checkStream(stream);
  checkDimension(rows, 'rows');
  checkDimension(cols, 'cols');
  checkFloat32(data, rows * cols, 'data');
  if (bias !== null) checkFloat32(bias, cols, 'bias');
  callCuda(() => native().cudaElementwiseF32(stream.handle, data, rows, cols, op, bias, act));
}

/** Softmax over each row, in place, on the GPU. Blocks. */
export function cudaSoftmax(stream: CudaStream, data: Float32Array, rows: number, cols: number): void {
  elementwise(stream, data, rows, cols, 0, null, 0);
}

/** data[r, c] = act(data[r, c] + bias[c]) in place, on the GPU. Blocks. */
export function cudaBiasActivation(stream: CudaStream, data: Float32Array, rows: number, cols: number,
  options: { bias?: Float32Array; activation?: Activation } = {}): void {
  elementwise(stream, data, rows, cols, 1, options.bias ?? null, activationCode(options.activation));
}

export interface CudaPruneResult {
  /** One per array, as the CPU's thresholdSelect reports them (bit-identical cuts). */
  cuts: NativeLayerCut[];
  /** Weights zeroed (0 when `apply` is false). */
  zeroed: number;
}

/**
 * Global (or per-array) magnitude pruning on the GPU: uploads the arrays, selects the exact
 * threshold by radix selection and, with `apply` (default true), zeroes in place and writes the
 * arrays back. Per-array min/max clamps are CPU-only (./prune.js). Blocks.
 */
export function cudaMagnitudePrune(stream: CudaStream, arrays: { name: string; data: Float32Array }[],
  options: { sparsity: number; perLayer?: boolean; apply?: boolean }): CudaPruneResult {
  checkStream(stream);
  if (!Array.isArray(arrays)) throw invalid('INVALID_ARGUMENT', 'an array of { name, data }', 'arrays', arrays);
  const names = arrays.map((a, i) => {
    if (typeof a?.name !== 'string') throw invalid('INVALID_ARGUMENT', 'a string', `arrays[${i}].name`, a?.name);
    checkFloat32(a.data, 0, `arrays[${i}].data`);
    return a.name;
  });
  const sparsity = checkFraction(options?.sparsity, 'sparsity');
  return callCuda(() => native().cudaMagnitudePruneF32(stream.handle, arrays.map((a) => a.data), names, sparsity,
    options.perLayer === true, options.apply !== false));
}
