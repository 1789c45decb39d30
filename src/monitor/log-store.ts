// The prediction log's storage: embedded SQLite (default) or PostgreSQL. Two tables, predictions
// and labels, joined on (model, id) when exported for retraining. Tensors are stored in a compact
// binary form (tensor-blob.ts); `umbra export-log` turns them back into JSON.
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { decodeTensors, encodeTensors } from './tensor-blob.js';
import type { TensorSummary } from './tensor-summary.js';

/** A tensor to log: its values, or the summary that stands for them (tensor-summary.ts). */
export type LogTensor =
  | { name: string; shape: number[]; data: ArrayLike<number | bigint> | string[] }
  | { name: string; shape: number[]; summary: TensorSummary };

export interface PredictionRecord {
  id: string;
  model: string;
  version: string;
  role: string;
  timeMs: number;
  latencyMs: number;
  inputs?: LogTensor[];
  outputs: LogTensor[];
}

/** A batch of predictions column by column, tensors already encoded (tensor-blob.ts): what the writer thread inserts. */
export interface PredictionColumns {
  rows: number;
  ids: string[];
  models: string[];
  versions: string[];
  roles: string[];
  timeMs: ArrayLike<number>;
  latencyMs: ArrayLike<number>;
  inputs: (Uint8Array | null)[];
  outputs: Uint8Array[];
}

/** Records as columns (callers that hold whole records: tests, tools). */
export function predictionColumns(records: readonly PredictionRecord[]): PredictionColumns {
  return {
    rows: records.length,
    ids: records.map((r) => r.id),
    models: records.map((r) => r.model),
    versions: records.map((r) => r.version),
    roles: records.map((r) => r.role),
    timeMs: records.map((r) => r.timeMs),
    latencyMs: records.map((r) => r.latencyMs),
    inputs: records.map((r) => encodeTensors(r.inputs)),
    outputs: records.map((r) => encodeTensors(r.outputs)!),
  };
}

export interface LabelRecord {
  id: string;
  model: string;
  version: string;
  timeMs: number;
  /**
   * The times of the first and last logged answer the label scored (the served one and its shadow
   * copies): an id a caller re-used names other predictions too, and those are not this label's.
   */
  fromMs: number;
  toMs: number;
  truth: unknown;
}

export interface ExportedRow {
  id: string;
  model: string;
  version: string;
  role: string;
  time: string;
  latency_ms: number;
  inputs: unknown;
  outputs: unknown;
  truth: unknown;
}

export interface LoggedPrediction {
  id: string;
  version: string;
  timeMs: number;
  /** The time of its last shadow copy, or `timeMs` when it has none. */
  untilMs: number;
  outputs: Uint8Array;
  labelled: boolean;
}

export interface ExportFilter {
  model?: string;
  sinceMs?: number;
  /** Only rows that have a label. */
  labelledOnly?: boolean;
}

export interface LogStore {
  readonly kind: 'sqlite' | 'postgres';
  insert(predictions: PredictionColumns | readonly PredictionRecord[], labels: LabelRecord[]): Promise<void>;
  /** Deletes predictions older than `beforeMs`, then the oldest beyond `maxRows` (0 = no cap), and labels older than `beforeMs`; returns how many predictions. */
  prune(beforeMs: number, maxRows?: number): Promise<number>;
  /** Logged predictions of `model` with these ids (feedback for ones no longer in memory). */
  lookup(model: string, ids: string[]): Promise<LoggedPrediction[]>;
  /** Predictions with their labels joined, oldest first, in pages. */
  exportRows(filter: ExportFilter): AsyncIterable<ExportedRow>;
  close(): Promise<void>;
}

