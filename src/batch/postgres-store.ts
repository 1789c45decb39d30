// The shared store: PostgreSQL, for sharded jobs on many machines writing one table and for
// servers that read it. Reads are named (prepared) statements on a small pool. A batch goes in
// by COPY in the transaction that also saves its checkpoint; once a batch meets a key already
// stored, the job's batches are upserts instead.
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { UmbraError } from '../errors.js';
import { POSTGRES_KEY_RULES } from './keys.js';
import { parseStoredOutputs, redactUrl, type Checkpoint, type PredictionRow, type PredictionStore, type StoredPrediction } from './store.js';

// One unique index on (model, key, version) serves the upsert and the any-version lookup, as in
// the SQLite store (sqlite-store.ts); stores created with a second index keep it.
// For new stores (an existing table keeps its types; both read the same): names compare
// bytewise (COLLATE "C"; lookups are equality only, so no answer changes, but every index
// comparison skips the locale's collation), and `outputs` is json (checked and kept as written)
// rather than jsonb (parsed into a binary form no reader uses). Together they took the server's
// CPU per stored row from about 15 to 10.5 µs (bench/RESULTS-batch.md).
const SCHEMA = `
CREATE TABLE IF NOT EXISTS predictions (
  model text COLLATE "C" NOT NULL,
  version text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  outputs json NOT NULL,
  computed_at timestamptz NOT NULL,
  UNIQUE (model, key, version)
);
CREATE TABLE IF NOT EXISTS umbra_batch_checkpoints (
  job text PRIMARY KEY,
  model text NOT NULL,
  version text NOT NULL,
  input text NOT NULL,
  shard text NOT NULL,
  batch_size integer NOT NULL,
  records_done bigint NOT NULL,
  reject_bytes bigint NOT NULL,
  rows_stored bigint NOT NULL,
  rejected bigint NOT NULL,
  finished boolean NOT NULL,
  updated_at timestamptz NOT NULL
);`;

// Shards start together; concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog,
// so schema creation is serialised by a transaction-scoped advisory lock.
const SCHEMA_LOCK = 0x756d6272;

/** Saves a job's checkpoint; its 11 values are parameters `$first` onwards, in checkpointValues' order. */
const saveCheckpoint = (first: number) => {
  const values = Array.from({ length: 11 }, (_, i) => `$${first + i}`).join(', ');
  return `INSERT INTO umbra_batch_checkpoints
  (job, model, version, input, shard, batch_size, records_done, reject_bytes, rows_stored, rejected, finished, updated_at)
  VALUES (${values}, now())
  ON CONFLICT (job) DO UPDATE SET model = EXCLUDED.model, version = EXCLUDED.version, input = EXCLUDED.input, shard = EXCLUDED.shard,
    batch_size = EXCLUDED.batch_size, records_done = EXCLUDED.records_done, reject_bytes = EXCLUDED.reject_bytes,
    rows_stored = EXCLUDED.rows_stored, rejected = EXCLUDED.rejected, finished = EXCLUDED.finished, updated_at = now()`;
};

const SAVE_CHECKPOINT = saveCheckpoint(1);

const COPY_ROWS = 'COPY predictions (model, version, key, outputs, computed_at) FROM STDIN';

/** SQLSTATE unique_violation: a copied row's key is already stored (or being stored by another job). */
const UNIQUE_VIOLATION = '23505';

// A batch and its checkpoint in ONE statement (a data-modifying WITH runs to completion whether
// or not it is read): one statement is one transaction, so the commit is atomic and costs one
// round trip instead of four (BEGIN, rows, checkpoint, COMMIT). The outputs are cast to the
// column's own type (json, or jsonb in stores created before), so they are parsed once.
const upsertBatch = (outputsType: 'json' | 'jsonb') => `WITH stored AS (
  INSERT INTO predictions (model, version, key, outputs, computed_at)
  SELECT $1, $2, k, o::${outputsType}, $5 FROM unnest($3::text[], $4::text[]) AS t(k, o)
  ON CONFLICT (model, version, key) DO UPDATE SET outputs = EXCLUDED.outputs, computed_at = EXCLUDED.computed_at
)
${saveCheckpoint(6)}`;

interface PredictionRecord {
  model: string;
  version: string;
  key: string;
  outputs: unknown;
  computed_at: Date;
}

export class PostgresStore implements PredictionStore {
  readonly description: string;
  readonly keyRules = POSTGRES_KEY_RULES;
  /**
   * Whether batches go in by COPY: the server stores a copied row for about 6 µs of CPU against
   * 10 for the same row through an upsert over unnest() arrays. COPY cannot replace a row, so the
   * first batch that meets a stored key rolls back whole (its checkpoint with it) and is upserted;
   * from then on, since a rerun over stored keys would meet them in every batch, so is every batch.
   */
  private copying = true;

  private constructor(private readonly pool: pg.Pool, readonly url: string, private readonly outputsType: 'json' | 'jsonb') {
    this.description = redactUrl(url);
  }

