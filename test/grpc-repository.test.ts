// Triton's load with overrides on both transports: a JSON config and file:<version>/<name> (base64
// over REST, bytes over gRPC) load a model the repository does not have, written under the state
// directory so the repository may be read-only; the admin token guards it; a failed load keeps
// what served; a plain load of a repository model drops its override; given models come back
// after a restart, unless they were unloaded: an unload removes them for good.
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { generatedClient, grpc } from './helpers/grpc.js';
import { encodeModel } from '../dist/onnx/model-io.js';
import { startServer } from '../dist/index.js';

t.setTimeout(300_000);

const ADMIN = { authorization: 'Bearer sesame' };
const x = (data: number[]) => ({ name: 'x', datatype: 'FP32', shape: [1, 4], data });

function stateDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('load with overrides over gRPC and REST into a read-only repository', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('base', 1, affineModel(1, 0));
  const state = stateDir(t);
  const s = await startTestServer(t, { repository: repo.dir, stateDir: state, grpcPort: 'any', adminToken: 'sesame' });
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const config = JSON.stringify({ max_batch_size: 8 });
  const model = Buffer.from(encodeModel(affineModel(3, 1)));

  // Without the token: UNAUTHENTICATED / 401, and nothing written.
  const denied = await c.call('RepositoryModelLoad', { model_name: 'given', parameters: { config: { string_param: config }, 'file:1/model.onnx': { bytes_param: model } } });
  t.equal(!denied.ok && denied.error.code, grpc.status.UNAUTHENTICATED);
  t.equal((await s.post('/v2/repository/models/given/load', { parameters: { config } })).status, 401);
  t.notOk(existsSync(join(state, 'models', 'given')));

  // Before: an unknown model.
  t.equal((await s.post('/v2/repository/models/given/load', undefined, ADMIN)).status, 404);

  const loaded = await c.call('RepositoryModelLoad', { model_name: 'given', parameters: { config: { string_param: config }, 'file:1/model.onnx': { bytes_param: model } } }, ADMIN);
  t.ok(loaded.ok, !loaded.ok ? loaded.error.details : '');
  t.same((await s.post('/v2/models/given/infer', { inputs: [x([1, 2, 3, 4])] })).json.outputs[0].data, [4, 7, 10, 13]);
  t.ok(existsSync(join(state, 'models', 'given', '1', 'model.onnx')), 'written under the state directory');
  const index = await c.call('RepositoryIndex', {});
  t.ok(index.ok && index.value.models.some((m: { name: string; state: string }) => m.name === 'given' && m.state === 'READY'));

  // REST: base64 files; a second version given beside the config.
  const v2 = Buffer.from(encodeModel(affineModel(5, 0))).toString('base64');
  const rest = await s.post('/v2/repository/models/other/load', { parameters: { config: JSON.stringify({ version_policy: { all: {} } }), 'file:1/model.onnx': model.toString('base64'), 'file:2/model.onnx': v2 } }, ADMIN);
  t.equal(rest.status, 200, rest.text);
  t.same((await s.get('/v2/models/other')).json.versions.sort(), ['1', '2']);
  t.same((await s.post('/v2/models/other/versions/2/infer', { inputs: [x([1, 1, 1, 1])] })).json.outputs[0].data, [5, 5, 5, 5]);

  // A config alone overrides a model's configuration and keeps its files.
  const reconfigured = await c.call('RepositoryModelLoad', { model_name: 'given', parameters: { config: { string_param: JSON.stringify({ max_batch_size: 2 }) } } }, ADMIN);
  t.ok(reconfigured.ok);
  t.equal(s.server.umbra.manager.configOf('given')?.maxBatchSize, 2);
  t.same((await s.post('/v2/models/given/infer', { inputs: [x([1, 2, 3, 4])] })).json.outputs[0].data, [4, 7, 10, 13]);

  // Bad parameters, each with its reason; a model that fails to load leaves the served one serving.
  const cases: [object, RegExp][] = [
    [{ 'file:1/model.onnx': model.toString('base64') }, /needs its configuration/],
    [{ config: '{nope' }, /does not parse/],
    [{ config: '[]' }, /JSON object/],
    [{ config, 'file:../x': 'AA==' }, /file:<version>\/<name>/],
    [{ config, 'file:1/model.onnx': 'not base64!' }, /base64/],
    [{ configs: config }, /"config" or "file:/],
    [{ config: JSON.stringify({ name: 'someone-else' }) }, /expected the name "given"/],
  ];
  for (const [parameters, reason] of cases) {
    const r = await s.post('/v2/repository/models/given/load', { parameters }, ADMIN);
    t.equal(r.status, 400, JSON.stringify(parameters));
    t.match(r.json.error, reason);
  }
  const broken = await c.call('RepositoryModelLoad', { model_name: 'given', parameters: { config: { string_param: config }, 'file:1/model.onnx': { bytes_param: Buffer.from('not onnx') } } }, ADMIN);
  t.equal(!broken.ok && broken.error.code, grpc.status.INVALID_ARGUMENT, !broken.ok ? broken.error.details : '');
  t.same((await s.post('/v2/models/given/infer', { inputs: [x([1, 2, 3, 4])] })).json.outputs[0].data, [4, 7, 10, 13], 'the previous version still serves');
  t.equal(readdirSync(join(state, 'models')).filter((n) => n.startsWith('.')).length, 0, 'no staging folders left');

  // A refused upload under a new name leaves nothing: no entry in the index, readiness untouched.
  t.equal((await s.get('/v2/health/ready')).status, 200);
  const typo = await c.call('RepositoryModelLoad', { model_name: 'typo', parameters: { config: { string_param: '{}' }, 'file:1/model.onnx': { bytes_param: Buffer.from([0]) } } }, ADMIN);
  t.equal(!typo.ok && typo.error.code, grpc.status.INVALID_ARGUMENT, !typo.ok ? typo.error.details : '');
  t.notOk((await s.post('/v2/repository/index')).json.some((e: { name: string }) => e.name === 'typo'), 'the refused model is not listed');
  t.equal((await s.get('/v2/health/ready')).status, 200, 'and the server stays ready');
  t.notOk(existsSync(join(state, 'models', 'typo')), 'its files are gone');

  // A plain load of a repository model drops its override.
  t.ok((await c.call('RepositoryModelLoad', { model_name: 'base', parameters: { config: { string_param: config }, 'file:1/model.onnx': { bytes_param: model } } }, ADMIN)).ok);
  t.same((await s.post('/v2/models/base/infer', { inputs: [x([1, 1, 1, 1])] })).json.outputs[0].data, [4, 4, 4, 4], 'the given model serves');
  t.equal((await s.post('/v2/repository/models/base/load', undefined, ADMIN)).status, 200);
  t.same((await s.post('/v2/models/base/infer', { inputs: [x([1, 1, 1, 1])] })).json.outputs[0].data, [1, 1, 1, 1], 'the repository model again');
  t.notOk(existsSync(join(state, 'models', 'base')));
  t.same(readdirSync(repo.dir), ['base'], 'nothing written into the repository');
});

