// `umbra batch`: precompute predictions for every key of an input file into a prediction store,
// on the same worker pool and backends as `umbra serve`. Safe to kill at any point; rerun with --resume.
import type { Command } from 'commander';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { Umbra } from '../../core/umbra.js';
import { BatchInterrupted, BatchOptionError, DEFAULT_BATCH_SIZE, MAX_BATCH_BYTES, MAX_BATCH_SIZE, defaultRejectsPath, rejectsPathError, runBatchJob, type BatchSummary } from '../../batch/job.js';
import type { ColumnMapping } from '../../batch/features.js';
import { progressReporter } from '../../batch/progress.js';
import { parseShard, shardFromEnvironment, describeShard, type ShardSpec } from '../../batch/shard.js';
import { DEFAULT_STORE_URL, parseStoreUrl, redactUrl } from '../../batch/store.js';
import { INPUT_FORMATS, type InputFormat } from '../../batch/reader.js';
import { usableCores } from '../../cores.js';
import { readModel } from '../../onnx/model-io.js';
import { UsageError } from '../settings.js';
import { besideModelFile } from '../../repository/single-model.js';

/** Model workers and reader threads per core the process may use, at most: past that they only contend. */
const THREADS_PER_CORE = 4;
/** --intra-op-threads at most, as for `umbra serve`. */
const MAX_INTRA_OP_THREADS = 1024;
/** A version folder's name: a positive integer without leading zeros (the repository's rule). */
const VERSION = /^[1-9][0-9]{0,15}$/;

/** Ends `umbra batch` with an exit status of its own (bin/umbra.js prints the message). */
class BatchExit extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

export function registerBatch(program: Command): void {
  program.command('batch')
    .description('precompute predictions for every key of a CSV, JSON Lines or Parquet file into a prediction store (resumable, shardable)')
    .option('--model <name>', 'model to run (with --model-file: the name to store predictions under; default the file name)')
    .option('--repo <dir>', 'model repository holding the model [env UMBRA_REPO]')
    .option('--model-file <file>', 'a single .onnx file instead of --repo (served from a temporary repository as version 1)')
    .option('--model-version <v>', 'version to run (default: the newest loaded)')
    .requiredOption('--input <file>', 'CSV or JSON Lines file (optionally gzip-compressed), or Parquet')
    .option('--format <csv|jsonl|parquet>', 'input format (default: from the file name; Parquet from its first bytes)')
    .option('--key <column>', 'column holding each row\'s key (default: each row\'s row number, 1 for the first data row)')
    .option('--store <url>', `where predictions go: sqlite:PATH or postgres://user@host:port/db (default ${DEFAULT_STORE_URL}) [env UMBRA_STORE]`)
    .option('--shard <I/N>', 'run shard I of N (a deterministic partition of the keys); default JOB_COMPLETION_INDEX/JOB_COMPLETIONS when set')
    .option('--batch-size <n>', `rows per batch and per store transaction (default ${DEFAULT_BATCH_SIZE}, fewer where that is over 4 MiB of input; at most ${MAX_BATCH_SIZE} and ${MAX_BATCH_BYTES >> 20} MiB)`)
    .option('--resume', 'continue from the store\'s checkpoint of this job instead of starting over')
    .option('--run-id <id>', 'names this run, so a scheduled rerun over the same file is a new job, not a finished one (e.g. the Kubernetes Job name) [env UMBRA_BATCH_RUN]')
    .option('--mapping <json|file>', 'which columns feed which model input: JSON {"input": ["col", ...] | "first..last" | "array_col"}, inline or in a file')
    .option('--rejects <file>', 'where rejected rows go, one JSON line each; it and its folders are created with the first reject (default INPUT.rejects.jsonl in the working directory)')
    .option('--allow-empty', 'an input with no record at all is a success (storing nothing), not an error')
    .option('--workers <n>', `model worker threads (default: one per core; at most ${THREADS_PER_CORE} per core) [env UMBRA_WORKERS]`)
    .option('--parse-workers <n>', `threads reading and parsing the input, each its share of the rows (default 1; at most ${THREADS_PER_CORE} per core)`)
    .option('--intra-op-threads <n>', `threads one model run may use (default 1, at most ${MAX_INTRA_OP_THREADS})`)
    .option('--progress-interval <s>', 'seconds between progress lines when not on a terminal; 0 = after every stored batch (default 5)')
    .action(async (flags: Record<string, unknown>) => batch(flags));
}

