// The ONE module that loads the native addon. Everything else imports `native` from here.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One array's cut as the native pruning layer reports it (see native/include/umbra_kernels.h). */
export interface NativeLayerCut {
  /** Bit pattern of |w| (sign cleared) below which weights are zeroed; 2^31 = above all. */
  thresholdKey: number;
  /** The same threshold as a float (+Infinity when every weight is pruned). */
  threshold: number;
  /** How many weights equal to the threshold are zeroed too, first ones in index order. */
  ties: number;
  /** Total weights this cut zeroes in its array. */
  pruned: number;
}

/** What the addon's CUDA part reports; never throws. `reason` says why `available` is false. */
export interface NativeCudaStatus {
  compiled: boolean;
  available: boolean;
  reason: string;
  deviceCount: number;
  runtimeVersion: number;
  driverVersion: number;
  /** The vendor BLAS, loaded at run time where present (native/src/cuda/cublaslt.cuh). */
  blas: { library: 'cuBLASLt'; found: boolean; path: string; version: number; reason: string; tried: string[] };
}

export interface NativeCudaDevice {
  index: number;
  name: string;
  computeCapability: string;
  multiprocessors: number;
  totalMemory: number;
  freeMemory: number;
  l2Bytes: number;
}

/** One op of a device-resident chain: activation 0..4 as below, precision 0 fp32, 1 tf32, 2 bf16. */
export interface NativeCudaPlanOp {
  kind: 'dense' | 'sparse' | 'softmax' | 'activation';
  weights?: NativeCudaHandle;
  bias?: NativeCudaHandle | null;
  activation?: number;
  precision?: number;
}

export interface NativeCudaPlanStats {
  /** Batch sizes with a captured CUDA graph. */
  graphs: number;
  /** Runs that replayed one. */
  replays: number;
  runs: number;
  /** Device bytes of the activation buffers (the weights are separate uploads). */
  deviceBytes: number;
  /** Host time of the runs so far, µs summed over runs, by stage (see CudaPlanStages). */
  stages: CudaPlanStages;
  inputWidth: number;
  outputWidth: number;
}

/**
 * Where a plan's runs spent their time on the host (steady clock, so graph replays are timed as
 * they run), in microseconds summed over runs.
 */
export interface CudaPlanStages {
  /** Waiting for the stream, which other plans on the worker's thread share. */
  lockUs: number;
  /** Copying the batch into the pinned staging buffer (and growing the buffers). */
  stageInUs: number;
  /** A graph replay's launch, or every kernel's launch on a run that is not replayed. */
  launchUs: number;
  /** Waiting for the device: the copy up, every kernel, the copy down. */
  deviceUs: number;
  /** Copying the answer out of the pinned buffer. */
  stageOutUs: number;
  /** Capturing graphs (once per batch size). */
  captureUs: number;
}

/** An opaque native handle (device memory or a stream); freed by the garbage collector at the latest. */
export type NativeCudaHandle = object & { readonly __cudaHandle?: never };

/**
 * Raw surface of build/Release/umbra.node. Enumerations cross as integers: layout 0 = [K,N],
 * 1 = [N,K], 2 = packed; activation 0 none, 1 relu, 2 sigmoid, 3 tanh, 4 gelu. Call these through
 * the validated adapter in ./kernels.js, which words its errors the Umbra way.
 */
