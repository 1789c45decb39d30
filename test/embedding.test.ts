// Umbra as a library: the same server started in-process, and predict() with no HTTP hop,
// checked against onnxruntime-node; PyTorch exports served with no config file.
import t from 'tap';
import * as ort from 'onnxruntime-node';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Umbra, startServer, UmbraError } from '../dist/index.js';
import { tempRepo, affineModel, textScoreModel } from './helpers/repo.js';
import { encodeModel } from '../dist/onnx/model-io.js';

const FIXTURES = new URL('./fixtures/pytorch/', import.meta.url).pathname;

t.test('predict() in-process with typed arrays and plain arrays', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const typed = await umbra.predict('affine', { x: { data: new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]), shape: [2, 4] } }, { id: 'p1' });
  t.equal(typed.id, 'p1');
  t.same(typed.outputs[0]!.shape, [2, 4]);
  t.same(Array.from(typed.outputs[0]!.data as Float32Array), [3, 5, 7, 9, 11, 13, 15, 17]);
  const plain = await umbra.predict('affine', { x: { data: [1, 1, 1, 1] } });
  t.same(plain.outputs[0]!.shape, [1, 4], 'shape inferred as one row');
  await t.rejects(umbra.predict('affine', { nope: { data: [1] } }), UmbraError);
  await t.rejects(umbra.predict('affine', { x: { data: [1, 2, 3] , shape: [1, 3] } }), /shape|dim/i);
  await t.rejects(umbra.predict('ghost', { x: { data: [1] } }), /ghost/);
});

t.test('predict() refuses a typed array of another element type instead of reading its bytes as the input\'s', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  // Same element size as FP32: its bits were read as floats (1 as 1.4e-45) and answered.
  await t.rejects(umbra.predict('affine', { x: { data: new Int32Array([1, 2, 3, 4]), shape: [1, 4] } }),
    { code: 'INVALID_INPUT', message: "expected a Float32Array or an array of numbers for input 'x' (FP32) but received an Int32Array" });
  // Another element size: refused as a binary_data_size the caller never gave.
  await t.rejects(umbra.predict('affine', { x: { data: new Float64Array([1, 2, 3, 4]), shape: [1, 4] } }), { message: /received a Float64Array$/ });
});

t.test('predict() refuses inputs that are not objects with INVALID_INPUT, not a TypeError', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  // Both read properties of what they were given: "Cannot convert undefined or null to object",
  // "Cannot read properties of undefined (reading 'datatype')".
  await t.rejects(umbra.predict('affine', null as never),
    { code: 'INVALID_INPUT', message: "expected an object of tensors by input name for the inputs of model 'affine' but received null" });
  await t.rejects(umbra.predict('affine', { x: undefined as never }),
    { code: 'INVALID_INPUT', message: "expected an object ({ data, shape?, datatype? }) for input 'x' but received undefined" });
});

t.test('predict() names the typed array it refuses for a BYTES input', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('text', 1, textScoreModel());
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  // It said "but received object".
  await t.rejects(umbra.predict('text', { text: { data: new Uint8Array([103, 111]) as never, shape: [1, 1] } }),
    { code: 'INVALID_INPUT', message: "expected an array of strings for input 'text' (BYTES) but received a Uint8Array" });
});

t.test('predict() takes a version given as a number as the version of that name', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  // It was refused: "model 'affine' has no loaded version 1 (loaded: 1)".
  const answer = await umbra.predict('affine', { x: { data: [1, 1, 1, 1] } }, { version: 1 as never });
  t.same({ version: answer.model_version, data: Array.from(answer.outputs[0]!.data as Float32Array) }, { version: '1', data: [3, 3, 3, 3] });
});

t.test('predict() reads NaN and Infinity in a plain array of floats as a Float32Array\'s', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(1, 0));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  // JSON.stringify wrote them as null: refused as "received null", even with allow_nan.
  const values = [1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
  const answer = await umbra.predict('affine', { x: { data: values, shape: [1, 4] } }, { parameters: { allow_nan: true } });
  t.same(Array.from(answer.outputs[0]!.data as Float32Array), values, 'with allow_nan they reach the model');
  await t.rejects(umbra.predict('affine', { x: { data: values, shape: [1, 4] } }), { message: /element 1 but received NaN; set parameters\.allow_nan to true/ }, 'without it, the protocol\'s own refusal');
});

