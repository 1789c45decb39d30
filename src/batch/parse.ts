// Turning a segment of input records into model rows: keys, shard selection, feature values and
// rejects. It runs on the reader threads (read-worker.ts); the job then forms batches from the
// parsed rows strictly in input order, so batches never depend on how many threads parsed them.
import type { ModelSignature, TensorData } from '../protocol/types.js';
import { BatchBuilder, planFeatures, RowRejected, type ColumnMapping, type FeaturePlan } from './features.js';
import { keyProblem, type KeyRules } from './keys.js';
import type { InputRecord } from './reader.js';
import type { Reject } from './rejects.js';
import { shardOfKey, type ShardSpec } from './shard.js';

export const ROW_VALID = 0;
export const ROW_REJECTED = 1;
export const ROW_SKIPPED = 2;

/** Everything a reader thread needs to plan the same features as every other. */
export interface ParseSetup {
  signature: ModelSignature;
  columns: string[];
  /** Undefined: rows are keyed by their row number. */
  keyColumn: string | undefined;
  mapping?: ColumnMapping;
  delimiter: string;
  shard?: ShardSpec;
  /** The input's first record: an array column for a free dimension takes its length (see planFeatures). */
  sample?: InputRecord;
}

export interface ParsedSegment {
  /** Per record: ROW_VALID, ROW_REJECTED or ROW_SKIPPED (another shard's, or a keyless reject for shard > 1). */
  status: Uint8Array;
  /** Keys of the valid records, in order. */
  keys: string[];
  /** Their lines in the file. */
  lines: number[];
  /** Per model input: the valid records' values, row after row. */
  data: TensorData[];
  /** A plan whose rows vary in length (FeaturePlan.ragged): per input, each valid row's count of values. */
  lengths?: Int32Array[];
  /** Rejects, in order. */
  rejects: Reject[];
}

export function planFor(setup: ParseSetup): FeaturePlan {
  return planFeatures(setup.signature, setup.columns, setup.keyColumn, setup.mapping, setup.delimiter, setup.sample);
}

/** What parseRecord found besides the status: the key (valid, or rejected after the key was read) and the reason. */
export interface RecordOutcome {
  key: string | undefined;
  reason: string;
}

/**
 * One record (the `row`-th data record of the input) into the builder's next slot: ROW_VALID
 * (written, `out.key` set), ROW_REJECTED (`out.reason`, and `out.key` when known) or ROW_SKIPPED
 * (another shard's, or a keyless reject for shard > 1). `keyRules`: what the store cannot hold
 * in a key (keyed by --key; row numbers always fit).
 */
export function parseRecord(plan: FeaturePlan, shard: ShardSpec | undefined, record: InputRecord, row: number, builder: BatchBuilder, out: RecordOutcome, keyRules?: KeyRules): number {
  out.key = undefined;
  let key: string;
  try {
    key = BatchBuilder.keyOf(plan, record, row);
  } catch (err) {
    if (!(err instanceof RowRejected)) throw err;
    // Without a key the shard is unknown: shard 1 reports it, so N shards report it once.
    if (shard && shard.index !== 1) return ROW_SKIPPED;
    out.reason = err.message;
    return ROW_REJECTED;
  }
  if (shard && shardOfKey(key, shard.count) !== shard.index - 1) return ROW_SKIPPED;
  out.key = key;
  if (keyRules && plan.keyColumn !== undefined) {
    const problem = keyProblem(key, keyRules);
    if (problem !== undefined) {
      out.reason = problem;
      return ROW_REJECTED;
    }
  }
  try {
    builder.add(record);
    return ROW_VALID;
  } catch (err) {
    if (!(err instanceof RowRejected)) throw err;
    out.reason = err.message;
    return ROW_REJECTED;
  }
}

/**
 * A segment of records, the first being data record `firstRow`. Without a plan (an input with no
 * readable record to take columns from) every record is a reject. `keyRules`: as parseRecord's.
 */
export function parseSegment(plan: FeaturePlan | undefined, shard: ShardSpec | undefined, records: InputRecord[], firstRow: number, keyRules?: KeyRules): ParsedSegment {
  const status = new Uint8Array(records.length);
  const keys: string[] = [];
  const lines: number[] = [];
  const rejects: Reject[] = [];
  if (!plan) {
    records.forEach((record, i) => {
      if (shard && shard.index !== 1) {
        status[i] = ROW_SKIPPED;
      } else {
        status[i] = ROW_REJECTED;
        rejects.push({ line: record.line, reason: record.error ?? 'no columns: the input has no readable record' });
      }
    });
    return { status, keys, lines, data: [], rejects };
  }
  const builder = new BatchBuilder(plan, Math.max(1, records.length));
  const out: RecordOutcome = { key: undefined, reason: '' };
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    const outcome = parseRecord(plan, shard, record, firstRow + i, builder, out, keyRules);
    status[i] = outcome;
    if (outcome === ROW_VALID) {
      keys.push(out.key!);
      lines.push(record.line);
    } else if (outcome === ROW_REJECTED) {
      rejects.push(out.key === undefined ? { line: record.line, reason: out.reason } : { line: record.line, key: out.key, reason: out.reason });
    }
  }
  const parsed: ParsedSegment = { status, keys, lines, data: builder.tensors().map((t) => t.data), rejects };
  if (plan.ragged) parsed.lengths = builder.rowLengths();
  return parsed;
}
