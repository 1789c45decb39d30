// One copy of a version's weights for all its sessions: a model with enough inline weights is
// served from a copy whose weights sit in an aligned data file, which onnxruntime maps into
// memory once per session instead of copying into each.
import t from 'tap';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, utimesSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { sharedWeightsCopy } from '../dist/onnx/shared-weights.js';
import { readModel, writeModel, onnx } from '../dist/onnx/model-io.js';
import { startTestServer } from './helpers/server.js';
import { tempRepo, embeddingModel, affineModel } from './helpers/repo.js';

const dir = mkdtempSync(join(tmpdir(), 'umbra-shared-weights-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('the copy: large initializers in one data file at aligned offsets, written once per file', async (t) => {
  const source = join(dir, 'src', 'model.onnx');
  writeModel(embeddingModel(), source);
  const weights = join(dir, 'weights');
  const first = await sharedWeightsCopy(source, weights, 1024);
  t.ok(first?.written, 'written');
  const copy = readModel(first!.path);
  const table = copy.graph!.initializer!.find((i) => i.name === 'table')!;
  const external = Object.fromEntries(table.externalData!.map((e) => [e.key, e.value]));
  t.same([table.dataLocation, external.location, Number(external.offset) % 65536, Number(external.length)], [onnx.TensorProto.DataLocation.EXTERNAL, 'weights.bin', 0, 1024 * 16 * 4]);
  t.equal(first!.bytes, 1024 * 16 * 4);
  const again = await sharedWeightsCopy(source, weights, 1024);
  t.same([again?.path, again?.written], [first!.path, false], 'the same file again: the copy is kept');
  // A changed file gets a copy of its own; the one before it is kept (its version may still be draining).
  utimesSync(source, new Date(), new Date(Date.now() + 5000));
  const changed = await sharedWeightsCopy(source, weights, 1024);
  t.not(changed?.path, first!.path);
  t.ok(existsSync(first!.path), 'the copy before it is kept');
  utimesSync(source, new Date(), new Date(Date.now() + 10000));
  const latest = await sharedWeightsCopy(source, weights, 1024);
  t.same(readdirSync(weights).sort(), [changed!.path, latest!.path].map((p) => p.split('/').at(-2)).sort(), 'older ones go');
  t.equal(await sharedWeightsCopy(source, join(dir, 'w2'), 1 << 30), undefined, 'under the bound: none');
  const small = join(dir, 'small', 'model.onnx');
  writeModel(affineModel(2, 1), small);
  t.equal(await sharedWeightsCopy(small, join(dir, 'w3'), 1), undefined, 'weights too small to move (each under a page): none');
  t.equal(await sharedWeightsCopy(latest!.path, join(dir, 'w4'), 1024), undefined, 'weights already external: none');
});

t.test('a server shares one mapped copy of a version\'s weights among its sessions and answers as from its own file', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('shared', 1, embeddingModel());
  // In the workers: a session on each of the two, whatever the I/O threads (an inline version's
  // workers release theirs once it is placed).
  repo.writeConfig('shared', { backend: 'onnxruntime', parameters: { execution: 'worker' } });
  repo.addVersion('own', 1, embeddingModel());
  repo.writeConfig('own', { backend: 'onnxruntime', parameters: { share_weights: 'false' } });
  const stateDir = join(dir, 'state');
  const s = await startTestServer(t, { repository: repo.dir, stateDir, sharedWeights: { minBytes: 1024 } });
  const meta = (await s.get('/v2/models/shared')).json;
  t.equal(meta.execution.shared_weights_bytes, 1024 * 16 * 4, 'the metadata gives the shared bytes');
  t.equal((await s.get('/v2/models/own')).json.execution.shared_weights_bytes, undefined, 'parameters.share_weights: "false" keeps the model\'s own file');
  const ids = [[3, 1, 4, 1], [5, 9, 2, 6], [1023, 0, 7, 8]];
  const ask = (model: string) => Promise.all(ids.map((row) => s.post(`/v2/models/${model}/infer`, { inputs: [{ name: 'ids', shape: [1, 4], datatype: 'INT64', data: row }] })));
  const [shared, own] = await Promise.all([ask('shared'), ask('own')]);
  t.same(shared.map((r) => r.json.outputs[0].data), own.map((r) => r.json.outputs[0].data), 'the same answers');
  t.same(shared[2]!.json.outputs[0].data.slice(0, 3), [1023, 1023.5, 1024], 'rows of the table, by id');
  // Every session of the version (one per model worker, the workers being threads of this
  // process) maps the one data file, rather than holding a copy of its own.
  const data = join(dirname(s.server.umbra.manager.get('shared').sharedWeights!.path), 'weights.bin');
  const maps = readFileSync('/proc/self/maps', 'utf8').split('\n').filter((line) => line.endsWith(data));
  t.ok(maps.length >= 2, `the data file is mapped by each session (${maps.length} mappings)`);
}, { skip: process.platform !== 'linux' ? 'reads /proc/self/maps' : false });

t.test('where the copy cannot be written, each session reads the model\'s own file and the model serves', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('table', 1, embeddingModel());
  repo.writeConfig('table', { backend: 'onnxruntime' });
  const stateDir = join(dir, 'state-blocked');
  mkdirSync(stateDir, { recursive: true });
  // A file where the copies' folder would go: no copy can be written under it.
  writeFileSync(join(stateDir, 'weights'), 'not a folder');
  const s = await startTestServer(t, { repository: repo.dir, stateDir, sharedWeights: { minBytes: 1024 } });
  const mv = s.server.umbra.manager.get('table');
  t.same([mv.sharedWeights, typeof mv.sharedWeightsError], [undefined, 'string'], 'not shared, and why');
  const r = await s.post('/v2/models/table/infer', { inputs: [{ name: 'ids', shape: [1, 4], datatype: 'INT64', data: [2, 0, 0, 0] }] });
  t.same([r.status, r.json.outputs[0].data.slice(0, 2)], [200, [2, 2.5]]);
});