/** `sqlite:PATH`, a bare path, or `postgres://` / `postgresql://` URL. */
export function describeLogUrl(url: string): { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string } {
  if (/^postgres(ql)?:\/\//.test(url)) return { kind: 'postgres', url };
  // Another database's URL (mysql://, redis://) is not a file name to look for.
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  if (scheme) throw new Error(`expected sqlite:PATH or postgres://... for --log-db but received a ${scheme[1]}:// URL; the prediction log is kept in SQLite or PostgreSQL`);
  const path = url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url;
  if (path === '') throw new Error(`expected sqlite:PATH or postgres://... for --log-db but received ${JSON.stringify(url)}`);
  return { kind: 'sqlite', path: resolve(path) };
}

export async function openLogStore(url: string): Promise<LogStore> {
  const d = describeLogUrl(url);
  return d.kind === 'postgres' ? PostgresLogStore.open(d.url) : SqliteLogStore.open(d.path);
}

const PAGE = 5000;

/** Labels written before labels were scoped to their predictions' times cover every row of their id, as they did. */
const LEGACY_LABEL_SPAN = 'from_ms INTEGER NOT NULL DEFAULT 0, to_ms INTEGER NOT NULL DEFAULT 9007199254740991';

/**
 * The time of the oldest prediction kept (rows arrive in time order; by seq, so no scan). A label
 * whose span ends before it labels only deleted rows: the row cap (`--log-max-rows`) prunes labels
 * with their predictions, or, with `--log-retention-days 0`, they would pile up for ever beside the
 * capped predictions.
 */
const OLDEST_PREDICTION = 'SELECT time_ms FROM umbra_predictions ORDER BY seq LIMIT 1';

/** A prediction's label: the newest of those whose span holds its time (spans of one id overlap only when its requests did). */
const LABEL_OF_ROW = 'SELECT l.truth FROM umbra_labels l WHERE l.model = p.model AND l.id = p.id AND l.from_ms <= p.time_ms AND l.to_ms >= p.time_ms ORDER BY l.from_ms DESC LIMIT 1';

function exportRow(r: { id: string; model: string; version: string; role: string; time_ms: number | string; latency_ms: number; inputs: Uint8Array | null; outputs: Uint8Array; truth: string | null }): ExportedRow {
  return {
    id: r.id,
    model: r.model,
    version: r.version,
    role: r.role,
    time: new Date(Number(r.time_ms)).toISOString(),
    latency_ms: r.latency_ms,
    inputs: decodeTensors(r.inputs),
    outputs: decodeTensors(r.outputs),
    truth: r.truth === null ? null : JSON.parse(r.truth),
  };
}

function asColumns(predictions: PredictionColumns | readonly PredictionRecord[]): PredictionColumns {
  return Array.isArray(predictions) ? predictionColumns(predictions as readonly PredictionRecord[]) : (predictions as PredictionColumns);
}

const ROWS_PER_INSERT = 64;
const PREDICTION_COLUMNS = 'INSERT INTO umbra_predictions (id, model, version, role, time_ms, latency_ms, inputs, outputs, id_hash) VALUES ';
const ROW_PARAMETERS = '(?, ?, ?, ?, ?, ?, ?, ?, ?)';
/**
 * SQLite `user_version` of the current layout: 0 = id_hash of every id was its text hash;
 * 1 = ids Umbra assigned keyed in order; 2 = ids ending in a counter keyed in order too.
 */
const SQLITE_LAYOUT = 2;

/** An id Umbra assigned (monitor.ts): 16 hex digits of a per-start prefix, a dash, a sequence number. */
const ASSIGNED_ID = /^([0-9a-f]{5})[0-9a-f]{11}-(\d{1,15})$/;

function fnv(text: string, seed: number): number {
  let a = seed;
  for (let i = 0; i < text.length; i++) a = Math.imul(a ^ text.charCodeAt(i), 16777619);
  return a >>> 0;
}

/**
 * The 53-bit key SQLite indexes instead of the id text (inserting random text keys into a b-tree
 * cost twice as much as the rest of the row). A random key dirties a different index page for
 * almost every row, and that page is written to the WAL and again at checkpoint (measured 8 us
 * per row at 300,000 rows against 2 us for ordered keys), so ids that count key in count order:
 * - ids Umbra assigned key as (start prefix, sequence);
 * - ids ending in a counter, as clients number their requests ("c17", "req-000123"), key as
 *   (hash of the text before the number, the number): each counting client appends at its own
 *   place in the index;
 * - other ids (random UUIDs, say) key by a hash of the whole text.
 * Keys may collide; lookups compare the id text.
 */
export function idHash(id: string): number {
  const assigned = ASSIGNED_ID.exec(id);
  if (assigned) return parseInt(assigned[1]!, 16) * 4294967296 + (Number(assigned[2]) % 4294967296);
  // An id ending in a counter ("c17", "req-000123", a bare "42"): the last 9 digits order it.
  let digits = id.length;
  while (digits > 0 && id.charCodeAt(digits - 1) >= 48 && id.charCodeAt(digits - 1) <= 57) digits--;
  if (digits < id.length) {
    const from = Math.max(digits, id.length - 9);
    return (fnv(id.slice(0, from), 0x01000193) >>> 12) * 4294967296 + Number(id.slice(from));
  }
  let b = 0;
  for (let i = 0; i < id.length; i++) b = Math.imul(b ^ id.charCodeAt(i), 2246822507) + 1;
  return fnv(id, 0x811c9dc5) * 2097152 + ((b >>> 0) & 0x1fffff);
}

class SqliteLogStore implements LogStore {
  readonly kind = 'sqlite';
  private readonly insertOne: import('better-sqlite3').Statement;
  private readonly insertMany: import('better-sqlite3').Statement;
  private readonly insertLabel: import('better-sqlite3').Statement;

  private constructor(private readonly db: import('better-sqlite3').Database) {
    this.insertOne = db.prepare(PREDICTION_COLUMNS + ROW_PARAMETERS);
    this.insertLabel = db.prepare('INSERT OR REPLACE INTO umbra_labels (id, model, version, time_ms, truth, from_ms, to_ms) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.insertMany = db.prepare(PREDICTION_COLUMNS + new Array(ROWS_PER_INSERT).fill(ROW_PARAMETERS).join(', '));
  }

  static async open(path: string): Promise<SqliteLogStore> {
    const { default: Database } = await import('better-sqlite3');
    mkdirSync(dirname(path), { recursive: true });
    const db = new Database(path);
    // WAL: the exporter reads while the server writes; NORMAL sync is durable enough for a log.
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    db.exec(`
      CREATE TABLE IF NOT EXISTS umbra_predictions (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, role TEXT NOT NULL, time_ms INTEGER NOT NULL, latency_ms REAL NOT NULL, inputs BLOB, outputs BLOB NOT NULL, id_hash INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS umbra_predictions_id_hash ON umbra_predictions (id_hash);
      CREATE TABLE IF NOT EXISTS umbra_labels (id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, time_ms INTEGER NOT NULL, truth TEXT NOT NULL, ${LEGACY_LABEL_SPAN}, PRIMARY KEY (model, id, from_ms));
    `);
    if (!(db.pragma('table_info(umbra_labels)') as { name: string }[]).some((c) => c.name === 'from_ms')) {
      // A log from before labels had spans: one label per id, kept as covering all of its rows.
      db.transaction(() => {
        db.exec(`
          CREATE TABLE umbra_labels_spans (id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, time_ms INTEGER NOT NULL, truth TEXT NOT NULL, ${LEGACY_LABEL_SPAN}, PRIMARY KEY (model, id, from_ms));
          INSERT INTO umbra_labels_spans (id, model, version, time_ms, truth) SELECT id, model, version, time_ms, truth FROM umbra_labels;
          DROP TABLE umbra_labels;
          ALTER TABLE umbra_labels_spans RENAME TO umbra_labels;
        `);
      })();
    }
    if ((db.pragma('user_version', { simple: true }) as number) < SQLITE_LAYOUT) {
      // A log written under an older key layout: re-key its rows once.
      db.function('umbra_id_key', { deterministic: true }, (id: unknown) => idHash(String(id)));
      db.transaction(() => {
        db.exec('UPDATE umbra_predictions SET id_hash = umbra_id_key(id)');
        db.pragma(`user_version = ${SQLITE_LAYOUT}`);
      })();
    }
    return new SqliteLogStore(db);
  }

  async insert(predictions: PredictionColumns | readonly PredictionRecord[], labels: LabelRecord[]): Promise<void> {
    const c = asColumns(predictions);
    const l = this.insertLabel;
    const args: unknown[] = new Array(ROWS_PER_INSERT * 9);
    const put = (i: number, at: number) => {
      args[at] = c.ids[i];
      args[at + 1] = c.models[i];
      args[at + 2] = c.versions[i];
      args[at + 3] = c.roles[i];
      args[at + 4] = c.timeMs[i];
      args[at + 5] = c.latencyMs[i];
      args[at + 6] = c.inputs[i];
      args[at + 7] = c.outputs[i];
      args[at + 8] = idHash(c.ids[i]!);
    };
    this.db.transaction(() => {
      // Many rows per statement: one VM run per 64 rows instead of per row.
      let i = 0;
      for (; i + ROWS_PER_INSERT <= c.rows; i += ROWS_PER_INSERT) {
        for (let k = 0; k < ROWS_PER_INSERT; k++) put(i + k, k * 9);
        this.insertMany.run(args);
      }
      for (; i < c.rows; i++) {
        put(i, 0);
        this.insertOne.run(args.slice(0, 9));
      }
      for (const r of labels) l.run(r.id, r.model, r.version, r.timeMs, JSON.stringify(r.truth), r.fromMs, r.toMs);
    })();
  }

  async prune(beforeMs: number, maxRows = 0): Promise<number> {
    // Rows arrive in time order, so the first row at or after the cutoff bounds the delete; the
    // scan for it reads only the rows being deleted, and time needs no index.
    let a = this.db.prepare('DELETE FROM umbra_predictions WHERE seq < coalesce((SELECT seq FROM umbra_predictions WHERE time_ms >= ? ORDER BY seq LIMIT 1), (SELECT max(seq) + 1 FROM umbra_predictions))').run(beforeMs).changes;
    // Sequence numbers are dense (rows only leave from the oldest end): the cap is a bound on seq.
    if (maxRows > 0) a += this.db.prepare('DELETE FROM umbra_predictions WHERE seq <= (SELECT max(seq) FROM umbra_predictions) - ?').run(maxRows).changes;
    this.db.prepare(`DELETE FROM umbra_labels WHERE time_ms < ? OR to_ms < coalesce((${OLDEST_PREDICTION}), 0)`).run(beforeMs);
    return a;
  }

  async lookup(model: string, ids: string[]): Promise<LoggedPrediction[]> {
    const out: LoggedPrediction[] = [];
    // The newest served prediction per id (a shadow's copy only when nothing else answered it),
    // as in memory; chunks stay under SQLite's parameter limit.
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const rows = this.db.prepare(`SELECT p.id, p.version, p.role, p.time_ms, p.outputs, (${LABEL_OF_ROW}) IS NOT NULL AS labelled FROM umbra_predictions p WHERE p.id_hash IN (${chunk.map(() => '?').join(',')}) AND p.model = ? ORDER BY p.seq`).all(...chunk.map(idHash), model) as { id: string; version: string; role: string; time_ms: number; outputs: Uint8Array; labelled: number }[];
      const newest = new Map<string, LoggedPrediction>();
      const shadowOnly = new Set<string>();
      const wanted = new Set(chunk);
      for (const r of rows) {
        if (!wanted.has(r.id)) continue;
        const shadow = r.role === 'shadow';
        const served = newest.get(r.id);
        if (shadow && served && !shadowOnly.has(r.id)) {
          // A shadow copy of the served answer: the label of one is the label of both.
          served.untilMs = Math.max(served.untilMs, Number(r.time_ms));
          continue;
        }
        if (shadow) shadowOnly.add(r.id);
        else shadowOnly.delete(r.id);
        newest.set(r.id, { id: r.id, version: r.version, timeMs: Number(r.time_ms), untilMs: Number(r.time_ms), outputs: r.outputs, labelled: Boolean(r.labelled) });
      }
      out.push(...newest.values());
    }
    return out;
  }

  async *exportRows(filter: ExportFilter): AsyncIterable<ExportedRow> {
    let after = 0;
    const where = ['p.seq > ?', 'p.time_ms >= ?'];
    if (filter.model) where.push('p.model = ?');
    const rows = `SELECT p.seq, p.id, p.model, p.version, p.role, p.time_ms, p.latency_ms, p.inputs, p.outputs, (${LABEL_OF_ROW}) AS truth FROM umbra_predictions p WHERE ${where.join(' AND ')}`;
    const sql = `SELECT * FROM (${rows})${filter.labelledOnly ? ' WHERE truth IS NOT NULL' : ''} ORDER BY seq LIMIT ${PAGE}`;
    const stmt = this.db.prepare(sql);
    for (;;) {
      const args: unknown[] = [after, filter.sinceMs ?? 0];
      if (filter.model) args.push(filter.model);
      const rows = stmt.all(...args) as (Parameters<typeof exportRow>[0] & { seq: number })[];
      for (const r of rows) yield exportRow(r);
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.seq;
    }
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

class PostgresLogStore implements LogStore {
  readonly kind = 'postgres';
  private constructor(private readonly pool: import('pg').Pool) {}

  static async open(url: string): Promise<PostgresLogStore> {
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    await pool.query(`
      CREATE TABLE IF NOT EXISTS umbra_predictions (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, role TEXT NOT NULL, time_ms BIGINT NOT NULL, latency_ms DOUBLE PRECISION NOT NULL, inputs BYTEA, outputs BYTEA NOT NULL);
      CREATE INDEX IF NOT EXISTS umbra_predictions_time ON umbra_predictions (time_ms);
      CREATE INDEX IF NOT EXISTS umbra_predictions_model_id ON umbra_predictions (model, id);
      CREATE TABLE IF NOT EXISTS umbra_labels (id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, time_ms BIGINT NOT NULL, truth TEXT NOT NULL, from_ms BIGINT NOT NULL DEFAULT 0, to_ms BIGINT NOT NULL DEFAULT 9007199254740991, PRIMARY KEY (model, id, from_ms));
    `);
    const spans = await pool.query("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'umbra_labels' AND column_name = 'from_ms'");
    if (spans.rowCount === 0) {
      // A log from before labels had spans: one label per id, kept as covering all of its rows.
      await pool.query('ALTER TABLE umbra_labels ADD COLUMN from_ms BIGINT NOT NULL DEFAULT 0, ADD COLUMN to_ms BIGINT NOT NULL DEFAULT 9007199254740991, DROP CONSTRAINT umbra_labels_pkey, ADD PRIMARY KEY (model, id, from_ms)');
    }
    return new PostgresLogStore(pool);
  }

  async insert(predictions: PredictionColumns | readonly PredictionRecord[], labels: LabelRecord[]): Promise<void> {
    const c = asColumns(predictions);
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      if (c.rows > 0) {
        // One statement per batch: columns travel as arrays and unnest turns them into rows.
        await client.query(
          'INSERT INTO umbra_predictions (id, model, version, role, time_ms, latency_ms, inputs, outputs) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::float8[], $7::bytea[], $8::bytea[])',
          [c.ids, c.models, c.versions, c.roles, Array.from(c.timeMs), Array.from(c.latencyMs), c.inputs, c.outputs],
        );
      }
      if (labels.length > 0) {
        await client.query(
          'INSERT INTO umbra_labels (id, model, version, time_ms, truth, from_ms, to_ms) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[]) ON CONFLICT (model, id, from_ms) DO UPDATE SET truth = EXCLUDED.truth, time_ms = EXCLUDED.time_ms, to_ms = EXCLUDED.to_ms',
          [labels.map((r) => r.id), labels.map((r) => r.model), labels.map((r) => r.version), labels.map((r) => r.timeMs), labels.map((r) => JSON.stringify(r.truth)), labels.map((r) => r.fromMs), labels.map((r) => r.toMs)],
        );
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async prune(beforeMs: number, maxRows = 0): Promise<number> {
    const r = await this.pool.query('DELETE FROM umbra_predictions WHERE time_ms < $1', [beforeMs]);
    let n = r.rowCount ?? 0;
    // seq may have gaps (a rolled-back insert still used its numbers), so this keeps at most maxRows.
    if (maxRows > 0) n += (await this.pool.query('DELETE FROM umbra_predictions WHERE seq <= (SELECT max(seq) FROM umbra_predictions) - $1', [maxRows])).rowCount ?? 0;
    await this.pool.query(`DELETE FROM umbra_labels WHERE time_ms < $1 OR to_ms < COALESCE((${OLDEST_PREDICTION}), 0)`, [beforeMs]);
    return n;
  }

  async lookup(model: string, ids: string[]): Promise<LoggedPrediction[]> {
    // The newest served prediction per id (a shadow's copy only when nothing else answered it), the
    // last of its shadow copies, and whether a label's span holds it.
    const { rows } = await this.pool.query(
      `SELECT p.id, p.version, p.time_ms, p.outputs, EXISTS (${LABEL_OF_ROW}) AS labelled,
         CASE WHEN p.role = 'shadow' THEN p.time_ms ELSE coalesce((SELECT max(s.time_ms) FROM umbra_predictions s WHERE s.model = p.model AND s.id = p.id AND s.role = 'shadow' AND s.seq > p.seq), p.time_ms) END AS until_ms
       FROM (SELECT DISTINCT ON (id) seq, id, model, version, role, time_ms, outputs FROM umbra_predictions WHERE model = $1 AND id = ANY($2::text[]) ORDER BY id, (role = 'shadow'), seq DESC) p`,
      [model, ids],
    );
    return rows.map((r: { id: string; version: string; time_ms: string; until_ms: string; outputs: Uint8Array; labelled: boolean }) => ({ id: r.id, version: r.version, timeMs: Number(r.time_ms), untilMs: Number(r.until_ms), outputs: r.outputs, labelled: r.labelled }));
  }

  async *exportRows(filter: ExportFilter): AsyncIterable<ExportedRow> {
    let after = '0';
    for (;;) {
      const args: unknown[] = [after, filter.sinceMs ?? 0];
      const where = ['p.seq > $1', 'p.time_ms >= $2'];
      if (filter.model) {
        args.push(filter.model);
        where.push(`p.model = $${args.length}`);
      }
      if (filter.labelledOnly) where.push('l.truth IS NOT NULL');
      const { rows } = await this.pool.query(`SELECT p.seq, p.id, p.model, p.version, p.role, p.time_ms, p.latency_ms, p.inputs, p.outputs, l.truth FROM umbra_predictions p LEFT JOIN LATERAL (${LABEL_OF_ROW}) l ON true WHERE ${where.join(' AND ')} ORDER BY p.seq LIMIT ${PAGE}`, args);
      for (const r of rows) yield exportRow(r);
      if (rows.length < PAGE) return;
      after = String(rows[rows.length - 1].seq);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
