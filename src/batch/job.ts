// The batch job: read records, run them in batches on the Umbra worker pool (as many batches in
// flight as there are workers, the reader pausing when they are all busy), and store each batch
// in order, in one transaction with the checkpoint that says how far the input is done.
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { UmbraError } from '../errors.js';
import type { Umbra } from '../core/umbra.js';
import type { Tensor } from '../protocol/types.js';
import type { ModelVersion } from '../repository/model-version.js';
import { BatchBuilder, type ColumnMapping, type FeaturePlan } from './features.js';
import { parseRecord, planFor, ROW_REJECTED, ROW_VALID, type ParsedChunk, type ParseSetup, type RecordOutcome } from './parse.js';
import { ParsePool } from './parse-pool.js';
import { outputsPerRow } from './output-rows.js';
import { openInput, type InputFormat, type InputRecord } from './reader.js';
import { RejectFile, type Reject } from './rejects.js';
import { describeShard, type ShardSpec } from './shard.js';
import type { Checkpoint, PredictionRow, PredictionStore } from './store.js';

export const DEFAULT_BATCH_SIZE = 256;

export interface BatchJobOptions {
  umbra: Umbra;
  model: string;
  /** Default: the newest loaded version. */
  version?: string;
  input: string;
  format?: InputFormat;
  keyColumn: string;
  store: PredictionStore;
  shard?: ShardSpec;
  /** Rows per batch (and per store transaction); a resume keeps the batch size it started with. */
  batchSize?: number;
  /** Continue from the store's checkpoint instead of starting over. */
  resume?: boolean;
  /** Tells scheduled runs over the same file apart (e.g. the Kubernetes Job name); part of the job id. */
  runId?: string;
  mapping?: ColumnMapping;
  /** Default: `<input name>[.shard-I-of-N].rejects.jsonl` in the working directory. */
  rejectsPath?: string;
  /** Threads that parse input beside the main thread; default 0 below 4 model workers, else one per four. */
  parseWorkers?: number;
  /** Batches dispatched and not yet stored; default workers + 1 (one commits while the rest compute). */
  window?: number;
  /** Called once the input's columns are mapped, and after every stored batch. */
  onStart?(info: { job: string; version: string; plan: string; resumedFrom: number; batchSize: number }): void;
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
  rejectsPath: string;
  rowsPerSecond: number;
}

interface PendingBatch {
  keys: string[];
  rejects: Reject[];
  /** Records consumed once this batch is stored. */
  recordsDone: number;
  builder: BatchBuilder | undefined;
  final: boolean;
}