export interface NativeBinding {
  version(): string;
  cpuFeatures(): { avx2: boolean; fma: boolean; avx512f: boolean };
  listBackends(): string[];
  /** The calling thread's CPU time in ns (CLOCK_THREAD_CPUTIME_ID), -1 without that clock; absent in older builds. */
  threadCpuNanos?(): number;
  /** Hands memory the C allocator holds free back to the OS (glibc's malloc_trim); false where there is none to hand back or no such call. */
  trimMemory?(): boolean;
  kernelIsa(): 'avx512' | 'avx2' | 'portable';
  alignedFloat32(n: number): Float32Array;
  /** The address of the view's first byte modulo 64; absent in older builds. */
  addressMod64?(view: ArrayBufferView): number;
  gemmF32(x: Float32Array, w: Float32Array, bias: Float32Array | null, y: Float32Array,
    m: number, k: number, n: number, layout: number, activation: number, threads: number): void;
  gemmF32Async(x: Float32Array, w: Float32Array, bias: Float32Array | null, y: Float32Array,
    m: number, k: number, n: number, layout: number, activation: number, threads: number): Promise<void>;
  gemmPackF32(w: Float32Array, k: number, n: number, layout: number, threads: number): Float32Array;
  spmmCsrF32(x: Float32Array, rowPtr: Int32Array, colIdx: Int32Array, values: Float32Array, bias: Float32Array | null,
    y: Float32Array, m: number, n: number, k: number, activation: number, threads: number): void;
  spmmCsrF32Async(x: Float32Array, rowPtr: Int32Array, colIdx: Int32Array, values: Float32Array, bias: Float32Array | null,
    y: Float32Array, m: number, n: number, k: number, activation: number, threads: number): Promise<void>;
  csrFromDenseF32(w: Float32Array, rows: number, cols: number): { rowPtr: Int32Array; colIdx: Int32Array; values: Float32Array };
  sparsePackF32(rowPtr: Int32Array, colIdx: Int32Array, values: Float32Array, rows: number, cols: number): { panelPtr: Int32Array; colIdx: Uint16Array; values: Float32Array };
  spmmPanelsF32(x: Float32Array, panelPtr: Int32Array, colIdx: Uint16Array, values: Float32Array, bias: Float32Array | null,
    y: Float32Array, m: number, n: number, k: number, activation: number, threads: number, xLanes: number, yLanes: number): void;
  spmmPanelsF32Async(x: Float32Array, panelPtr: Int32Array, colIdx: Uint16Array, values: Float32Array, bias: Float32Array | null,
    y: Float32Array, m: number, n: number, k: number, activation: number, threads: number, xLanes: number, yLanes: number): Promise<void>;
  biasActivationF32(data: Float32Array, rows: number, cols: number, bias: Float32Array | null, activation: number): void;
  softmaxF32(data: Float32Array, rows: number, cols: number): void;
  tensorStatsF32(values: Float32Array, out: Float64Array): void;
  argmaxRowsF32(data: Float32Array, rows: number, cols: number, out: Float64Array): void;
  allFiniteF32(values: Float32Array): boolean;
  driftCountF32(data: Float32Array, n: number, width: number, firstColumn: number, columns: number, first: number, step: number,
    table: Float64Array, cells: Int32Array, points: Float64Array, segment: Uint32Array): void;
  thresholdSelectF32(arrays: Float32Array[], names: string[], sparsity: number, perLayer: boolean,
    minSparsity: Float64Array | null, maxSparsity: Float64Array | null, threads: number): NativeLayerCut[];
  thresholdSelectF32Async(arrays: Float32Array[], names: string[], sparsity: number, perLayer: boolean,
    minSparsity: Float64Array | null, maxSparsity: Float64Array | null, threads: number): Promise<NativeLayerCut[]>;
  maskApplyF32(arrays: Float32Array[], names: string[], cuts: Pick<NativeLayerCut, 'thresholdKey' | 'ties'>[], threads: number): number;
  maskApplyF32Async(arrays: Float32Array[], names: string[], cuts: Pick<NativeLayerCut, 'thresholdKey' | 'ties'>[], threads: number): Promise<number>;
  nmPruneF32(w: Float32Array, rows: number, cols: number, n: number, m: number, kContiguous: boolean, name: string): number;
  rowsPruneF32(w: Float32Array, rows: number, cols: number, sparsity: number, norm: number, kContiguous: boolean, name: string): Int32Array;
  /**
   * The request-body scanner (native/src/json/infer_json.h): the text's skeleton with each
   * all-number `inputs[i].data` array replaced by {"\u0000":K}, its numbers in `numbers` and
   * their layout in `meta`; undefined when the text is left to JSON.parse. Call through
   * src/protocol/native-json.ts.
   */
  scanInferJson(bytes: Uint8Array, end: number, numbers: Float64Array, start: number, meta: Int32Array): string | undefined;
  /** "[v0,v1,...]": shortest round-trip decimals, non-finite values as strings (native/src/json/format_numbers.h). */
  formatNumbersJson(values: Float32Array | Float64Array): string;
  /** Row r's `prefix + "[...]" + suffix`, its values as formatNumbersJson writes them (native/binding/json_binding.cc). */
  formatRowsJson?(values: Float32Array | Float64Array, perRow: number, prefix: string, suffix: string): string[];
  // CUDA backend (native/binding/cuda_binding.cc); call through ./cuda.js. Handles are opaque.
  cudaStatus(): NativeCudaStatus;
  cudaDevices(): NativeCudaDevice[];
  cudaMemoryInUse(): number;
  cudaCreateStream(device: number): NativeCudaHandle;
  cudaUploadF32(data: Float32Array, device: number): NativeCudaHandle;
  cudaUploadDense(w: Float32Array, k: number, n: number, layout: number, device: number): NativeCudaHandle;
  cudaUploadCsr(rowPtr: Int32Array, colIdx: Int32Array, values: Float32Array, rows: number, cols: number, device: number): NativeCudaHandle;
  cudaRelease(handle: NativeCudaHandle): number;
  cudaHandleBytes(handle: NativeCudaHandle): number;
  cudaGemmF32(stream: NativeCudaHandle, x: Float32Array, weights: NativeCudaHandle, bias: NativeCudaHandle | null, y: Float32Array,
    m: number, activation: number, precision: number, vendor?: boolean): void;
  cudaGemmF32Async(stream: NativeCudaHandle, x: Float32Array, weights: NativeCudaHandle, bias: NativeCudaHandle | null, y: Float32Array,
    m: number, activation: number, precision: number, vendor?: boolean): Promise<void>;
  cudaSpmmCsrF32(stream: NativeCudaHandle, x: Float32Array, weights: NativeCudaHandle, bias: NativeCudaHandle | null, y: Float32Array,
    m: number, activation: number): void;
  cudaSpmmCsrF32Async(stream: NativeCudaHandle, x: Float32Array, weights: NativeCudaHandle, bias: NativeCudaHandle | null, y: Float32Array,
    m: number, activation: number): Promise<void>;
  cudaElementwiseF32(stream: NativeCudaHandle, data: Float32Array, rows: number, cols: number, op: number,
    bias: Float32Array | null, activation: number): void;
  cudaMagnitudePruneF32(stream: NativeCudaHandle, arrays: Float32Array[], names: string[], sparsity: number, perLayer: boolean,
    apply: boolean): { cuts: NativeLayerCut[]; zeroed: number };
  // Device-resident layer chains (native/binding/cuda_plan_binding.cc); call through ./cuda-plan.js.
  cudaPlanCreate(stream: NativeCudaHandle, ops: NativeCudaPlanOp[], inputWidth: number, graphMaxRows: number): NativeCudaHandle;
  cudaPlanRun(plan: NativeCudaHandle, x: Float32Array, y: Float32Array, m: number): void;
  cudaPlanRunAsync(plan: NativeCudaHandle, x: Float32Array, y: Float32Array, m: number): Promise<void>;
  cudaPlanStats(plan: NativeCudaHandle): NativeCudaPlanStats;
  cudaPlanRelease(plan: NativeCudaHandle): number;
  // The HTTP transport guard (native/binding/transport_guard.cc); call through src/server/http-guard.ts.
  guardTransport(): NativeTransportGuard;
  transportGuardCounts(): NativeTransportGuardCounts;
  /** The guard run over `chunks` as a socket's successive reads (then the end): what the reader is handed per read. */
  streamGuardReads(chunks: Buffer[], upgrade?: 'switch' | 'refuse', capacity?: number): ({ data: Buffer } | { wait: true } | { end: true } | { refused: string; status: number })[];
  /** The server's writes `chunks` read as its answers: final answers ended in each chunk (-1: no longer followed). */
  answersEnded(chunks: Buffer[], head?: boolean): number[];
}

