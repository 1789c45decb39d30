// `umbra bench-model MODEL`: in-process rows/s of one backend on one model at several batch
// sizes, no server and no worker pool in the way. Each batch size gets a warm-up (not counted),
// then timed windows; the figure is the median window. bench/native-model.mjs uses the same
// functions to interleave backends in one run.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import type { BackendSession } from '../../workers/backends/backend.js';
import type { WireTensor } from '../../workers/messages.js';
import { float32ToHalf, typedArrayFor } from '../../protocol/index.js';
import { cudaStatus, describeGpuBlas } from '../../native/cuda.js';
import { GPU_PRECISIONS, type GpuPrecision, NATIVE_DEVICES, type NativeDevice } from '../../repository/config.js';
import { UsageError } from '../settings.js';
import { readModel } from '../../onnx/model-io.js';
import { layerWhy } from '../../graph/layer-formats.js';
import { checkShapes, concreteShape, freeDimsDefaulted, parseShapes, type InputShapes } from '../../perf/payload.js';
import type { CudaPlanStages } from '../../native/addon.js';

export type BenchBackend = 'native' | 'onnxruntime';

/** `--backend auto` resolves as a model config's `backend: auto` does: native when it runs every node. */
export async function resolveBenchBackend(modelPath: string, backend: BenchBackend | 'auto'): Promise<BenchBackend> {
  return (await benchBackendChoice(modelPath, backend)).backend;
}

/** The same, with what decided it for 'auto' (placement.ts's backendChoice). */
async function benchBackendChoice(modelPath: string, backend: BenchBackend | 'auto'): Promise<{ backend: BenchBackend; note?: string }> {
  const { backendChoice } = await import('../../execution/placement.js');
  return backendChoice(backend, modelPath);
}

export interface BenchPoint {
  batch: number;
  /** Median over the timed windows. */
  rowsPerSecond: number;
  /** Median milliseconds per run (one batch). */
  msPerBatch: number;
  windows: number[];
  runs: number;
  /**
   * On a GPU: where a timed run's time went, µs per run. The device chains' stages (lock, stage in,
   * launch, device, stage out, capture) from their own clocks, and `outsideUs`, the rest of the
   * run: JavaScript, the thread-pool hop of an asynchronous run, and host steps between chains.
   */
  stages?: CudaPlanStages & { outsideUs: number };
}

export interface BenchOptions {
  /** Timed seconds per batch size, split over `repeats` windows. */
  seconds: number;
  repeats: number;
  /** Warm-up seconds per batch size (at least two runs). */
  warmupSeconds: number;
  /** Shapes of inputs with free dims past the batch (--shape); others run with 1 there. */
  shapes?: InputShapes;
}

/**
 * Opens a model on one backend in this thread, with `threads` kernel/intra-op threads; `device` is
 * the native backend's. The native backend times each layer's formats on `batchSizes` (the
 * batches about to be measured) unless `sparseBelow` fixes a density rule.
 */
export async function openBenchSession(modelPath: string, backend: BenchBackend, threads: number, sparseBelow?: number, device: NativeDevice = 'cpu', batchSizes?: readonly number[], precision: GpuPrecision = 'fp32'): Promise<BackendSession> {
  if (backend === 'native') {
    const { openNativeMeasured } = await import('../../workers/backends/native.js');
    return openNativeMeasured(modelPath, threads, {
      device, ...(sparseBelow === undefined ? {} : { sparseBelow }), ...(batchSizes ? { tuneBatchSizes: batchSizes } : {}),
      ...(precision === 'fp32' ? {} : { cuda: { precision } }),
    });
  }
  const { onnxruntimeBackend } = await import('../../workers/backends/onnxruntime.js');
  return onnxruntimeBackend.open({ key: `bench:${modelPath}`, modelPath, backend: 'onnxruntime', executionProviders: ['cpu'], intraOpThreads: threads });
}

/**
 * Seeded inputs for `batch` rows; dynamic dims other than the first take `shapes` (--shape, as
 * umbra perf takes it), else 1. Floats are in
 * (-1, 1); integers and BOOL are 0 or 1, which any index input (token ids, categories) accepts;
 * UINT8 covers 0..255 (pixels); BYTES are short strings.
 */
