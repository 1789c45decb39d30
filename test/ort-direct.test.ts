// The onnxruntime backend's two ways into a session: the direct native session (one synchronous
// call per run, used inline on the event loop and in workers) and the public API (the fallback).
// Both must answer exactly what onnxruntime-node's own InferenceSession answers.
import t from 'tap';
import * as ort from 'onnxruntime-node';
import { join } from 'node:path';
import { openOnnxruntime } from '../dist/workers/backends/onnxruntime.js';
import type { SessionSpec, WireTensor } from '../dist/workers/messages.js';

const ROOT = new URL('..', import.meta.url).pathname;
const PAIR = join(ROOT, 'models', 'repository', 'pair', '1', 'model.onnx');
const DIGITS = join(ROOT, 'models', 'repository', 'digits', '1', 'model.onnx');

function spec(modelPath: string): SessionSpec {
  return { key: `t:${modelPath}`, modelPath, backend: 'onnxruntime', executionProviders: ['cpu'], intraOpThreads: 1 };
}

function pixels(rows: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: rows * 64 }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 16);
}

async function reference(modelPath: string, feeds: WireTensor[]): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1 });
  const input: Record<string, ort.Tensor> = {};
  for (const f of feeds) input[f.name] = new ort.Tensor(f.datatype === 'FP32' ? 'float32' : 'int64', f.data as Float32Array, f.shape);
  const out = await session.run(input);
  await session.release();
  return out;
}

t.test('the direct session answers synchronously what InferenceSession.run answers', async (t) => {
  const direct = await openOnnxruntime(spec(DIGITS));
  t.type(direct.runSync, 'function', 'a CPU session on this onnxruntime-node opens directly');
  t.same(direct.inputs, [{ name: 'pixels', datatype: 'FP32', shape: [-1, 64] }]);
  t.same(direct.outputs.map((o) => [o.name, o.datatype]), [['probabilities', 'FP32'], ['label', 'INT64']]);
  for (const rows of [1, 7, 32]) {
    const feeds: WireTensor[] = [{ name: 'pixels', datatype: 'FP32', shape: [rows, 64], data: pixels(rows, rows) }];
    const want = await reference(DIGITS, feeds);
    const got = direct.runSync!(feeds, []);
    t.same(got.map((o) => o.name), ['probabilities', 'label'], `rows ${rows}: every output, in the model's order`);
    t.same(got[0]!.shape, [rows, 10]);
    t.same(Array.from(got[0]!.data as Float32Array), Array.from(want.probabilities!.data as Float32Array), `rows ${rows}: probabilities bit-equal`);
    t.same(Array.from(got[1]!.data as BigInt64Array), Array.from(want.label!.data as BigInt64Array), `rows ${rows}: labels equal`);
    const async = await direct.run(feeds, ['label']);
    t.same(async.map((o) => o.name), ['label'], 'run() with a subset returns only that output');
  }
  t.throws(() => direct.runSync!([{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: pixels(1, 1) }], ['nope']), /invalid output name: nope/);
  t.throws(() => direct.runSync!([], []), /input 'pixels' is missing/);
  await direct.release();
  t.throws(() => direct.runSync!([{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: pixels(1, 1) }], []), /released/, 'a released session refuses to run');
  await direct.release();
});

t.test('the public-API fallback answers the same on a two-input model', async (t) => {
  const fallback = await openOnnxruntime(spec(PAIR), false);
  const direct = await openOnnxruntime(spec(PAIR));
  t.equal(fallback.runSync, undefined, 'the public API has no synchronous run');
  t.same(fallback.inputs, direct.inputs, 'the same signature either way');
  t.same(fallback.outputs, direct.outputs);
  const feeds: WireTensor[] = direct.inputs.map((info, i) => {
    const shape = info.shape.map((d) => (d < 0 ? 3 : d));
    const n = shape.reduce((a, b) => a * b, 1);
    return { name: info.name, datatype: info.datatype, shape, data: Float32Array.from({ length: n }, (_, k) => (k + 1) * (i + 1) * 0.25) };
  });
  const a = await fallback.run(feeds, []);
  const b = direct.runSync!(feeds, []);
  t.same(a.map((o) => [o.name, o.shape, Array.from(o.data as Float32Array)]), b.map((o) => [o.name, o.shape, Array.from(o.data as Float32Array)]));
  await fallback.release();
  await direct.release();
});

t.test('a model onnxruntime cannot load fails the same way through the direct path', async (t) => {
  await t.rejects(openOnnxruntime(spec(join(ROOT, 'package.json'))), /protobuf|parse|Load model|INVALID/i);
  await t.rejects(openOnnxruntime(spec(join(ROOT, 'package.json')), false), /protobuf|parse|Load model|INVALID/i);
});
