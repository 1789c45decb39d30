// The PostgreSQL store's write path: batches go in by COPY with their checkpoint in one
// transaction, and a batch that meets a stored key is rolled back whole and upserted instead (so
// reruns and keys repeated across batches keep their upsert meaning). New stores hold names with
// bytewise collation and outputs as json; stores created with jsonb are written and read as before.
import t from 'tap';
import pg from 'pg';
import { openStore, runBatchJob, type Checkpoint, type PredictionRow } from '../dist/batch/index.js';
import { copyText } from '../dist/batch/postgres-store.js';
import { allRows, batchFixture, checkAffine } from './helpers/batch.js';
import { createTestDatabase, PG_SKIP_REASON } from './helpers/postgres.js';
import { makeRows, writeCsv } from './fixtures/batch/data.js';

const { umbra, path } = await batchFixture('umbra-batch-pg-');

const checkpoint = (recordsDone: number, rowsStored: number): Checkpoint => ({
  job: 'j', model: 'm', version: '1', input: 'in.csv', shard: '', batchSize: 2,
  recordsDone, rejectBytes: 0, rowsStored, rejected: 0, finished: false,
});

const outputs = (label: string, values: number[]) =>
  JSON.stringify([{ name: 'y', datatype: 'FP32', shape: [1, values.length], data: values }, { name: 'label', datatype: 'BYTES', shape: [1], data: [label] }]);

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(sql)).rows;
  } finally {
    await c.end();
  }
}

t.test('COPY text escapes what its format gives meaning to, and nothing else', async (t) => {
  const rows: PredictionRow[] = [{ key: 'a\tb\\c\nd\re "q" é', outputs: '[{"s":"x\\ny"}]' }, { key: 'plain', outputs: '[1]' }];
  const text = copyText('m\t1', 'v', rows, new Date('2026-01-02T03:04:05.678Z')).toString('utf8');
  t.equal(text, 'm\\t1\tv\ta\\tb\\\\c\\nd\\re "q" é\t[{"s":"x\\\\ny"}]\t2026-01-02T03:04:05.678Z\n'
    + 'm\\t1\tv\tplain\t[1]\t2026-01-02T03:04:05.678Z\n');
});

t.test('keys and outputs with tabs, newlines, backslashes and quotes come back exactly', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  const store = await openStore(db.url);
  const rows: PredictionRow[] = [
    { key: 'tab\there', outputs: outputs('a\tb', [1.5, -2]) },
    { key: 'line\nbreak\r\n', outputs: outputs('back\\slash "quoted"', [0.1, 3]) },
    { key: 'back\\slash', outputs: outputs('ünïcödé ✓', [1e-7, -0]) },
  ];
  await store.commit('m', '1', rows, new Date(), checkpoint(3, 3));
  for (const row of rows) t.same((await store.get('m', '1', row.key))?.outputs, JSON.parse(row.outputs), JSON.stringify(row.key));
  t.same((await store.get('m', undefined, 'tab\there'))?.outputs, JSON.parse(rows[0]!.outputs), 'the any-version lookup finds it too');
  t.equal((await store.checkpoint('j'))?.recordsDone, 3);
  const stored = await query<{ outputs: string }>(db.url, "SELECT outputs::text AS outputs FROM predictions WHERE key = 'back\\slash'");
  t.equal(stored[0]?.outputs, rows[2]!.outputs, 'the JSON is kept as written');
  await store.close();
});

t.test('INT64 outputs past 2^53 come back exactly, from json and from an older jsonb store', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  const wide = '[{"name":"id","datatype":"INT64","shape":[1,2],"data":[18014398509481982,-9007199254740993]}]';
  const want = [{ name: 'id', datatype: 'INT64', shape: [1, 2], data: [18014398509481982n, -9007199254740993n] }];
  const store = await openStore(db.url);
  await store.commit('m', '1', [{ key: 'k', outputs: wide }], new Date(), checkpoint(1, 1));
  t.same((await store.get('m', '1', 'k'))?.outputs, want, 'json: as written, not 18014398509481984 and -9007199254740992');
  await store.close();
  await query(db.url, `ALTER TABLE predictions ALTER COLUMN outputs TYPE jsonb USING outputs::jsonb`);
  const older = await openStore(db.url);
  t.same((await older.get('m', undefined, 'k'))?.outputs, want, 'jsonb keeps numerics exact, and they are read as such');
  await older.close();
});

t.test('new stores: bytewise names and json outputs', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  await (await openStore(db.url)).close();
  const columns = await query<{ column_name: string; data_type: string; collation_name: string | null }>(db.url,
    "SELECT column_name, data_type, collation_name FROM information_schema.columns WHERE table_name = 'predictions' ORDER BY ordinal_position");
  t.same(columns.map((c) => [c.column_name, c.data_type, c.collation_name]), [
    ['model', 'text', 'C'], ['version', 'text', 'C'], ['key', 'text', 'C'], ['outputs', 'json', null], ['computed_at', 'timestamp with time zone', null],
  ]);
});

