// The batch job: three stages that overlap, each on its own thread, with bounded queues between
// them. Reader threads read and parse the input into segments of rows; this thread forms batches
// from them in input order and keeps the model workers busy (two batches per worker, one running
// and one waiting on it); the writer thread stores each batch, in input order, in one transaction
// with the checkpoint that says how far the input is done. When the writer falls behind, no new
// batch is started; when no batch can start, the readers are not allowed further, and the file
// stream pauses: memory stays flat whatever the input size.
import { createHash } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { ModelRunError, UmbraError } from '../errors.js';
import { concatTensors, splitTensor } from '../protocol/tensor.js';
import { runInHalves } from '../execution/halving.js';
import { bytesPerElement } from '../protocol/datatype.js';
import type { Umbra } from '../core/umbra.js';
import type { ModelVersion } from '../repository/model-version.js';
import type { WireTensor } from '../workers/messages.js';
import { BatchAssembly, raggedOffsets } from './assembly.js';
import type { PlanSummary } from './messages.js';
import { rejectsPathProblem, type Reject } from './rejects.js';
import type { ColumnMapping } from './features.js';
import { ROW_REJECTED, ROW_VALID } from './parse.js';
import { ReadStage } from './read-stage.js';
import { inspectInput, type InputFormat } from './reader.js';
import { describeShard, type ShardSpec } from './shard.js';
import { Signal } from './signal.js';
import { keyRulesFor, openStore, parseStoreUrl, type Checkpoint, type PredictionStore } from './store.js';
import { threadCpuMicros } from '../thread-cpu.js';
import { WriteStage } from './write-stage.js';

/** Rows per batch unless --batch-size says otherwise, and fewer for wide rows (see defaultBatchSize). */
export const DEFAULT_BATCH_SIZE = 1024;
/** The input bytes a default batch stays under. */
const DEFAULT_BATCH_BYTES = 4 << 20;
/**
 * The most rows a batch may have (--batch-size), and the most input bytes: per-batch costs are
 * already a small part of a row's at 1024 rows, and a batch is allocated whole, with about
 * 2 per worker and 4 for the writer in memory at once. Past these, a batch only costs memory
 * (a batch of 100,000,000 digits rows would be 25.6 GB of input).
 */
export const MAX_BATCH_SIZE = 1 << 20;
export const MAX_BATCH_BYTES = 256 << 20;

/**
 * Rows per batch by default: 1024, where per-batch costs (a worker task, two thread hand-overs, a
 * commit) are a small part of a row's cost (measured against 256 on the 64-1024-1024-10 MLP: the
 * job's thread spends half as much per row, bench/RESULTS-batch.md), but never more than 4 MiB of
 * input per batch, so models with wide rows (images) keep memory in bounds: 2 batches per worker
 * and a few more queued are in memory at once.
 */
export function defaultBatchSize(rowBytes: number): number {
  return Math.max(1, Math.min(DEFAULT_BATCH_SIZE, Math.floor(DEFAULT_BATCH_BYTES / Math.max(1, rowBytes))));
}

export interface BatchJobOptions {
  umbra: Umbra;
  model: string;
  /** Default: the newest loaded version. */
  version?: string;
  input: string;
  format?: InputFormat;
  /** The column holding each row's key; without one, each row's key is its row number (1 for the first data row). */
  keyColumn?: string;
  /** An open store, or `storeUrl`: opened (its folder created) only once the input and model are known to fit. */
  store?: PredictionStore;
  storeUrl?: string;
  shard?: ShardSpec;
  /**
   * Rows per batch (and per store transaction); default 1024, fewer where that would be over
   * 4 MiB of input. A resume keeps the batch size it started with.
   */
  batchSize?: number;
  /** Continue from the store's checkpoint instead of starting over. */
  resume?: boolean;
  /** Tells scheduled runs over the same file apart (e.g. the Kubernetes Job name); part of the job id. */
  runId?: string;
  mapping?: ColumnMapping;
  /** Default: `<input name>[.shard-I-of-N].rejects.jsonl` in the working directory; its folders are created. */
  rejectsPath?: string;
  /** Reader threads; each reads the whole input and parses its share of it (default 1). */
  parseWorkers?: number;
  /**
   * An input that holds no record at all (empty, or only a header) fails the job before the store
   * is opened, unless this is set: an extract that came out empty is then no silent success.
   */
  allowEmpty?: boolean;
  /** Aborting it stops the job (BatchInterrupted); what is stored stays stored, and a resume goes on from there. */
  signal?: AbortSignal;
  /** Batches computing at once; default two per model worker (one running, one waiting on it). */
  window?: number;
  /** Called once the input's columns are mapped and the store is open, and after every stored batch. */
  /** `rowRuns`: why the model runs one row at a time (it does not batch), where it does. */
  onStart?(info: { job: string; version: string; plan: string; resumedFrom: number; batchSize: number; rowRuns?: string }): void;
  onProgress?(progress: BatchProgress): void;
}

