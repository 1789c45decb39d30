// Keys as stored: a JSON Lines number key is the number as written (an integer past 2^53 is its
// digits, as CSV and Parquet give them), never a double's rounding of it that another key can
// share; and a key a PostgreSQL store cannot hold (a NUL, more bytes than its index takes, an
// unpaired surrogate) is a reject with its reason, so the job carries on and resumes exactly once.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { openStore, runBatchJob, type PredictionStore } from '../dist/batch/index.js';
import { batchFixture, readRejects, storedX } from './helpers/batch.js';
import { property } from './helpers/property.js';
import { createTestDatabase, PG_SKIP_REASON } from './helpers/postgres.js';
import { rng } from './fixtures/batch/data.js';

const { umbra, path } = await batchFixture('umbra-batch-keys-');

/** Runs the job over the JSON Lines `lines` into `store`; the summary and the rejects. */
async function jsonlJob(lines: string[], store: PredictionStore | string, extra: Partial<Parameters<typeof runBatchJob>[0]> = {}) {
  const input = path('in.jsonl');
  writeFileSync(input, lines.join('\n') + '\n');
  const rejectsPath = path('rejects.jsonl');
  const where = typeof store === 'string' ? { storeUrl: store } : { store };
  const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', rejectsPath, batchSize: 4, ...where, ...extra });
  return { summary, rejects: readRejects(rejectsPath) };
}

t.test('JSON Lines integer keys past 2^53 are their digits as written, as CSV keeps them', async (t) => {
  const big = ['9007199254740993', '9007199254740992', '12345678901234567890', '-9223372036854775809', '18446744073709551617', '4611686018427388000', '100000000000000000000000000001'];
  // The first line is read for the columns before any other: its key is taken as exactly.
  const lines = big.map((key, i) => `{"id": ${key}, "x": [${i}, 1, 2, 3]}`);
  const store = await openStore(`sqlite:${path('big.db')}`);
  t.teardown(() => store.close());
  const { summary, rejects } = await jsonlJob(lines, store);
  t.same([summary.rowsStored, rejects], [big.length, []], 'every row stored, none rejected');
  const exact = property('each key is stored under its own digits, with its own row');
  for (const [i, key] of big.entries()) exact.same(await storedX(store, key), [i, 1, 2, 3], () => key);
  exact.assert(t);
  t.equal(await store.count('affine'), big.length, 'no key stored under a rounded one as well');

  // The same keys from CSV, where a key is its field's text: the same table.
  const csv = path('big.csv');
  writeFileSync(csv, ['id,f0,f1,f2,f3', ...big.map((key, i) => `${key},${i},1,2,3`)].join('\n'));
  const fromCsv = await openStore(`sqlite:${path('big-csv.db')}`);
  t.teardown(() => fromCsv.close());
  await runBatchJob({ umbra, model: 'affine', input: csv, keyColumn: 'id', store: fromCsv, rejectsPath: path('csv.rejects.jsonl') });
  const same = property('CSV stores the same keys with the same rows');
  for (const key of big) same.same(await storedX(fromCsv, key), await storedX(store, key), () => key);
  same.assert(t);
});

t.test('JSON Lines number keys a double holds keep their text as before; those it does not are rejects naming the fix', async (t) => {
  const store = await openStore(`sqlite:${path('numbers.db')}`);
  t.teardown(() => store.close());
  const { summary, rejects } = await jsonlJob([
    '{"id": 42, "x": [1, 1, 1, 1]}',
    '{"id": -7, "x": [2, 2, 2, 2]}',
    '{"id": 1.5, "x": [3, 3, 3, 3]}',
    '{"id": 2.50e3, "x": [4, 4, 4, 4]}',
    '{"id": 0.12345678901234567891, "x": [5, 5, 5, 5]}',
    '{"id": 0.12345678901234567892, "x": [6, 6, 6, 6]}',
    '{"id": 1e400, "x": [7, 7, 7, 7]}',
    '{"id": 1, "id": 9007199254740993, "x": [8, 8, 8, 8]}',
    '{"id": "9007199254740995", "x": [9, 9, 9, 9]}',
  ], store);
  t.same([summary.rowsStored, summary.rejected], [5, 4]);
  t.same([await storedX(store, '42'), await storedX(store, '-7'), await storedX(store, '1.5'), await storedX(store, '2500'), await storedX(store, '9007199254740995')],
    [[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3], [4, 4, 4, 4], [9, 9, 9, 9]], 'the keys JSON.parse gave them before, and a quoted key its text');
  t.same(rejects.map((r) => [r.line, r.key]), [[5, undefined], [6, undefined], [7, undefined], [8, undefined]], 'two fractions past a double\'s digits, one past its range, one key given twice');
  t.equal(rejects[0]!.reason, 'the key 0.12345678901234567891 is a number a double does not hold exactly (JSON reads it as 0.12345678901234568), so it could be stored as another row\'s key; write it as a string ("0.12345678901234567891") to key the row by its text');
});

