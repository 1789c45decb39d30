// Where and how a version's batches run, decided from its config and measurements at load:
// backend choice, inline vs worker placement, sharding of large batches, staging of full ones.
import { invalid } from '../errors.js';
import { nativeRefusal } from '../graph/index.js';
import type { ResolvedModelConfig } from '../repository/config.js';
import type { SessionSpec } from '../workers/messages.js';

/** 'auto' serves on the native backend when it can run every node, else on onnxruntime. */
export function resolveBackend(choice: ResolvedModelConfig['backend'], modelPath: string): SessionSpec['backend'] {
  return backendChoice(choice, modelPath).backend;
}

/**
 * The backend `choice` resolves to, with what decided it where the config said 'auto' (the load
 * log, the model's metadata and `bench-model --backend auto` show it): a model served on
 * onnxruntime because the native backend refused a node says which node and why.
 */
export function backendChoice(choice: ResolvedModelConfig['backend'], modelPath: string): { backend: SessionSpec['backend']; note?: string } {
  if (choice !== 'auto') return { backend: choice };
  const refusal = nativeRefusal(modelPath);
  if (refusal === null) return { backend: 'native', note: 'backend auto chose native: it runs every node of this model' };
  return { backend: 'onnxruntime', note: `backend auto chose onnxruntime: the native backend cannot run this model (${refusal})` };
}

/**
 * The batch sizes a version's batches take: one request, the preferred sizes, the largest. The
 * native backend times each pruned layer's formats on them at load.
 */
export function batchSizesOf(config: ResolvedModelConfig): number[] {
  if (config.maxBatchSize <= 0) return [1];
  return [...new Set([1, ...config.dynamicBatching.preferredBatchSizes, config.maxBatchSize])].sort((a, b) => a - b);
}

/** Rows of the batch that decides placement: a typical busy-server batch. */
export const INLINE_PROBE_ROWS = 16;

/** The probe's rows for a model: INLINE_PROBE_ROWS, fewer where its batches are smaller, 1 where it does not batch. */
export function probeRowsOf(maxBatchSize: number): number {
  return maxBatchSize > 0 ? Math.min(maxBatchSize, INLINE_PROBE_ROWS) : 1;
}
/**
 * A batch cheaper than this runs on the event loop: a round trip to a worker thread costs tens of
 * microseconds, more than such a model's whole compute, and the wait blocks nothing for long.
 */
export const INLINE_BUDGET_US = 100;
/**
 * The budget where every core reads requests (two I/O threads on two cores, the core's thread
 * among them): a model worker there only takes a core from a thread that reads, and each request
 * pays the hand-off to it and back (12-25 µs of CPU). Each reading thread then runs its own
 * replica of the version and batches its own clients' requests, as separate processes would. On
 * two cores, 64 clients, MLPs from 64 inputs (bench/RESULTS-io-threads.md): 1024-1024 wide (a
 * 16-row batch in about 270 µs) served 1.79x the one-thread rate this way, 2048-2048 (1.2 ms)
 * 1.57x and 2896-2896 (3.5 ms) 1.38x, with lower p50 and p99, where in the workers two threads
 * served 0.85-0.91x of one. A 64-row batch of a model at the budget holds its thread for about
 * 16 ms (a health probe or another model's request on that thread waits as long); heavier models
 * stay in the workers.
 */
export const READERS_INLINE_BUDGET_US = 4000;

/** `parameters.execution` in the model config: auto (default), inline or worker. */
export function placementOf(config: ResolvedModelConfig): 'auto' | 'inline' | 'worker' {
  const value = config.parameters.execution ?? 'auto';
  if (value !== 'auto' && value !== 'inline' && value !== 'worker') {
    throw invalid('INVALID_ARGUMENT', '"auto", "inline" or "worker"', `parameters.execution of model '${config.name}'`, value);
  }
  return value;
}

/**
 * Rows below which a shard costs more in hand-off than it saves (the config may set another).
 * On the two-core host, one client sending 64-row batches of a 512-4096-4096-10 MLP waited 11.3 ms
 * (p50) with shards of 32 rows on two workers against 16.7 ms whole on one; 16-row batches 8.7
 * against 10.0 ms; a 25-layer 256-wide MLP 5-10% less.
 */
export const DEFAULT_SHARD_MIN_ROWS = 8;

/**
 * `parameters.stage_batches` in the model config: "true" or "false". When every worker is busy, a
 * full batch may wait on one of them, to start the moment its running batch ends instead of
 * after the answer has crossed a busy event loop and the next batch has come back (on the
 * two-core host a 64-row batch of a 512-4096-4096-10 MLP then waited 1.1 ms on average for its
 * worker instead of 3). A staged batch has left the queue: a higher priority cannot overtake it,
 * and a request aborted in it still runs. So the default is on, except with priority levels.
 */
export function stagesBatches(config: ResolvedModelConfig): boolean {
  const value = config.parameters.stage_batches;
  if (value === undefined) return config.dynamicBatching.priorityLevels <= 1;
  if (value !== 'true' && value !== 'false') {
    throw invalid('INVALID_ARGUMENT', '"true" or "false"', `parameters.stage_batches of model '${config.name}'`, value);
  }
  return value === 'true';
}

/**
 * `parameters.dispatch_when_quiet` in the model config: "true" (default) or "false". An inline
 * version's partial batch is sent at once, without waiting out its delay, when no client of the
 * thread can send another request meanwhile (see scheduler/arrivals.ts). "false" keeps the
 * delay whatever the clients do.
 */
export function dispatchesWhenQuiet(config: ResolvedModelConfig): boolean {
  const value = config.parameters.dispatch_when_quiet;
  if (value === undefined) return true;
  if (value !== 'true' && value !== 'false') {
    throw invalid('INVALID_ARGUMENT', '"true" or "false"', `parameters.dispatch_when_quiet of model '${config.name}'`, value);
  }
  return value === 'true';
}

/** `parameters.shard_min_rows` in the model config: a whole number, 0 = never shard. */
export function shardMinRowsOf(config: ResolvedModelConfig): number {
  const value = config.parameters.shard_min_rows;
  if (value === undefined) return DEFAULT_SHARD_MIN_ROWS;
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < 0) {
    throw invalid('INVALID_ARGUMENT', 'a whole number of rows (0 = never shard)', `parameters.shard_min_rows of model '${config.name}'`, value);
  }
  return n;
}