export interface BatchProgress {
  rowsStored: number;
  rejected: number;
  /** Input records consumed so far (including skipped ones and, on resume, those done before). */
  records: number;
  bytesRead: number;
  totalBytes: number;
  elapsedMs: number;
  /** Rows stored by this run (not counting the part done before a resume). */
  rowsThisRun: number;
}

/**
 * CPU time of this run by stage, in µs: the reader threads (reading, splitting and parsing),
 * this thread (forming batches, handing them to the workers and the writer), the writer thread
 * (formatting rows, writing rejects, storing), and the whole process (the model workers, and the
 * runtime's own threads: garbage collection, file reads, gunzip). Stages are undefined where a
 * thread's CPU time cannot be read (outside Linux).
 */
export interface StageCpu {
  read: number | undefined;
  dispatch: number | undefined;
  write: number | undefined;
  total: number;
}

export interface BatchSummary extends BatchProgress {
  job: string;
  model: string;
  version: string;
  shard: string;
  /** Records of other shards, skipped by this run. */
  skipped: number;
  resumedFrom: number;
  /** The store already held a finished checkpoint for this job: nothing was run. */
  alreadyFinished: boolean;
  /** The input holds no record at all (only with `allowEmpty`). */
  empty: boolean;
  rejectsPath: string;
  rowsPerSecond: number;
  cpu: StageCpu | undefined;
}

/**
 * Stable per (model, version, input file and its size and mtime, shard, run id): the checkpoint a
 * resume continues from. A changed input file is a new job, never a resume into the wrong records.
 */
export function jobId(model: string, version: string, input: string, shard: ShardSpec | undefined, runId = ''): string {
  let fingerprint = '';
  try {
    const st = statSync(input);
    fingerprint = `${st.size}:${Math.floor(st.mtimeMs)}`;
  } catch {
    // Unreadable input: openInput reports it with the reason.
  }
  return createHash('sha256').update(`${model}\n${version}\n${resolve(input)}\n${fingerprint}\n${describeShard(shard)}\n${runId}`).digest('hex').slice(0, 32);
}

/** A job option out of its range, found only once the model or input is known: named by its flag. */
export class BatchOptionError extends UmbraError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/**
 * The job was stopped (its AbortSignal): what is stored stays stored, with its checkpoint, as
 * after any failure.
 */
export class BatchInterrupted extends Error {
  constructor(readonly reason: string, options?: { cause: unknown }) {
    super(`interrupted (${reason}); what is stored stays stored: rerun with --resume to continue after the last stored batch`, options);
    this.name = 'BatchInterrupted';
  }
}

/**
 * Why the job cannot write its rejects to `rejectsPath` (see rejectsPathProblem), as a message
 * naming the flag and the fix; undefined where it can. `given`: the path came from --rejects.
 */
export function rejectsPathError(rejectsPath: string, given: boolean, input: string, shard: ShardSpec | undefined, storeUrl: string | undefined): string | undefined {
  const target = storeUrl === undefined ? undefined : parseStoreUrl(storeUrl);
  const problem = rejectsPathProblem(rejectsPath, input, target?.kind === 'sqlite' ? target.path : undefined);
  if (problem === undefined) return undefined;
  return given
    ? `--rejects: ${problem}. Give the reject file a path of its own, or leave --rejects out (default ${defaultRejectsPath(input, shard)} in the working directory)`
    : `the default reject file ${problem}. Give the reject file a path of its own with --rejects`;
}