export function benchInputs(session: BackendSession, batch: number, seed = 1, shapes?: InputShapes): WireTensor[] {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
  return session.inputs.map((info) => {
    const shape = concreteShape(info, batch, shapes);
    const n = shape.reduce((a, b) => a * b, 1);
    const data = typedArrayFor(info.datatype, n);
    const dt = info.datatype;
    for (let i = 0; i < n; i++) {
      const r = next();
      if (dt === 'FP32' || dt === 'FP64') (data as Float32Array)[i] = r / 2 ** 31 - 1;
      else if (dt === 'FP16') (data as Uint16Array)[i] = float32ToHalf(r / 2 ** 31 - 1);
      else if (dt === 'UINT8') (data as Uint8Array)[i] = r >>> 24;
      else if (dt === 'INT64' || dt === 'UINT64') (data as BigInt64Array)[i] = BigInt(r >>> 31);
      else if (dt === 'BYTES') (data as string[])[i] = `s${r >>> 28}`;
      else (data as Int32Array)[i] = r >>> 31;
    }
    return { name: info.name, datatype: dt, shape, data };
  });
}

/** Whether some input has a free leading dimension: without one, a run is one fixed-shape call and there are no batch sizes to try. */
export function hasBatchDimension(session: BackendSession): boolean {
  return session.inputs.some((info) => (info.shape[0] ?? 0) < 0);
}

