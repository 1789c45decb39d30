// A request the model itself refuses (a PyTorch text model's token id past its embedding table:
// onnxruntime's Gather fails the run) is the client's error: 400 with onnxruntime's reason, and
// the requests batched with it are answered as if it had not been there. Before, the whole batch
// failed with 500 "internal error". A tensor that is empty along a free dimension never reaches a
// model at all (a zero-length GRU sequence made onnxruntime abort the process), nor does a string
// element the model would be given altered (a NUL ends it; bytes that are not UTF-8 become U+FFFD).
import t from 'tap';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from './helpers/server.js';
import { tempRepo, gruModel } from './helpers/repo.js';
import { generatedClient } from './helpers/grpc.js';
import { Umbra } from '../dist/index.js';
import { buildModel } from '../dist/onnx/builder.js';

const FIXTURES = new URL('./fixtures/pytorch/', import.meta.url).pathname;
const fixture = JSON.parse(readFileSync(join(FIXTURES, 'text.json'), 'utf8')) as {
  inputs: { ids: { shape: [number, number]; data: number[] } };
  outputs: { logits: { data: number[] } };
};
const [, length] = fixture.inputs.ids.shape;
const idsOf = (r: number) => fixture.inputs.ids.data.slice(r * length, (r + 1) * length);
const logitsOf = (r: number) => fixture.outputs.logits.data.slice(r * 3, (r + 1) * 3);
const refused = (model: string) => new RegExp(`^model '${model}' version 1 could not run on this request's inputs: .*Gather.*indices element out of data bounds, idx=100 must be within the inclusive range \\[-100,99\\]`);

const infer = (s: TestServer, ids: number[], model = 'text') => s.post(`/v2/models/${model}/infer`, { inputs: [{ name: 'ids', datatype: 'INT64', shape: [1, ids.length], data: ids }] });

// A batch of 4 rows fills (and goes) only once all four requests are queued: they run together.
for (const execution of ['worker', 'inline'] as const) {
  t.test(`${execution} execution: the refused request fails alone with 400, its batch-mates are answered`, async (t) => {
    const repo = tempRepo();
    t.teardown(() => repo.remove());
    // 'text' waits for full batches; 'eager' runs what it has at once.
    for (const [name, delay] of [['text', 600_000_000], ['eager', 0]] as const) {
      mkdirSync(join(repo.dir, name, '1'), { recursive: true });
      copyFileSync(join(FIXTURES, 'text.onnx'), join(repo.dir, name, '1', 'model.onnx'));
      repo.writeConfig(name, { max_batch_size: 4, dynamic_batching: { max_queue_delay_microseconds: delay }, parameters: { execution } });
    }
    // Inline batches form on the thread that read the request: one thread, so all four meet.
    const s = await startTestServer(t, { repository: repo.dir, ...(execution === 'inline' ? { ioThreads: 1 } : {}) });

    const answers = await Promise.all([infer(s, idsOf(0)), infer(s, [...idsOf(1).slice(1), 100]), infer(s, idsOf(2)), infer(s, idsOf(3))]);
    t.same(answers.map((a) => a.status), [200, 400, 200, 200]);
    t.match(answers[1]!.json.error, refused('text'));
    let worst = 0;
    for (const [i, r] of [[0, 0], [2, 2], [3, 3]] as const) {
      const got = answers[i]!.json.outputs[0].data as number[];
      logitsOf(r).forEach((w, k) => { worst = Math.max(worst, Math.abs(got[k]! - w)); });
    }
    t.ok(worst < 1e-5, `the batch-mates got PyTorch's answers for their own ids (max |diff| ${worst})`);
    const stats = (await s.get('/v2/models/text/stats')).json.model_stats[0];
    // (They met in one batch: with a 600 s delay nothing runs before the batch is full.) After the
    // batch failed, its halves ran: [0, bad] failed again and split, [2, 3] ran as one batch; so
    // the three answers came from two executions, and one request failed.
    t.same([stats.inference_stats.success.count, stats.inference_stats.fail.count, stats.execution_count], [3, 1, 2]);
    const fine = await Promise.all([infer(s, idsOf(0)), infer(s, idsOf(1)), infer(s, idsOf(2)), infer(s, idsOf(3))]);
    t.same(fine.map((a) => a.status), [200, 200, 200, 200], 'the next full batch is answered whole');
    // A batch none of whose requests runs, even alone: the model still runs the batch it warmed
    // up on, so the inputs are at fault, each its own 400 (a fuzzer's batch is not a server fault).
    const none = await Promise.all([1, 2, 3, 4].map((k) => infer(s, [k, 100 + k])));
    t.same(none.map((a) => a.status), [400, 400, 400, 400]);
    none.forEach((a, k) => t.match(a.json.error, new RegExp(`could not run on this request's inputs: .*idx=${101 + k} must be within`)));

    // Alone, the refusal is the same 400; an id in range still answers.
    const alone = await infer(s, [5, 100], 'eager');
    t.equal(alone.status, 400);
    t.match(alone.json.error, refused('eager'));
    t.equal((await infer(s, [5, 99], 'eager')).status, 200);
  });
}