export function defaultRejectsPath(input: string, shard: ShardSpec | undefined): string {
  const name = basename(input).replace(/\.gz$/i, '');
  return shard && shard.count > 1 ? `${name}.shard-${shard.index}-of-${shard.count}.rejects.jsonl` : `${name}.rejects.jsonl`;
}

/** Batches handed to the writer and not yet stored, beyond which no new batch starts. */
const WRITE_AHEAD = 4;

export async function runBatchJob(options: BatchJobOptions): Promise<BatchSummary> {
  const started = performance.now();
  const processCpu = process.cpuUsage();
  const dispatchCpu = threadCpuMicros();
  const { umbra, shard } = options;
  const mv = umbra.manager.get(options.model, options.version);
  const job = jobId(mv.name, mv.version, options.input, shard, options.runId);
  const rejectsPath = options.rejectsPath ?? defaultRejectsPath(options.input, shard);
  if (options.batchSize !== undefined) positive(options.batchSize, '--batch-size', MAX_BATCH_SIZE);
  positive(options.parseWorkers ?? 1, '--parse-workers');
  const window = options.window ?? 2 * umbra.pool.size;
  positive(window, 'window');
  if (!options.store && options.storeUrl === undefined) throw new UmbraError('INVALID_ARGUMENT', 'a batch job needs a store or a store URL');
  // The reject file is written to as the job goes: it must not be a file the job reads or stores into.
  const clash = rejectsPathError(rejectsPath, options.rejectsPath !== undefined, options.input, shard, options.store?.url ?? options.storeUrl);
  if (clash) throw new BatchOptionError(clash);
  const signal = options.signal;
  const base = { job, model: mv.name, version: mv.version, shard: describeShard(shard), rejectsPath, skipped: 0, empty: false };
  // An unreadable input or an unknown format fails here, before any thread starts.
  const kind = await inspectInput(options.input, options.format);
  // Parquet's cost is decoding its pages, which every reader would do for the whole file: one reads.
  const readers = kind.format === 'parquet' ? 1 : options.parseWorkers ?? 1;

  const setup: ConstructorParameters<typeof ReadStage>[0] = { input: options.input, signature: mv.signature, keyColumn: options.keyColumn };
  if (options.format) setup.format = options.format;
  if (options.mapping) setup.mapping = options.mapping;
  if (shard) setup.shard = shard;
  // Rows whose keys the store cannot hold are rejects, found as they are parsed: in the store,
  // such a row would fail its batch, and so every resume of the job.
  const keyRules = options.store ? options.store.keyRules : keyRulesFor(options.storeUrl!);
  if (keyRules) setup.keyRules = keyRules;
  const reader = new ReadStage(setup, readers, 2 * readers + 2);
  let store = options.store;
  let rowsThisRun = 0;
  const changed = new Signal();
  let stored: (next: Checkpoint) => void = () => undefined;
  // The writer thread starts beside the readers; it opens the store only once told to.
  const writer = new WriteStage(store ? store.url : options.storeUrl, (next) => stored(next), () => changed.notify());
  // An interrupt fails every wait of the job at once, as a failure of a stage would.
  const interrupt = () => {
    const err = new BatchInterrupted(String(signal!.reason));
    reader.abort(err);
    writer.abort(err);
  };
  signal?.addEventListener('abort', interrupt, { once: true });
  let pipeline: Pipeline | undefined;
  try {
    // Aborted before the listener was there.
    if (signal?.aborted) throw new BatchInterrupted(String(signal.reason));
    // Nothing is created (store, reject file, folders) until the input's columns fit the model.
    const plan = await reader.plan();
    if (reader.empty && !options.allowEmpty) {
      throw new UmbraError('INVALID_ARGUMENT', `the input ${options.input} holds no record (no data row: the file is empty, or holds only a header or blank lines): `
        + 'nothing to predict, which usually means the extract that wrote it failed. Pass --allow-empty where an empty input is expected (the job then succeeds, storing nothing)');
    }
    const rowBytes = (plan?.inputs ?? []).reduce((sum, p) => sum + p.rowElements * bytesPerElement(p.datatype), 0);
    if (options.batchSize !== undefined && options.batchSize * rowBytes > MAX_BATCH_BYTES) {
      throw new BatchOptionError(`expected at most ${Math.floor(MAX_BATCH_BYTES / rowBytes)} for --batch-size with this model but received ${options.batchSize}: `
        + `a row's input is ${rowBytes} bytes, and a batch may hold at most ${MAX_BATCH_BYTES >> 20} MiB of input (leave --batch-size out for batches of at most 4 MiB)`);
    }
    store ??= await openStoreForWriting(options.storeUrl!);
    const previous = options.resume ? await store.checkpoint(job) : undefined;
    const resumedFrom = previous?.recordsDone ?? 0;
    if (previous?.finished) {
      return {
        ...base, resumedFrom, alreadyFinished: true, rowsStored: previous.rowsStored, rejected: previous.rejected, records: previous.recordsDone,
        bytesRead: 0, totalBytes: 0, elapsedMs: performance.now() - started, rowsThisRun: 0, rowsPerSecond: 0, cpu: undefined,
      };
    }
    const batchSize = previous?.batchSize ?? options.batchSize ?? defaultBatchSize(rowBytes);
    const checkpoint: Checkpoint = {
      job, model: mv.name, version: mv.version, input: resolve(options.input), shard: describeShard(shard), batchSize,
      recordsDone: resumedFrom, rejectBytes: previous?.rejectBytes ?? 0,
      rowsStored: previous?.rowsStored ?? 0, rejected: previous?.rejected ?? 0, finished: false,
    };
    const rowRuns = rowRunsReason(mv);
    const description = plan?.description ?? (reader.empty ? 'none: the input holds no record' : 'no readable record: every record is rejected');
    options.onStart?.({ job, version: mv.version, plan: description, resumedFrom, batchSize, ...(rowRuns ? { rowRuns } : {}) });

    const progress = (): BatchProgress => ({
      rowsStored: checkpoint.rowsStored, rejected: checkpoint.rejected, records: checkpoint.recordsDone,
      bytesRead: reader.bytesRead, totalBytes: reader.totalBytes, elapsedMs: performance.now() - started, rowsThisRun,
    });
    stored = (next: Checkpoint) => {
      rowsThisRun += next.rowsStored - checkpoint.rowsStored;
      Object.assign(checkpoint, next);
      options.onProgress?.(progress());
    };
    writer.open({ model: mv.name, version: mv.version, rejectsPath, checkpoint: { ...checkpoint } }, store);
    pipeline = new Pipeline(umbra, mv, writer, changed, window, rowRuns !== undefined);
    reader.start(resumedFrom, batchSize);

    const skipped = await formBatches(reader, pipeline, plan?.inputs ?? [], batchSize, resumedFrom);
    const writeCpu = await writer.close();
    const readCpu = await reader.cpuMicros();
    const used = process.cpuUsage(processCpu);
    const dispatchEnd = threadCpuMicros();
    const cpu: StageCpu = {
      read: readCpu,
      dispatch: dispatchCpu === undefined || dispatchEnd === undefined ? undefined : dispatchEnd - dispatchCpu,
      write: writer.threaded ? writeCpu : undefined,
      total: used.user + used.system,
    };
    const p = progress();
    return { ...base, ...p, resumedFrom, skipped, alreadyFinished: false, empty: reader.empty, rowsPerSecond: p.rowsThisRun / Math.max(1e-9, p.elapsedMs / 1000), cpu };
  } catch (err) {
    // Whichever wait the interrupt reached first, the job says it was interrupted.
    if (signal?.aborted) throw new BatchInterrupted(String(signal.reason), { cause: err });
    throw err;
  } finally {
    signal?.removeEventListener('abort', interrupt);
    // After a failure: what is stored stays stored, and a resume goes on from there. Batches
    // still computing are waited for (at most the window's), so that closing Umbra afterwards
    // finds its model workers idle rather than ending them inside a run.
    await pipeline?.settled();
    await Promise.all([reader.close(), writer.stop()]);
    if (!options.store) await store?.close();
  }
}

