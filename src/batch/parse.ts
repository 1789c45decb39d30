// Turning a chunk of input records into model rows: keys, shard selection, feature values and
// rejects. The same function runs inline or in a parse worker (parse-worker.ts), so both give
// identical results; the job then forms batches from the parsed rows in input order.
import type { ModelSignature, TensorData } from '../protocol/types.js';
import { BatchBuilder, planFeatures, RowRejected, type ColumnMapping, type FeaturePlan } from './features.js';
import type { InputRecord } from './reader.js';
import { shardOfKey, type ShardSpec } from './shard.js';

export const ROW_VALID = 0;
export const ROW_REJECTED = 1;
export const ROW_SKIPPED = 2;

/** Everything a parse worker needs to plan the same features as the job. */
export interface ParseSetup {
  signature: ModelSignature;
  columns: string[];
  keyColumn: string;
  mapping?: ColumnMapping;
  delimiter: string;
  shard?: ShardSpec;
}

export interface ParsedChunk {
  /** Per record: ROW_VALID, ROW_REJECTED or ROW_SKIPPED (another shard's, or a keyless reject for shard > 1). */
  status: Uint8Array;
  /** Keys of the valid records, in order. */
  keys: string[];
  /** Per model input: the valid records' values, row after row. */
  data: TensorData[];
  /** Rejects in order, with the record's position in the chunk. */
  rejects: { position: number; line: number; key?: string; reason: string }[];
}

export function planFor(setup: ParseSetup): FeaturePlan {
  return planFeatures(setup.signature, setup.columns, setup.keyColumn, setup.mapping, setup.delimiter);
}

/** What parseRecord found besides the status: the key (valid, or rejected after the key was read) and the reason. */
export interface RecordOutcome {
  key: string | undefined;
  reason: string;
}

/**
 * One record into the builder's next slot: ROW_VALID (written, `out.key` set), ROW_REJECTED
 * (`out.reason`, and `out.key` when known) or ROW_SKIPPED (another shard's, or a keyless reject
 * for shard > 1). Used by parseChunk and by the job's inline path, so both agree row for row.
 */
export function parseRecord(plan: FeaturePlan, shard: ShardSpec | undefined, record: InputRecord, builder: BatchBuilder, out: RecordOutcome): number {
  out.key = undefined;
  let key: string;
  try {
    key = BatchBuilder.keyOf(plan, record);
  } catch (err) {
    if (!(err instanceof RowRejected)) throw err;
    // Without a key the shard is unknown: shard 1 reports it, so N shards report it once.
    if (shard && shard.index !== 1) return ROW_SKIPPED;
    out.reason = err.message;
    return ROW_REJECTED;
  }
  if (shard && shardOfKey(key, shard.count) !== shard.index - 1) return ROW_SKIPPED;
  out.key = key;
  try {
    builder.add(record);
    return ROW_VALID;
  } catch (err) {
    if (!(err instanceof RowRejected)) throw err;
    out.reason = err.message;
    return ROW_REJECTED;
  }
}

export function parseChunk(plan: FeaturePlan, shard: ShardSpec | undefined, records: InputRecord[]): ParsedChunk {
  const status = new Uint8Array(records.length);
  const keys: string[] = [];
  const rejects: ParsedChunk['rejects'] = [];
  const builder = new BatchBuilder(plan, Math.max(1, records.length));
  const out: RecordOutcome = { key: undefined, reason: '' };
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    const outcome = parseRecord(plan, shard, record, builder, out);
    status[i] = outcome;
    if (outcome === ROW_VALID) {
      keys.push(out.key!);
    } else if (outcome === ROW_REJECTED) {
      rejects.push(out.key === undefined ? { position: i, line: record.line, reason: out.reason } : { position: i, line: record.line, key: out.key, reason: out.reason });
    }
  }
  return { status, keys, data: builder.tensors().map((t) => t.data), rejects };
}
