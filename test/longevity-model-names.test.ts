// A server that loads and unloads models under ever new names for weeks (given models, tenants,
// experiments) must hold nothing per name once a model is unloaded: each map keyed by model name
// that keeps an entry grows for the life of the process.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { encodeModel } from '../dist/onnx/model-io.js';

/** A server of one repository model, affine, with a state folder of its own (so given models persist as served). */
async function affineWithState(t: Parameters<Parameters<typeof t.test>[1]>[0]) {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const state = mkdtempSync(join(tmpdir(), 'umbra-state-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  return startTestServer(t, { repository: repo.dir, stateDir: state });
}

t.test('models loaded and unloaded under many names leave no per-name state behind', async (t) => {
  const s = await affineWithState(t);
  const monitor = s.server.monitor!;
  const file = Buffer.from(encodeModel(affineModel(3, 0))).toString('base64');
  const x = { name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] };
  // The repository's model serves throughout, with a prediction waiting under a caller's id.
  t.equal((await s.post('/v2/models/affine/infer', { id: 'kept', inputs: [x] })).status, 200);
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) {
    const name = `tenant-${i}`;
    statuses.push((await s.post(`/v2/repository/models/${name}/load`, { parameters: { config: '{}', 'file:1/model.onnx': file } })).status);
    statuses.push((await s.post(`/v2/models/${name}/infer`, { id: `req-${i}`, inputs: [x] })).status);
    statuses.push((await s.post(`/v2/models/${name}/infer`, { inputs: [x] })).status);
    statuses.push((await s.post(`/v2/repository/models/${name}/unload`, {})).status);
  }
  t.ok(statuses.every((status) => status === 200), 'every load, request and unload succeeds');
  // A label waits for every answer's event to land; a scrape evaluates (an answer's event landing
  // after its model's unload is let go there).
  const label = await s.post('/v2/models/affine/feedback', { feedback: [{ id: 'kept', truth: 1 }] });
  t.equal(label.json.accepted, 1, 'the loaded model\'s waiting prediction still takes its label');
  t.equal((await s.get('/metrics')).status, 200);
  t.same({ traffic: s.server.traffic.heldModels, waiting: monitor.feedback.modelsWaiting(), pending: monitor.feedback.pendingCount }, { traffic: 1, waiting: ['affine'], pending: 1 }, 'traffic and feedback hold only the model still loaded');
});

t.test('versions hot-reloaded one after another keep the accuracy window of the loaded one only', async (t) => {
  const s = await affineWithState(t);
  const file = Buffer.from(encodeModel(affineModel(3, 0))).toString('base64');
  const x = { name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] };
  const statuses: number[] = [];
  const accepted: number[] = [];
  for (let version = 1; version <= 12; version++) {
    statuses.push((await s.post('/v2/repository/models/given/load', { parameters: { config: '{}', [`file:${version}/model.onnx`]: file } })).status);
    statuses.push((await s.post('/v2/models/given/infer', { id: `v${version}`, inputs: [x] })).status);
    accepted.push((await s.post('/v2/models/given/feedback', { feedback: [{ id: `v${version}`, truth: 0 }] })).json.accepted);
  }
  t.ok(statuses.every((status) => status === 200), 'every load and request succeeds');
  t.same(accepted, accepted.map(() => 1), 'every version\'s prediction was labelled');
  t.equal((await s.get('/metrics')).status, 200);
  t.equal(s.server.monitor!.feedback.windowCount, 1, 'one window: the version loaded now');
});