t.test('predict() takes bigints a double holds in a plain array, and refuses larger ones instead of rounding them', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(1, 0));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  // Plain arrays of bigints ended in JSON.stringify's TypeError "Do not know how to serialize a BigInt".
  const data = [1n, 2n, 3n, 4n] as unknown as number[];
  const answer = await umbra.predict('affine', { x: { data, shape: [1, 4] } });
  t.same(Array.from(answer.outputs[0]!.data as Float32Array), [1, 2, 3, 4]);
  const past = [1n, 2n ** 60n, 3n, 4n] as unknown as number[];
  await t.rejects(umbra.predict('affine', { x: { data: past, shape: [1, 4] } }), { code: 'INVALID_INPUT', message: /for input 'x' element 1 but received bigint 1152921504606846976$/ });
});

t.test('infer() checks a request object built by the caller as the HTTP path checks a body', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const x = (data: Float32Array, shape = [1, 4]) => ({ name: 'x', datatype: 'FP32' as const, shape, data });
  const answer = await umbra.infer('affine', undefined, { parameters: {}, inputs: [x(new Float32Array([1, 2, 3, 4]))] });
  t.same(Array.from(answer.response.outputs[0]!.data as Float32Array), [3, 5, 7, 9], 'a well-formed request is answered');
  // Data of another length than its shape: answered "ok" with empty outputs.
  await t.rejects(umbra.infer('affine', undefined, { parameters: {}, inputs: [x(new Float32Array(0))] }),
    { code: 'INVALID_INPUT', message: 'expected 4 elements for input "x" data (shape [1, 4]) but received 0' });
  await t.rejects(umbra.infer('affine', undefined, { parameters: {}, inputs: [{ ...x(new Float32Array(4)), datatype: 'FP64' }] }),
    { code: 'INVALID_INPUT', message: /received a Float32Array$/ }, 'data that is not the datatype\'s storage');
  await t.rejects(umbra.infer('affine', undefined, { parameters: {}, inputs: [{ ...x(new Float32Array(4)), name: 'y' }] }),
    { code: 'INVALID_INPUT', message: /for inputs\[0\]\.name but received "y"/ }, 'an input the model does not have');
  // parameters is optional, as in an HTTP body: its absence threw a synchronous TypeError.
  const bare = await umbra.infer('affine', undefined, { inputs: [x(new Float32Array([1, 1, 1, 1]))] });
  t.same(bare.response.outputs[0]!.shape, [1, 4], 'a request without parameters is answered');
  const notAnObject = umbra.infer('affine', undefined, null as never);
  await t.rejects(notAnObject, { code: 'INVALID_INPUT', message: 'expected an object for the inference request but received null' }, 'a request that is not an object is a rejection, not a throw');
});

t.test('Umbra.open() refuses workers or intraOpThreads that are not positive integers, naming the option', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  // A fraction or NaN left every model that runs in the workers UNAVAILABLE with an internal message.
  await t.rejects(Umbra.open({ repository: repo.dir, workers: 1.5 }), { code: 'INVALID_ARGUMENT', message: 'expected a positive integer for Umbra option workers but received number 1.5' });
  await t.rejects(Umbra.open({ repository: repo.dir, workers: Number.NaN }), { message: /for Umbra option workers but received number NaN/ });
  await t.rejects(Umbra.open({ repository: repo.dir, intraOpThreads: 0 }), { message: /for Umbra option intraOpThreads but received number 0/ });
});

t.test('Umbra.open() on a repository it cannot read leaves no worker pool behind', async (t) => {
  const ports = () => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
  const before = ports();
  await t.rejects(Umbra.open({ repository: '/umbra-no-such-repository', workers: 2 }), { code: 'INVALID_ARGUMENT' });
  // The pool's workers (a thread and a port each) outlived the failed call: two more each retry.
  t.equal(ports(), before, 'the workers it started are stopped');
});

