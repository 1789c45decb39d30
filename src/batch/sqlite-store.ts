// The embedded store: one SQLite file in WAL mode, so the server reads while a job writes.
// better-sqlite3 is synchronous; every statement here is prepared once and is a point lookup or
// a short batched write, so a call holds the event loop for microseconds, not milliseconds.
import Database from 'better-sqlite3';
import { UmbraError } from '../errors.js';
import { parseStoredOutputs, type Checkpoint, type PredictionRow, type PredictionStore, type StoredPrediction } from './store.js';

// One index serves both the upsert (any unique index on the three columns is its conflict target)
// and the newest-of-any-version lookup (model, key, then the few versions sorted): a second index
// on (model, key) cost a third of every row's write. Stores created with that index keep it.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS predictions (
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  key TEXT NOT NULL,
  outputs TEXT NOT NULL,
  computed_at TEXT NOT NULL,
  UNIQUE (model, key, version)
);
CREATE TABLE IF NOT EXISTS umbra_batch_checkpoints (
  job TEXT PRIMARY KEY,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  input TEXT NOT NULL,
  shard TEXT NOT NULL,
  batch_size INTEGER NOT NULL,
  records_done INTEGER NOT NULL,
  reject_bytes INTEGER NOT NULL,
  rows_stored INTEGER NOT NULL,
  rejected INTEGER NOT NULL,
  finished INTEGER NOT NULL,
  updated_at TEXT NOT NULL
);`;

const ROWS_PER_STATEMENT = 64;

interface PredictionRecord {
  model: string;
  version: string;
  key: string;
  outputs: string;
  computed_at: string;
}

interface CheckpointRecord {
  job: string;
  model: string;
  version: string;
  input: string;
  shard: string;
  batch_size: number;
  records_done: number;
  reject_bytes: number;
  rows_stored: number;
  rejected: number;
  finished: number;
}

export class SqliteStore implements PredictionStore {
  readonly description: string;
  readonly url: string;
  private readonly byVersion: Database.Statement<[string, string, string], PredictionRecord>;
  private readonly anyVersion: Database.Statement<[string, string], PredictionRecord>;
  private readonly upsert: Database.Statement<unknown[]>;
  private readonly upsertMany: Database.Statement<unknown[]>;
  private readonly saveCheckpoint: Database.Statement<unknown[]>;
  private readonly loadCheckpoint: Database.Statement<[string], CheckpointRecord>;
  private readonly writeBatch: (model: string, version: string, rows: PredictionRow[], at: string, cp: Checkpoint) => void;

  private constructor(private readonly db: Database.Database, path: string) {
    this.description = `sqlite:${path}`;
    this.url = this.description;
    this.byVersion = db.prepare('SELECT * FROM predictions WHERE model = ? AND version = ? AND key = ?');
    this.anyVersion = db.prepare('SELECT * FROM predictions WHERE model = ? AND key = ? ORDER BY computed_at DESC LIMIT 1');
    // Model, version and time are named parameters bound once per statement; each row binds only
    // its key and outputs.
    const upsertSql = (rows: number) => `INSERT INTO predictions (model, version, key, outputs, computed_at) VALUES ${Array(rows).fill('(@model, @version, ?, ?, @at)').join(', ')}
      ON CONFLICT (model, version, key) DO UPDATE SET outputs = excluded.outputs, computed_at = excluded.computed_at`;
    this.upsert = db.prepare(upsertSql(1));
    // Many rows per statement: the per-call cost of the binding, not SQLite, dominates small rows.
    this.upsertMany = db.prepare(upsertSql(ROWS_PER_STATEMENT));
    this.saveCheckpoint = db.prepare(`INSERT INTO umbra_batch_checkpoints
      (job, model, version, input, shard, batch_size, records_done, reject_bytes, rows_stored, rejected, finished, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (job) DO UPDATE SET model = excluded.model, version = excluded.version, input = excluded.input, shard = excluded.shard,
        batch_size = excluded.batch_size, records_done = excluded.records_done, reject_bytes = excluded.reject_bytes,
        rows_stored = excluded.rows_stored, rejected = excluded.rejected, finished = excluded.finished, updated_at = excluded.updated_at`);
    this.loadCheckpoint = db.prepare('SELECT * FROM umbra_batch_checkpoints WHERE job = ?');
    this.writeBatch = db.transaction((model: string, version: string, rows: PredictionRow[], at: string, cp: Checkpoint) => {
      let i = 0;
      const named = { model, version, at };
      const params: string[] = [];
      for (; i + ROWS_PER_STATEMENT <= rows.length; i += ROWS_PER_STATEMENT) {
        params.length = 0;
        for (let j = i; j < i + ROWS_PER_STATEMENT; j++) params.push(rows[j]!.key, rows[j]!.outputs);
        this.upsertMany.run(params, named);
      }
      for (; i < rows.length; i++) this.upsert.run(rows[i]!.key, rows[i]!.outputs, named);
      this.saveCheckpoint.run(cp.job, cp.model, cp.version, cp.input, cp.shard, cp.batchSize, cp.recordsDone, cp.rejectBytes,
        cp.rowsStored, cp.rejected, cp.finished ? 1 : 0, new Date().toISOString());
    });
  }

  static open(path: string): SqliteStore {
    let db: Database.Database;
    try {
      db = new Database(path);
      // A new file only (no effect on an existing one, and set before WAL, which fixes it): each
      // commit writes every page it touched, and the rows' upserts touch pages all over the index;
      // 8 KiB pages took 15% less CPU per stored row than the default 4 KiB (bench/RESULTS-batch.md).
      db.pragma('page_size = 8192');
      // WAL: readers never wait for the writer; NORMAL sync keeps every commit across a process
      // kill (only a power cut may lose the last commits, which a resume then redoes).
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
      db.exec(SCHEMA);
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `cannot open the SQLite store sqlite:${path}: ${(err as Error).message}`, { cause: err });
    }
    return new SqliteStore(db, path);
  }

  async get(model: string, version: string | undefined, key: string): Promise<StoredPrediction | undefined> {
    const row = version === undefined ? this.anyVersion.get(model, key) : this.byVersion.get(model, version, key);
    if (!row) return undefined;
    return {
      model: row.model,
      version: row.version,
      key: row.key,
      outputs: parseStoredOutputs(row.outputs, `${model}/${row.version}/${key}`),
      computedAt: new Date(row.computed_at),
    };
  }

  async checkpoint(job: string): Promise<Checkpoint | undefined> {
    const r = this.loadCheckpoint.get(job);
    if (!r) return undefined;
    return {
      job: r.job, model: r.model, version: r.version, input: r.input, shard: r.shard, batchSize: r.batch_size,
      recordsDone: r.records_done, rejectBytes: r.reject_bytes, rowsStored: r.rows_stored, rejected: r.rejected, finished: r.finished === 1,
    };
  }

  async commit(model: string, version: string, rows: PredictionRow[], computedAt: Date, checkpoint: Checkpoint): Promise<void> {
    this.writeBatch(model, version, rows, computedAt.toISOString(), checkpoint);
  }

  async count(model: string, version?: string): Promise<number> {
    const r = version === undefined
      ? this.db.prepare('SELECT COUNT(*) AS n FROM predictions WHERE model = ?').get(model) as { n: number }
      : this.db.prepare('SELECT COUNT(*) AS n FROM predictions WHERE model = ? AND version = ?').get(model, version) as { n: number };
    return r.n;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