/**
 * Forms batches of `batchSize` rows from the readers' segments, strictly in input order, and hands
 * each to the pipeline; the last (possibly empty) one is final. Returns how many records were
 * other shards'.
 */
async function formBatches(reader: ReadStage, pipeline: Pipeline, inputs: PlanSummary['inputs'], batchSize: number, resumedFrom: number): Promise<number> {
  let batch = new BatchAssembly(inputs, batchSize, resumedFrom);
  let skipped = 0;
  for (let segment = await reader.next(); segment; segment = await reader.next()) {
    // A segment whose rows fill an empty batch exactly goes to the workers as the reader parsed it.
    const adopted = !batch.ragged && batch.keys.length === 0 && segment.keys.length === batchSize && batch.adopt(segment.data, batchSize);
    const offsets = segment.lengths && raggedOffsets(segment.lengths);
    let first = 0;
    let valid = 0;
    let rejectAt = 0;
    for (let i = 0; i < segment.status.length; i++) {
      const status = segment.status[i];
      if (status === ROW_VALID) {
        batch.lines.push(segment.lines[valid]!);
        batch.keys.push(segment.keys[valid++]!);
      } else if (status === ROW_REJECTED) {
        batch.rejects.push(segment.rejects[rejectAt++]!);
      } else {
        skipped += 1;
      }
      batch.recordsDone = segment.firstRow + i;
      if (batch.keys.length === batchSize) {
        // A segment's valid rows lie one after another in its data: one copy per run.
        if (!adopted) batch.addRows(segment.data, first, valid - first, offsets);
        first = valid;
        await pipeline.dispatch(batch);
        batch = new BatchAssembly(inputs, batchSize, batch.recordsDone);
      }
    }
    if (!adopted) batch.addRows(segment.data, first, valid - first, offsets);
    reader.release(segment.index);
  }
  batch.final = true;
  batch.recordsDone = Math.max(batch.recordsDone, reader.recordCount);
  await pipeline.dispatch(batch);
  await pipeline.drain();
  return skipped;
}

