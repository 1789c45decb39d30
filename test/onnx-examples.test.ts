// The committed example repository: the digits classifier is accurate when served by
// onnxruntime, pair and wide compute what they claim, and every config resolves.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { modelSignature, readModel, type ModelProto } from '../dist/onnx/model-io.js';
import { tensorValues } from '../dist/onnx/tensor-data.js';
import { loadDigits, seededRandom } from '../dist/onnx/train-digits.js';
import { digitsModel, pairModel } from '../dist/onnx/build-examples.js';
import { resolveModelConfig } from '../dist/repository/config.js';
import { listModels, listVersions } from '../dist/repository/layout.js';
import { property } from './helpers/property.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(root, 'models', 'repository');
const digits = loadDigits(join(root, 'models', 'digits.csv'));
const random = seededRandom(4242);

function initializer(model: ModelProto, name: string): Float32Array {
  const tensor = model.graph!.initializer!.find((i) => i.name === name);
  if (!tensor) throw new Error(`no initializer ${name}`);
  return tensorValues(tensor).data as Float32Array;
}

t.test('the repository lists digits (1, 2), pair (1) and wide (1)', async (t) => {
  t.same(listModels(repo), ['digits', 'pair', 'wide']);
  t.same(listVersions(repo, 'digits'), [1, 2]);
  t.same(listVersions(repo, 'pair'), [1]);
  t.same(listVersions(repo, 'wide'), [1]);
  t.equal(digits.train.rows, 1437);
  t.equal(digits.test.rows, 360);
});

t.test('digits: test-split accuracy through onnxruntime is at least 0.93 for each version', async (t) => {
  for (const version of [1, 2]) {
    const path = join(repo, 'digits', String(version), 'model.onnx');
    const session = await ort.InferenceSession.create(path);
    const out = await session.run({ pixels: new ort.Tensor('float32', digits.test.pixels, [digits.test.rows, 64]) });
    const probabilities = out.probabilities!.data as Float32Array;
    const labels = out.label!.data as BigInt64Array;
    t.same(out.probabilities!.dims, [digits.test.rows, 10]);
    t.same(out.label!.dims, [digits.test.rows]);
    let correct = 0;
    let worstSum = 0;
    const argmax = property(`digits/${version}: each row's label is the argmax of its probabilities`);
    for (let row = 0; row < digits.test.rows; row++) {
      const p = Array.from(probabilities.subarray(row * 10, row * 10 + 10));
      worstSum = Math.max(worstSum, Math.abs(p.reduce((a, b) => a + b, 0) - 1));
      argmax.check(Number(labels[row]) === p.indexOf(Math.max(...p)), () => `row ${row}: label ${labels[row]}, probabilities ${p.join(', ')}`);
      if (Number(labels[row]) === digits.test.labels[row]) correct++;
    }
    argmax.assert(t);
    const accuracy = correct / digits.test.rows;
    t.ok(accuracy >= 0.93, `digits/${version} test accuracy ${accuracy.toFixed(4)} >= 0.93`);
    t.ok(worstSum < 1e-5, `digits/${version} probabilities sum to 1 (worst ${worstSum})`);
    t.match(readModel(path).graph!.docString, /test accuracy 0\.9\d{3}/, 'the model records its measured accuracy');
  }
});

t.test('digits: the builder graph matches a plain reference and the committed config resolves', async (t) => {
  const model = readModel(join(repo, 'digits', '1', 'model.onnx'));
  const weights = {
    w1: initializer(model, 'fc1.weight'), b1: initializer(model, 'fc1.bias'),
    w2: initializer(model, 'fc2.weight'), b2: initializer(model, 'fc2.bias'),
  };
  const hidden = weights.b1.length;
  // Rebuilding the graph from its own weights must give the same ops (the builder is what shipped it).
  const rebuilt = digitsModel({ hidden, w1: Float64Array.from(weights.w1), b1: Float64Array.from(weights.b1), w2: Float64Array.from(weights.w2), b2: Float64Array.from(weights.b2) }, '');
  t.same(rebuilt.graph!.node!.map((n) => n.opType), model.graph!.node!.map((n) => n.opType));

  const rows = 5;
  const pixels = Float32Array.from({ length: rows * 64 }, () => Math.floor(random() * 17));
  const session = await ort.InferenceSession.create(join(repo, 'digits', '1', 'model.onnx'));
  const out = await session.run({ pixels: new ort.Tensor('float32', pixels, [rows, 64]) });
  const probabilities = out.probabilities!.data as Float32Array;
  const matches = property('probabilities match the reference within 1e-5');
  for (let r = 0; r < rows; r++) {
    const h = Array.from({ length: hidden }, (_, j) => {
      let s = weights.b1[j]!;
      for (let f = 0; f < 64; f++) s += weights.w1[j * 64 + f]! * pixels[r * 64 + f]! / 16;
      return Math.max(0, s);
    });
    const logits = Array.from({ length: 10 }, (_, c) => h.reduce((s, v, j) => s + v * weights.w2[c * hidden + j]!, weights.b2[c]!));
    const max = Math.max(...logits);
    const total = logits.reduce((s, v) => s + Math.exp(v - max), 0);
    for (let c = 0; c < 10; c++) {
      const expected = Math.exp(logits[c]! - max) / total;
      matches.check(Math.abs(probabilities[r * 10 + c]! - expected) <= 1e-5, () => `row ${r} class ${c}: ${probabilities[r * 10 + c]} vs ${expected}`);
    }
  }
  matches.assert(t);

  const config = resolveModelConfig(join(repo, 'digits'), modelSignature(model));
  t.equal(config.source, 'config.json');
  t.equal(config.maxBatchSize, 32);
  t.same(config.inputs, [{ name: 'pixels', datatype: 'FP32', dims: [64] }]);
  t.same(config.outputs, [{ name: 'probabilities', datatype: 'FP32', dims: [10] }, { name: 'label', datatype: 'INT64', dims: [] }]);
  t.equal(config.dynamicBatching.enabled, true);
  t.same(config.versionPolicy, { kind: 'latest', numVersions: 2 });
});

