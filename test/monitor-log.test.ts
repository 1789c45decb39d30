// The prediction log's storage path: tensors encoded straight from the packed arrays, index keys
// of assigned ids in order, re-keying an older log, the row cap, and inputs sampling.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { encodePackedTensors, encodeTensors, decodeTensors } from '../dist/monitor/tensor-blob.js';
import { PredictionPacker, packPredictions, packedColumns } from '../dist/monitor/log-packing.js';
import { idHash, openLogStore } from '../dist/monitor/log-store.js';
import { PredictionLog } from '../dist/monitor/prediction-log.js';
import { seededRandom } from '../dist/random.js';
import { createTestDatabase, PG_SKIP_REASON } from './helpers/postgres.js';

const random = seededRandom(11);
const floats = (n: number) => Float32Array.from({ length: n }, () => random() * 8 - 4);

function prediction(i: number, shape: 'same' | 'other' | 'strings' | 'no-inputs') {
  const rows = shape === 'other' ? 3 : 1;
  const inputs = shape === 'no-inputs'
    ? undefined
    : shape === 'strings'
      ? [{ name: 'text', datatype: 'BYTES' as const, shape: [1], data: [`row ${i}`] }, { name: 'x', datatype: 'FP32' as const, shape: [1, 4], data: floats(4) }]
      : [{ name: 'x', datatype: 'FP32' as const, shape: [rows, 4], data: floats(rows * 4) }];
  return {
    id: `id-${i}`, model: i % 3 === 0 ? 'a' : 'b', version: '1', role: 'primary', timeMs: 1000 + i, latencyMs: 0.25 * i,
    inputs,
    outputs: [
      { name: 'scores', datatype: 'FP32' as const, shape: [rows, 2], data: floats(rows * 2) },
      { name: 'label', datatype: 'INT64' as const, shape: [rows], data: BigInt64Array.from({ length: rows }, (_, k) => BigInt(i + k)) },
      { name: 'value', datatype: 'FP64' as const, shape: [rows, 1], data: Float64Array.from({ length: rows }, () => random()) },
    ],
  };
}

t.test('tensors encoded from the packed arrays are byte for byte the per-record encoding', async (t) => {
  // Rows whose layout changes from one to the next (shapes, string tensors, no inputs) so the
  // header reuse is exercised both ways.
  const kinds = ['same', 'same', 'other', 'same', 'strings', 'strings', 'no-inputs', 'same', 'other', 'other'] as const;
  const records = kinds.map((k, i) => prediction(i, k));
  const packed = packPredictions(records);
  const { inputs, outputs } = encodePackedTensors(packed);
  const asLogged = (list: typeof records[number]['outputs'] | typeof records[number]['inputs']) => list?.map((x) => ({ name: x.name, shape: x.shape, data: x.data })) as never;
  records.forEach((r, i) => {
    t.same(outputs[i], encodeTensors(asLogged(r.outputs)), `outputs of row ${i} (${kinds[i]})`);
    t.same(inputs[i], encodeTensors(asLogged(r.inputs)), `inputs of row ${i} (${kinds[i]})`);
  });
  t.same(decodeTensors(inputs[4]!)!.text, { shape: [1], data: ['row 4'] });
  const columns = packedColumns(packed);
  t.same(columns.ids, records.map((r) => r.id), 'ids come back from one string');
  t.same(columns.models, records.map((r) => r.model));
  t.same(Array.from(columns.latencyMs), records.map((r) => r.latencyMs));
});

t.test('FP16 tensors are logged as the values their bits stand for', async (t) => {
  // 1.0, -2.5, 0.099975586 and 65504 (the largest half) as half-float bits, as the model gets them.
  const bits = Uint16Array.from([0x3c00, 0xc100, 0x2e66, 0x7bff]);
  const { inputs, outputs } = encodePackedTensors(packPredictions([{
    id: 'h', model: 'half', version: '1', role: 'primary', timeMs: 1, latencyMs: 0.5,
    inputs: [{ name: 'x', datatype: 'FP16' as const, shape: [1, 4], data: bits }],
    outputs: [{ name: 'y', datatype: 'FP16' as const, shape: [2, 2], data: bits }],
  }]));
  const values = [1, -2.5, 0.0999755859375, 65504];
  t.same([Array.from(decodeTensors(inputs[0]!)!.x!.data as ArrayLike<number>), Array.from(decodeTensors(outputs[0]!)!.y!.data as ArrayLike<number>)], [values, values],
    'inputs and outputs: 1, -2.5, 0.09998, 65504, not 15360, 49408, 11878, 31743');
});

