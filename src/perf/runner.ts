// The measurement loop: for each load level, warm up, then measure windows until throughput and
// latency agree within the stability percentage over the last 3 windows (perf_analyzer's rule),
// or for a fixed duration; report the merged windows. Sweeps stop past a latency threshold.
import { cpus } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { UmbraError } from '../errors.js';
import { LatencyHistogram, round3 } from './histogram.js';
import type { Distribution, LoadSpec, WindowSample } from './load.js';
import { checkShapes, fetchModelMetadata, filePayloads, freeDimsDefaulted, isGrpc, randomPayloads, type InputShapes, type ModelMetadata, type Payload, type Protocol } from './payload.js';
import { DEFAULT_OUTPUT_SHARED_MEMORY_BYTES, placeInSharedMemory, type SharedPlacement } from './shared-memory.js';
import { fetchGrpcModelMetadata } from './grpc-connection.js';
import { fetchStatsSnapshot, statsBetween } from './server-stats.js';
import { localThread, workerThread, type LoadThread } from './thread.js';

export interface PerfOptions {
  url: string;
  model: string;
  version?: string;
  protocol?: Protocol;
  /** Closed-loop levels (clients). Give this or requestRate; default [1]. */
  concurrency?: number[];
  /** Open-loop levels (requests per second). */
  requestRate?: number[];
  distribution?: Distribution;
  /** 'random' (seeded, from the model metadata) or a JSON file. */
  inputData?: string;
  /** Rows per request when the model's first dim is dynamic. */
  batchSize?: number;
  /** Shapes of inputs with free dims (`--shape NAME:DIMS`), without the batch dim or whole; others get 1 there. */
  shapes?: InputShapes;
  /** Pre-encoded payloads; skips the metadata request. */
  payloads?: Payload[];
  /** Measure one window of this many seconds instead of windows until stable. */
  durationS?: number;
  windowMs?: number;
  maxWindows?: number;
  stabilityPct?: number;
  warmupMs?: number;
  /** Stop the sweep once a level's latency (p99, or the --percentile) exceeds this. */
  latencyThresholdMs?: number;
  /** Latency percentile for stability and threshold; default: mean for stability, p99 for threshold. */
  percentile?: number;
  /** Load threads; 1 runs on the calling thread. */
  threads?: number;
  timeoutMs?: number;
  seed?: number;
  payloadCount?: number;
  maxConnections?: number;
  /** WebSocket or gRPC connections the clients share; default 1 for WebSocket, one per 16 clients for gRPC. */
  wsConnections?: number;
  /** Ask the server's statistics endpoint for queue/compute times (default true). */
  serverStats?: boolean;
  /**
   * 'system': inputs written once into a shared-memory region and outputs taken into another
   * (Triton's system shared-memory extension; the server on this host, with --shared-memory on).
   */
  sharedMemory?: 'none' | 'system';
  /** Bytes of each output's slot with sharedMemory 'system' (default 102400, as perf_analyzer). */
  outputSharedMemoryBytes?: number;
  onLevel?: (result: PerfLevelResult) => void;
  /** Called when a level's measured windows begin (after warm-up) and end. */
  onMeasure?: (phase: 'start' | 'end', level: number) => void;
  log?: (line: string) => void;
}

export interface PerfLevelResult {
  concurrency?: number;
  request_rate?: number;
  protocol: Protocol;
  batch_size: number;
  /** Successful requests per second. */
  throughput: number;
  /** Rows (inferences) per second: throughput x batch size. */
  inferences_per_s: number;
  completed: number;
  mean_ms: number;
  p50_ms: number;
  p90_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
  errors: number;
  errors_by_status: Record<string, number>;
  error_rate: number;
  /** The first failure the level met, as the server worded it (HTTP: status and the start of the body). */
  first_error?: string;
  /** With --percentile P: P, and the level's latency at it (what the threshold judges). */
  percentile?: number;
  percentile_ms?: number;
  windows: number;
  stable: boolean;
  duration_s: number;
  /** Open loop: p99 of how late requests left against their schedule (generator health). */
  send_lag_p99_ms: number | null;
  /** CPU the generator used, in % of one core (all its threads). */
  client_cpu_pct: number;
  server_queue_ms: number | null;
  server_compute_ms: number | null;
}

export interface StabilitySample {
  throughput: number;
  latencyMs: number;
}

/** True when the last 3 samples' throughput and latency each lie within pct% of their mean. */
export function isStable(samples: readonly StabilitySample[], pct: number): boolean {
  if (samples.length < 3) return false;
  const last = samples.slice(-3);
  const within = (values: number[]) => {
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    if (mean === 0) return values.every((v) => v === 0);
    return values.every((v) => Math.abs(v - mean) <= (pct / 100) * mean);
  };
  return within(last.map((s) => s.throughput)) && within(last.map((s) => s.latencyMs));
}

