// Typed messages between a batch job and its reader and writer threads.
import type { DataType, ModelSignature, TensorData } from '../protocol/types.js';
import type { WireTensor } from '../workers/messages.js';
import type { ColumnMapping } from './features.js';
import type { KeyRules } from './keys.js';
import type { InputFormat } from './reader.js';
import type { Reject } from './rejects.js';
import type { ShardSpec } from './shard.js';
import type { Checkpoint } from './store.js';

/** workerData of a reader thread. */
export interface ReaderSetup {
  input: string;
  format?: InputFormat;
  signature: ModelSignature;
  keyColumn: string | undefined;
  mapping?: ColumnMapping;
  shard?: ShardSpec;
  /** What the store cannot hold in a key: such a row is a reject (a PostgreSQL store's). */
  keyRules?: KeyRules;
  /** This thread parses segments `thread`, `thread + threads`, ... */
  thread: number;
  threads: number;
}

export type ToReader =
  /** Begin after record `resumeAfter`, in segments of `segmentRecords` records. */
  | { kind: 'start'; resumeAfter: number; segmentRecords: number }
  /** Segments below `upTo` may be parsed and sent. */
  | { kind: 'allow'; upTo: number }
  /** End the thread now (see thread.ts's endThread). */
  | { kind: 'stop' };

export type FromReader =
  /**
   * Thread 0, before `start`: the columns are mapped (plan undefined: no readable record at all);
   * `empty`: the input holds no record whatever (nothing, or only a header, blank lines, a BOM).
   */
  | { kind: 'plan'; plan: PlanSummary | undefined; empty: boolean; totalBytes: number }
  | { kind: 'segment'; segment: SegmentMessage }
  /** After the last segment: how many records the input holds, and this thread's CPU time. */
  | { kind: 'end'; records: number; cpuMicros: number | undefined }
  | { kind: 'error'; message: string; invalid: boolean };

/** What the job needs of the feature plan to form batches from parsed rows. */
export interface PlanSummary {
  /** Which columns feed which input, for a person to check. */
  description: string;
  inputs: PlannedInput[];
}

export interface PlannedInput {
  name: string;
  datatype: DataType;
  rowDims: number[];
  rowElements: number;
  /** Rows of any length along the free dim of `dims` (-1), `perPosition` values per position: rows of one length run together. */
  variable?: { dims: number[]; perPosition: number };
}

export interface SegmentMessage {
  index: number;
  /** Data record number of the segment's first record. */
  firstRow: number;
  status: Uint8Array;
  keys: string[];
  /** The valid records' lines in the file, beside `keys` (for a reject the model makes later). */
  lines: number[];
  data: TensorData[];
  /** A plan with variable inputs: per input, each valid row's count of values. */
  lengths?: Int32Array[];
  rejects: Reject[];
  bytesRead: number;
}

/** What the writer needs to begin storing; sent once the job is known to be valid. */
export interface WriterSetup {
  model: string;
  version: string;
  rejectsPath: string;
  checkpoint: Checkpoint;
}

/** One computed batch, in input order. */
export interface BatchToStore {
  seq: number;
  keys: string[];
  outputs: WireTensor[];
  /**
   * Where the model ran row by row (it does not batch, or a batch's answers had no row per input
   * row): each key's outputs whole, as its own run gave them; `outputs` is then empty.
   */
  rowOutputs?: WireTensor[][];
  rejects: Reject[];
  /** Records consumed once this batch is stored. */
  recordsDone: number;
  final: boolean;
}

/** The writer thread's workerData is the store URL; it touches nothing before `open`. */
export type ToWriter = { kind: 'open'; setup: WriterSetup } | { kind: 'batch'; batch: BatchToStore } | { kind: 'close' } | { kind: 'stop' };

export type FromWriter =
  | { kind: 'committed'; seq: number; checkpoint: Checkpoint }
  | { kind: 'closed'; cpuMicros: number | undefined }
  | { kind: 'error'; message: string };