t.test('INT64 and UINT64 tensors are logged as their exact integers', async (t) => {
  const ids = BigInt64Array.from([9_007_199_254_740_993n, -123_456_789_012_345_678n, 7n, -(2n ** 63n)]);
  const big = BigUint64Array.from([18_446_744_073_709_551_615n, 1n]);
  const record = { id: 'i', model: 'rec', version: '1', role: 'primary', timeMs: 1, latencyMs: 0.5,
    inputs: [{ name: 'ids', datatype: 'INT64' as const, shape: [1, 4], data: ids }], outputs: [{ name: 'hash', datatype: 'UINT64' as const, shape: [1, 2], data: big }] };
  const { inputs, outputs } = encodePackedTensors(packPredictions([record]));
  t.same([decodeTensors(inputs[0]!)!.ids!, decodeTensors(outputs[0]!)!.hash!], [
    { shape: [1, 4], data: [9_007_199_254_740_993n, -123_456_789_012_345_678n, 7, -(2n ** 63n)] },
    { shape: [1, 2], data: [18_446_744_073_709_551_615n, 1] },
  ], 'past 2^53 as bigints, within it as numbers: as sent, not as the doubles they round to');
  t.same(outputs[0], encodeTensors([{ name: 'hash', shape: [1, 2], data: big }]), 'the packed and the per-record encodings agree');
});