interface Resolved extends Required<Omit<PerfOptions, 'version' | 'concurrency' | 'requestRate' | 'payloads' | 'durationS' | 'latencyThresholdMs' | 'percentile' | 'onLevel' | 'onMeasure' | 'log' | 'wsConnections' | 'sharedMemory' | 'outputSharedMemoryBytes' | 'shapes'>> {
  version: string | undefined;
  shapes: InputShapes | undefined;
  wsConnections: number | undefined;
}

function resolve(o: PerfOptions): Resolved {
  return {
    url: o.url,
    model: o.model,
    version: o.version,
    protocol: o.protocol ?? 'http',
    distribution: o.distribution ?? 'constant',
    inputData: o.inputData ?? 'random',
    shapes: o.shapes,
    batchSize: o.batchSize ?? 1,
    windowMs: o.windowMs ?? 1000,
    maxWindows: Math.max(3, o.maxWindows ?? 10),
    stabilityPct: o.stabilityPct ?? 10,
    warmupMs: o.warmupMs ?? 1000,
    threads: Math.max(1, o.threads ?? 1),
    timeoutMs: o.timeoutMs ?? 30_000,
    seed: o.seed ?? 1,
    payloadCount: o.payloadCount ?? 16,
    maxConnections: o.maxConnections ?? 1024,
    wsConnections: o.wsConnections,
    serverStats: o.serverStats ?? true,
  };
}

/** Runs the sweep and returns one result per load level measured. */
export async function runPerf(options: PerfOptions): Promise<PerfLevelResult[]> {
  const o = resolve(options);
  if (options.concurrency && options.requestRate) throw new UmbraError('INVALID_ARGUMENT', 'give --concurrency or --request-rate, not both');
  const mode: LoadSpec['mode'] = options.requestRate ? 'rate' : 'concurrency';
  const levels = options.requestRate ?? options.concurrency ?? [1];
  const shared = options.sharedMemory === 'system';
  const meta = options.payloads === undefined || shared ? await modelMetadata(o) : undefined;
  const log = options.log ?? (() => undefined);
  if (options.payloads === undefined) {
    if (o.shapes) checkShapes(meta!, o.shapes);
    // Only random inputs: a file's requests carry their own shapes where they need them.
    if (o.inputData === 'random') {
      for (const m of freeDimsDefaulted(meta!, o.shapes)) log(`note: input ${m.name} has shape [${m.shape.join(', ')}]; its free dims past the batch are sent as 1 (a sequence of one): give --shape ${m.name}:${m.shape.slice(m.shape[0] === -1 ? 1 : 0).map((d) => (d < 0 ? 'N' : String(d))).join(',')} to send the sizes your clients send`);
    }
  }
  let payloads = options.payloads ?? preparePayloads(o, meta!);
  let placement: SharedPlacement | undefined;
  if (shared) {
    placement = await placeInSharedMemory(payloads, meta!.outputs.map((m) => m.name), options.outputSharedMemoryBytes ?? DEFAULT_OUTPUT_SHARED_MEMORY_BYTES, o.url, isGrpc(o.protocol));
    payloads = placement.payloads;
  }
  if (o.threads > cpus().length) log(`note: ${o.threads} load threads on ${cpus().length} cores; the generator may compete with itself`);
  const results: PerfLevelResult[] = [];
  try {
    for (const level of levels) {
      const result = await runLevel(o, options, mode, level, payloads, log);
      results.push(result);
      options.onLevel?.(result);
      const latency = result.percentile_ms ?? result.p99_ms;
      if (options.latencyThresholdMs !== undefined && latency > options.latencyThresholdMs) {
        log(`latency ${latency} ms is over the threshold ${options.latencyThresholdMs} ms; sweep stopped`);
        break;
      }
    }
  } finally {
    await placement?.release();
  }
  return results;
}

function modelMetadata(o: Resolved): Promise<ModelMetadata> {
  return isGrpc(o.protocol) ? fetchGrpcModelMetadata(o.url, o.model) : fetchModelMetadata(o.url, o.model);
}

function preparePayloads(o: Resolved, meta: ModelMetadata): Payload[] {
  return o.inputData === 'random' ? randomPayloads(meta, o.batchSize, o.payloadCount, o.seed, o.shapes) : filePayloads(o.inputData, meta, o.batchSize, o.shapes);
}