function positive(value: number, what: string, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new UmbraError('INVALID_ARGUMENT', max === Number.MAX_SAFE_INTEGER ? `expected a positive integer for ${what} but received ${value}` : `expected an integer in 1..${max} for ${what} but received ${value}`);
  }
}

/** Opens the store a job writes to, creating the folder of a SQLite file first. */
async function openStoreForWriting(url: string): Promise<PredictionStore> {
  const target = parseStoreUrl(url);
  if (target.kind === 'sqlite') mkdirSync(dirname(resolve(target.path)), { recursive: true });
  return openStore(url);
}

/**
 * Computing and handing over, in input order: each batch runs on the worker pool as soon as it
 * is formed (at most `window` at once), and goes to the writer once it and every batch before it
 * are computed. No batch starts while `window` are computing or WRITE_AHEAD wait for the writer.
 */
class Pipeline {
  private computing = 0;
  /** The runs under way (at most `window`). */
  private readonly running = new Set<Promise<unknown>>();
  private seq = 0;
  private handover: Promise<void> = Promise.resolve();
  private failure: Error | undefined;

  constructor(
    private readonly umbra: Umbra,
    private readonly mv: ModelVersion,
    private readonly writer: WriteStage,
    private readonly changed: Signal,
    private readonly window: number,
    private readonly rowRuns: boolean,
  ) {}

  async dispatch(batch: BatchAssembly): Promise<void> {
    await this.changed.until(() => this.computing < this.window && this.writer.backlog < WRITE_AHEAD, () => this.failure ?? this.writer.error);
    this.computing += 1;
    const seq = this.seq++;
    const running = batch.keys.length > 0 ? inferRows(this.umbra, this.mv, batch, this.rowRuns) : Promise.resolve<RowsRun>({ keys: [], outputs: [], refused: [] });
    const settled = running.then(() => undefined, () => undefined);
    this.running.add(settled);
    void settled.then(() => this.running.delete(settled));
    this.handover = this.handover.then(async () => {
      const { keys, outputs, rowOutputs, refused } = await running;
      this.computing -= 1;
      const rejects = refused.length === 0 ? batch.rejects : [...batch.rejects, ...refused].sort((a, b) => a.line - b.line);
      this.writer.submit({ seq, keys, outputs, ...(rowOutputs ? { rowOutputs } : {}), rejects, recordsDone: batch.recordsDone, final: batch.final });
      this.changed.notify();
    });
    this.handover.catch((err: unknown) => {
      this.failure ??= err as Error;
      this.changed.notify();
    });
  }

