// Serving precomputed predictions: GET /v2/models/{m}/predictions/{key}, and inference requests
// with parameters.lookup_key answered from the store when fresh (max_staleness) or run online.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { register } from 'prom-client';
import { openStore, runBatchJob, parseStaleness } from '../dist/batch/index.js';
import { startServer } from '../dist/server/server.js';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { property } from './helpers/property.js';
import { makeRows, writeCsv } from './fixtures/batch/data.js';
import { createTestDatabase, PG_SKIP_REASON } from './helpers/postgres.js';

const repo = tempRepo();
repo.addVersion('affine', 1, affineModel(2, 1, 4));
repo.writeConfig('affine', { name: 'affine', max_batch_size: 8, parameters: { max_staleness: '60s' } });
repo.addVersion('forever', 1, affineModel(2, 1, 4));
const dir = mkdtempSync(join(tmpdir(), 'umbra-lookup-'));
t.teardown(() => {
  repo.remove();
  rmSync(dir, { recursive: true, force: true });
});
const dbPath = join(dir, 'predictions.db');
const url = `sqlite:${dbPath}`;

const HOUR = 3_600_000;
const fake = (values: number[]) => JSON.stringify([{ name: 'y', datatype: 'FP32', shape: [1, 4], data: values }]);
const freshAt = new Date(Date.now() - 5_000);
const cp = (job: string) => ({ job, model: 'x', version: '1', input: 'seed', shard: '1/1', batchSize: 1, recordsDone: 0, rejectBytes: 0, rowsStored: 0, rejected: 0, finished: true });
{
  const store = await openStore(url);
  await store.commit('affine', '1', [{ key: 'fresh', outputs: fake([100, 200, 300, 400]) }], freshAt, cp('a'));
  await store.commit('affine', '1', [{ key: 'old', outputs: fake([-1, -1, -1, -1]) }], new Date(Date.now() - 2 * HOUR), cp('b'));
  await store.commit('forever', '1', [{ key: 'old', outputs: fake([7, 7, 7, 7]) }], new Date(Date.now() - 24 * HOUR), cp('c'));
  await store.close();
}

const lookups = () => {
  const metric = register.getSingleMetric('umbra_lookup_total');
  return metric ? metric.get().then((m) => Object.fromEntries(m.values.map((v) => [`${v.labels.model}/${v.labels.result}`, v.value]))) : Promise.resolve({});
};

t.test('max_staleness parses seconds and durations', async (t) => {
  t.equal(parseStaleness('86400s', 'm'), 86_400_000);
  t.equal(parseStaleness('90', 'm'), 90_000);
  t.equal(parseStaleness(30, 'm'), 30_000);
  t.equal(parseStaleness('24h', 'm'), 86_400_000);
  t.equal(parseStaleness('2d', 'm'), 172_800_000);
  t.equal(parseStaleness(undefined, 'm'), undefined);
  t.throws(() => parseStaleness('soon', 'm'), /expected seconds or a duration like "86400s".* for parameters\.max_staleness of model 'm' but received "soon"/);
});

t.test('lookup endpoint and lookup_key: hit, stale, miss, metrics', async (t) => {
  const s = await startTestServer(t, { repository: repo.dir, store: url });
  const events: { outcome: string; lookup: unknown }[] = [];
  s.server.umbra.hooks.use({ onResult: (e) => events.push({ outcome: e.outcome, lookup: e.response?.parameters?.lookup }) });
  const before = await lookups();

  const got = await s.get('/v2/models/affine/predictions/fresh');
  t.equal(got.status, 200, got.text);
  t.same(Object.keys(got.json).sort(), ['computed_at', 'key', 'model_name', 'model_version', 'outputs']);
  t.equal(got.json.model_name, 'affine');
  t.equal(got.json.model_version, '1');
  t.equal(got.json.key, 'fresh');
  t.equal(got.json.computed_at, freshAt.toISOString(), 'computed_at is the stored time');
  t.same(got.json.outputs, [{ name: 'y', datatype: 'FP32', shape: [1, 4], data: [100, 200, 300, 400] }]);
  t.equal((await s.get('/v2/models/affine/predictions/fresh?version=1')).status, 200);
  const absent = await s.get('/v2/models/affine/predictions/nobody');
  t.equal(absent.status, 404);
  t.match(absent.json.error, /no stored prediction for key 'nobody' of model 'affine'/);
  t.equal((await s.get('/v2/models/affine/predictions/fresh?version=7')).status, 404);
  t.equal((await s.get(`/v2/models/affine/predictions/${encodeURIComponent('a key/with slash')}`)).status, 404);

  const infer = (model: string, key: unknown, extra: object = {}) => s.post(`/v2/models/${model}/infer`, {
    id: 'r1', parameters: { lookup_key: key }, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }], ...extra,
  });
  const hit = await infer('affine', 'fresh');
  t.equal(hit.status, 200, hit.text);
  t.equal(hit.json.id, 'r1');
  t.equal(hit.json.parameters.lookup, 'hit');
  t.ok(hit.json.parameters.computed_at);
  t.same(hit.json.outputs[0].data, [100, 200, 300, 400], 'answered from the store, not the model');

  const stale = await infer('affine', 'old');
  t.equal(stale.json.parameters.lookup, 'stale');
  t.same(stale.json.outputs[0].data, [3, 5, 7, 9], 'older than max_staleness: ran online');

  const miss = await infer('affine', 'nobody');
  t.equal(miss.json.parameters.lookup, 'miss');
  t.same(miss.json.outputs[0].data, [3, 5, 7, 9]);

  const forever = await infer('forever', 'old');
  t.equal(forever.json.parameters.lookup, 'hit', 'without max_staleness a stored prediction never goes stale');
  t.same(forever.json.outputs[0].data, [7, 7, 7, 7]);

  const numeric = await infer('affine', 12345);
  t.equal(numeric.json.parameters.lookup, 'miss');
  const plain = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
  t.equal(plain.json.parameters?.lookup, undefined, 'no lookup_key: no lookup');

  const twoRows = await s.post('/v2/models/affine/infer', { parameters: { lookup_key: 'fresh' }, inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] }] });
  t.equal(twoRows.status, 400);
  t.match(twoRows.json.error, /must have one row but it has 2/);
  t.equal((await infer('affine', { not: 'a key' })).status, 400);

  const after = await lookups();
  const delta = (k: string) => ((after as Record<string, number>)[k] ?? 0) - ((before as Record<string, number>)[k] ?? 0);
  t.equal(delta('affine/hit'), 1);
  t.equal(delta('affine/stale'), 1);
  t.equal(delta('affine/miss'), 2);
  t.equal(delta('forever/hit'), 1);
  const scraped = await s.get('/metrics');
  t.match(scraped.text, /umbra_lookup_total\{model="affine",result="hit"\} \d+/, 'the server\'s /metrics shows the lookup counter');
  t.same(events.filter((e) => e.lookup !== undefined).map((e) => `${e.outcome}:${String(e.lookup)}`), ['success:hit', 'success:stale', 'success:miss', 'success:hit', 'success:miss'],
    'observers (metrics) see every lookup request as a success');
});