t.test('given models come back after a restart', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('base', 1, affineModel(1, 0));
  const state = stateDir(t);
  const first = await startServer({ repository: repo.dir, stateDir: state, host: '127.0.0.1', port: 0, workers: 1 });
  await first.umbra.manager.load('given', { config: { max_batch_size: 4 }, files: [{ path: '1/model.onnx', content: Buffer.from(encodeModel(affineModel(2, 0))) }] });
  await first.stop();
  const s = await startTestServer(t, { repository: repo.dir, stateDir: state });
  t.same((await s.post('/v2/models/given/infer', { inputs: [x([1, 2, 3, 4])] })).json.outputs[0].data, [2, 4, 6, 8]);
  t.same((await s.post('/v2/repository/index')).json.map((e: { name: string }) => e.name), ['base', 'given']);
});

t.test('an unloaded given model stays unloaded after a restart, over REST and gRPC; a repository model comes back', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('base', 1, affineModel(1, 0));
  const state = stateDir(t);
  const config = JSON.stringify({ max_batch_size: 4 });
  const model = Buffer.from(encodeModel(affineModel(2, 0)));
  const first = await startServer({ repository: repo.dir, stateDir: state, host: '127.0.0.1', port: 0, workers: 1, grpcPort: 'any' });
  t.teardown(() => first.stop());
  const c = generatedClient(first.grpcPort);
  t.teardown(() => c.close());
  const post = (path: string, body?: unknown) => fetch(first.url + path, { method: 'POST', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

  t.equal((await post('/v2/repository/models/by-rest/load', { parameters: { config, 'file:1/model.onnx': model.toString('base64') } })).status, 200, 'loaded over REST');
  const loaded = await c.call('RepositoryModelLoad', { model_name: 'by-grpc', parameters: { config: { string_param: config }, 'file:1/model.onnx': { bytes_param: model } } });
  t.ok(loaded.ok, !loaded.ok ? loaded.error.details : 'loaded over gRPC');
  t.equal((await post('/v2/repository/models/base/load', { parameters: { config, 'file:1/model.onnx': model.toString('base64') } })).status, 200, 'the repository model overridden');

  t.equal((await post('/v2/repository/models/by-rest/unload')).status, 200, 'unloaded over REST');
  t.ok((await c.call('RepositoryModelUnload', { model_name: 'by-grpc' })).ok, 'unloaded over gRPC');
  t.equal((await post('/v2/repository/models/base/unload')).status, 200, 'the repository model unloaded');
  t.same(readdirSync(join(state, 'models')), [], 'the unloads removed the given files, hidden folders included');
  t.same(readdirSync(repo.dir), ['base'], 'and left the repository alone');
  await first.stop();

  const s = await startTestServer(t, { repository: repo.dir, stateDir: state });
  t.same((await s.post('/v2/repository/index')).json.map((e: { name: string }) => e.name), ['base'], 'only the repository model is listed after the restart');
  t.equal((await s.post('/v2/models/by-rest/infer', { inputs: [x([1, 2, 3, 4])] })).status, 404, 'the model unloaded over REST is not served');
  t.equal((await s.post('/v2/models/by-grpc/infer', { inputs: [x([1, 2, 3, 4])] })).status, 404, 'the model unloaded over gRPC is not served');
  t.same((await s.post('/v2/models/base/infer', { inputs: [x([1, 2, 3, 4])] })).json.outputs[0].data, [1, 2, 3, 4], 'the repository model serves its own files again');
});

t.test('an unload that cannot remove the given files fails and leaves the model serving', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  const state = stateDir(t);
  const s = await startTestServer(t, { repository: repo.dir, stateDir: state });
  const manager = s.server.umbra.manager;
  await manager.load('given', { config: { max_batch_size: 4 }, files: [{ path: '1/model.onnx', content: Buffer.from(encodeModel(affineModel(2, 0))) }] });
  // The store's own failure (a read-only state volume, say) without depending on the file system.
  manager.overrides.remove = () => Promise.reject(new Error('EROFS: read-only file system'));
  const refused = await s.post('/v2/repository/models/given/unload');
  t.equal(refused.status, 500, refused.text);
  t.same((await s.post('/v2/models/given/infer', { inputs: [x([1, 2, 3, 4])] })).json.outputs[0].data, [2, 4, 6, 8], 'the model still serves');
  t.ok(manager.isModelReady('given'), 'and is still ready');
  t.ok(existsSync(join(state, 'models', 'given', '1', 'model.onnx')), 'its files are still in place');
});