  /** Resolves once no run is under way, whatever their outcome (after a failure). */
  async settled(): Promise<void> {
    await Promise.all([...this.running]);
  }

  /** Resolves once every batch is computed and stored. */
  async drain(): Promise<void> {
    await this.handover;
    await this.changed.until(() => this.writer.backlog === 0, () => this.failure ?? this.writer.error);
  }
}

/**
 * One batch is one run on one worker (the server's workers and sessions), past the online
 * batcher: the job already forms full batches (see Umbra.runBatch).
 */
async function infer(umbra: Umbra, mv: ModelVersion, tensors: WireTensor[]): Promise<WireTensor[]> {
  return (await umbra.runBatch(mv, tensors)).outputs;
}

interface RowsRun {
  keys: string[];
  outputs: WireTensor[];
  /** Each key's own outputs, where the rows ran one at a time (BatchToStore.rowOutputs). */
  rowOutputs?: WireTensor[][];
  /** Rows the model refused: rejects, as the parse stage's are. */
  refused: Reject[];
}

/**
 * A batch's rows through the model. A row the model refuses (a token id past the embedding
 * table) would fail its whole batch, every run of the job, and so the job: the batch is halved
 * down to the rows it refuses, which become rejects with the model's reason, and the rest is
 * stored. A batch none of whose rows runs fails the job as before: the model, not the data, is
 * then the likelier fault.
 */
async function inferRows(umbra: Umbra, mv: ModelVersion, batch: BatchAssembly, rowRuns: boolean): Promise<RowsRun> {
  if (batch.ragged) return inferGroups(umbra, mv, batch, rowRuns);
  const tensors = batch.tensors();
  if (rowRuns) return inferRowByRow(umbra, mv, batch, tensors);
  try {
    const outputs = await infer(umbra, mv, tensors);
    // An output without a row per input row (hits the model counted, a reduction over the rows):
    // whose rows are whose is unknown, so this batch runs again row by row.
    if (!answersFollowRows(outputs, batch.keys.length)) return inferRowByRow(umbra, mv, batch, tensors);
    return { keys: batch.keys, outputs, refused: [] };
  } catch (err) {
    if (!(err instanceof ModelRunError)) throw err;
    // Each row's result is the run of the part it was in; the parts that ran are stored in order.
    const n = batch.keys.length;
    const rows = Array.from({ length: n }, (_, i) => i);
    const done = await runInHalves(rows, async (part) => {
      const from = part[0]!;
      const slice = tensors.map((t) => splitTensor(t, [from, part.length, n - from - part.length])[1]!);
      const ran = { outputs: await infer(umbra, mv, slice) };
      return part.map(() => ran);
    });
    const ran = [...new Set(done.filter((d): d is { outputs: WireTensor[] } => !(d instanceof ModelRunError)))];
    if (ran.length === 0) throw err;
    if (ran.some((p) => !answersFollowRows(p.outputs, done.filter((d) => d === p).length))) return inferRowByRow(umbra, mv, batch, tensors);
    const outputs = ran[0]!.outputs.map((_, j) => (ran.length === 1 ? ran[0]!.outputs[j]! : concatTensors(ran.map((p) => p.outputs[j]!))));
    const refused: Reject[] = [];
    const keys: string[] = [];
    done.forEach((d, i) => {
      if (d instanceof ModelRunError) refused.push({ line: batch.lines[i]!, key: batch.keys[i]!, reason: `the model could not run on this row: ${d.message}` });
      else keys.push(batch.keys[i]!);
    });
    return { keys, outputs, refused };
  }
}

