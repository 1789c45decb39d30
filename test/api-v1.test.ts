// KServe's V1 data plane (TensorFlow Serving's REST API): rows ("instances") and columns
// ("inputs") in, "predictions" and "outputs" back, on the same path as /v2 infer.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, pairModel, totalModel } from './helpers/repo.js';
import { buildModel } from '../dist/onnx/builder.js';

t.test('V1: list, readiness, predict by rows and by columns, errors in the protocol\'s form', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1, 3));
  repo.addVersion('pair', 1, pairModel());
  repo.addVersion('total', 1, totalModel());
  const s = await startTestServer(t, { repository: repo.dir });

  t.same((await s.get('/v1/models')).json, { models: ['affine', 'pair', 'total'] });
  t.same((await s.get('/v1/models/affine')).json, { name: 'affine', ready: true });
  t.equal((await s.get('/v1/models/nope')).status, 404);

  const rows = await s.post('/v1/models/affine:predict', { instances: [[0, 1, 2], [3, 4, 5]] });
  t.same([rows.status, rows.json], [200, { predictions: [[1, 3, 5], [7, 9, 11]] }], 'a row per instance');
  const named = await s.post('/v1/models/affine/versions/1:predict', { instances: [{ x: [1, 1, 1] }] });
  t.same(named.json, { predictions: [[3, 3, 3]] }, 'an instance may name the single input; a version in the path');
  const columns = await s.post('/v1/models/affine:predict', { inputs: [[0, 0, 0], [1, 2, 3]] });
  t.same(columns.json, { outputs: [[1, 1, 1], [3, 5, 7]] }, 'columns in, columns out');

  const pair = await s.post('/v1/models/pair:predict', { instances: [{ a: [1, 2, 3], n: [4, 5] }, { a: [0, 0, 1], n: [-1, 7] }] });
  t.same(pair.json, { predictions: [{ sum: [2, 4, 6], twice: [8, 10] }, { sum: [0, 0, 2], twice: [-2, 14] }] }, 'several inputs and outputs: objects per instance');
  const pairColumns = await s.post('/v1/models/pair:predict', { inputs: { a: [[1, 2, 3]], n: [[4, 5]] } });
  t.same(pairColumns.json, { outputs: { sum: [[2, 4, 6]], twice: [[8, 10]] } });
  // An INT64 past 2^53 is read as spelled (JSON.parse alone reads …993 as …992), and answered exactly.
  const exact = await s.request('POST', '/v1/models/pair:predict', '{"instances":[{"a":[1,2,3],"n":[9007199254740993,-123456789012345678]}]}');
  t.same([exact.status, exact.text.includes('"twice":[18014398509481986,-246913578024691356]')], [200, true], 'a 64-bit integer past 2^53: exact in and out');
  // Where lossless-json cannot read the body (a key given twice), it is refused rather than rounded.
  const twiceKeyed = await s.request('POST', '/v1/models/pair:predict', '{"instances":[{"a":[1,2,3],"n":[9007199254740993,1],"n":[9007199254740995,1]}]}');
  t.same([twiceKeyed.status, /expected an integer JSON carries exactly .* for input "n" element 0 \(INT64\) but received 9007199254740996/.test(twiceKeyed.json.error)], [400, true], 'a body only JSON.parse reads: 400');
  const spelledExactly = await s.request('POST', '/v1/models/pair:predict', '{"instances":[{"a":[1,2,3],"n":[1152921504606846976,1]}]}');
  t.same([spelledExactly.status, spelledExactly.json.predictions[0].twice], [200, [2 ** 61, 2]], '2^60 spelled exactly is kept');

  const total = await s.post('/v1/models/total:predict', { instances: [[1, 2, 3, 4], [10, 20, 30, 40]] });
  t.same(total.json, { predictions: [11, 22, 33, 44] }, 'an answer that is not a row per instance comes back whole');

  const bad = await Promise.all([
    s.post('/v1/models/affine:predict', { instances: [[1, 2, 3], [1, 2]] }),
    s.post('/v1/models/affine:predict', { instances: [[[1, 2], [3]]] }),
    s.post('/v1/models/affine:predict', {}),
    s.post('/v1/models/affine:predict', { instances: [[1, 2, 3]], inputs: [[1, 2, 3]] }),
    s.post('/v1/models/pair:predict', { instances: [{ a: [1, 2, 3] }] }),
    s.post('/v1/models/affine:predict', { instances: [[1, 2]] }),
    s.post('/v1/models/affine:explain', { instances: [[1, 2, 3]] }),
    s.post('/v1/models/nope:predict', { instances: [[1]] }),
  ]);
  t.same(bad.map((r) => r.status), [400, 400, 400, 400, 400, 400, 404, 404]);
  t.ok(bad.every((r) => typeof r.json.error === 'string'), 'each an {"error": ...} body');
  t.match(bad[0]!.json.error, /instances\[1\] has "x" of shape \[2\] but instances\[0\] has \[3\]/);
  t.match(bad[1]!.json.error, /ragged list/);
  t.match(bad[2]!.json.error, /expected either "instances" \(a list of rows\) or "inputs"/);
  t.match(bad[4]!.json.error, /instances\[0\] has no value for the input "n"/);
  t.match(bad[5]!.json.error, /input "x"/);
  t.match(bad[6]!.json.error, /the V1 protocol serves :predict/);
});

t.test('V1: rows for a model without a batch dimension are refused naming "inputs" as the fix', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('fixed', 1, buildModel({ inputs: [{ name: 'x', datatype: 'FP32', dims: [3] }], outputs: [{ name: 'y', datatype: 'FP32', dims: [3] }], nodes: [{ op: 'Neg', inputs: ['x'], outputs: ['y'] }] }));
  repo.writeConfig('fixed', { max_batch_size: 0 });
  const s = await startTestServer(t, { repository: repo.dir });
  const rows = await s.post('/v1/models/fixed:predict', { instances: [[1, 2, 3]] });
  t.same([rows.status, rows.json.error], [400, 'expected "inputs" (the whole tensor) for model \'fixed\', which has no batch dimension (max_batch_size 0), but received "instances": its rows would give input "x" shape [1, 3] where it takes [3]']);
  t.same((await s.post('/v1/models/fixed:predict', { inputs: [1, 2, 3] })).json, { outputs: [-1, -2, -3] }, 'the whole tensor as "inputs" runs');
});
