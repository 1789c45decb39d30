// Prediction stores: where batch jobs write and the server reads precomputed predictions.
// One table `predictions(model, version, key, outputs, computed_at)` unique on (model, version, key),
// plus the jobs' checkpoints, written in the same transaction as the rows they cover.
import { parseJsonKeepingIntegers } from '../protocol/request-json.js';
import { UmbraError } from '../errors.js';
import type { DataType } from '../protocol/types.js';
import { POSTGRES_KEY_RULES, type KeyRules } from './keys.js';

/** One output tensor as stored: the response's `outputs` entry for a single row, as JSON. */
export interface StoredTensor {
  name: string;
  datatype: DataType;
  shape: number[];
  data: (number | string | boolean)[];
}

export interface StoredPrediction {
  model: string;
  version: string;
  key: string;
  outputs: StoredTensor[];
  computedAt: Date;
}

/** A row ready to write: `outputs` is already JSON text (the job formats it off the store's path). */
export interface PredictionRow {
  key: string;
  outputs: string;
}

/** How far one job (model, version, input, shard) got; committed together with its rows. */
export interface Checkpoint {
  job: string;
  model: string;
  version: string;
  input: string;
  shard: string;
  batchSize: number;
  /** Input records (data lines) consumed, counted from the first after the header. */
  recordsDone: number;
  /** Length of the reject file covered by this checkpoint; a resume truncates it back to this. */
  rejectBytes: number;
  rowsStored: number;
  rejected: number;
  finished: boolean;
}

export interface PredictionStore {
  /** The URL with any password removed, for messages. */
  readonly description: string;
  /**
   * The URL another thread opens the same store with (a batch job stores from its own thread);
   * absent for a store only this object can reach, which the job then writes to from its own thread.
   */
  readonly url?: string;
  /** What the store cannot hold in a key (none where absent): a batch job rejects such rows (keys.ts). */
  readonly keyRules?: KeyRules;
  /** Newest prediction for the key: of the given version, or of any version when undefined. */
  get(model: string, version: string | undefined, key: string): Promise<StoredPrediction | undefined>;
  checkpoint(job: string): Promise<Checkpoint | undefined>;
  /** Writes the rows (upsert on model, version, key) and the checkpoint in one transaction. */
  commit(model: string, version: string, rows: PredictionRow[], computedAt: Date, checkpoint: Checkpoint): Promise<void>;
  count(model: string, version?: string): Promise<number>;
  close(): Promise<void>;
}

export const DEFAULT_STORE_URL = 'sqlite:umbra-predictions.db';

/**
 * Which store a URL names, checked without touching it: `sqlite:PATH` (also `sqlite:///abs/path`)
 * or `postgres://...` (also `postgresql://`). Throws a message that names --store and the fix.
 */
export function parseStoreUrl(url: string): { kind: 'sqlite'; path: string } | { kind: 'postgres' } {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new UmbraError('INVALID_ARGUMENT', 'expected a store URL (sqlite:PATH or postgres://user@host/db) for --store but received an empty value');
  }
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (path === '') throw new UmbraError('INVALID_ARGUMENT', `expected sqlite:PATH for --store but received '${url}' (no file path)`);
    return { kind: 'sqlite', path };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return { kind: 'postgres' };
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  throw new UmbraError('INVALID_ARGUMENT', scheme
    ? `unsupported store URL scheme '${scheme}:' in '${redactUrl(url)}': expected sqlite:PATH or postgres://user@host:port/db`
    : `expected a store URL (sqlite:PATH or postgres://user@host:port/db) for --store but received '${url}'`);
}

/** What the store at `url` cannot hold in a key (see PredictionStore.keyRules), known without opening it. */
export function keyRulesFor(url: string): KeyRules | undefined {
  return parseStoreUrl(url).kind === 'postgres' ? POSTGRES_KEY_RULES : undefined;
}

/** Opens `sqlite:PATH` or `postgres://...` (also `postgresql://`); the schema is created when missing. */
export async function openStore(url: string): Promise<PredictionStore> {
  const target = parseStoreUrl(url);
  if (target.kind === 'sqlite') {
    const { SqliteStore } = await import('./sqlite-store.js');
    return SqliteStore.open(target.path);
  }
  const { PostgresStore } = await import('./postgres-store.js');
  return PostgresStore.open(url);
}

/** The URL without its password, safe for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
  }
}

/** Parses a stored row's `outputs` (JSON text or, from PostgreSQL jsonb, already parsed). */
export function parseStoredOutputs(value: unknown, where: string): StoredTensor[] {
  // 64-bit outputs past 2^53 are stored as their digits (output-rows.ts), and read back as such.
  const parsed: unknown = typeof value === 'string' ? parseJsonKeepingIntegers(value) : value;
  if (!Array.isArray(parsed)) throw new UmbraError('INTERNAL', `stored outputs for ${where} are not a JSON array`);
  return parsed as StoredTensor[];
}