interface FinishedBatch extends PendingBatch {
  outputs: Tensor[];
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

export function defaultRejectsPath(input: string, shard: ShardSpec | undefined): string {
  const name = basename(input).replace(/\.gz$/i, '');
  return shard && shard.count > 1 ? `${name}.shard-${shard.index}-of-${shard.count}.rejects.jsonl` : `${name}.rejects.jsonl`;
}

export async function runBatchJob(options: BatchJobOptions): Promise<BatchSummary> {
  const started = performance.now();
  const { umbra, store, shard, keyColumn } = options;
  const mv = umbra.manager.get(options.model, options.version);
  const job = jobId(mv.name, mv.version, options.input, shard, options.runId);
  const rejectsPath = options.rejectsPath ?? defaultRejectsPath(options.input, shard);
  const previous = options.resume ? await store.checkpoint(job) : undefined;
  const base = {
    job, model: mv.name, version: mv.version, shard: describeShard(shard), rejectsPath,
    resumedFrom: previous?.recordsDone ?? 0, skipped: 0,
  };
  if (previous?.finished) {
    return {
      ...base, alreadyFinished: true, rowsStored: previous.rowsStored, rejected: previous.rejected, records: previous.recordsDone,
      bytesRead: 0, totalBytes: 0, elapsedMs: performance.now() - started, rowsThisRun: 0, rowsPerSecond: 0,
    };
  }
  const batchSize = previous?.batchSize ?? options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new UmbraError('INVALID_ARGUMENT', `expected a positive integer for --batch-size but received ${batchSize}`);
  const input = await openInput(options.input, options.format);
  const rejectFile = new RejectFile(rejectsPath, previous?.rejectBytes ?? 0);
  const window = Math.max(1, options.window ?? umbra.pool.size + 1);
  const checkpoint: Checkpoint = {
    job, model: mv.name, version: mv.version, input: resolve(options.input), shard: describeShard(shard), batchSize,
    recordsDone: previous?.recordsDone ?? 0, rejectBytes: previous?.rejectBytes ?? 0,
    rowsStored: previous?.rowsStored ?? 0, rejected: previous?.rejected ?? 0, finished: false,
  };
  let rowsThisRun = 0;
  const inFlight: Promise<FinishedBatch>[] = [];
  const progress = (): BatchProgress => ({
    rowsStored: checkpoint.rowsStored, rejected: checkpoint.rejected, records: checkpoint.recordsDone,
    bytesRead: input.bytesRead, totalBytes: input.totalBytes, elapsedMs: performance.now() - started, rowsThisRun,
  });

  // At most one commit runs at a time, in batch order, while the reader keeps reading and the
  // workers keep computing (with PostgreSQL a commit is a network round trip).
  let committing: Promise<void> = Promise.resolve();
  const commitOldest = async (): Promise<void> => {
    const done = await inFlight.shift()!;
    const texts = outputsPerRow(done.outputs, done.keys.length);
    // A key twice in one batch: the later row wins, as it would across batches (upsert).
    const rows: PredictionRow[] = [];
    const seen = new Map<string, number>();
    done.keys.forEach((key, i) => {
      const at = seen.get(key);
      if (at === undefined) {
        seen.set(key, rows.length);
        rows.push({ key, outputs: texts[i]! });
      } else {
        rows[at] = { key, outputs: texts[i]! };
      }
    });
    await committing;
    // Written only once the previous checkpoint is stored, so a resume's truncation point is exact.
    rejectFile.write(done.rejects);
    const next: Checkpoint = {
      ...checkpoint,
      recordsDone: done.recordsDone,
      rejectBytes: rejectFile.bytes,
      rowsStored: checkpoint.rowsStored + rows.length,
      rejected: checkpoint.rejected + done.rejects.length,
      finished: done.final,
    };
    committing = store.commit(mv.name, mv.version, rows, new Date(), next).then(() => {
      Object.assign(checkpoint, next);
      rowsThisRun += rows.length;
      options.onProgress?.(progress());
    }, (err: unknown) => {
      throw new UmbraError('INTERNAL', `cannot store a batch in ${store.description}: ${(err as Error).message}; rerun with --resume to continue after the last stored batch`, { cause: err });
    });
    // Awaited by the next commit or at the end; until then a failure must not count as unhandled.
    committing.catch(() => undefined);
  };

  const dispatch = async (batch: PendingBatch): Promise<void> => {
    while (inFlight.length >= window) await commitOldest();
    const running = inferBatch(umbra, mv, batch);
    // Awaited in order by commitOldest; until then a failure must not count as unhandled.
    running.catch(() => undefined);
    inFlight.push(running);
  };

  let plan: FeaturePlan | undefined;
  let parsePool: ParsePool | undefined;
  let index = 0;
  let skipped = 0;
  let current: PendingBatch = { keys: [], rejects: [], recordsDone: 0, builder: undefined, final: false };
  const resumeAfter = checkpoint.recordsDone;
  const parseThreads = options.parseWorkers ?? defaultParseWorkers(umbra.pool.size);
  // Chunks being parsed, oldest first; their rows join batches strictly in input order.
  const parsing: { records: InputRecord[]; firstIndex: number; result: Promise<ParsedChunk> }[] = [];
  const batchFull = async (): Promise<void> => {
    await dispatch(current);
    current = { keys: [], rejects: [], recordsDone: current.recordsDone, builder: undefined, final: false };
  };
  // Parsed on this thread: each record goes straight into the current batch.
  const outcome: RecordOutcome = { key: undefined, reason: '' };
  const parseInline = async (records: InputRecord[], firstIndex: number): Promise<void> => {
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      current.builder ??= new BatchBuilder(plan!, batchSize);
      const status = parseRecord(plan!, shard, record, current.builder, outcome);
      if (status === ROW_VALID) {
        current.keys.push(outcome.key!);
      } else if (status === ROW_REJECTED) {
        current.rejects.push(outcome.key === undefined ? { line: record.line, reason: outcome.reason } : { line: record.line, key: outcome.key, reason: outcome.reason });
      } else {
        skipped += 1;
      }
      current.recordsDone = firstIndex + i;
      if (current.keys.length === batchSize) await batchFull();
    }
  };
  // Parsed by the parse workers: their rows join batches strictly in input order.
  const consume = async (item: (typeof parsing)[number]): Promise<void> => {
    const parsed = await item.result;
    let valid = 0;
    let rejectAt = 0;
    for (let i = 0; i < item.records.length; i++) {
      const status = parsed.status[i];
      if (status === ROW_VALID) {
        current.builder ??= new BatchBuilder(plan!, batchSize);
        current.builder.addParsed(parsed.data, valid);
        current.keys.push(parsed.keys[valid]!);
        valid += 1;
      } else if (status === ROW_REJECTED) {
        const r = parsed.rejects[rejectAt++]!;
        current.rejects.push(r.key === undefined ? { line: r.line, reason: r.reason } : { line: r.line, key: r.key, reason: r.reason });
      } else {
        skipped += 1;
      }
      current.recordsDone = item.firstIndex + i;
      if (current.keys.length === batchSize) await batchFull();
    }
  };
  try {
    for await (const chunk of input.records) {
      let firstIndex = index + 1;
      index += chunk.length;
      if (index <= resumeAfter) continue;
      let records = chunk;
      if (firstIndex <= resumeAfter) {
        records = chunk.slice(resumeAfter - firstIndex + 1);
        firstIndex = resumeAfter + 1;
      }
      if (!plan) {
        if (records.every((r) => r.error !== undefined)) {
          // Nothing readable yet to plan the columns from: these can only be rejects.
          records.forEach((r, i) => {
            if (!shard || shard.index === 1) current.rejects.push({ line: r.line, reason: r.error! });
            current.recordsDone = firstIndex + i;
          });
          continue;
        }
        const setup: ParseSetup = { signature: mv.signature, columns: await input.columns(), keyColumn, delimiter: input.delimiter };
        if (options.mapping) setup.mapping = options.mapping;
        if (shard) setup.shard = shard;
        plan = planFor(setup);
        options.onStart?.({ job, version: mv.version, plan: plan.describe(), resumedFrom: resumeAfter, batchSize });
        if (parseThreads > 0) parsePool = new ParsePool(setup, parseThreads);
      }
      if (!parsePool) {
        await parseInline(records, firstIndex);
        continue;
      }
      const result = parsePool.parse(records);
      result.catch(() => undefined);
      parsing.push({ records, firstIndex, result });
      while (parsing.length > parseThreads * 2) await consume(parsing.shift()!);
    }
    while (parsing.length > 0) await consume(parsing.shift()!);
    current.final = true;
    current.recordsDone = Math.max(current.recordsDone, index, resumeAfter);
    await dispatch(current);
    while (inFlight.length > 0) await commitOldest();
    await committing;
  } catch (err) {
    input.destroy();
    await Promise.allSettled([...inFlight, committing, ...parsing.map((p) => p.result)]);
    throw err;
  } finally {
    rejectFile.close();
    await parsePool?.close();
  }
  const p = progress();
  return { ...base, ...p, skipped, alreadyFinished: false, rowsPerSecond: p.rowsThisRun / Math.max(1e-9, p.elapsedMs / 1000) };
}

/**
 * Parsing competes with the model for cores: on small machines (measured on 2 cores) parsing on
 * the main thread is faster; from 4 workers on, one parse thread per four model workers.
 */
function defaultParseWorkers(workers: number): number {
  return workers < 4 ? 0 : Math.floor(workers / 4);
}

async function inferBatch(umbra: Umbra, mv: ModelVersion, batch: PendingBatch): Promise<FinishedBatch> {
  const rows = batch.keys.length;
  if (rows === 0 || !batch.builder) return { ...batch, builder: undefined, outputs: [] };
  const tensors = batch.builder.tensors();
  // One batch is one run on one worker (the server's workers and sessions), past the online
  // batcher: the job already forms full batches (see Umbra.runBatch).
  const result = await umbra.runBatch(mv, tensors);
  return { ...batch, builder: undefined, outputs: result.outputs };
}
