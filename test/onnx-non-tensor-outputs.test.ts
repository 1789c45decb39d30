// Graph outputs that are not tensors: skl2onnx's default classifier export ends in ZipMap (a
// sequence of {class: probability} maps), which the protocol cannot carry. Its input, the
// probability tensor, is served in its place; other non-tensor outputs are left out, said so.
import t from 'tap';
import { modelSignature, nonTensorOutputs } from '../dist/onnx/model-io.js';
import { startTestServer } from './helpers/server.js';
import { tempRepo, zipMapClassifierModel } from './helpers/repo.js';

const ZIPMAP_NOTE = 'output "output_probability" (a sequence of maps, ZipMap\'s {class: probability} per row) is served as "probability_tensor": the same probabilities as a [rows, 3] FP32 tensor, in class order 0, 1, 2';

t.test('the signature serves ZipMap\'s probability tensor and leaves other non-tensor outputs out, saying so', async (t) => {
  const zip = modelSignature(zipMapClassifierModel({ sequence: true }));
  t.same(zip.outputs.map((o) => [o.name, o.datatype, o.dims]), [['label', 'INT64', [-1]], ['probability_tensor', 'FP32', [-1, 3]]]);
  t.same(zip.outputNotes, [ZIPMAP_NOTE, 'output "rows" (a sequence) is not served: the protocol carries tensors only']);
  t.same(modelSignature(zipMapClassifierModel({ zipMap: false })).outputNotes, [], 'a model whose outputs are all tensors has no note');
  const onlySequence = zipMapClassifierModel({ sequence: true });
  onlySequence.graph!.output = onlySequence.graph!.output!.filter((o) => o.name === 'rows');
  t.throws(() => modelSignature(onlySequence), /the model has no tensor output to serve: output "rows" \(a sequence\) is not served/, 'a model with no tensor output fails to load, saying why');
  t.equal(nonTensorOutputs(zipMapClassifierModel({ zipMap: false }).graph!).size, 0);
});

t.test('a skl2onnx classifier with ZipMap serves the probabilities its zipmap-free export serves', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('zipmap', 1, zipMapClassifierModel());
  repo.addVersion('plain', 1, zipMapClassifierModel({ zipMap: false }));
  repo.addVersion('with_rows', 1, zipMapClassifierModel({ sequence: true }));
  const s = await startTestServer(t, { repository: repo.dir });
  t.ok(s.server.umbra.manager.isReady(), 'every model serves, so the server is ready');
  t.same((await s.get('/v2/models/zipmap')).json.outputs, [
    { name: 'label', datatype: 'INT64', shape: [-1] },
    { name: 'probability_tensor', datatype: 'FP32', shape: [-1, 3] },
  ]);
  const rows = Array.from({ length: 12 }, (_, i) => [i / 3, 1 - i / 5, (i % 4) - 1, i / 7]);
  const ask = (model: string) => Promise.all(rows.map((r) => s.post(`/v2/models/${model}/infer`, { inputs: [{ name: 'float_input', shape: [1, 4], datatype: 'FP32', data: r }] })));
  const [zip, plain, withRows] = await Promise.all([ask('zipmap'), ask('plain'), ask('with_rows')]);
  t.same(zip.map((r) => r.status), rows.map(() => 200), '12 requests at once, all answered');
  // Each request's batch is whatever arrived with it, and onnxruntime's float results can differ
  // in the last bit with the batch's size: names, types, shapes and labels exact, probabilities
  // within 1e-6.
  type Output = { name: string; datatype: string; shape: number[]; data: number[] };
  const outline = (answers: typeof plain) => answers.map((r) => (r.json.outputs as Output[]).map((o) => (o.datatype === 'FP32' ? { ...o, data: o.data.length } : o)));
  const furthest = (a: typeof plain, b: typeof plain) => Math.max(...a.flatMap((r, i) => (r.json.outputs as Output[]).flatMap((o, j) =>
    o.datatype === 'FP32' ? o.data.map((v, k) => Math.abs(v - (b[i]!.json.outputs as Output[])[j]!.data[k]!)) : [0])));
  t.same(outline(zip), outline(plain), 'the same outputs and labels as the export without ZipMap');
  t.ok(furthest(zip, plain) <= 1e-6, `and the same probabilities (furthest apart: ${furthest(zip, plain)})`);
  t.same(outline(withRows), outline(plain), 'a sequence output beside them is left out');
  t.ok(furthest(withRows, plain) <= 1e-6, `and the probabilities are the same (furthest apart: ${furthest(withRows, plain)})`);
  t.ok(plain.every((r) => Math.abs(r.json.outputs[1].data.reduce((a: number, b: number) => a + b, 0) - 1) < 1e-6), 'probabilities, each row summing to 1');
});