t.test('startServer() refuses a port that is not an integer from 0 to 65535, naming the option', async (t) => {
  const repository = new URL('../models/repository', import.meta.url).pathname;
  // A string listened on some port while server.port and server.url said 0.
  await t.rejects(startServer({ repository, port: '0' as never, workers: 1 }),
    { code: 'INVALID_ARGUMENT', message: 'expected an integer from 0 to 65535 for server option port but received the string "0"' });
  await t.rejects(startServer({ repository, port: 70000, workers: 1 }), { code: 'INVALID_ARGUMENT', message: /for server option port but received number 70000$/ });
  await t.rejects(startServer({ repository, port: 0, grpcPort: -1, workers: 1 }), { code: 'INVALID_ARGUMENT', message: /for server option grpcPort but received number -1$/ });
});

t.test('startServer() on a repository it cannot read closes its port and leaves no threads behind', async (t) => {
  const ports = () => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
  const before = ports();
  const probe = await startServer({ repository: new URL('../models/repository', import.meta.url).pathname, port: 0, workers: 1, loadAll: false });
  const port = probe.port;
  await probe.stop();
  await t.rejects(startServer({ repository: '/umbra-no-such-repository', port, workers: 1 }), { code: 'INVALID_ARGUMENT' });
  // The listener, the I/O threads and the workers outlived the failed call: the port still took
  // connections, and the host process never exited.
  await t.rejects(fetch(`http://127.0.0.1:${port}/v2/health/live`), 'the port is closed');
  t.equal(ports(), before, 'the threads it started are stopped');
});

t.test('a second close() waits for the drain the first began', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  let answered = 0;
  const inflight = Array.from({ length: 8 }, () => umbra.predict('affine', { x: { data: [1, 2, 3, 4] } }).then(() => { answered += 1; }));
  const first = umbra.close();
  // It returned at once, before any request in flight was answered: a second shutdown hook went on mid-drain.
  await umbra.close();
  t.equal(answered, 8, 'every request in flight was answered before the second close() returned');
  await Promise.all([first, ...inflight]);
});

t.test('predict() answers own their bytes: a kept answer does not hold a shared slab', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  const digits = new URL('../models/repository/digits/2/model.onnx', import.meta.url).pathname;
  for (const [name, backend] of [['on_native', 'native'], ['on_ort', 'onnxruntime']] as const) {
    mkdirSync(join(repo.dir, name, '1'), { recursive: true });
    copyFileSync(digits, join(repo.dir, name, '1', 'model.onnx'));
    repo.writeConfig(name, { backend, max_batch_size: 8 });
  }
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const pixels = Float32Array.from({ length: 64 }, (_, i) => i % 17);
  const session = await ort.InferenceSession.create(digits, { intraOpNumThreads: 1 });
  t.teardown(() => session.release());
  const expected = await session.run({ pixels: new ort.Tensor('float32', pixels, [1, 64]) });
  for (const model of ['on_native', 'on_ort']) {
    const answer = await umbra.predict(model, { pixels: { data: pixels } });
    for (const o of answer.outputs) {
      const d = o.data as Float32Array | BigInt64Array;
      t.ok(d.byteOffset === 0 && d.byteLength === d.buffer.byteLength, `${model} ${o.name}: ${d.byteLength} bytes in a buffer of ${d.buffer.byteLength}`);
    }
    const probs = answer.outputs.find((o) => o.name === 'probabilities')!.data as Float32Array;
    const want = expected.probabilities!.data as Float32Array;
    t.ok(probs.every((v, i) => Math.abs(v - want[i]!) <= 1e-6), `${model} probabilities equal onnxruntime's`);
  }
});

