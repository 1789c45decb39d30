// Triton's model configuration extension (GET /v2/models/{m}[/versions/{v}]/config) and the
// extensions /v2 advertises: only what the server answers (statistics goes with monitoring).
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempRepo, affineModel } from './helpers/repo.js';

const EXAMPLES = new URL('../models/repository/', import.meta.url).pathname;

t.test('GET /v2/models/{m}/config answers the configuration in force, in Triton\'s shape', async (t) => {
  const s = await startTestServer(t, { repository: EXAMPLES, workers: 1 });
  const digits = await s.get('/v2/models/digits/config');
  t.equal(digits.status, 200, digits.text);
  t.equal(digits.headers.get('content-type'), 'application/json');
  // models/repository/digits/config.json with Triton's defaults filled in.
  t.match(digits.json, {
    name: 'digits',
    platform: 'onnxruntime_onnx',
    max_batch_size: 32,
    input: [{ name: 'pixels', data_type: 'TYPE_FP32', dims: [64] }],
    output: [{ name: 'probabilities', data_type: 'TYPE_FP32', dims: [10] }, { name: 'label', data_type: 'TYPE_INT64', dims: [] }],
    version_policy: { latest: { num_versions: 2 } },
    dynamic_batching: { max_queue_delay_microseconds: 0, preferred_batch_size: [8, 16, 32], default_queue_policy: { max_queue_size: 1024 } },
    default_model_filename: 'model.onnx',
    backend: 'auto',
  });
  t.same((await s.get('/v2/models/digits/versions/1/config')).json, digits.json, 'per version: the same model configuration');
  // A model with no config file: everything derived from the ONNX graph.
  const wide = (await s.get('/v2/models/wide/config')).json;
  t.match(wide, { name: 'wide', max_batch_size: 64, input: [{ name: 'features', data_type: 'TYPE_FP32', dims: [256] }], dynamic_batching: {} });
  const pair = (await s.get('/v2/models/pair/config')).json;
  t.match(pair, { name: 'pair', max_batch_size: 8, dynamic_batching: { max_queue_delay_microseconds: 200, preferred_batch_size: [4, 8] } }, 'from config.pbtxt');

  const unknown = await s.get('/v2/models/nope/config');
  t.equal(unknown.status, 404);
  t.match(unknown.json, { error: /nope/ });
  t.equal((await s.get('/v2/models/digits/versions/9/config')).status, 404, 'unknown version');
  t.equal((await s.post('/v2/models/digits/config', {})).status, 405, 'GET only');
});

t.test('the config shows the queue bound in force and each output\'s label_filename', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('derived', 1, affineModel(2, 1, 4));
  repo.addVersion('scores', 1, affineModel(2, 1, 4));
  repo.writeConfig('scores', { max_batch_size: 8, output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [4], label_filename: 'labels.txt' }] });
  writeFileSync(join(repo.dir, 'scores', 'labels.txt'), 'cat\ndog\nbird\nfish\n');
  const s = await startTestServer(t, { repository: repo.dir, workers: 1 });
  // No max_queue_size configured: the bound derived at load, which Triton's 0 ("unbounded") would misstate.
  const bound = (await s.get('/v2/models/derived')).json.queue;
  t.equal(bound.source, 'derived');
  const config = (await s.get('/v2/models/derived/config')).json;
  t.equal(config.dynamic_batching.default_queue_policy.max_queue_size, bound.max_queue_size, 'the config\'s max_queue_size is the bound the metadata shows');
  t.ok(bound.max_queue_size > 0, 'and it is a bound');
  t.same((await s.get('/v2/models/scores/versions/1/config')).json.output, [{ name: 'y', data_type: 'TYPE_FP32', dims: [4], label_filename: 'labels.txt' }], 'label_filename kept');
});

t.test('/v2 advertises statistics only while /stats is served', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const on = await startTestServer(t, { repository: repo.dir, workers: 1 });
  t.same((await on.get('/v2')).json.extensions, ['binary_tensor_data', 'classification', 'model_repository', 'model_configuration', 'statistics']);
  t.equal((await on.get('/v2/models/affine/stats')).status, 200);
  await on.server.stop();
  const off = await startTestServer(t, { repository: repo.dir, workers: 1, monitoring: false });
  t.same((await off.get('/v2')).json.extensions, ['binary_tensor_data', 'classification', 'model_repository', 'model_configuration'], 'monitoring off: no statistics');
  t.equal((await off.get('/v2/models/affine/stats')).status, 404);
  t.equal((await off.get('/v2/models/affine/config')).status, 200, 'the configuration route does not depend on monitoring');
});