/** Whether the transport guard is in place, and if not, why. */
export interface NativeTransportGuard {
  installed: boolean;
  /** Pipelined requests are held until the answer before them is out (the library's poll is followed). */
  pipelining: boolean;
  reason: string;
  /** The uWebSockets.js module it guards. */
  library: string;
  /** The C library calls of that module it stands in for. */
  hooked: string[];
}

export interface NativeTransportGuardCounts {
  connections: number;
  /** Request lines that arrived cut and were handed on whole. */
  requestLinesHeld: number;
  textFramesHeld: number;
  /** Text frames that were not UTF-8, answered with 1007. */
  textFramesRefused: number;
  /** The library's HTML error pages answered as JSON. */
  errorPagesRewritten: number;
  /** Malformed requests the library would leave unanswered, answered 400 by the guard. */
  requestsRefused: number;
  /** Pipelined requests held until the answer before them was out. */
  pipelinedHeld: number;
  /** HTTP/1.0 requests handed to the library as HTTP/1.1 with `Connection: close`. */
  http10Rewritten: number;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const ADDON_CANDIDATES = [
  join(packageRoot, 'build', 'Release', 'umbra.node'),
  join(packageRoot, 'build', 'Debug', 'umbra.node'),
];

function loadBinding(): NativeBinding {
  const require = createRequire(import.meta.url);
  const override = process.env.UMBRA_NATIVE_PATH;
  const candidates = override ? [override] : ADDON_CANDIDATES;
  const errors: string[] = [];
  for (const path of candidates) {
    if (!existsSync(path)) {
      errors.push(`${path}: not found`);
      continue;
    }
    try {
      return require(path) as NativeBinding;
    } catch (err) {
      errors.push(`${path}: ${(err as Error).message}`);
    }
  }
  throw new Error(
    `Umbra's native addon could not be loaded (${errors.join('; ')}). ` +
      'Build it with `npm run build:native` (needs cmake and a C++17 compiler), ' +
      'or point UMBRA_NATIVE_PATH at a built umbra.node.',
  );
}

let cached: NativeBinding | undefined;

/** Loads the addon once per thread; throws one message that says how to fix a failed load. */
export function native(): NativeBinding {
  cached ??= loadBinding();
  return cached;
}