/**
 * A batch whose rows vary in length (token ids): each group of one length is one run, the groups
 * at once on the pool, and each row is stored with its own outputs, in input order. A group the
 * model refuses, or whose answers have no row per input row, runs row by row, so only the rows
 * the model refuses become rejects; a batch none of whose rows runs fails the job, as above.
 */
async function inferGroups(umbra: Umbra, mv: ModelVersion, batch: BatchAssembly, rowRuns: boolean): Promise<RowsRun> {
  const results: (WireTensor[] | ModelRunError)[] = new Array(batch.keys.length);
  await Promise.all(batch.groups().map(async ({ rows, tensors }) => {
    let outputs: WireTensor[] | undefined;
    try {
      // A model that does not batch runs each row alone (rowRunsReason).
      if (!rowRuns || rows.length === 1) outputs = await infer(umbra, mv, tensors);
    } catch (err) {
      if (!(err instanceof ModelRunError)) throw err;
    }
    if (outputs && answersFollowRows(outputs, rows.length)) {
      const perRow = outputs.map((o) => splitTensor(o, rows.map(() => 1)));
      rows.forEach((r, i) => { results[r] = perRow.map((pieces) => pieces[i]!); });
      return;
    }
    for (let i = 0; i < rows.length; i++) {
      const one = tensors.map((t) => splitTensor(t, [i, 1, rows.length - i - 1])[1]!);
      try {
        results[rows[i]!] = await infer(umbra, mv, one);
      } catch (err) {
        if (!(err instanceof ModelRunError)) throw err;
        results[rows[i]!] = err;
      }
    }
  }));
  const keys: string[] = [];
  const rowOutputs: WireTensor[][] = [];
  const refused: Reject[] = [];
  let first: ModelRunError | undefined;
  results.forEach((result, r) => {
    if (result instanceof ModelRunError) {
      first ??= result;
      refused.push({ line: batch.lines[r]!, key: batch.keys[r]!, reason: `the model could not run on this row: ${result.message}` });
    } else {
      keys.push(batch.keys[r]!);
      rowOutputs.push(result);
    }
  });
  if (keys.length === 0 && first) throw first;
  return { keys, outputs: [], rowOutputs, refused };
}

/** Whether every output has a row per input row, so the batch's answers can be cut by row. */
function answersFollowRows(outputs: WireTensor[], rows: number): boolean {
  return outputs.every((o) => o.shape[0] === rows);
}

/**
 * A batch's rows through the model one at a time, each stored with its outputs whole: for a model
 * that does not batch (a fixed batch of one, an answer that is not a row per input row). A row the
 * model refuses is a reject; a batch none of whose rows runs fails the job, as above.
 */
async function inferRowByRow(umbra: Umbra, mv: ModelVersion, batch: BatchAssembly, tensors: WireTensor[]): Promise<RowsRun> {
  const n = batch.keys.length;
  const keys: string[] = [];
  const rowOutputs: WireTensor[][] = [];
  const refused: Reject[] = [];
  let first: ModelRunError | undefined;
  for (let i = 0; i < n; i++) {
    const row = tensors.map((t) => splitTensor(t, [i, 1, n - i - 1])[1]!);
    try {
      rowOutputs.push(await infer(umbra, mv, row));
      keys.push(batch.keys[i]!);
    } catch (err) {
      if (!(err instanceof ModelRunError)) throw err;
      first ??= err;
      refused.push({ line: batch.lines[i]!, key: batch.keys[i]!, reason: `the model could not run on this row: ${err.message}` });
    }
  }
  if (keys.length === 0 && first) throw first;
  return { keys, outputs: [], rowOutputs, refused };
}

/**
 * Why a model's rows run one at a time in a job, or undefined where they batch: a model that does
 * not batch (max_batch_size 0) runs in batches only along a free first dim of every input, and not
 * where its load found that it does not batch (its config's batchingReason).
 */
export function rowRunsReason(mv: ModelVersion): string | undefined {
  const signature = mv.signature;
  if (signature.maxBatchSize > 0) return undefined;
  if (mv.config.batchingReason) return mv.config.batchingReason;
  const fixed = signature.inputs.find((s) => s.dims[0] !== -1);
  return fixed ? `the input "${fixed.name}" has a fixed first dim (${fixed.dims[0]})` : undefined;
}
