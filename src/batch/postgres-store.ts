// The shared store: PostgreSQL, for sharded jobs on many machines writing one table and for
// servers that read it. Reads are named (prepared) statements on a small pool; a batch is one
// INSERT over unnest() arrays, so a commit is one round trip whatever the batch size.
import pg from 'pg';
import { UmbraError } from '../errors.js';
import { parseStoredOutputs, redactUrl, type Checkpoint, type PredictionRow, type PredictionStore, type StoredPrediction } from './store.js';

// One unique index on (model, key, version) serves the upsert and the any-version lookup, as in
// the SQLite store (sqlite-store.ts); stores created with a second index keep it.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS predictions (
  model text NOT NULL,
  version text NOT NULL,
  key text NOT NULL,
  outputs jsonb NOT NULL,
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

// A batch and its checkpoint in ONE statement (a data-modifying WITH runs to completion whether
// or not it is read): one statement is one transaction, so the commit is atomic and costs one
// round trip instead of four (BEGIN, rows, checkpoint, COMMIT).
const COMMIT_BATCH = `WITH stored AS (
  INSERT INTO predictions (model, version, key, outputs, computed_at)
  SELECT $1, $2, k, o::jsonb, $5 FROM unnest($3::text[], $4::text[]) AS t(k, o)
  ON CONFLICT (model, version, key) DO UPDATE SET outputs = EXCLUDED.outputs, computed_at = EXCLUDED.computed_at
)
INSERT INTO umbra_batch_checkpoints
  (job, model, version, input, shard, batch_size, records_done, reject_bytes, rows_stored, rejected, finished, updated_at)
  VALUES ($6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, now())
  ON CONFLICT (job) DO UPDATE SET model = EXCLUDED.model, version = EXCLUDED.version, input = EXCLUDED.input, shard = EXCLUDED.shard,
    batch_size = EXCLUDED.batch_size, records_done = EXCLUDED.records_done, reject_bytes = EXCLUDED.reject_bytes,
    rows_stored = EXCLUDED.rows_stored, rejected = EXCLUDED.rejected, finished = EXCLUDED.finished, updated_at = now()`;

interface PredictionRecord {
  model: string;
  version: string;
  key: string;
  outputs: unknown;
  computed_at: Date;
}

export class PostgresStore implements PredictionStore {
  readonly description: string;

  private constructor(private readonly pool: pg.Pool, readonly url: string) {
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
    const store = new PostgresStore(pool, url);
    try {
      await store.transaction(async (c) => {
        await c.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
        await c.query(SCHEMA);
      });
    } catch (err) {
      await pool.end().catch(() => undefined);
      const e = err as Error & { code?: string };
      throw new UmbraError('INVALID_ARGUMENT', `cannot open the PostgreSQL store ${description}: ${e.message || e.code || String(err)}`, { cause: err });
    }
    return store;
  }

  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
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

  async get(model: string, version: string | undefined, key: string): Promise<StoredPrediction | undefined> {
    const result = version === undefined
      ? await this.pool.query<PredictionRecord>({ name: 'umbra-prediction-any', text: 'SELECT * FROM predictions WHERE model = $1 AND key = $2 ORDER BY computed_at DESC LIMIT 1', values: [model, key] })
      : await this.pool.query<PredictionRecord>({ name: 'umbra-prediction', text: 'SELECT * FROM predictions WHERE model = $1 AND version = $2 AND key = $3', values: [model, version, key] });
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
    await this.pool.query({
      name: 'umbra-commit-batch',
      text: COMMIT_BATCH,
      values: [model, version, rows.map((r) => r.key), rows.map((r) => r.outputs), computedAt,
        cp.job, cp.model, cp.version, cp.input, cp.shard, cp.batchSize, cp.recordsDone, cp.rejectBytes, cp.rowsStored, cp.rejected, cp.finished],
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