t.test('assigned ids and counting client ids key in order, other ids by hash; lookups find all', async (t) => {
  const prefix = '3f9c0a1b7d2e4c65-';
  const keys = [0, 1, 2, 1000, 4294967296 + 5].map((n) => idHash(`${prefix}${n}`));
  t.ok(keys.slice(0, 4).every((k, i) => i === 0 || k > keys[i - 1]!), 'one server start appends at the end of the index');
  t.ok(keys.every((k) => Number.isSafeInteger(k) && k >= 0));
  t.not(idHash('caller-1'), idHash('caller-2'));
  for (const client of ['c', 'req-2026-11-26-', '']) {
    const counted = [1, 2, 9, 10, 11, 999, 123456789].map((n) => idHash(`${client}${n}`));
    t.ok(counted.every((k, i) => i === 0 || k === counted[i - 1]! + [1, 1, 7, 1, 1, 988, 123455790][i]!), `a client counting as "${client}N" appends at its own place`);
  }
  t.ok(idHash('req-000123') < idHash('req-000124') && idHash('req-000124') - idHash('req-000123') === 1, 'zero-padded counters too');
  t.not(Math.floor(idHash('a-1') / 4294967296), Math.floor(idHash('b-1') / 4294967296), 'two clients, two places');
  const uuid = 'f47ac10b-58cc-4372-a567-0e02b2c3d479';
  t.ok(Number.isSafeInteger(idHash(uuid)) && idHash(uuid) !== idHash(uuid.replace('f47', 'f48')), 'other ids hash');
  t.not(idHash(`${prefix}7`), idHash(`ffff0a1b7d2e4c65-7`), 'another start, another range');

  const dir = mkdtempSync(join(tmpdir(), 'umbra-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'log.sqlite');
  const store = await openLogStore(`sqlite:${path}`);
  const ids = [`${prefix}1`, `${prefix}2`, 'caller-x', `${prefix}3`, 'c41', 'c42', '0000000000042', uuid];
  await store.insert(packedColumns(packPredictions(ids.map((id, i) => ({ ...prediction(i, 'same'), id, model: 'm' })))), []);
  t.same((await store.lookup('m', [`${prefix}2`, 'caller-x', `${prefix}9`])).map((r) => r.id).sort(), [`${prefix}2`, 'caller-x']);
  // "42", "c42" and a longer "...42" share digits, not keys; equal keys are told apart by text.
  t.same((await store.lookup('m', ['c42', '42', '0000000000042', uuid, 'c43'])).map((r) => r.id).sort(), ['0000000000042', 'c42', uuid].sort());
  await store.close();

  // A log from an older key layout (0: every key a text hash; 1: client counters hashed too) is
  // re-keyed on open.
  for (const layout of [0, 1]) {
    const db = new Database(path);
    db.prepare('UPDATE umbra_predictions SET id_hash = seq + 12345').run();
    db.pragma(`user_version = ${layout}`);
    db.close();
    const reopened = await openLogStore(`sqlite:${path}`);
    t.same((await reopened.lookup('m', [`${prefix}3`, 'caller-x', 'c41'])).map((r) => r.id).sort(), [`${prefix}3`, 'c41', 'caller-x'], `found after re-keying layout ${layout}`);
    await reopened.close();
  }
});

t.test('the row cap deletes the oldest predictions', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openLogStore(`sqlite:${join(dir, 'log.sqlite')}`);
  await store.insert(packedColumns(packPredictions(Array.from({ length: 10 }, (_, i) => prediction(i, 'same')))), []);
  t.equal(await store.prune(0, 4), 6);
  const left = [];
  for await (const r of store.exportRows({})) left.push(r.id);
  t.same(left, ['id-6', 'id-7', 'id-8', 'id-9']);
  t.equal(await store.prune(0, 4), 0, 'nothing beyond the cap');
  await store.close();
});

t.test('the row cap deletes the labels of the predictions it deleted, with no age limit too', async (t) => {
  for (const kind of ['sqlite', 'postgres'] as const) {
    await t.test(kind, async (t) => {
      let url: string;
      let labels: () => Promise<number>;
      if (kind === 'sqlite') {
        const dir = mkdtempSync(join(tmpdir(), 'umbra-log-'));
        t.teardown(() => rmSync(dir, { recursive: true, force: true }));
        const path = join(dir, 'log.sqlite');
        url = `sqlite:${path}`;
        labels = async () => {
          const db = new Database(path, { readonly: true });
          const { n } = db.prepare('SELECT count(*) AS n FROM umbra_labels').get() as { n: number };
          db.close();
          return n;
        };
      } else {
        const db = await createTestDatabase();
        if (!db) return t.skip(PG_SKIP_REASON);
        t.teardown(() => db.drop());
        url = db.url;
        labels = async () => {
          const client = new pg.Client({ connectionString: db.url });
          await client.connect();
          const { rows } = await client.query('SELECT count(*)::int AS n FROM umbra_labels');
          await client.end();
          return rows[0].n as number;
        };
      }
      const store = await openLogStore(url);
      // Round after round of predictions, labelled together after the round, under a cap of 4 rows
      // and no retention by age (--log-retention-days 0): the labels kept stay those of the rows kept.
      for (let round = 0; round < 5; round++) {
        const records = Array.from({ length: 10 }, (_, k) => prediction(round * 10 + k, 'same'));
        const sentAt = records[records.length - 1]!.timeMs + 1;
        const joined = records.map((r) => ({ id: r.id, model: r.model, version: '1', timeMs: sentAt, fromMs: r.timeMs, toMs: r.timeMs, truth: 1 }));
        await store.insert(packedColumns(packPredictions(records)), joined);
        await store.prune(0, 4);
        t.equal(await labels(), 4, `round ${round}: the labels of the 4 rows kept`);
      }
      const truths = [];
      for await (const r of store.exportRows({})) truths.push([r.id, r.truth]);
      t.same(truths, [['id-46', 1], ['id-47', 1], ['id-48', 1], ['id-49', 1]], 'the rows kept still carry their labels');
      await store.close();
    });
  }
});

t.test('inputs are logged for the sampled share of predictions; outputs for all', async (t) => {
  const packer = new PredictionPacker();
  packer.add(prediction(0, 'same'), false);
  packer.add(prediction(1, 'same'), true);
  const { inputs } = encodePackedTensors(packer.take());
  t.same(inputs.map((x) => x === null), [true, false]);

  const dir = mkdtempSync(join(tmpdir(), 'umbra-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const counted = { written: 0 };
  const counters = { written: (n: number) => { counted.written += n; }, dropped: () => undefined, failed: () => undefined };
  const logs = { none: 0, all: 1, default: undefined } as const;
  for (const [name, inputsSample] of Object.entries(logs)) {
    const path = join(dir, `${name}.sqlite`);
    const log = new PredictionLog({ url: `sqlite:${path}`, ...(inputsSample === undefined ? {} : { inputsSample }) }, counters);
    // Recent times: the log prunes rows past its retention (30 days) as it writes.
    for (let i = 0; i < 400; i++) log.push({ ...prediction(i, 'same'), timeMs: Date.now() });
    await log.close();
    t.equal(log.lastError, undefined, `${name}: no database error`);
    const db = new Database(path, { readonly: true });
    const { n, withInputs } = db.prepare('SELECT count(*) AS n, count(inputs) AS withInputs FROM umbra_predictions').get() as { n: number; withInputs: number };
    db.close();
    t.equal(n, 400, `${name}: every prediction logged`);
    if (name === 'none') t.equal(withInputs, 0);
    else if (name === 'all') t.equal(withInputs, 400);
    else t.ok(withInputs > 10 && withInputs < 90, `default: about one in ten with inputs (${withInputs} of 400)`);
  }
  t.equal(counted.written, 1200);
});
