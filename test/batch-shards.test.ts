// Sharding: N shards into one PostgreSQL store give the table one job gives, each reject is
// reported once, and the shard comes from flags or a Kubernetes Indexed Job's environment.
import t from 'tap';
import { runBatchJob, openStore, parseShard, shardFromEnvironment, shardOfKey } from '../dist/batch/index.js';
import { allRows, batchFixture, checkAffine } from './helpers/batch.js';
import { createTestDatabase, PG_SKIP_REASON } from './helpers/postgres.js';
import { makeRows, writeCsv } from './fixtures/batch/data.js';

const { umbra, path } = await batchFixture('umbra-batch-shards-');

t.test('shards 1/4..4/4 into one PostgreSQL store equal a single run', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  const single = await createTestDatabase();
  t.teardown(async () => {
    await db.drop();
    await single!.drop();
  });
  const rows = makeRows(2000, 4, 21);
  const input = path('shards.csv');
  writeCsv(input, rows, { extraLines: ['broken,1,2,3'] });
  // The four shards run at once on the same pool, as four machines would against one database.
  const stores = await Promise.all([1, 2, 3, 4].map(() => openStore(db.url)));
  const summaries = await Promise.all(stores.map((store, i) => runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, shard: { index: i + 1, count: 4 }, batchSize: 100, parseWorkers: 1 + (i % 2), rejectsPath: path(`r${i}.jsonl`) })));
  for (const s of stores) await s.close();
  t.equal(summaries.reduce((a, s) => a + s.rowsStored, 0), 2000, 'the shards partition the keys');
  t.equal(summaries.reduce((a, s) => a + s.rejected, 0), 1, 'a reject is reported by exactly one shard');
  t.ok(summaries.every((s) => s.rowsStored > 350), 'no shard is empty or lopsided');
  const whole = await openStore(single!.url);
  await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store: whole, batchSize: 100, rejectsPath: path('r.jsonl') });
  await whole.close();
  const pg = (await import('pg')).default;
  const dump = async (url: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const r = await c.query('SELECT model, version, key, outputs::text AS outputs FROM predictions ORDER BY key');
    await c.end();
    return r.rows;
  };
  const [sharded, reference] = await Promise.all([dump(db.url), dump(single!.url)]);
  t.equal(sharded.length, 2000);
  t.same(sharded, reference, 'same keys, versions and outputs');
  const check = await openStore(db.url);
  checkAffine(t, rows, await allRows(check, 'affine', rows.map((r) => r.key)));
  await check.close();
});

t.test('shard selection: flags, the Indexed Job environment, and a stable partition', async (t) => {
  t.same(parseShard('2/4'), { index: 2, count: 4 });
  t.throws(() => parseShard('0/4'), /expected I\/N with 1 <= I <= N/);
  t.throws(() => parseShard('5/4'), /expected I\/N/);
  t.throws(() => parseShard('x'), /expected I\/N/);
  t.same(shardFromEnvironment({ JOB_COMPLETION_INDEX: '3', JOB_COMPLETIONS: '4' }), { index: 4, count: 4 });
  t.equal(shardFromEnvironment({}), undefined);
  t.throws(() => shardFromEnvironment({ JOB_COMPLETION_INDEX: '0' }), /JOB_COMPLETIONS is not/);
  t.equal(shardOfKey('customer-42', 8), shardOfKey('customer-42', 8));
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 4000; i++) counts[shardOfKey(`user${i}`, 4)]! += 1;
  t.ok(counts.every((c) => c > 850 && c < 1150), `balanced: ${counts.join(', ')}`);
});