async function runLevel(o: Resolved, options: PerfOptions, mode: LoadSpec['mode'], level: number, payloads: Payload[], log: (line: string) => void): Promise<PerfLevelResult> {
  const threadCount = mode === 'concurrency' ? Math.min(o.threads, level) : o.threads;
  const threads: LoadThread[] = [];
  for (let t = 0; t < threadCount; t++) {
    const share = mode === 'concurrency'
      ? Math.floor(level / threadCount) + (t < level % threadCount ? 1 : 0)
      : level / threadCount;
    const spec: LoadSpec = {
      url: o.url, model: o.model, protocol: o.protocol, payloads, mode, level: share,
      distribution: o.distribution, phase: t / threadCount, seed: o.seed * 1000 + t,
      timeoutMs: o.timeoutMs, maxConnections: Math.ceil(o.maxConnections / threadCount), wsConnections: o.wsConnections,
    };
    if (o.version !== undefined) spec.version = o.version;
    threads.push(threadCount === 1 ? localThread(spec) : workerThread(spec));
  }
  try {
    await Promise.all(threads.map((t) => t.start()));
    await delay(o.warmupMs);
    await Promise.all(threads.map((t) => t.collect()));
    options.onMeasure?.('start', level);
    const statsBefore = o.serverStats ? await fetchStatsSnapshot(o.url, o.model, o.version, isGrpc(o.protocol)) : null;
    const cpuBefore = process.cpuUsage();
    const wallBefore = performance.now();
    const windows: WindowSample[] = [];
    const samples: StabilitySample[] = [];
    let stable = false;
    for (;;) {
      await delay(options.durationS !== undefined ? options.durationS * 1000 : o.windowMs);
      const parts = await Promise.all(threads.map((t) => t.collect()));
      const w = mergeWindows(parts);
      windows.push(w);
      const seconds = (w.endMs - w.startMs) / 1000;
      samples.push({
        throughput: w.completed / seconds,
        latencyMs: options.percentile !== undefined ? w.latency.percentileMs(options.percentile) : w.latency.meanMs,
      });
      if (options.durationS !== undefined) {
        stable = true;
        break;
      }
      if (isStable(samples, o.stabilityPct)) {
        stable = true;
        break;
      }
      if (windows.length >= o.maxWindows) break;
    }
    options.onMeasure?.('end', level);
    const cpu = process.cpuUsage(cpuBefore);
    const wallMs = performance.now() - wallBefore;
    const statsAfter = statsBefore ? await fetchStatsSnapshot(o.url, o.model, o.version, isGrpc(o.protocol)) : null;
    const counted = windows.slice(-3);
    const merged = mergeWindows(counted);
    // From any window, warm-up included: a server that refuses everything refuses it from the start.
    const firstError = windows.find((w) => w.firstError !== undefined)?.firstError;
    const durationS = counted.reduce((a, w) => a + (w.endMs - w.startMs), 0) / 1000;
    const errors = Object.values(merged.errors).reduce((a, b) => a + b, 0);
    const summary = merged.latency.summary();
    const server = statsBetween(statsBefore, statsAfter);
    const label = mode === 'concurrency' ? `concurrency ${level}` : `rate ${level}/s`;
    if (!stable) log(`${label}: not stable within ${o.stabilityPct}% after ${windows.length} windows; reporting the last 3`);
    const throughput = merged.completed / durationS;
    const result: PerfLevelResult = {
      ...(mode === 'concurrency' ? { concurrency: level } : { request_rate: level }),
      protocol: o.protocol,
      batch_size: o.batchSize,
      throughput: round3(throughput),
      inferences_per_s: round3(throughput * o.batchSize),
      completed: merged.completed,
      mean_ms: summary.mean_ms,
      p50_ms: summary.p50_ms,
      p90_ms: summary.p90_ms,
      p95_ms: summary.p95_ms,
      p99_ms: summary.p99_ms,
      max_ms: summary.max_ms,
      errors,
      errors_by_status: merged.errors,
      error_rate: round3(errors / Math.max(1, errors + merged.completed)),
      ...(firstError !== undefined ? { first_error: firstError } : {}),
      ...(options.percentile !== undefined ? { percentile: options.percentile, percentile_ms: round3(merged.latency.percentileMs(options.percentile)) } : {}),
      windows: windows.length,
      stable,
      duration_s: round3(durationS),
      send_lag_p99_ms: mode === 'rate' ? round3(merged.sendLag.percentileMs(99)) : null,
      client_cpu_pct: Math.round(((cpu.user + cpu.system) / 1000 / wallMs) * 1000) / 10,
      server_queue_ms: server.queueMs === null ? null : round3(server.queueMs),
      server_compute_ms: server.computeMs === null ? null : round3(server.computeMs),
    };
    return result;
  } finally {
    await Promise.all(threads.map((t) => t.stop()));
  }
}

function mergeWindows(parts: WindowSample[]): WindowSample {
  const errors: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p.errors)) errors[k] = (errors[k] ?? 0) + v;
  return {
    // Threads measure the same wall interval; their clocks differ, so take the longest span.
    startMs: 0,
    endMs: Math.max(...parts.map((p) => p.endMs - p.startMs)),
    completed: parts.reduce((a, p) => a + p.completed, 0),
    errors,
    latency: LatencyHistogram.merge(parts.map((p) => p.latency)),
    sendLag: LatencyHistogram.merge(parts.map((p) => p.sendLag)),
    ...firstOf(parts),
  };
}

function firstOf(parts: WindowSample[]): { firstError?: string } {
  const first = parts.find((p) => p.firstError !== undefined)?.firstError;
  return first !== undefined ? { firstError: first } : {};
}