t.test('a PostgreSQL store: keys it cannot hold are rejects with their reasons, and the job carries on', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  const next = rng(3);
  // Characters of two UTF-8 bytes each (U+0100 to U+07FF), random, so no compression shrinks them under the index's limit.
  const wide = (bytes: number) => Array.from({ length: bytes / 2 }, () => String.fromCharCode(0x100 + Math.floor(next() * 0x700))).join('');
  const atLimit = wide(2048);
  const overLimit = wide(2050);
  const large = randomBytes(7500).toString('base64');
  const keys = ['a', 'b\\u0000c', JSON.stringify(atLimit).slice(1, -1), JSON.stringify(overLimit).slice(1, -1), large, 'lone \\ud800', 'z'];
  const lines = keys.map((key, i) => `{"id": "${key}", "x": [${i}, 0, 0, 0]}`);
  const { summary, rejects } = await jsonlJob(lines, db.url, { batchSize: 2 });
  t.same([summary.rowsStored, summary.rejected], [3, 4], 'the job ends, every other row stored');
  t.same(rejects.map((r) => [r.line, r.reason]), [
    [2, 'the key holds a NUL character (U+0000), which PostgreSQL text cannot hold'],
    [4, 'the key is 2050 bytes long (UTF-8), and a PostgreSQL store indexes keys of at most 2048 bytes'],
    [5, 'the key is 10000 bytes long (UTF-8), and a PostgreSQL store indexes keys of at most 2048 bytes'],
    [6, 'the key holds an unpaired UTF-16 surrogate (a \\ud800-style JSON escape), which is not Unicode text: PostgreSQL would store it as U+FFFD, the same key as others'],
  ]);
  t.same(rejects.map((r) => r.key), ['b\u0000c', overLimit, large, 'lone \ud800'], 'each reject names its key');
  const store = await openStore(db.url);
  t.teardown(() => store.close());
  t.same([await storedX(store, 'a'), await storedX(store, atLimit), await storedX(store, 'z')], [[0, 0, 0, 0], [2, 0, 0, 0], [6, 0, 0, 0]], 'a key of the limit is stored');
});

t.test('the key limit leaves room in the index for the longest model name and version', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  const store = await openStore(db.url);
  t.teardown(() => store.close());
  const next = rng(9);
  // Four-byte characters from random planes: the least compressible UTF-8 there is.
  const key = Array.from({ length: 512 }, () => String.fromCodePoint(0x10000 + Math.floor(next() * 0xfffff))).join('');
  // A model name of the longest kind, random, so compression does not shrink it either.
  const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-';
  const model = 'm' + Array.from({ length: 127 }, () => letters[Math.floor(next() * 63)]).join('').replace(/\.\./g, '_.');
  const version = '9007199254740991';
  t.equal(Buffer.byteLength(key), 2048);
  await store.commit(model, version, [{ key, outputs: '[]' }], new Date(), {
    job: 'j', model, version, input: 'in', shard: '', batchSize: 1, recordsDone: 1, rejectBytes: 0, rowsStored: 1, rejected: 0, finished: true,
  });
  t.equal((await store.get(model, version, key))?.key, key);
});

t.test('a PostgreSQL job stopped after a stored batch resumes with each good row stored and each bad key rejected once', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  const store = await openStore(db.url);
  t.teardown(() => store.close());
  // Bad keys spread through batches of four; the first run stops at its third commit.
  const keys = Array.from({ length: 20 }, (_, i) => (i % 8 === 2 ? `bad\\u0000${i}` : `k${i}`));
  const input = path('resume.jsonl');
  writeFileSync(input, keys.map((key, i) => `{"id": "${key}", "x": [${i}, 0, 0, 0]}`).join('\n') + '\n');
  const rejectsPath = path('resume.rejects.jsonl');
  let commits = 0;
  const failing: PredictionStore = {
    description: store.description,
    keyRules: store.keyRules,
    get: (...args) => store.get(...args),
    checkpoint: (job) => store.checkpoint(job),
    async commit(...args) {
      if (++commits === 3) throw new Error('the machine went away');
      return store.commit(...args);
    },
    count: (...args) => store.count(...args),
    close: async () => undefined,
  };
  const options = { umbra, model: 'affine', input, keyColumn: 'id', rejectsPath, batchSize: 4 };
  const failed = await runBatchJob({ ...options, store: failing }).then(() => undefined, (err: Error) => err);
  t.match(failed?.message, /the machine went away; rerun with --resume/);
  const resumed = await runBatchJob({ ...options, store, resume: true });
  // A batch is four rows to store: the first two took records 1-5 (one a reject) and 6-9.
  t.same([resumed.resumedFrom, resumed.rowsStored, resumed.rejected], [9, 17, 3], 'resumed after two batches; the totals count each row once');
  t.same(readRejects(rejectsPath).map((r) => [r.line, r.key]), [[3, 'bad\u00002'], [11, 'bad\u000010'], [19, 'bad\u000018']], 'each bad key rejected once, in input order');
  const stored = property('every good key stored with its own row');
  for (const [i, key] of keys.entries()) if (!key.startsWith('bad')) stored.same(await storedX(store, key), [i, 0, 0, 0], () => key);
  stored.assert(t);
  t.equal(await store.count('affine'), 17, 'and nothing else');
});

t.test('SQLite holds the keys PostgreSQL cannot, so they are no rejects there', async (t) => {
  const store = await openStore(`sqlite:${path('sqlite-keys.db')}`);
  t.teardown(() => store.close());
  const long = 'k'.repeat(10_000);
  const { summary } = await jsonlJob([`{"id": "nul\\u0000key", "x": [1, 0, 0, 0]}`, `{"id": "${long}", "x": [2, 0, 0, 0]}`], store);
  t.same([summary.rowsStored, summary.rejected, await storedX(store, 'nul\u0000key'), await storedX(store, long)], [2, 0, [1, 0, 0, 0], [2, 0, 0, 0]]);
});