t.test('startServer() serves, stop() shuts down cleanly', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(1, 0));
  const server = await startServer({ repository: repo.dir, port: 0, workers: 1 });
  const r = await fetch(`${server.url}/v2/models/affine/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [4, 3, 2, 1] }] }) });
  t.same((await r.json()).outputs[0].data, [4, 3, 2, 1]);
  await server.stop();
  await server.stop();
  await t.rejects(fetch(`${server.url}/v2/health/live`));
});

t.test('process.exit() in a process whose server still runs exits with its code, not an abort', async (t) => {
  // Node aborted the whole process (SIGABRT, "uv_loop_close() while having open handles") when it
  // ended I/O threads that still held uWS sockets: a host that exits without stop() crashed.
  const index = new URL('../dist/index.js', import.meta.url).href;
  const repository = new URL('../models/repository', import.meta.url).pathname;
  const script = `import { startServer } from ${JSON.stringify(index)};
const server = await startServer({ repository: ${JSON.stringify(repository)}, port: 0, workers: 1, ioThreads: 2, monitoring: false, ui: false });
const res = await fetch(server.url + '/v2/health/live');
await res.arrayBuffer();
process.exit(7);`;
  const dir = mkdtempSync(join(tmpdir(), 'umbra-exit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'host.mjs'), script);
  const child = spawnSync(process.execPath, [join(dir, 'host.mjs')], { encoding: 'utf8', timeout: 60_000 });
  t.same({ status: child.status, signal: child.signal }, { status: 7, signal: null }, child.stderr.split('\n').slice(0, 5).join('\n'));
});

t.test('startServer() without stateDir writes a model given in a load request outside the repository, and removes it at stop()', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(1, 0));
  const server = await startServer({ repository: repo.dir, port: 0, workers: 1 });
  t.teardown(() => server.stop());
  const file = Buffer.from(encodeModel(affineModel(2, 0))).toString('base64');
  const load = await fetch(`${server.url}/v2/repository/models/given/load`, { method: 'POST', body: JSON.stringify({ parameters: { config: '{}', 'file:1/model.onnx': file } }) });
  t.equal(load.status, 200, 'the load with a model file succeeds');
  const r = await fetch(`${server.url}/v2/models/given/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }) });
  t.same((await r.json()).outputs[0].data, [2, 4, 6, 8], 'the given model serves');
  // It was written under REPO/.umbra/models, against "nothing into the model repository".
  t.same(readdirSync(repo.dir), ['affine'], 'nothing written into the repository');
  const given = server.umbra.manager.overrides.modelDir('given');
  t.ok(existsSync(given), 'the given model lies in a folder of its own');
  await server.stop();
  t.notOk(existsSync(given), 'the folder is gone once the server stops');
});

for (const [model, input] of [['mlp', 'x'], ['cnn', 'image']] as const) {
  t.test(`PyTorch export '${model}' (torch.onnx.export, dynamic batch) served with no config`, async (t) => {
    const repo = tempRepo();
    t.teardown(() => repo.remove());
    mkdirSync(join(repo.dir, model, '1'), { recursive: true });
    copyFileSync(join(FIXTURES, `${model}.onnx`), join(repo.dir, model, '1', 'model.onnx'));
    const fixture = JSON.parse(readFileSync(join(FIXTURES, `${model}.json`), 'utf8'));
    const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
    t.teardown(() => umbra.close());
    const sig = umbra.manager.get(model).signature;
    t.ok(sig.maxBatchSize > 0, 'dynamic first axis became the batch dimension');
    const spec = fixture.inputs[input];
    const body = Buffer.from(JSON.stringify({ inputs: [{ name: input, shape: spec.shape, datatype: 'FP32', data: spec.data }] }));
    const { response } = await umbra.inferBody(model, undefined, body);
    const logits = response.outputs[0]!;
    t.same(logits.shape, fixture.outputs.logits.shape);
    const expected: number[] = fixture.outputs.logits.data;
    const got = Array.from(logits.data as Float32Array);
    t.ok(got.every((v, i) => Math.abs(v - expected[i]!) <= 1e-4 * Math.max(1, Math.abs(expected[i]!))), 'matches PyTorch within 1e-4');
    // And exactly what onnxruntime-node gives on the same input.
    const session = await ort.InferenceSession.create(join(FIXTURES, `${model}.onnx`));
    const direct = await session.run({ [input]: new ort.Tensor('float32', Float32Array.from(spec.data), spec.shape) });
    await session.release();
    t.same(got, Array.from(direct[session.outputNames[0]!]!.data as Float32Array));
  });
}

t.test('Umbra.open() and startServer() without options, or without a repository, name what they expect', async (t) => {
  const open = Umbra.open as (o?: unknown) => Promise<unknown>;
  const start = startServer as (o?: unknown) => Promise<unknown>;
  await t.rejects(open(), { code: 'INVALID_ARGUMENT', message: /^expected an options object such as \{ repository: 'models' \} for Umbra\.open\(\)/ }, 'Umbra.open() with nothing');
  await t.rejects(open({}), { code: 'INVALID_ARGUMENT', message: /^expected the model repository's folder as a string for Umbra option repository but received undefined/ }, 'no repository');
  await t.rejects(start(), { code: 'INVALID_ARGUMENT', message: /for startServer\(\) but received undefined$/ }, 'startServer() with nothing');
});