  static async open(url: string): Promise<PostgresStore> {
    const description = redactUrl(url);
    let pool: pg.Pool;
    try {
      pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 10_000 });
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `invalid PostgreSQL store URL '${description}': ${(err as Error).message}`, { cause: err });
    }
    // An idle client losing its connection must not crash the process; the next query reports it.
    pool.on('error', () => undefined);
    let outputsType: 'json' | 'jsonb';
    try {
      outputsType = await transaction(pool, async (c) => {
        await c.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
        await c.query(SCHEMA);
        const column = await c.query<{ type: string }>(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = 'predictions'::regclass AND attname = 'outputs'`);
        return column.rows[0]?.type === 'jsonb' ? 'jsonb' : 'json';
      });
    } catch (err) {
      await pool.end().catch(() => undefined);
      const e = err as Error & { code?: string };
      throw new UmbraError('INVALID_ARGUMENT', `cannot open the PostgreSQL store ${description}: ${e.message || e.code || String(err)}`, { cause: err });
    }
    return new PostgresStore(pool, url, outputsType);
  }

  async get(model: string, version: string | undefined, key: string): Promise<StoredPrediction | undefined> {
    const result = version === undefined
      ? await this.pool.query<PredictionRecord>({ name: 'umbra-prediction-any', text: 'SELECT model, version, key, outputs::text AS outputs, computed_at FROM predictions WHERE model = $1 AND key = $2 ORDER BY computed_at DESC LIMIT 1', values: [model, key] })
      : await this.pool.query<PredictionRecord>({ name: 'umbra-prediction', text: 'SELECT model, version, key, outputs::text AS outputs, computed_at FROM predictions WHERE model = $1 AND version = $2 AND key = $3', values: [model, version, key] });
    const row = result.rows[0];
    if (!row) return undefined;
    return { model: row.model, version: row.version, key: row.key, outputs: parseStoredOutputs(row.outputs, `${model}/${row.version}/${key}`), computedAt: row.computed_at };
  }

  async checkpoint(job: string): Promise<Checkpoint | undefined> {
    const r = (await this.pool.query('SELECT * FROM umbra_batch_checkpoints WHERE job = $1', [job])).rows[0] as Record<string, unknown> | undefined;
    if (!r) return undefined;
    return {
      job: String(r.job), model: String(r.model), version: String(r.version), input: String(r.input), shard: String(r.shard),
      batchSize: Number(r.batch_size), recordsDone: Number(r.records_done), rejectBytes: Number(r.reject_bytes),
      rowsStored: Number(r.rows_stored), rejected: Number(r.rejected), finished: r.finished === true,
    };
  }

  async commit(model: string, version: string, rows: PredictionRow[], computedAt: Date, cp: Checkpoint): Promise<void> {
    if (this.copying) {
      try {
        await transaction(this.pool, async (client) => {
          await copyRows(client, copyText(model, version, rows, computedAt));
          await client.query({ name: 'umbra-save-checkpoint', text: SAVE_CHECKPOINT, values: checkpointValues(cp) });
        });
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== UNIQUE_VIOLATION) throw err;
        this.copying = false;
      }
    }
    await this.pool.query({
      name: 'umbra-upsert-batch',
      text: upsertBatch(this.outputsType),
      values: [model, version, rows.map((r) => r.key), rows.map((r) => r.outputs), computedAt, ...checkpointValues(cp)],
    });
  }

  async count(model: string, version?: string): Promise<number> {
    const r = version === undefined
      ? await this.pool.query('SELECT COUNT(*)::int AS n FROM predictions WHERE model = $1', [model])
      : await this.pool.query('SELECT COUNT(*)::int AS n FROM predictions WHERE model = $1 AND version = $2', [model, version]);
    return Number((r.rows[0] as { n: number }).n);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

async function transaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * One COPY of the whole body. Not through stream.pipeline: when the server refuses a row it ends
 * the COPY with an error and is ready for the next query (the ROLLBACK) at once, while the copy
 * stream then waits for callbacks that never come; here the error alone settles it.
 */
function copyRows(client: pg.PoolClient, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const copy = client.query(copyFrom(COPY_ROWS));
    copy.once('error', reject);
    copy.once('finish', resolve);
    copy.end(body);
  });
}

function checkpointValues(cp: Checkpoint): unknown[] {
  return [cp.job, cp.model, cp.version, cp.input, cp.shard, cp.batchSize, cp.recordsDone, cp.rejectBytes, cp.rowsStored, cp.rejected, cp.finished];
}

// COPY's text format: a tab between columns, a newline after each row, and a backslash, tab,
// newline or carriage return inside a value escaped (a key may hold any of them; the outputs'
// JSON only a backslash, inside an escaped string).
const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIALS = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

function copyValue(text: string): string {
  return COPY_SPECIAL.test(text) ? text.replace(COPY_SPECIALS, (c) => COPY_ESCAPES[c]!) : text;
}

/** The batch's rows as the body of `COPY predictions (model, version, key, outputs, computed_at)`. */
export function copyText(model: string, version: string, rows: PredictionRow[], computedAt: Date): Buffer {
  const tail = `\t${computedAt.toISOString()}\n`;
  const head = `${copyValue(model)}\t${copyValue(version)}\t`;
  let text = '';
  for (const row of rows) text += head + copyValue(row.key) + '\t' + copyValue(row.outputs) + tail;
  return Buffer.from(text);
}
