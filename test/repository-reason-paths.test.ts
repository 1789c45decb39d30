// A model's load-failure reason reaches clients that need no admin rights (the repository index,
// /v2/ops/server, a request's 404, over HTTP and gRPC): it names files relative to the repository
// or the override store, never the host's absolute paths; the server's own log keeps those.
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { generatedClient } from './helpers/grpc.js';
import { encodeModel } from '../dist/onnx/model-io.js';
import { startServer } from '../dist/index.js';

t.setTimeout(120_000);

function stateDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a load-failure reason names the file relative to the repository or the override store', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  mkdirSync(join(repo.dir, 'broken', '1'), { recursive: true });
  writeFileSync(join(repo.dir, 'broken', '1', 'model.onnx'), 'not a model');
  const state = stateDir(t);
  const s = await startTestServer(t, { repository: repo.dir, stateDir: state, grpcPort: 'any', monitoring: false });
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const hostPath = new RegExp(`${repo.dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}|${state.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}|${tmpdir()}`);

  const index = (await s.post('/v2/repository/index')).json as { name: string; reason?: string }[];
  const reason = index.find((e) => e.name === 'broken')?.reason ?? '';
  t.match(reason, /broken[/\\]1[/\\]model\.onnx/, 'the index names the file in the repository');
  t.notMatch(reason, hostPath, 'and no host path');
  const ops = (await s.get('/v2/ops/server')).json as { models: { name: string; reason?: string }[] };
  t.equal(ops.models.find((m) => m.name === 'broken')?.reason, reason, '/v2/ops/server gives the same reason');
  const infer = await s.post('/v2/models/broken/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
  t.same([infer.status, hostPath.test(infer.text), infer.text.includes(reason)], [404, false, true], 'an infer call\'s 404 carries the reason without host paths');
  const grpcIndex = await c.call('RepositoryIndex', {});
  const grpcReason = grpcIndex.ok ? (grpcIndex.value.models as { name: string; reason: string }[]).find((m) => m.name === 'broken')?.reason : undefined;
  t.equal(grpcReason, reason, 'gRPC RepositoryIndex gives the same reason');
  const grpcInfer = await c.call('ModelInfer', { model_name: 'broken', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] });
  t.same(grpcInfer.ok ? 'answered' : [hostPath.test(grpcInfer.error.details), grpcInfer.error.details.includes(reason)], [false, true], 'gRPC ModelInfer\'s error carries the reason without host paths');

  const logged: string[] = [];
  s.server.umbra.manager.on('load-failed', (_name: string, message: string) => logged.push(message));
  t.equal((await s.post('/v2/repository/models/broken/load')).status >= 400, true, 'loading it again fails');
  t.match(logged.join('\n'), hostPath, 'what the server logs keeps the absolute path');
});

t.test('a model given in a load request names its file relative to the override store', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const state = stateDir(t);
  const first = await startServer({ repository: repo.dir, stateDir: state, host: '127.0.0.1', port: 0, workers: 1, monitoring: false });
  await first.umbra.manager.load('given', { config: {}, files: [{ path: '1/model.onnx', content: Buffer.from(encodeModel(affineModel(3, 0))) }] });
  await first.stop();
  // Its files in the state directory break while the server is down; it is loaded again at the start.
  writeFileSync(join(state, 'models', 'given', '1', 'model.onnx'), 'not a model');
  const s = await startTestServer(t, { repository: repo.dir, stateDir: state, monitoring: false });
  const given = ((await s.post('/v2/repository/index')).json as { name: string; reason?: string }[]).find((e) => e.name === 'given')?.reason ?? '';
  t.same([/given[/\\]1[/\\]model\.onnx/.test(given), given.includes(state), given.includes(tmpdir())], [true, false, false], 'the index names the file in the override store, without host paths');
});