t.test('a model that no longer runs even its warm-up batch answers 500: no client is blamed', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  mkdirSync(join(repo.dir, 'text', '1'), { recursive: true });
  copyFileSync(join(FIXTURES, 'text.onnx'), join(repo.dir, 'text', '1', 'model.onnx'));
  repo.writeConfig('text', { max_batch_size: 4, parameters: { execution: 'inline' } });
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const ids = (data: number[]) => ({ ids: { data: BigInt64Array.from(data.map(BigInt)), shape: [1, data.length] } });
  t.equal((await umbra.predict('text', ids(idsOf(0)))).outputs[0]!.shape.join(), '1,3', 'it runs at first');
  // A stand-in for a session broken after load (a lost device, say): every run now fails.
  const session = (umbra.manager.get('text').execution as unknown as { inline: { run: unknown; runSync?: unknown } }).inline;
  const fail = () => { throw new Error('device lost'); };
  session.run = async () => fail();
  if (session.runSync) session.runSync = fail;
  await t.rejects(umbra.predict('text', ids(idsOf(0))), { code: 'INTERNAL', message: /^model 'text' version 1 no longer runs even the placeholder batch it warmed up on: device lost/ });
});

// An empty tensor along a free dimension is refused before any model sees it: onnxruntime stops
// the whole process (std::terminate) when a GRU runs a sequence of length 0, so one such request
// took the server down with every request in it.
for (const execution of ['worker', 'inline'] as const) {
  t.test(`${execution} execution: a zero-length sequence is a 400 on every transport, and the server goes on`, async (t) => {
    const repo = tempRepo();
    t.teardown(() => repo.remove());
    repo.addVersion('gru', 1, gruModel());
    repo.writeConfig('gru', { max_batch_size: 4, parameters: { execution } });
    const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
    const sequence = (length: number) => ({ name: 'x', datatype: 'FP32', shape: [1, length, 2], data: Array.from({ length: length * 2 }, (_, i) => i / 10) });
    const empty = /^expected at least 1 along dimension 1 of input "x" \(a free dimension of the model\) but received 0 \(shape \[1, 0, 2\]\)/;

    const json = await s.post('/v2/models/gru/infer', { inputs: [sequence(0)] });
    t.equal(json.status, 400, 'JSON over HTTP');
    t.match(json.json.error, empty);
    // The binary extension: the header names the shape, no bytes follow.
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 0, 2], parameters: { binary_data_size: 0 } }] }));
    const binary = await s.request('POST', '/v2/models/gru/infer', header, { 'inference-header-content-length': String(header.byteLength) });
    t.equal(binary.status, 400, 'binary over HTTP');
    t.match(binary.json.error, empty);
    const c = generatedClient(s.server.grpcPort!);
    t.teardown(() => c.close());
    const grpcEmpty = await c.call('ModelInfer', { model_name: 'gru', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 0, 2], contents: { fp32_contents: [] } }] });
    t.notOk(grpcEmpty.ok, 'gRPC');
    if (!grpcEmpty.ok) {
      t.equal(grpcEmpty.error.code, 3, 'INVALID_ARGUMENT');
      t.match(grpcEmpty.error.details, empty);
    }

    // Still serving, and a sequence of any other length runs.
    t.same((await s.get('/v2/health/live')).json, { live: true });
    const one = await s.post('/v2/models/gru/infer', { inputs: [sequence(1)] });
    const three = await s.post('/v2/models/gru/infer', { inputs: [sequence(3)] });
    t.same([one.status, three.status], [200, 200]);
    t.same(three.json.outputs[0].shape, [1, 1, 3]);
  });
}

t.test('a zero-length sequence given to predict() is refused the same way', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('gru', 1, gruModel());
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  await t.rejects(umbra.predict('gru', { x: { data: new Float32Array(0), shape: [1, 0, 2] } }), /expected at least 1 along dimension 1 of input "x"/);
  const ran = await umbra.predict('gru', { x: { data: Float32Array.from([0.1, 0.2, 0.3, 0.4]), shape: [1, 2, 2] } });
  t.same(ran.outputs[0]!.shape, [1, 1, 3]);
});