t.test('a batch job into the store the server reads: lookups then return exactly the online answers', async (t) => {
  const s = await startTestServer(t, { repository: repo.dir, store: url });
  const rows = makeRows(200, 4, 77);
  const input = join(dir, 'keys.csv');
  writeCsv(input, rows);
  const store = await openStore(url);
  const summary = await runBatchJob({ umbra: s.server.umbra, model: 'affine', input, keyColumn: 'id', store, batchSize: 32, rejectsPath: join(dir, 'r.jsonl') });
  await store.close();
  t.equal(summary.rowsStored, 200);
  const stored = property('the first 25 keys are lookup hits that equal the online answer');
  for (const r of rows.slice(0, 25)) {
    const body = { parameters: { lookup_key: r.key }, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: r.x }] };
    const hit = await s.post('/v2/models/affine/infer', body);
    const online = await s.post('/v2/models/affine/infer', { inputs: body.inputs });
    stored.same([hit.json.parameters?.lookup, hit.json.outputs], ['hit', online.json.outputs], () => `key ${r.key} (lookup, outputs)`);
  }
  stored.assert(t);
  const binary = await s.post('/v2/models/affine/infer', {
    parameters: { lookup_key: rows[0]!.key, binary_data_output: true },
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: rows[0]!.x }],
  });
  t.equal(binary.status, 200);
  const header = Number(binary.headers.get('inference-header-content-length'));
  const values = new Float32Array(binary.bytes.buffer.slice(binary.bytes.byteOffset + header, binary.bytes.byteOffset + header + 16));
  t.same(Array.from(values), rows[0]!.x.map((v) => v * 2 + 1), 'a hit honours binary outputs');
});

t.test('a bad store URL stops the server from starting with a clear message', async (t) => {
  await t.rejects(startServer({ repository: repo.dir, host: '127.0.0.1', port: 0, workers: 1, store: 'mysql://db' }), /unsupported store URL scheme 'mysql:'/);
  await t.rejects(startServer({ repository: repo.dir, host: '127.0.0.1', port: 0, workers: 1, store: `sqlite:${join(dir, 'missing', 'x.db')}` }), /cannot open the SQLite store/);
});

t.test('PostgreSQL store: hits while it is up; when it goes away lookups fall back online and the endpoint says 503', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  let dropped = false;
  t.teardown(async () => {
    if (!dropped) await db.drop();
  });
  const store = await openStore(db.url);
  await store.commit('affine', '1', [{ key: 'pg-key', outputs: fake([1, 1, 1, 1]) }], new Date(), cp('pg'));
  await store.close();
  const s = await startTestServer(t, { repository: repo.dir, store: db.url });
  const body = (key: string) => ({ parameters: { lookup_key: key }, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
  const hit = await s.post('/v2/models/affine/infer', body('pg-key'));
  t.equal(hit.status, 200, hit.text);
  t.equal(hit.json.parameters?.lookup, 'hit', hit.text);
  t.same(hit.json.outputs[0].data, [1, 1, 1, 1]);
  t.equal((await s.get('/v2/models/affine/predictions/pg-key')).json.key, 'pg-key');
  await db.drop();
  dropped = true;
  const down = await s.post('/v2/models/affine/infer', body('another-key'));
  t.equal(down.status, 200, `the request still succeeds: ${down.text}`);
  t.equal(down.json.parameters?.lookup, 'error', down.text);
  t.same(down.json.outputs[0].data, [3, 5, 7, 9]);
  const endpoint = await s.get('/v2/models/affine/predictions/another-key');
  t.equal(endpoint.status, 503);
  t.match(endpoint.json.error, /the prediction store postgres:\/\/.* is unavailable/);
});
