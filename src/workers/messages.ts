// Every message that crosses between the main thread and the model workers. Tensor bytes travel
// as transferred ArrayBuffers (never copied JS arrays); both sides build them with these types.
import type { DataType, TensorData } from '../protocol/types.js';
import type { LayerInfo } from '../graph/executor.js';
import type { LayerFormat } from '../graph/layer-formats.js';
import type { PrecisionCost } from '../graph/precision-cost.js';
import type { CudaLayerInfo } from '../graph/cuda-executor.js';

export type BackendName = 'onnxruntime' | 'native';

/** Everything a worker needs to open (or find already open) a model session. */
export interface SessionSpec {
  /** Unique per load of a model version: a reload gets a new key, so stale sessions never serve. */
  key: string;
  modelPath: string;
  backend: BackendName;
  executionProviders: string[];
  /** The native backend's device (the model config's `device`); cpu when absent. */
  device?: 'cpu' | 'cuda' | 'auto';
  /** The native backend's arithmetic on a GPU (the model config's `precision`); fp32 when absent. */
  precision?: 'tf32' | 'bf16';
  /**
   * The model has outputs that are not tensors: open it as `servedModel` (src/onnx/model-io.ts)
   * rewrites it, those outputs replaced or left out, as its signature says.
   */
  servedGraph?: true;
  /** Threads ORT may use inside one run (intra-op); 1 when the pool already fills the cores. */
  intraOpThreads: number;
  /**
   * The batch sizes this version's batches take (1, the preferred sizes, the largest), for a
   * backend that tunes itself at open: the native backend times each layer's formats on them.
   */
  batchSizes?: number[];
  /** What the first open of this load measured, so every later open runs the same plan. */
  tuned?: BackendTuning;
}

/** Settings a backend measured when it first opened a load (see WarmResult.tuned). */
export interface BackendTuning {
  /** Native backend: each dense layer's format, in layer order. */
  layerFormats: LayerFormat[];
}

/** How one dense layer of a native-backend model runs, and what decided it. */
export type LayerReport = LayerInfo | CudaLayerInfo;

export interface WireTensor {
  name: string;
  datatype: DataType;
  shape: number[];
  data: TensorData;
}

export interface RunTask {
  kind: 'run';
  session: SessionSpec;
  inputs: WireTensor[];
  /** Output names to compute; empty = all. */
  outputs: string[];
  /**
   * Fault injection for crash-recovery tests; honoured only when UMBRA_FAULT_INJECTION=1. The
   * worker exits in the task (crash), throws (throw), or exits with the answer in hand, as if its
   * exit overtook the answer (lose-answer).
   */
  fault?: 'crash' | 'throw' | 'lose-answer';
  /**
   * A slot of the pool's shared progress flags (TaskProgress): the worker raises it as the task
   * begins and again as it answers, so a task lost with its worker is known either never to have
   * run or to have run to its end (its answer lost with the worker: the worker's 'exit' can reach
   * the pool before the answer it posted), and may run elsewhere; only a task the worker died
   * running failed.
   */
  progressSlot?: number;
}

/** A run task's progress flag (RunTask.progressSlot). */
export const TaskProgress = { posted: 0, begun: 1, answered: 2 } as const;

/** What the pool hands every worker at start (piscina's workerData). */
export interface PoolWorkerData {
  /** Which pool the worker belongs to (several pools may share a process, and the channel). */
  pool: string;
  /** Int32 progress flags (TaskProgress), one per progressSlot. */
  progress: SharedArrayBuffer;
  /**
   * Int32[1]: evict and park messages the pool has posted. A worker blocks between tasks
   * (piscina's Atomics.wait), so its event loop, and with it the session channel, runs only inside
   * a task: a task that finds this count above the messages it has applied first lets them in.
   */
  evictions: SharedArrayBuffer;
}

export interface WarmTask {
  kind: 'warm';
  session: SessionSpec;
  /** Also time runs of a batch of this many rows (median, in µs) to decide placement. */
  probeRows?: number;
}

/** Lets a worker apply the evictions posted since its last task (see PoolWorkerData.evictions). */
export interface FlushTask {
  kind: 'flush';
}

