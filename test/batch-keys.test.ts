// Keys as stored: a JSON Lines number key is the number as written (an integer past 2^53 is its
// digits, as CSV and Parquet give them), never a double's rounding of it that another key can share.
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { openStore, runBatchJob, type PredictionStore } from '../dist/batch/index.js';
import { batchFixture } from './helpers/batch.js';
import { property } from './helpers/property.js';

const { umbra, path } = await batchFixture('umbra-batch-keys-');

interface Reject {
  line: number;
  key?: string;
  reason: string;
}

const readRejects = (file: string): Reject[] => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Reject) : []);

/** The stored x (inverting y = 2x + 1) of `key`, or undefined. */
async function storedX(store: PredictionStore, key: string): Promise<number[] | undefined> {
  const p = await store.get('affine', '1', key);
  return (p?.outputs[0]?.data as number[] | undefined)?.map((y) => (y - 1) / 2);
}

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
