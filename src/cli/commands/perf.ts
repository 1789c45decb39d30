// `umbra perf`: load generator for any Open Inference Protocol server (Umbra, Triton, KServe,
// MLServer). Closed loop (--concurrency) or open loop (--request-rate), windows until stable.
import type { Command } from 'commander';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseShapes, PROTOCOLS, FlagError, type Protocol } from '../../perf/payload.js';
import { parseSweep } from '../../perf/sweep.js';
import { runPerf, type PerfOptions } from '../../perf/runner.js';
import { toCsv, toJson, toTable } from '../../perf/report.js';
import { latencyThroughputSvg } from '../../perf/plot.js';
import { UsageError } from '../settings.js';

export function registerPerf(program: Command): void {
  program.command('perf')
    .description('measure throughput and latency of an Open Inference Protocol server (like perf_analyzer)')
    .requiredOption('--url <url>', 'server base URL, e.g. http://127.0.0.1:8000; with --protocol grpc or grpc-stream its gRPC address, e.g. 127.0.0.1:8001')
    .requiredOption('-m, --model <name>', 'model to call')
    .option('--model-version <v>', 'model version (default: the server picks)')
    .option('--concurrency <sweep>', 'closed loop: clients, e.g. 8, 1:64:x2, 1,4,16 (default 1)')
    .option('--request-rate <sweep>', 'open loop: requests/s, e.g. 500, 100:2000:x2; latency counts from the scheduled send')
    .option('--distribution <d>', 'open-loop arrivals: constant or poisson', 'constant')
    .option('--protocol <p>', `transport: ${PROTOCOLS.join(', ')} (grpc: unary ModelInfer, grpc-stream: ModelStreamInfer, both with raw tensors)`, 'http')
    .option('--input-data <src>', '"random" (seeded, from model metadata) or a JSON file', 'random')
    .option('-b, --batch-size <n>', 'rows per request (dynamic first dim)', '1')
    .option('--shape <name:dims>', 'the shape to send for an input with free dims, without the batch dim (e.g. input_ids:128) or whole; repeat for each input (default: 1 in each free dim)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--duration <s>', 'measure one window of S seconds instead of windows until stable')
    .option('--windows <n>', 'most measurement windows per level', '10')
    .option('--window-ms <ms>', 'length of one measurement window', '1000')
    .option('--stability <pct>', 'stable when the last 3 windows agree within this (e.g. 10%)', '10%')
    .option('--warmup-ms <ms>', 'load before measuring each level (excluded)', '1000')
    .option('--percentile <p>', 'latency percentile for stability and --latency-threshold (default mean / p99)')
    .option('--latency-threshold <ms>', 'stop the sweep after a level whose latency exceeds this')
    .option('--threads <n>', 'load generator threads (more when one core cannot keep up)', '1')
    .option('--timeout-ms <ms>', 'a request unanswered this long counts as a "timeout" error', '30000')
    .option('--ws-connections <n>', 'WebSocket or gRPC (HTTP/2) connections shared by the clients (default 1 for ws, one per 16 clients for grpc)')
    .option('--shared-memory <mode>', 'none, or system: inputs written once into a registered /dev/shm region and outputs taken into another, as perf_analyzer does (the server on this host, with --shared-memory on)', 'none')
    .option('--output-shared-memory-size <bytes>', 'with --shared-memory system: bytes of each output\'s slot', '102400')
    .option('--seed <n>', 'seed for random inputs and Poisson arrivals', '1')
    .option('--json', 'print one JSON array (an object per level) on standard output')
    .option('--csv <file>', 'also write one CSV row per level to FILE')
    .option('--plot <file>', 'also write an SVG plot of latency vs throughput to FILE')
    .action(async (flags: Record<string, string | boolean | undefined>) => perf(flags));
}

function numberFlag(flags: Record<string, unknown>, key: string, flag: string, integer: boolean): number | undefined {
  const raw = flags[key];
  if (raw === undefined) return undefined;
  const n = Number(String(raw).replace(/%$/, ''));
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isSafeInteger(n))) {
    throw new UsageError(`${flag}: expected a positive ${integer ? 'integer' : 'number'} but received ${JSON.stringify(raw)}`);
  }
  return n;
}

