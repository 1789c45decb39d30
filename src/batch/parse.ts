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

export function parseChunk(plan: FeaturePlan, shard: ShardSpec | undefined, records: InputRecord[]): ParsedChunk {
  const status = new Uint8Array(records.length);
  const keys: string[] = [];
  const rejects: ParsedChunk['rejects'] = [];
  const builder = new BatchBuilder(plan, Math.max(1, records.length));
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    let key: string;
    try {
      key = BatchBuilder.keyOf(plan, record);
    } catch (err) {
      if (!(err instanceof RowRejected)) throw err;
      // Without a key the shard is unknown: shard 1 reports it, so N shards report it once.
      if (!shard || shard.index === 1) {
        status[i] = ROW_REJECTED;
        rejects.push({ position: i, line: record.line, reason: err.message });
      } else {
        status[i] = ROW_SKIPPED;
      }
      continue;
    }
    if (shard && shardOfKey(key, shard.count) !== shard.index - 1) {
      status[i] = ROW_SKIPPED;
      continue;
    }
    try {
      builder.add(record);
      keys.push(key);
      status[i] = ROW_VALID;
    } catch (err) {
      if (!(err instanceof RowRejected)) throw err;
      status[i] = ROW_REJECTED;
      rejects.push({ position: i, line: record.line, key, reason: err.message });
    }
  }
  return { status, keys, data: builder.tensors().map((t) => t.data), rejects };
}