/** An integer flag in 1..max; `why` says where the bound comes from. */
function boundedInt(value: unknown, flag: string, max: number, why = ''): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new UsageError(`expected an integer in 1..${max} for ${flag} but received ${JSON.stringify(value)}${why}`);
  return n;
}

/** Threads of one kind the job may start: a few per core at most, as more only contend for the cores. */
function threadCount(value: unknown, flag: string): number | undefined {
  const cores = usableCores();
  return boundedInt(value, flag, THREADS_PER_CORE * cores, ` (at most ${THREADS_PER_CORE} per core this process may use, ${cores} here: more only contend for them)`);
}

/** --shard, else the Indexed Job's variables: a bad value of either is a usage error. */
function shardSetting(flag: unknown): ShardSpec | undefined {
  try {
    return flag !== undefined ? parseShard(String(flag)) : shardFromEnvironment();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/**
 * --input: a regular file. The job reads it more than once (each reader thread reads it whole, a
 * resume reads it again, its size and time identify the job), which a pipe or terminal cannot give.
 */
function checkInput(input: string): void {
  const st = statSync(input, { throwIfNoEntry: false });
  // A missing or unreadable file is the job's error (exit 1), with the reason.
  if (st && !st.isFile()) {
    throw new UsageError(`--input: ${input} is not a regular file (${st.isDirectory() ? 'a folder' : 'a pipe, terminal or device'}); `
      + 'the job reads its input more than once (each reader thread, and --resume), so give a file: save a stream first, e.g. `producer > input.csv`');
  }
}

/** `--mapping`: the JSON object itself, or a file holding it. */
function readMapping(value: string): ColumnMapping {
  const inline = value.trimStart().startsWith('{');
  const where = inline ? 'the --mapping value' : value;
  let parsed: unknown;
  try {
    parsed = JSON.parse(inline ? value : readFileSync(value, 'utf8'));
  } catch (err) {
    throw new UsageError(`--mapping: cannot read ${where} as JSON: ${(err as Error).message}`);
  }
  const ok = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
    && Object.values(parsed).every((v) => typeof v === 'string' || (Array.isArray(v) && v.every((c) => typeof c === 'string')));
  if (!ok) throw new UsageError(`--mapping: expected a JSON object of input name -> column name(s) in ${where}, e.g. {"x": ["f0", "f1"]} or {"x": "f0..f63"}`);
  return parsed as ColumnMapping;
}

/** What each stage cost per stored row, when the job could measure it. */
function cpuLine(summary: BatchSummary): string | undefined {
  const cpu = summary.cpu;
  if (!cpu || summary.rowsThisRun === 0) return undefined;
  const perRow = (micros: number) => `${(micros / summary.rowsThisRun).toFixed(1)} µs`;
  if (cpu.read === undefined || cpu.dispatch === undefined || cpu.write === undefined) return `cpu per row: ${perRow(cpu.total)} in all`;
  const rest = Math.max(0, cpu.total - cpu.read - cpu.dispatch - cpu.write);
  return `cpu per row: read+parse ${perRow(cpu.read)}, dispatch ${perRow(cpu.dispatch)}, store ${perRow(cpu.write)}, `
    + `model workers and runtime ${perRow(rest)} (total ${perRow(cpu.total)})`;
}

/**
 * A repository with just the given file, for --model-file, removed by `remove` and, should the
 * process end another way, as it exits. Returns where the file is linked, for messages.
 */
function temporaryRepository(file: string, model: string, version: string): { dir: string; modelPath: string; remove: () => void } {
  if (!existsSync(file) || !statSync(file).isFile()) throw new UsageError(`--model-file: ${file} is not a file`);
  const dir = mkdtempSync(join(tmpdir(), 'umbra-batch-'));
  const remove = () => {
    process.removeListener('exit', remove);
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', remove);
  const target = join(dir, model, version);
  try {
    mkdirSync(target, { recursive: true });
    // The file, and its external data beside it (model.onnx.data), which it names relative to itself.
    const entries: [string, string][] = [[resolve(file), 'model.onnx'], ...besideModelFile(resolve(file)).map((e): [string, string] => [join(dirname(resolve(file)), e), e])];
    for (const [from, name] of entries) {
      try {
        symlinkSync(from, join(target, name));
      } catch {
        cpSync(from, join(target, name), { recursive: true });
      }
    }
  } catch (err) {
    remove();
    throw err;
  }
  return { dir, modelPath: join(target, 'model.onnx'), remove };
}

/**
 * A --model-file that did not load: a file that is not ONNX at all is the flag's mistake (exit 2,
 * as for bench-model); otherwise the load's own error. Either names the user's file, not the
 * temporary repository's link to it.
 */
function modelFileError(err: unknown, file: string, linkedAs: string): Error {
  try {
    readModel(file);
  } catch (notOnnx) {
    return new UsageError(`--model-file: ${(notOnnx as Error).message}; give the path of an .onnx file`);
  }
  if (err instanceof Error) err.message = err.message.split(linkedAs).join(file);
  return err as Error;
}

/** The first line of the reject file (a JSON reject), or undefined where it cannot be read. */
function firstReject(path: string): { line?: number; reason?: string } | undefined {
  try {
    const fd = openSync(path, 'r');
    try {
      const buffer = Buffer.alloc(64 * 1024);
      const text = buffer.subarray(0, readSync(fd, buffer, 0, buffer.length, 0)).toString('utf8');
      return JSON.parse(text.slice(0, text.indexOf('\n'))) as { line?: number; reason?: string };
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

/**
 * A job that read records but stored none (every one rejected: a wrong --mapping or --key, an
 * input that is not what the model takes) fails, so a scheduler sees it; undefined otherwise.
 */
function everyRecordRejected(summary: BatchSummary): BatchExit | undefined {
  if (summary.rowsStored > 0 || summary.rejected === 0) return undefined;
  const first = firstReject(summary.rejectsPath);
  const example = first?.reason ? `; the first (line ${first.line}): ${first.reason}` : '';
  return new BatchExit(`every record was rejected (${summary.rejected} rejected, none stored; see ${summary.rejectsPath})${example}. `
    + 'Check that --input, --key and --mapping fit the model, then run again', 1);
}

async function batch(flags: Record<string, unknown>): Promise<void> {
  const modelFile = flags.modelFile as string | undefined;
  const repoFlag = (flags.repo as string | undefined) ?? process.env.UMBRA_REPO;
  if (!modelFile && !repoFlag) throw new UsageError('give the model with --repo DIR --model NAME, or --model-file FILE.onnx');
  if (modelFile && flags.repo) throw new UsageError('--repo and --model-file exclude each other');
  const model = (flags.model as string | undefined) ?? (modelFile ? basename(modelFile).replace(/\.onnx$/i, '').replace(/[^A-Za-z0-9_.-]/g, '_') : undefined);
  if (!model) throw new UsageError('--model is required with --repo');
  if (!modelFile && (!existsSync(repoFlag!) || !statSync(repoFlag!).isDirectory())) throw new UsageError(`--repo: ${repoFlag} is not a directory`);
  const version = flags.modelVersion as string | undefined;
  if (version !== undefined && !VERSION.test(version)) {
    throw new UsageError(`expected a model version (a positive integer: 1, 2, ...) for --model-version but received ${JSON.stringify(version)}`);
  }
  const format = flags.format as InputFormat | undefined;
  if (format !== undefined && !INPUT_FORMATS.includes(format)) throw new UsageError(`expected csv, jsonl or parquet for --format but received '${String(format)}'`);
  const input = String(flags.input);
  checkInput(input);
  const shard = shardSetting(flags.shard);
  const batchSize = boundedInt(flags.batchSize, '--batch-size', MAX_BATCH_SIZE);
  const workers = threadCount(flags.workers ?? process.env.UMBRA_WORKERS, flags.workers === undefined ? 'UMBRA_WORKERS (environment)' : '--workers');
  const intraOpThreads = boundedInt(flags.intraOpThreads, '--intra-op-threads', MAX_INTRA_OP_THREADS);
  const parseWorkers = threadCount(flags.parseWorkers, '--parse-workers');
  const interval = flags.progressInterval === undefined ? 5 : Number(flags.progressInterval);
  if (!Number.isFinite(interval) || interval < 0) throw new UsageError(`expected seconds >= 0 for --progress-interval but received ${JSON.stringify(flags.progressInterval)}`);
  const mapping = flags.mapping ? readMapping(String(flags.mapping)) : undefined;
  const storeUrl = (flags.store as string | undefined) ?? process.env.UMBRA_STORE ?? DEFAULT_STORE_URL;
  const write = (line: string) => process.stdout.write(`${line}\n`);

  // A malformed URL fails before the model loads; the store itself is opened (and created) only
  // once the job has checked the model and the input's columns.
  parseStoreUrl(storeUrl);
  const rejectsPath = flags.rejects !== undefined ? String(flags.rejects) : undefined;
  const clash = rejectsPathError(rejectsPath ?? defaultRejectsPath(input, shard), rejectsPath !== undefined, input, shard, storeUrl);
  if (clash) throw new UsageError(clash);
  const storeDescription = redactUrl(storeUrl);

  // SIGINT or SIGTERM stops the job (each commit is whole, so what is stored stays stored) and
  // the process ends as the signal would have ended it; a second one ends it at once.
  const interrupted = new AbortController();
  let temporary: ReturnType<typeof temporaryRepository> | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (!interrupted.signal.aborted) {
      interrupted.abort(signal);
      return;
    }
    temporary?.remove();
    process.exit(128 + constants.signals[signal]);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let umbra: Umbra | undefined;
  let reporter: ReturnType<typeof progressReporter> | undefined;
  try {
    temporary = modelFile ? temporaryRepository(modelFile, model, version ?? '1') : undefined;
    reporter = progressReporter({ tty: process.stderr.isTTY === true, intervalSeconds: interval, write });
    const opts: Parameters<typeof Umbra.open>[0] = { repository: temporary?.dir ?? repoFlag!, loadAll: false };
    if (workers) opts.workers = workers;
    if (intraOpThreads) opts.intraOpThreads = intraOpThreads;
    try {
      umbra = await Umbra.open(opts);
      await umbra.manager.load(model);
    } catch (err) {
      throw temporary ? modelFileError(err, modelFile!, temporary.modelPath) : err;
    }
    const job: Parameters<typeof runBatchJob>[0] = {
      umbra, model, input, storeUrl,
      resume: flags.resume === true,
      allowEmpty: flags.allowEmpty === true,
      signal: interrupted.signal,
      onStart: (info) => {
        write(`umbra batch: ${model} v${info.version}, input ${input}, store ${storeDescription}, shard ${describeShard(shard)}, `
          + `${info.batchSize} rows per batch on ${umbra!.pool.size} workers${info.resumedFrom > 0 ? `, resuming after record ${info.resumedFrom}` : ''}`);
        write(`columns: ${info.plan}`);
        if (info.rowRuns) write(`the model does not batch, so rows run one at a time (stored ${info.batchSize} per transaction): ${info.rowRuns}`);
      },
      onProgress: (p) => reporter!.update(p),
    };
    if (flags.key !== undefined) job.keyColumn = String(flags.key);
    if (version) job.version = version;
    if (format) job.format = format;
    if (shard) job.shard = shard;
    if (batchSize) job.batchSize = batchSize;
    if (parseWorkers !== undefined) job.parseWorkers = parseWorkers;
    if (mapping) job.mapping = mapping;
    if (rejectsPath !== undefined) job.rejectsPath = rejectsPath;
    const runId = (flags.runId as string | undefined) ?? process.env.UMBRA_BATCH_RUN;
    if (runId) job.runId = runId;
    let summary: BatchSummary;
    try {
      summary = await runBatchJob(job);
    } catch (err) {
      if (err instanceof BatchInterrupted) throw new BatchExit(err.message, 128 + constants.signals[err.reason as NodeJS.Signals]);
      if (err instanceof BatchOptionError) throw new UsageError(err.message);
      throw err;
    }
    reporter.finish(summary);
    const cpu = cpuLine(summary);
    if (cpu) write(cpu);
    const failed = everyRecordRejected(summary);
    if (failed) throw failed;
  } finally {
    try {
      reporter?.stop();
      await umbra?.close();
    } finally {
      temporary?.remove();
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    }
  }
}