t.test('a batch meeting a stored key is rolled back whole and upserted; the rest of the job upserts', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  const store = await openStore(db.url);
  await store.commit('m', '1', [{ key: 'a', outputs: outputs('first', [1]) }, { key: 'b', outputs: outputs('first', [2]) }], new Date(), checkpoint(2, 2));
  // 'b' is stored: COPY fails on it after 'c' went in; the rollback must take 'c' and the
  // checkpoint with it, and the upsert then stores all three.
  const second = [{ key: 'c', outputs: outputs('second', [3]) }, { key: 'b', outputs: outputs('second', [20]) }, { key: 'd', outputs: outputs('second', [4]) }];
  await store.commit('m', '1', second, new Date(), checkpoint(5, 5));
  t.equal(await store.count('m', '1'), 4, 'a, b, c, d once each');
  t.same((await store.get('m', '1', 'b'))?.outputs, JSON.parse(second[1]!.outputs), 'the later row replaced the stored one');
  t.same((await store.get('m', '1', 'a'))?.outputs, JSON.parse(outputs('first', [1])), 'rows outside the batch untouched');
  t.equal((await store.checkpoint('j'))?.recordsDone, 5, 'the checkpoint of the upserted batch');
  // From now on every batch is an upsert: a new key and a stored one in one batch.
  await store.commit('m', '1', [{ key: 'e', outputs: outputs('third', [5]) }, { key: 'a', outputs: outputs('third', [10]) }], new Date(), checkpoint(7, 7));
  t.equal(await store.count('m', '1'), 5);
  t.same((await store.get('m', '1', 'a'))?.outputs, JSON.parse(outputs('third', [10])));
  await store.close();
});

t.test('a store created with jsonb outputs and locale collation is written and read as before', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  await query(db.url, `CREATE TABLE predictions (model text NOT NULL, version text NOT NULL, key text NOT NULL, outputs jsonb NOT NULL,
    computed_at timestamptz NOT NULL, UNIQUE (model, version, key));
    CREATE INDEX predictions_lookup ON predictions (model, key, computed_at);
    INSERT INTO predictions VALUES ('m', '1', 'old', '[{"name":"y","datatype":"FP32","shape":[1,1],"data":[9]}]', now())`);
  const store = await openStore(db.url);
  t.same((await store.get('m', '1', 'old'))?.outputs, [{ name: 'y', datatype: 'FP32', shape: [1, 1], data: [9] }], 'an earlier row reads as before');
  await store.commit('m', '1', [{ key: 'copied', outputs: outputs('x', [1]) }], new Date(), checkpoint(1, 1));
  await store.commit('m', '1', [{ key: 'old', outputs: outputs('y', [2]) }, { key: 'new', outputs: outputs('z', [3]) }], new Date(), checkpoint(3, 3));
  t.equal(await store.count('m', '1'), 3);
  for (const [key, label, value] of [['copied', 'x', 1], ['old', 'y', 2], ['new', 'z', 3]] as const) {
    t.same((await store.get('m', '1', key))?.outputs, JSON.parse(outputs(label, [value])), `${key}: by COPY or upsert into jsonb`);
  }
  const types = await query<{ data_type: string }>(db.url, "SELECT data_type FROM information_schema.columns WHERE table_name = 'predictions' AND column_name = 'outputs'");
  t.equal(types[0]?.data_type, 'jsonb', 'the existing table keeps its type');
  await store.close();
});

t.test('jobs: a rerun over stored keys stores each once with its values', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  const rows = makeRows(600, 4, 7);
  const input = path('rerun.csv');
  writeCsv(input, rows);
  const first = await openStore(db.url);
  t.equal((await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store: first, batchSize: 100, rejectsPath: path('r1.jsonl') })).rowsStored, 600);
  await first.close();
  // A new run of the same job (no --resume): every batch meets stored keys.
  const again = await openStore(db.url);
  t.equal((await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store: again, batchSize: 100, rejectsPath: path('r2.jsonl') })).rowsStored, 600);
  t.equal(await again.count('affine', '1'), 600, 'nothing duplicated');
  checkAffine(t, rows, await allRows(again, 'affine', rows.map((r) => r.key)));
  await again.close();
});

t.test('jobs: a key repeated across batches keeps its later row', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  // Key k-dup in the first batch and again in the fourth, with other values.
  const repeated = makeRows(400, 4, 8);
  const dupInput = path('dup.csv');
  const withDup = repeated.map((r, i) => (i === 10 || i === 350 ? { ...r, key: 'k-dup' } : r));
  writeCsv(dupInput, withDup);
  const store = await openStore(db.url);
  const summary = await runBatchJob({ umbra, model: 'affine', input: dupInput, keyColumn: 'id', store, batchSize: 100, rejectsPath: path('r3.jsonl') });
  t.equal(summary.rowsStored, 400, 'every row stored, the repeated key twice');
  t.same(((await store.get('affine', '1', 'k-dup'))?.outputs as { data: number[] }[])[0]!.data, repeated[350]!.x.map((v) => v * 2 + 1), 'the later row');
  const rest = withDup.filter((r) => r.key !== 'k-dup');
  checkAffine(t, rest, await allRows(store, 'affine', rest.map((r) => r.key)));
  await store.close();
});
