// The classification extension: an output requested with parameters.classification N comes back
// as its N highest values per row, "<value>:<index>[:<label>]" in a BYTES tensor, labels from the
// config's label_filename; over JSON, binary HTTP and gRPC. The hooks (drift, feedback, the
// prediction log) still see the model's own outputs.
import t from 'tap';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { generatedClient } from './helpers/grpc.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { classify } from '../dist/protocol/classification.js';

t.test('classify: the highest values first, ties by index, NaN last, labels where given', async (t) => {
  const scores = { name: 'p', datatype: 'FP32' as const, shape: [2, 4], data: new Float32Array([0.5, 2, NaN, 2, 1, 3, 0, -1]) };
  t.same(classify(scores, 3, true, ['a', 'b', 'c']).data, ['2:1:b', '2:3', '0.5:0:a', '3:1:b', '1:0:a', '0:2:c']);
  t.same(classify(scores, 1, false).shape, [1], 'a model that does not batch: the whole tensor is one row');
  t.same(classify({ name: 'n', datatype: 'INT64', shape: [1, 3], data: new BigInt64Array([5n, -2n, 9n]) }, 2, true).data, ['9:2', '5:0']);
  t.same(classify(scores, 5, true).shape, [2, 4], 'more classes than a row has: every one, as Triton answers');
  t.throws(() => classify({ name: 's', datatype: 'BYTES', shape: [1], data: ['x'] }, 1, true), /holds strings/);
});

t.test('over HTTP and gRPC: top classes with labels, bad counts refused, the hooks see the scores', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('scores', 1, affineModel(2, 1, 4));
  repo.writeConfig('scores', { max_batch_size: 8, output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [4], label_filename: 'labels.txt' }] });
  writeFileSync(join(repo.dir, 'scores', 'labels.txt'), 'cat\ndog\nbird\nfish\n');
  repo.addVersion('plain', 1, affineModel(2, 1, 4));
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  t.ok((await s.get('/v2')).json.extensions.includes('classification'), 'the server metadata lists the extension');
  const events: { outputs: { datatype: string }[] }[] = [];
  t.teardown(s.server.umbra.hooks.use({ onResult: (e) => { if (e.response) events.push(e.response); }, readsHeaders: false }));

  const x = [0.1, 0.9, 0.5, -1, 3, 0, 1, 2];
  const y = x.map((v) => Math.fround(Math.fround(v * 2) + 1));
  const top = (row: number, labels: string[] | undefined, k: number) => {
    const r = y.slice(row * 4, row * 4 + 4);
    return r.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k).map(([v, i]) => `${v}:${i}${labels ? `:${labels[i]}` : ''}`);
  };
  const labels = ['cat', 'dog', 'bird', 'fish'];
  const ask = (model: string, parameters: Record<string, unknown>) => s.post(`/v2/models/${model}/infer`, { inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: x }], outputs: [{ name: 'y', parameters }] });
  const json = await ask('scores', { classification: 2 });
  t.same([json.status, json.json.outputs[0]], [200, { name: 'y', datatype: 'BYTES', shape: [2, 2], data: [...top(0, labels, 2), ...top(1, labels, 2)] }], 'JSON: two classes per row, labelled');
  const plain = await ask('plain', { classification: 3 });
  t.same(plain.json.outputs[0].data, [...top(0, undefined, 3), ...top(1, undefined, 3)], 'no label file: value and index');

  const all = await ask('scores', { classification: 5 });
  t.same([all.status, all.json.outputs[0].data], [200, [...top(0, labels, 4), ...top(1, labels, 4)]], 'more classes than the output has: all four per row');

  const refused = await Promise.all([{ classification: 0 }, { classification: 'two' }].map((p) => ask('scores', p)));
  t.same(refused.map((r) => r.status), [400, 400]);
  t.match(refused[0]!.json.error, /expected a positive integer \(how many classes to return\) for output "y" parameters.classification but received 0/);

  await s.server.umbra.settleEvents();
  t.ok(events.length >= 2 && events.every((e) => e.outputs[0]!.datatype === 'FP32'), 'the hooks saw the model\'s scores, not the classes');

  const c = generatedClient(s.server.grpcPort!);
  t.teardown(() => c.close());
  const grpc = await c.call<{ outputs: { datatype: string; shape: string[]; contents?: { bytes_contents: Buffer[] } }[]; raw_output_contents: Buffer[] }>('ModelInfer', {
    model_name: 'scores',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], contents: { fp32_contents: x } }],
    outputs: [{ name: 'y', parameters: { classification: { int64_param: 1 } } }],
  });
  t.ok(grpc.ok, 'gRPC answers');
  if (grpc.ok) {
    const out = grpc.value.outputs[0]!;
    t.same([out.datatype, out.shape.map(Number), out.contents!.bytes_contents.map((b) => b.toString())], ['BYTES', [2, 1], [...top(0, labels, 1), ...top(1, labels, 1)]]);
  }
});

t.test('a label file that links out of the model folder is refused: its lines would go to every client', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  const outside = mkdtempSync(join(tmpdir(), 'umbra-secret-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  writeFileSync(join(outside, 'secret'), 'token=hunter2\nb\nc\nd\n');
  repo.addVersion('scores', 1, affineModel(2, 1, 4));
  repo.writeConfig('scores', { max_batch_size: 8, output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [4], label_filename: 'labels.txt' }] });
  symlinkSync(join(outside, 'secret'), join(repo.dir, 'scores', 'labels.txt'));
  // A link that stays inside the folder is followed as before.
  repo.addVersion('inside', 1, affineModel(2, 1, 4));
  repo.writeConfig('inside', { max_batch_size: 8, output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [4], label_filename: 'labels.txt' }] });
  writeFileSync(join(repo.dir, 'inside', 'classes.txt'), 'cat\ndog\nbird\nfish\n');
  symlinkSync('classes.txt', join(repo.dir, 'inside', 'labels.txt'));
  const s = await startTestServer(t, { repository: repo.dir, monitoring: false });
  const ask = (model: string) => s.post(`/v2/models/${model}/infer`, { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [3, 0, 1, 2] }], outputs: [{ name: 'y', parameters: { classification: 1 } }] });
  const leaked = await ask('scores');
  t.notMatch(leaked.text, /hunter2/, 'the file outside is not answered');
  const entry = (await s.post('/v2/repository/index', {})).json.find((e: { name: string }) => e.name === 'scores');
  t.equal(entry?.state, 'UNAVAILABLE', 'the model does not load');
  t.match(entry?.reason, /"labels\.txt" is not inside the model's folder/, 'naming the label file');
  t.same((await ask('inside')).json.outputs[0].data, ['7:0:cat'], 'a link inside the folder: its labels');
});