async function perf(flags: Record<string, string | boolean | undefined>): Promise<void> {
  const protocol = String(flags['protocol']) as Protocol;
  if (!PROTOCOLS.includes(protocol)) throw new UsageError(`--protocol: expected one of ${PROTOCOLS.join(', ')} but received ${JSON.stringify(protocol)}`);
  const distribution = String(flags['distribution']);
  if (distribution !== 'constant' && distribution !== 'poisson') throw new UsageError(`--distribution: expected constant or poisson but received ${JSON.stringify(distribution)}`);
  if (flags['concurrency'] !== undefined && flags['requestRate'] !== undefined) throw new UsageError('give --concurrency or --request-rate, not both');
  const options: PerfOptions = {
    url: String(flags['url']),
    model: String(flags['model']),
    protocol,
    distribution,
    inputData: String(flags['inputData']),
    batchSize: numberFlag(flags, 'batchSize', '--batch-size', true)!,
    maxWindows: numberFlag(flags, 'windows', '--windows', true)!,
    windowMs: numberFlag(flags, 'windowMs', '--window-ms', false)!,
    stabilityPct: numberFlag(flags, 'stability', '--stability', false)!,
    warmupMs: Number(flags['warmupMs']),
    threads: numberFlag(flags, 'threads', '--threads', true)!,
    timeoutMs: numberFlag(flags, 'timeoutMs', '--timeout-ms', false)!,
    wsConnections: numberFlag(flags, 'wsConnections', '--ws-connections', true),
    seed: numberFlag(flags, 'seed', '--seed', true)!,
    log: (line) => process.stderr.write(`${line}\n`),
  };
  const sharedMemory = String(flags['sharedMemory']);
  if (sharedMemory !== 'none' && sharedMemory !== 'system') throw new UsageError(`--shared-memory: expected none or system but received ${JSON.stringify(sharedMemory)}`);
  if (sharedMemory === 'system') {
    options.sharedMemory = 'system';
    options.outputSharedMemoryBytes = numberFlag(flags, 'outputSharedMemorySize', '--output-shared-memory-size', true)!;
  }
  const shapes = flags['shape'] as unknown as string[];
  if (shapes.length > 0) {
    try {
      options.shapes = parseShapes(shapes);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  if (flags['modelVersion'] !== undefined) options.version = String(flags['modelVersion']);
  try {
    if (flags['requestRate'] !== undefined) options.requestRate = parseSweep(String(flags['requestRate']), '--request-rate', { integer: false });
    else options.concurrency = parseSweep(String(flags['concurrency'] ?? '1'), '--concurrency', { integer: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const duration = numberFlag(flags, 'duration', '--duration', false);
  if (duration !== undefined) options.durationS = duration;
  const percentile = numberFlag(flags, 'percentile', '--percentile', false);
  if (percentile !== undefined) {
    if (!(percentile > 0 && percentile < 100)) throw new UsageError(`--percentile: expected a percentile between 0 and 100 (e.g. 95) but received ${JSON.stringify(flags['percentile'])}`);
    options.percentile = percentile;
  }
  const threshold = numberFlag(flags, 'latencyThreshold', '--latency-threshold', false);
  if (threshold !== undefined) options.latencyThresholdMs = threshold;
  if (!(options.warmupMs! >= 0)) throw new UsageError(`--warmup-ms: expected a non-negative number but received ${JSON.stringify(flags['warmupMs'])}`);

  const inputData = String(flags['inputData']);
  if (inputData !== 'random' && !existsSync(inputData)) throw new UsageError(`--input-data: ${inputData} does not exist; give "random" or a JSON file of requests`);
  // Written only once the sweep is done: a path that cannot be written must not cost the run first.
  for (const [key, flag] of [['csv', '--csv'], ['plot', '--plot']] as const) {
    const file = flags[key];
    if (typeof file !== 'string') continue;
    const folder = dirname(resolve(file));
    if (!existsSync(folder)) throw new UsageError(`${flag}: the folder ${folder} does not exist; create it first`);
    if (existsSync(file) && statSync(file).isDirectory()) throw new UsageError(`${flag}: ${file} is a folder; give the file to write`);
  }

  const json = flags['json'] === true;
  if (!json) {
    options.onLevel = (r) => process.stderr.write(`${r.concurrency !== undefined ? `concurrency ${r.concurrency}` : `rate ${r.request_rate}/s`}: ${r.throughput.toFixed(1)} req/s, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms\n`);
  }
  let results: Awaited<ReturnType<typeof runPerf>>;
  try {
    results = await runPerf(options);
  } catch (err) {
    // --shape and the --input-data file are only checked against the model once perf has its
    // metadata: still usage errors.
    throw err instanceof FlagError ? new UsageError(err.message) : err;
  }
  if (json) process.stdout.write(toJson(results));
  else process.stdout.write(toTable(results));
  if (typeof flags['csv'] === 'string') writeFileSync(flags['csv'], toCsv(results));
  if (typeof flags['plot'] === 'string') writeFileSync(flags['plot'], latencyThroughputSvg([{ label: `${options.model} (${protocol})`, results }], `umbra perf: ${options.model} at ${options.url}`));
  // What the server said when it refused, as perf_analyzer shows it; a level where every request
  // failed measured nothing, so the run fails (a CI gate must not pass on a broken setup).
  const label = (r: (typeof results)[number]) => (r.concurrency !== undefined ? `concurrency ${r.concurrency}` : `rate ${r.request_rate}/s`);
  for (const r of results) if (r.errors > 0 && r.first_error !== undefined) process.stderr.write(`${label(r)}: ${r.errors} of ${r.errors + r.completed} requests failed; the first: ${r.first_error}\n`);
  const failed = results.filter((r) => r.completed === 0 && r.errors > 0);
  if (failed.length > 0) {
    process.stderr.write(`umbra perf: every request failed at ${failed.map(label).join(', ')}: nothing was measured\n`);
    process.exitCode = 1;
  }
  // No answer and no error within the measurement (a first request slower than --duration): the
  // level's 0 req/s measured nothing either, and must not pass a gate as a result.
  const unanswered = results.filter((r) => r.completed === 0 && r.errors === 0);
  if (unanswered.length > 0) {
    process.stderr.write(`umbra perf: no request was answered within the measurement at ${unanswered.map(label).join(', ')}: nothing was measured; measure longer (--duration, --window-ms) or warm the server up first (--warmup-ms)\n`);
    process.exitCode = 1;
  }
}
