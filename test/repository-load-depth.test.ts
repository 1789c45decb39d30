// A load request's config is a few levels of JSON. One nested thousands deep used to be taken, and
// writing it to the override store ran out of stack: 500 "Maximum call stack size exceeded". It is
// refused as a bad request before anything is written, over REST and gRPC; a config as deep as the
// limit is read on.
import t, { type Test } from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { generatedClient, grpc } from './helpers/grpc.js';
import { encodeModel } from '../dist/onnx/model-io.js';

t.setTimeout(120_000);

function stateDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A config whose `parameters` holds a value nested so that the whole object is `depth` levels deep. */
function nested(depth: number): string {
  return `{"parameters":{"deep":${'['.repeat(depth - 2)}${']'.repeat(depth - 2)}}}`;
}

t.test('a load whose config is nested past 64 levels is refused as a bad request, over REST and gRPC', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('base', 1, affineModel(1, 0));
  const state = stateDir(t);
  const s = await startTestServer(t, { repository: repo.dir, stateDir: state, grpcPort: 'any', monitoring: false });
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const model = Buffer.from(encodeModel(affineModel(3, 1)));

  const rest = await s.post('/v2/repository/models/deep/load', { parameters: { config: nested(20_000), 'file:1/model.onnx': model.toString('base64') } });
  t.equal(rest.status, 400, 'REST: 400');
  t.match(rest.json.error, /nested at most 64 levels deep for parameters\.config/, 'naming the config and the limit');
  const call = await c.call('RepositoryModelLoad', { model_name: 'deep', parameters: { config: { string_param: nested(20_000) }, 'file:1/model.onnx': { bytes_param: model } } });
  t.equal(!call.ok && call.error.code, grpc.status.INVALID_ARGUMENT, 'gRPC: INVALID_ARGUMENT');
  t.same(readdirSync(state).includes('models') ? readdirSync(join(state, 'models')) : [], [], 'nothing was written');
  const over = await s.post('/v2/repository/models/deep/load', { parameters: { config: nested(65), 'file:1/model.onnx': model.toString('base64') } });
  t.match(over.json.error, /levels deep/, 'one level past the limit is refused');
  const limit = await s.post('/v2/repository/models/deep/load', { parameters: { config: nested(64), 'file:1/model.onnx': model.toString('base64') } });
  t.notMatch(limit.json.error, /levels deep/, 'a config 64 levels deep is not refused for its depth (it reaches the config\'s own checks)');
});
