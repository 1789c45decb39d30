// A model's versions may take different inputs (a retrained model with more features): each
// version is checked against its own graph, its metadata says its own inputs, and the model's
// unversioned metadata describes the version unversioned requests go to (a policy's primary).
// A config that names inputs must match every version it serves, or the load says which does not.
import t, { type Test } from 'tap';
import { Umbra } from '../dist/core/umbra.js';
import { buildReferenceProfile } from '../dist/monitor/reference-data.js';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, type TempRepo } from './helpers/repo.js';

const row = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
const body = (n: number) => ({ inputs: [{ name: 'x', shape: [1, n], datatype: 'FP32', data: row(n) }] });

/** Model 'm': version 1 takes 4 inputs (2x + 1), version 2 takes 6 (3x); both served. */
function twoVersions(t: Test, config: Record<string, unknown> = {}): TempRepo {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('m', 1, affineModel(2, 1, 4));
  repo.addVersion('m', 2, affineModel(3, 0, 6));
  repo.writeConfig('m', { version_policy: { all: {} }, ...config });
  return repo;
}

t.test('versions with their own inputs, each served by its own', async (t) => {
  const repo = twoVersions(t);
  const s = await startTestServer(t, { repository: repo.dir });

  const v1 = await s.post('/v2/models/m/versions/1/infer', body(4));
  t.equal(v1.status, 200, v1.text);
  t.same(v1.json.outputs[0].data, [3, 5, 7, 9], 'version 1 takes its 4 inputs');
  const v2 = await s.post('/v2/models/m/versions/2/infer', body(6));
  t.same(v2.json.outputs[0].data, [3, 6, 9, 12, 15, 18], 'version 2 takes its 6');
  const wrong = await s.post('/v2/models/m/versions/1/infer', body(6));
  t.equal(wrong.status, 400, 'version 1 refuses version 2\'s inputs');
  t.match(wrong.json.error, /\[batch, 4\]/);

  t.same((await s.get('/v2/models/m/versions/1')).json.inputs, [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], 'version 1\'s metadata: its inputs');
  t.same((await s.get('/v2/models/m')).json.inputs[0].shape, [-1, 6], 'unversioned: the newest, where unversioned requests go');
  t.equal((await s.post('/v2/models/m/infer', body(6))).status, 200);

  // Pinned to version 1: unversioned requests go there, and the metadata says its inputs.
  t.equal((await s.request('PUT', '/v2/models/m/traffic', JSON.stringify({ primary: '1' }))).status, 200);
  const meta = (await s.get('/v2/models/m')).json;
  t.same([meta.inputs[0].shape, meta.versions], [[-1, 4], ['1', '2']], 'unversioned metadata follows the primary');
  t.same((await s.post('/v2/models/m/infer', body(4))).json.outputs[0].data, [3, 5, 7, 9], 'and so do unversioned requests');
});

t.test('a config\'s inputs must match every version it serves', async (t) => {
  const repo = twoVersions(t, { max_batch_size: 8, input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [6] }] });
  const s = await startTestServer(t, { repository: repo.dir });
  const [entry] = (await s.post('/v2/repository/index', {})).json;
  t.equal(entry.state, 'UNAVAILABLE');
  t.match(entry.reason, /^version 1: .*config\.json: input\[0\]\.dims: \[6\] does not match the ONNX model's "x" \[4\]/, 'the load names the version that does not match');
});

t.test('a reference profile of versions with different inputs: the versions the data fits', async (t) => {
  const repo = twoVersions(t);
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const rows = 30;
  const data = (width: number) => ({ names: Array.from({ length: width }, (_, i) => `c${i}`), values: Float64Array.from({ length: rows * width }, (_, i) => (i * 7) % 11), rows });
  const skipped: string[] = [];
  const six = await buildReferenceProfile(umbra, 'm', data(6), 'six.csv', (v, why) => skipped.push(`${v}: ${why}`));
  t.same([six.inputs.length, Object.keys(six.outputs)], [6, ['2']], 'six columns: version 2 profiled');
  t.same(skipped, ['1: it takes 4 input columns, not the data\'s 6'], 'version 1 named, with why');
  const four = await buildReferenceProfile(umbra, 'm', data(4), 'four.csv');
  t.same([four.inputs.length, Object.keys(four.outputs)], [4, ['1']], 'four columns: version 1');
  await t.rejects(buildReferenceProfile(umbra, 'm', data(5), 'five.csv'), { message: /takes 4 or 6 input columns but the data has 5/ }, 'data that fits none: every width named');
});

t.test('unversioned config, drift and /v1 follow the primary too', async (t) => {
  const repo = twoVersions(t);
  const s = await startTestServer(t, { repository: repo.dir });
  t.equal((await s.request('PUT', '/v2/models/m/traffic', JSON.stringify({ primary: '1' }))).status, 200);
  t.same((await s.get('/v2/models/m/config')).json.input[0].dims, [4], 'config: the primary\'s');
  const v1 = await s.post('/v1/models/m:predict', { instances: [[1, 2, 3, 4]] });
  t.equal(v1.status, 200, v1.text);
  t.same(v1.json.predictions, [[3, 5, 7, 9]], '/v1 reads the primary\'s inputs');
  for (let i = 0; i < 3; i++) await s.post('/v2/models/m/infer', body(4));
  t.equal((await s.get('/v2/models/m/drift')).json.version, '1', 'drift: the primary\'s');
});