/** Runs repeatedly for `seconds` (at least once); returns rows/s and runs. Inputs are reused. */
export async function measureWindow(session: BackendSession, inputs: WireTensor[], batch: number, seconds: number): Promise<{ rowsPerSecond: number; runs: number; ms: number }> {
  const started = performance.now();
  const until = started + seconds * 1000;
  let runs = 0;
  let now = started;
  do {
    await session.run(inputs, []);
    runs++;
    now = performance.now();
  } while (now < until);
  const ms = now - started;
  return { rowsPerSecond: (runs * batch * 1000) / ms, runs, ms };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Warm-up, then `repeats` windows; the median window is the figure. */
export async function benchBatch(session: BackendSession, batch: number, options: BenchOptions): Promise<BenchPoint> {
  const inputs = benchInputs(session, batch, 1, options.shapes);
  await session.run(inputs, []);
  await measureWindow(session, inputs, batch, options.warmupSeconds);
  const windows: number[] = [];
  let runs = 0;
  let ms = 0;
  const stagesOf = () => session.planStages?.();
  const before = stagesOf();
  for (let r = 0; r < options.repeats; r++) {
    const w = await measureWindow(session, inputs, batch, options.seconds / options.repeats);
    windows.push(w.rowsPerSecond);
    runs += w.runs;
    ms += w.ms;
  }
  const rowsPerSecond = median(windows);
  const point: BenchPoint = { batch, rowsPerSecond, msPerBatch: (batch * 1000) / rowsPerSecond, windows, runs };
  const after = stagesOf();
  if (before && after && after.runs > before.runs) {
    const perRun = (key: keyof CudaPlanStages) => (after.stages[key] - before.stages[key]) / runs;
    const stages = { lockUs: perRun('lockUs'), stageInUs: perRun('stageInUs'), launchUs: perRun('launchUs'), deviceUs: perRun('deviceUs'), stageOutUs: perRun('stageOutUs'), captureUs: perRun('captureUs') };
    const inside = Object.values(stages).reduce((a, b) => a + b, 0);
    point.stages = { ...stages, outsideUs: Math.max(0, (ms * 1000) / runs - inside) };
  }
  return point;
}

interface BenchModelFlags {
  backend: string;
  device: string;
  precision: string;
  batch: string;
  seconds: string;
  repeats: string;
  threads: string;
  json?: boolean;
  shape: string[];
}

function positive(value: string, flag: string, integer: boolean): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${flag}: expected ${integer ? 'a positive integer' : 'a positive number'} but received ${JSON.stringify(value)}`);
  }
  return n;
}

export function registerBenchModel(program: Command): void {
  program.command('bench-model')
    .description('measure in-process rows/s of one backend on one ONNX model (median of timed windows, warm-up excluded)')
    .argument('<model>', 'path of an .onnx file')
    .option('--backend <name>', 'native, onnxruntime, or auto (as a model config\'s backend: auto picks)', 'native')
    .option('--device <name>', 'native backend: cpu, cuda (fails without a usable GPU) or auto', 'cpu')
    .option('--precision <p>', 'native backend on cuda: fp32, tf32 or bf16 for the dense layers (the cost against fp32 is measured and printed)', 'fp32')
    .option('--batch <list>', 'batch sizes, comma separated', '1,8,64')
    .option('--seconds <s>', 'timed seconds per batch size', '3')
    .option('--repeats <n>', 'timed windows per batch size (the median is reported)', '5')
    .option('--threads <n>', 'kernel / intra-op threads', '1')
    .option('--shape <name:dims>', 'the shape of an input with free dims, without the batch dim (e.g. input_ids:128) or whole; repeat for each input (default: 1 in each free dim)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--json', 'print JSON instead of a table')
    .action(async (model: string, flags: BenchModelFlags) => benchModel(model, flags));
}

/** A batch whose inputs are past what a typed array holds ("Invalid typed array length") is --batch's mistake. */
function batchTooLarge(err: unknown, batch: string): unknown {
  return err instanceof RangeError ? new UsageError(`--batch ${batch}: the inputs cannot be allocated (${err.message}); give a smaller batch`) : err;
}

/** --device checked before anything loads: a GPU run on a host without one says why and what to do. */
export function benchDevice(raw: string, backend: string): NativeDevice {
  if (!(NATIVE_DEVICES as readonly string[]).includes(raw)) {
    throw new UsageError(`--device: expected ${NATIVE_DEVICES.join(', ')} but received ${JSON.stringify(raw)}`);
  }
  const device = raw as NativeDevice;
  if (device !== 'cpu' && backend !== 'native') {
    throw new UsageError(`--device: ${device} applies to --backend native (the onnxruntime bench runs on the CPU); drop --device or use --backend native`);
  }
  const status = cudaStatus();
  if (device === 'cuda' && !status.available) {
    throw new UsageError(`--device cuda: ${status.reason}; use --device cpu (or auto), or run on a host with a CUDA GPU`);
  }
  return device;
}

function sessionDevice(session: BackendSession): string {
  return 'device' in session && typeof session.device === 'string' ? session.device : 'cpu';
}

async function benchModel(model: string, flags: BenchModelFlags): Promise<void> {
  if (!existsSync(model)) throw new UsageError(`model: ${model} does not exist`);
  // A file that is not ONNX at all is the argument's mistake, whichever backend would run it.
  try {
    readModel(model);
  } catch (err) {
    throw new UsageError(`model: ${(err as Error).message}; give the path of an .onnx file`);
  }
  if (flags.backend !== 'native' && flags.backend !== 'onnxruntime' && flags.backend !== 'auto') {
    throw new UsageError(`--backend: expected native, onnxruntime or auto but received ${JSON.stringify(flags.backend)}`);
  }
  const { backend, note: backendNote } = await benchBackendChoice(model, flags.backend);
  const device = benchDevice(flags.device, backend);
  if (!(GPU_PRECISIONS as readonly string[]).includes(flags.precision)) {
    throw new UsageError(`--precision: expected ${GPU_PRECISIONS.join(', ')} but received ${JSON.stringify(flags.precision)}`);
  }
  const precision = flags.precision as GpuPrecision;
  if (precision !== 'fp32' && device === 'cpu') {
    throw new UsageError(`--precision: ${precision} applies to --device cuda (or auto); the CPU kernels compute in fp32`);
  }
  const batches = flags.batch.split(',').map((b) => positive(b.trim(), '--batch', true));
  const seconds = positive(flags.seconds, '--seconds', false);
  const repeats = positive(flags.repeats, '--repeats', true);
  const threads = positive(flags.threads, '--threads', true);
  if (backend === 'native' && flags.backend === 'native') {
    const { nativeRefusal } = await import('../../graph/index.js');
    const refusal = nativeRefusal(model);
    if (refusal !== null) throw new UsageError(`--backend native: ${refusal.replace(/; use backend: .*$/, '')}; use --backend onnxruntime, or --backend auto to pick`);
  }
  let shapes: InputShapes | undefined;
  try {
    shapes = flags.shape.length > 0 ? parseShapes(flags.shape) : undefined;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  // The native backend times its layer formats at each batch size as it opens.
  const session = await openBenchSession(model, backend, threads, undefined, device, batches, precision).catch((err: unknown) => {
    throw batchTooLarge(err, flags.batch);
  });
  try {
    if (shapes) {
      checkShapes(session, shapes);
      for (const info of session.inputs) concreteShape(info, 1, shapes);
    }
  } catch (err) {
    await session.release();
    throw new UsageError((err as Error).message);
  }
  for (const info of freeDimsDefaulted(session, shapes)) {
    process.stderr.write(`umbra: input ${info.name} has shape [${info.shape.join(', ')}]; its free dims past the batch are run as 1 (a sequence of one): give --shape ${info.name}:${info.shape.slice(info.shape[0] === -1 ? 1 : 0).map((d) => (d < 0 ? 'N' : String(d))).join(',')} to measure the sizes your clients send\n`);
  }
  if (!hasBatchDimension(session) && batches.some((b) => b !== 1)) {
    // rows/s at "batch 64" would count 64 rows for each run of one fixed-shape call.
    process.stderr.write(`umbra: ${model} has no batch dimension (${session.inputs.map((i) => `${i.name} [${i.shape.join(', ')}]`).join(', ')}): each run is one call of that shape, so only batch 1 is measured\n`);
    batches.splice(0, batches.length, 1);
  }
  const points: BenchPoint[] = [];
  try {
    for (const batch of batches) {
      try {
        points.push(await benchBatch(session, batch, { seconds, repeats, warmupSeconds: Math.min(1, seconds / 5), ...(shapes ? { shapes } : {}) }));
      } catch (err) {
        throw batchTooLarge(err, String(batch));
      }
    }
  } finally {
    await session.release();
  }
  const layers = session.layers?.();
  const accuracy = session.accuracy;
  if (flags.json) {
    const gpu = sessionDevice(session) === 'cpu' ? {} : { blas: cudaStatus().blas, precision, ...(accuracy ? { accuracy } : {}) };
    // What each input was run at, the batch as -1 (its sizes are the points').
    const inputs = session.inputs.map((info) => ({ name: info.name, shape: concreteShape(info, -1, shapes) }));
    process.stdout.write(`${JSON.stringify({ model, backend, ...(backendNote ? { backend_note: backendNote } : {}), device: sessionDevice(session), ...gpu, threads, seconds, repeats, inputs, ...(layers ? { layers } : {}), points }, null, 2)}\n`);
    return;
  }
  const where = `${backend}${flags.backend === 'auto' ? ' (auto)' : ''}${sessionDevice(session) === 'cpu' ? '' : ` on ${sessionDevice(session)}`}`;
  process.stdout.write(`${model} on ${where}, ${threads} thread(s), median of ${repeats} windows over ${seconds} s per batch\n`);
  if (backendNote) process.stdout.write(`${backendNote}\n`);
  if (sessionDevice(session) !== 'cpu') process.stdout.write(`dense layers on ${describeGpuBlas()}, ${precision}\n`);
  if (accuracy) process.stdout.write(`${precision} against fp32 on ${accuracy.rows} seeded rows: max |diff| ${accuracy.maxAbsDiff.toPrecision(3)}, relative L2 ${accuracy.relL2.toPrecision(3)}\n`);
  process.stdout.write('batch      rows/s   ms/batch    runs\n');
  for (const p of points) {
    process.stdout.write(`${String(p.batch).padStart(5)} ${p.rowsPerSecond.toFixed(1).padStart(11)} ${p.msPerBatch.toFixed(3).padStart(10)} ${String(p.runs).padStart(7)}\n`);
  }
  if (points.some((p) => p.stages)) {
    process.stdout.write('where a run goes on the GPU (µs per run, host clocks):\n');
    process.stdout.write('batch    lock  stage in   launch   device  stage out  capture  outside\n');
    for (const p of points) {
      const s = p.stages;
      if (!s) continue;
      const cell = (us: number, width: number) => us.toFixed(1).padStart(width);
      process.stdout.write(`${String(p.batch).padStart(5)} ${cell(s.lockUs, 7)} ${cell(s.stageInUs, 9)} ${cell(s.launchUs, 8)} ${cell(s.deviceUs, 8)} ${cell(s.stageOutUs, 10)} ${cell(s.captureUs, 8)} ${cell(s.outsideUs, 8)}\n`);
    }
  }
  if (layers && layers.length > 0) {
    process.stdout.write('layer formats:\n');
    for (const l of layers) {
      process.stdout.write(`  ${l.name || '(unnamed)'} [${l.n}x${l.k}] ${(l.density * 100).toFixed(1)}% non-zero: ${l.format} (${layerWhy(l)})\n`);
    }
  }
}