t.test('pair: sum = a + b and scaled = a x W, config from config.pbtxt', async (t) => {
  const path = join(repo, 'pair', '1', 'model.onnx');
  const model = readModel(path);
  const w = initializer(model, 'W');
  t.same(Array.from(w), Array.from(initializer(pairModel(), 'W')), 'the committed model is what the builder makes');
  const rows = 3;
  const a = Float32Array.from({ length: rows * 4 }, () => Math.round((random() * 8 - 4) * 8) / 8);
  const b = Float32Array.from({ length: rows * 4 }, () => Math.round((random() * 8 - 4) * 8) / 8);
  const session = await ort.InferenceSession.create(path);
  const out = await session.run({ a: new ort.Tensor('float32', a, [rows, 4]), b: new ort.Tensor('float32', b, [rows, 4]) });
  t.same(Array.from(out.sum!.data as Float32Array), Array.from(a, (v, i) => v + b[i]!));
  const scaled = Array.from({ length: rows * 3 }, (_, k) => {
    const r = Math.floor(k / 3);
    const c = k % 3;
    let s = 0;
    for (let i = 0; i < 4; i++) s += a[r * 4 + i]! * w[i * 3 + c]!;
    return s;
  });
  t.same(Array.from(out.scaled!.data as Float32Array), scaled, 'exact: inputs and weights are multiples of 1/8 and 1/4');

  const config = resolveModelConfig(join(repo, 'pair'), modelSignature(model));
  t.equal(config.source, 'config.pbtxt');
  t.equal(config.maxBatchSize, 8);
  t.same(config.inputs.map((i) => i.name), ['a', 'b']);
  t.same(config.outputs, [{ name: 'sum', datatype: 'FP32', dims: [4] }, { name: 'scaled', datatype: 'FP32', dims: [3] }]);
  t.same(config.dynamicBatching.preferredBatchSizes, [4, 8]);
  t.equal(config.dynamicBatching.maxQueueDelayUs, 200);
  t.match(readFileSync(join(repo, 'pair', 'config.pbtxt'), 'utf8'), /^# /, 'the pbtxt carries a comment');
});

t.test('wide: derived config and outputs match a plain reference', async (t) => {
  const path = join(repo, 'wide', '1', 'model.onnx');
  const model = readModel(path);
  const config = resolveModelConfig(join(repo, 'wide'), modelSignature(model));
  t.equal(config.source, 'derived');
  t.equal(config.maxBatchSize, 64);
  t.same(config.inputs, [{ name: 'features', datatype: 'FP32', dims: [256] }]);
  t.same(config.outputs, [{ name: 'scores', datatype: 'FP32', dims: [10] }]);
  t.equal(config.dynamicBatching.maxQueueDelayUs, 0, "Triton's default: no queue delay");

  const rows = 2;
  const features = Float32Array.from({ length: rows * 256 }, () => random() * 2 - 1);
  const session = await ort.InferenceSession.create(path);
  const out = await session.run({ features: new ort.Tensor('float32', features, [rows, 256]) });
  let activations = Array.from({ length: rows }, (_, r) => Array.from(features.subarray(r * 256, r * 256 + 256)));
  for (let layer = 1; layer <= 3; layer++) {
    const w = initializer(model, `fc${layer}.weight`);
    const b = initializer(model, `fc${layer}.bias`);
    const fanIn = activations[0]!.length;
    activations = activations.map((x) => Array.from(b, (bias, o) => {
      let s = bias;
      for (let i = 0; i < fanIn; i++) s += w[o * fanIn + i]! * x[i]!;
      return layer < 3 ? Math.max(0, s) : s;
    }));
  }
  const scores = out.scores!.data as Float32Array;
  const expected = activations.flat();
  const worst = expected.reduce((m, e, i) => Math.max(m, Math.abs(scores[i]! - e) / Math.max(1, Math.abs(e))), 0);
  t.ok(worst < 1e-4, `wide scores match the reference (worst relative error ${worst})`);
  t.ok(expected.some((v) => Math.abs(v) > 0.01), 'scores are not trivially zero');
});

t.test('build-examples rebuilds the repository offline with --out', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'umbra-examples-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const result = spawnSync(process.execPath, [join(root, 'dist', 'onnx', 'build-examples.js'), '--out', out], { encoding: 'utf8' });
  t.equal(result.status, 0, result.stderr);
  const accuracies = [...result.stdout.matchAll(/test accuracy (0\.\d+)/g)].map((m) => Number(m[1]));
  t.equal(accuracies.length, 2, 'one accuracy line per digits version');
  t.ok(accuracies.every((a) => a >= 0.93), `printed accuracies ${accuracies.join(', ')} >= 0.93`);
  t.same(listVersions(out, 'digits'), [1, 2]);
  t.same(readFileSync(join(out, 'digits', 'config.json')), readFileSync(join(repo, 'digits', 'config.json')));
  // No transcendental math in these two, so they rebuild byte for byte on any Node.
  for (const file of ['pair/1/model.onnx', 'pair/config.pbtxt', 'wide/1/model.onnx']) {
    t.same(readFileSync(join(out, file)), readFileSync(join(repo, file)), `${file} rebuilds byte for byte`);
  }
});
