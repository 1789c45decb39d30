// The native backend through a real server: `backend: native` in config.json serves the digits
// model with onnxruntime's answers; `auto` picks native for it and falls back to onnxruntime for
// a graph with an unsupported operator; `native` refuses that graph at load, naming the node.
import t from 'tap';
import * as ort from 'onnxruntime-node';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../dist/index.js';
import { buildModel } from '../dist/onnx/builder.js';
import { tempRepo } from './helpers/repo.js';

const DIGITS = new URL('../models/repository/digits/1/model.onnx', import.meta.url).pathname;

function unsupportedModel() {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 4] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 4] }],
    nodes: [{ op: 'Exp', inputs: ['x'], outputs: ['y'], name: 'exp_node' }],
  });
}

function pixels(rows: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: rows * 64 }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 16;
  });
}

t.test('backend: native and auto in config.json, through HTTP', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  for (const [name, backend] of [['digits_native', 'native'], ['digits_auto', 'auto']] as const) {
    mkdirSync(join(repo.dir, name, '1'), { recursive: true });
    copyFileSync(DIGITS, join(repo.dir, name, '1', 'model.onnx'));
    repo.writeConfig(name, { backend, max_batch_size: 16 });
  }
  // In the pool: the executor's results are views of shared slabs, and each must reach the main
  // thread as a buffer of its own (a transferred slab would take every other view with it).
  mkdirSync(join(repo.dir, 'digits_worker', '1'), { recursive: true });
  copyFileSync(DIGITS, join(repo.dir, 'digits_worker', '1', 'model.onnx'));
  repo.writeConfig('digits_worker', { backend: 'native', max_batch_size: 16, parameters: { execution: 'worker' } });
  repo.addVersion('exp_auto', 1, unsupportedModel());
  repo.writeConfig('exp_auto', { backend: 'auto' });
  repo.addVersion('exp_native', 1, unsupportedModel());
  repo.writeConfig('exp_native', { backend: 'native' });

  const server = await startServer({ repository: repo.dir, port: 0, workers: 2 });
  t.teardown(() => server.stop());
  const manager = server.umbra.manager;
  t.equal(manager.get('digits_native').session.backend, 'native');
  t.equal(manager.get('digits_auto').session.backend, 'native', 'auto picks native for a dense network');
  t.equal(manager.get('exp_auto').session.backend, 'onnxruntime', 'auto falls back for an unsupported op');
  const noteOf = async (model: string) => ((await (await fetch(`${server.url}/v2/models/${model}`)).json()) as { execution: { backend_note?: string } }).execution.backend_note;
  const [nativeNote, fallbackNote, namedNote] = await Promise.all(['digits_auto', 'exp_auto', 'digits_native'].map(noteOf));
  t.equal(nativeNote, 'backend auto chose native: it runs every node of this model', 'the metadata says what auto chose');
  t.match(fallbackNote, /^backend auto chose onnxruntime: the native backend cannot run this model \(.*node "exp_node" \(Exp\)/, 'a fallback names the node and op the native backend refused');
  t.equal(namedNote, undefined, 'a backend the config names needs no note');
  const failed = (await manager.index()).find((e) => e.name === 'exp_native');
  t.equal(failed?.state, 'UNAVAILABLE');
  t.match(failed?.reason, /node "exp_node" \(Exp\).*onnxruntime/, 'the refusal names the node, the op and the way out');
  const refused = await fetch(`${server.url}/v2/models/exp_native/infer`, { method: 'POST', body: JSON.stringify({ inputs: [] }) });
  t.equal(refused.status, 404, 'a request for the model that failed to load');
  t.match((await refused.json() as { error: string }).error, /^model 'exp_native' is not available \(UNAVAILABLE\): node "exp_node" \(Exp\)/,
    'names the model as one that failed to load, with the reason, not as unknown');

  const reference = await ort.InferenceSession.create(DIGITS, { intraOpNumThreads: 1 });
  t.teardown(() => reference.release());
  t.equal(manager.get('digits_worker').placement, 'worker');
  for (const [model, rows, seed] of [['digits_native', 1, 1], ['digits_native', 5, 2], ['digits_auto', 3, 3], ['digits_worker', 1, 4], ['digits_worker', 7, 5]] as const) {
    const data = pixels(rows, seed);
    const r = await fetch(`${server.url}/v2/models/${model}/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'pixels', shape: [rows, 64], datatype: 'FP32', data }] }),
    });
    t.equal(r.status, 200);
    const body = await r.json() as { outputs: { name: string; shape: number[]; data: number[] }[] };
    const expected = await reference.run({ pixels: new ort.Tensor('float32', Float32Array.from(data), [rows, 64]) });
    const probs = body.outputs.find((o) => o.name === 'probabilities')!;
    const label = body.outputs.find((o) => o.name === 'label')!;
    t.same(probs.shape, [rows, 10]);
    const want = Array.from(expected.probabilities!.data as Float32Array);
    t.ok(probs.data.every((v, i) => Math.abs(v - want[i]!) <= 1e-5), `${model} probabilities equal onnxruntime's (${rows} rows)`);
    t.same(label.data.map(Number), Array.from(expected.label!.data as BigInt64Array, Number), `${model} labels`);
  }
  for (const model of ['digits_native', 'digits_worker']) {
    const concurrent = await Promise.all(Array.from({ length: 12 }, (_, i) => fetch(`${server.url}/v2/models/${model}/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'pixels', shape: [1, 64], datatype: 'FP32', data: pixels(1, 100 + i) }] }),
    }).then((r) => r.json() as Promise<{ outputs: { name: string; data: number[] }[] }>)));
    for (const [i, body] of concurrent.entries()) {
      const expected = await reference.run({ pixels: new ort.Tensor('float32', Float32Array.from(pixels(1, 100 + i)), [1, 64]) });
      const want = Array.from(expected.probabilities!.data as Float32Array);
      t.ok(body.outputs.find((o) => o.name === 'probabilities')!.data.every((v, j) => Math.abs(v - want[j]!) <= 1e-5), `${model}, request ${i} of 12 at once: probabilities`);
      t.same(body.outputs.find((o) => o.name === 'label')!.data.map(Number), Array.from(expected.label!.data as BigInt64Array, Number), `${model}, request ${i}: label`);
    }
  }

  const r = await fetch(`${server.url}/v2/models/exp_auto/infer`, {
    method: 'POST',
    body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 1, 2, -1] }] }),
  });
  const y = (await r.json() as { outputs: { data: number[] }[] }).outputs[0]!.data;
  t.ok(y.every((v, i) => Math.abs(v - Math.exp([0, 1, 2, -1][i]!)) < 1e-5), 'the fallback serves on onnxruntime');
});