export type WorkerTask = RunTask | WarmTask | FlushTask;

export interface RunResult {
  outputs: WireTensor[];
  /** Wall time inside the worker, for the compute-duration metric. */
  computeMs: number;
  /** The worker that ran it (the pool's balancer keeps track of what each worker began when). */
  threadId?: number;
  /**
   * The task's input buffers, handed back once the run no longer needs them (the pool reuses
   * them for later inputs: see transfer-buffers.ts); never one an output lives in.
   */
  spent?: ArrayBuffer[];
  /** The backend's run threw (no outputs): its message. The pool rejects with a ModelRunError. */
  runError?: string;
}

export interface WarmResult {
  inputs: { name: string; datatype: DataType; shape: number[] }[];
  outputs: { name: string; datatype: DataType; shape: number[] }[];
  threadId: number;
  /** Fastest run time of a `probeRows` batch in µs, when asked. */
  probeMicros?: number;
  /**
   * Where an input has a dynamic dim besides the first: the same probe with those dims at
   * PROBE_LENGTH (the first probe runs them at 1), or why the model refused that length.
   */
  probeLength?: { length: number; micros: number } | { length: number; error: string };
  /**
   * Each output's first dim in the warm-up's runs, with the rows (and length) each ran: a batching
   * model's answers must have as many rows as its batch, or requests cannot share one.
   */
  outputRows?: { rows: number; length: number; outputs: Record<string, number> }[];
  /** What the session measured at open, for the other workers' opens (SessionSpec.tuned). */
  tuned?: BackendTuning;
  /** Native backend: how each dense layer runs, and why. */
  layers?: LayerReport[];
  /** Native backend on a GPU below fp32: the precision's cost against fp32 (see graph/precision-cost.ts). */
  accuracy?: PrecisionCost;
  /** onnxruntime: why the session runs on other execution providers than the first asked for. */
  providerNote?: string;
}

/**
 * Broadcast to every worker when a model version is unloaded (`evict`: release its sessions for
 * good) or runs inline on the reading threads (`park`: release them, a later task reopens one).
 */
export interface EvictMessage {
  kind: 'evict' | 'park';
  key: string;
  /** The pool that sent it (its workers count what they have applied, see PoolWorkerData.evictions). */
  pool: string;
}

/** A worker says which OS thread it runs on as it starts (for per-thread CPU accounting). */
export interface HelloMessage {
  kind: 'hello';
  pool: string;
  tid: number;
}

export const SESSION_CHANNEL = 'umbra:sessions';

/** ArrayBuffers of tensor data, for a transfer list. BYTES tensors are plain arrays and are cloned. */
export function tensorBuffers(tensors: readonly WireTensor[]): ArrayBuffer[] {
  const seen = new Set<ArrayBuffer>();
  for (const t of tensors) {
    if (!Array.isArray(t.data) && t.data.buffer instanceof ArrayBuffer) seen.add(t.data.buffer);
  }
  return [...seen];
}

/**
 * Ensure each tensor owns its whole ArrayBuffer, so transferring it detaches nothing else
 * (a view into a request body would otherwise take the body with it).
 */
/*
 * Tensors are rebuilt field by field, never as `{ ...t, data }`: on Node 20 an object literal with
 * a property after a spread takes a slow path that keeps what the new object references alive
 * through young collections, which on the request path promoted most of every request.
 */

/** `t` with other data. */
export function withData(t: WireTensor, data: TensorData): WireTensor {
  return { name: t.name, datatype: t.datatype, shape: t.shape, data };
}

/** `t` under another name. */
export function renamed(t: WireTensor, name: string): WireTensor {
  return { name, datatype: t.datatype, shape: t.shape, data: t.data };
}

export function ownedTensor(t: WireTensor): WireTensor {
  const d = t.data;
  if (Array.isArray(d)) return t;
  if (d.byteOffset === 0 && d.byteLength === d.buffer.byteLength && d.buffer instanceof ArrayBuffer) return t;
  return withData(t, d.slice() as TensorData);
}