// onnxruntime-node hands strings to the runtime as NUL-terminated UTF-8: "cat\u0000x" reached the
// model as "cat" (and was answered as "cat"), and bytes that are not UTF-8 reached it as U+FFFD.
// Both are refused on every transport instead of answered for input the model never saw.
t.test('BYTES elements a string tensor cannot hold as sent are a 400 on every transport; text of any script goes through unchanged', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('echo', 1, buildModel({
    inputs: [{ name: 'text', datatype: 'BYTES', dims: ['batch', 2] }],
    outputs: [{ name: 'same', datatype: 'BYTES', dims: ['batch', 2] }],
    nodes: [{ op: 'Identity', inputs: ['text'], outputs: ['same'] }],
  }));
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const c = generatedClient(s.server.grpcPort!);
  t.teardown(() => c.close());
  const element = (bytes: Buffer) => Buffer.concat([Buffer.from(Uint32Array.of(bytes.length).buffer), bytes]);
  const viaBinary = (elements: Buffer[]) => {
    const data = Buffer.concat(elements.map(element));
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'text', datatype: 'BYTES', shape: [1, 2], parameters: { binary_data_size: data.length } }] }));
    return s.request('POST', '/v2/models/echo/infer', Buffer.concat([header, data]), { 'inference-header-content-length': String(header.byteLength) });
  };
  const viaGrpc = (elements: Buffer[]) => c.call('ModelInfer', { model_name: 'echo', inputs: [{ name: 'text', datatype: 'BYTES', shape: [1, 2], contents: { bytes_contents: elements } }] });

  const nul = /^expected text for input "text" element 0 \(BYTES\) but received a NUL character at character 3/;
  const json = await s.post('/v2/models/echo/infer', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1, 2], data: ['cat\u0000x', 'dog'] }] });
  t.same([json.status, nul.test(json.json.error)], [400, true], 'a NUL in JSON: 400');
  const binary = await viaBinary([Buffer.from('cat\u0000x'), Buffer.from('dog')]);
  t.same([binary.status, nul.test(binary.json.error)], [400, true], 'a NUL in a binary element: 400');
  const grpc = await viaGrpc([Buffer.from('cat\u0000x'), Buffer.from('dog')]);
  t.same(grpc.ok ? 'answered' : [grpc.error.code, nul.test(grpc.error.details)], [3, true], 'a NUL over gRPC: INVALID_ARGUMENT');

  const notUtf8 = /^expected UTF-8 text for input "text" element 1 \(BYTES: onnxruntime's string tensors hold text\) but received bytes that are not UTF-8 \(2 bytes: ff fe\)/;
  const binaryLatin = await viaBinary([Buffer.from('ok'), Buffer.from([0xff, 0xfe])]);
  t.same([binaryLatin.status, notUtf8.test(binaryLatin.json.error)], [400, true], 'bytes that are not UTF-8 in a binary element: 400');
  const grpcLatin = await viaGrpc([Buffer.from('ok'), Buffer.from([0xff, 0xfe])]);
  t.same(grpcLatin.ok ? 'answered' : [grpcLatin.error.code, notUtf8.test(grpcLatin.error.details)], [3, true], 'and over gRPC');
  const surrogate = await s.request('POST', '/v2/models/echo/infer', '{"inputs":[{"name":"text","datatype":"BYTES","shape":[1,2],"data":["a\\ud800","b"]}]}');
  t.same([surrogate.status, /unpaired surrogate \(\\ud800\) at character 1/.test(surrogate.json.error)], [400, true], 'an unpaired surrogate in JSON: 400');

  const text = ['é✓😀 日本', ''];
  const answers = [
    (await s.post('/v2/models/echo/infer', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1, 2], data: text }] })).json.outputs[0].data,
    (await viaBinary(text.map((x) => Buffer.from(x)))).json.outputs[0].data,
  ];
  const grpcText = await viaGrpc(text.map((x) => Buffer.from(x)));
  // The answer's strings: in the output's contents, or length-prefixed in raw_output_contents.
  const stringsOf = (v: { outputs: { contents?: { bytes_contents: Buffer[] } }[]; raw_output_contents?: Buffer[] }) => {
    if (v.outputs[0]!.contents?.bytes_contents?.length) return v.outputs[0]!.contents.bytes_contents.map((b) => Buffer.from(b).toString());
    const raw = Buffer.from(v.raw_output_contents![0]!);
    const out: string[] = [];
    for (let p = 0; p < raw.length; p += 4 + raw.readUInt32LE(p)) out.push(raw.toString('utf8', p + 4, p + 4 + raw.readUInt32LE(p)));
    return out;
  };
  answers.push(grpcText.ok ? stringsOf(grpcText.value) : grpcText.error.details);
  t.same(answers, [text, text, text], 'UTF-8 text of any script and the empty string: echoed exactly over JSON, binary and gRPC');
});
