// Builds the example model repository offline:
//   node dist/onnx/build-examples.js [--out models/repository] [--csv models/digits.csv]
// digits/1 and digits/2 are trained here on models/digits.csv; pair and wide have fixed seeded
// weights. Prints the digits test-split accuracy of each version.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildModel } from './builder.js';
import { writeModel, type ModelProto } from './model-io.js';
import { accuracy, DIGIT_CLASSES, DIGIT_FEATURES, loadDigits, PIXEL_SCALE, seededRandom, trainMlp, type MlpWeights } from './train-digits.js';

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** pixels [N,64] -> Mul(1/16) -> Gemm -> Relu -> Gemm -> Softmax = probabilities; ArgMax = label. */
export function digitsModel(weights: MlpWeights, docString: string): ModelProto {
  const { hidden } = weights;
  return buildModel({
    graphName: 'digits_mlp',
    docString,
    inputs: [{ name: 'pixels', datatype: 'FP32', dims: ['batch', DIGIT_FEATURES] }],
    outputs: [
      { name: 'probabilities', datatype: 'FP32', dims: ['batch', DIGIT_CLASSES] },
      { name: 'label', datatype: 'INT64', dims: ['batch'] },
    ],
    initializers: [
      { name: 'pixel_scale', datatype: 'FP32', dims: [], values: [PIXEL_SCALE] },
      { name: 'fc1.weight', datatype: 'FP32', dims: [hidden, DIGIT_FEATURES], values: weights.w1 },
      { name: 'fc1.bias', datatype: 'FP32', dims: [hidden], values: weights.b1 },
      { name: 'fc2.weight', datatype: 'FP32', dims: [DIGIT_CLASSES, hidden], values: weights.w2 },
      { name: 'fc2.bias', datatype: 'FP32', dims: [DIGIT_CLASSES], values: weights.b2 },
    ],
    nodes: [
      { op: 'Mul', inputs: ['pixels', 'pixel_scale'], outputs: ['scaled'] },
      { op: 'Gemm', inputs: ['scaled', 'fc1.weight', 'fc1.bias'], outputs: ['fc1'], attributes: { transB: 1 } },
      { op: 'Relu', inputs: ['fc1'], outputs: ['hidden'] },
      { op: 'Gemm', inputs: ['hidden', 'fc2.weight', 'fc2.bias'], outputs: ['logits'], attributes: { transB: 1 } },
      { op: 'Softmax', inputs: ['logits'], outputs: ['probabilities'], attributes: { axis: 1 } },
      { op: 'ArgMax', inputs: ['logits'], outputs: ['label'], attributes: { axis: 1, keepdims: 0 } },
    ],
  });
}

/** a [N,4], b [N,4] -> sum = a + b, scaled = a x W (W [4,3]). */
export function pairModel(seed = 7): ModelProto {
  const random = seededRandom(seed);
  const w = Float32Array.from({ length: 12 }, () => Math.round((random() * 4 - 2) * 4) / 4);
  return buildModel({
    graphName: 'pair',
    inputs: [
      { name: 'a', datatype: 'FP32', dims: ['batch', 4] },
      { name: 'b', datatype: 'FP32', dims: ['batch', 4] },
    ],
    outputs: [
      { name: 'sum', datatype: 'FP32', dims: ['batch', 4] },
      { name: 'scaled', datatype: 'FP32', dims: ['batch', 3] },
    ],
    initializers: [{ name: 'W', datatype: 'FP32', dims: [4, 3], values: w }],
    nodes: [
      { op: 'Add', inputs: ['a', 'b'], outputs: ['sum'] },
      { op: 'MatMul', inputs: ['a', 'W'], outputs: ['scaled'] },
    ],
  });
}

export const WIDE_LAYERS = [256, 512, 512, 10] as const;

/** A compute-bound Gemm/Relu MLP with seeded random weights (Glorot-uniform) for batching benchmarks. */
export function wideModel(seed = 1234): ModelProto {
  return mlpModel(WIDE_LAYERS, seed, 'wide_mlp');
}

/**
 * A Gemm/Relu MLP of any layer widths (input first, scores last) with seeded Glorot-uniform
 * weights: `features` [batch, layers[0]] in, `scores` [batch, last] out. Benchmarks build big ones
 * at run time instead of committing them.
 */
export function mlpModel(layers: readonly number[], seed = 1234, graphName = 'mlp'): ModelProto {
  if (layers.length < 2 || !layers.every((w) => Number.isInteger(w) && w > 0)) throw new Error(`expected at least two positive integer layer widths but received ${layers.join('-')}`);
  const random = seededRandom(seed);
  const initializers = [];
  const nodes = [];
  let current = 'features';
  for (let layer = 0; layer + 1 < layers.length; layer++) {
    const fanIn = layers[layer]!;
    const fanOut = layers[layer + 1]!;
    const limit = Math.sqrt(6 / (fanIn + fanOut));
    initializers.push(
      { name: `fc${layer + 1}.weight`, datatype: 'FP32' as const, dims: [fanOut, fanIn], values: Float32Array.from({ length: fanIn * fanOut }, () => (random() * 2 - 1) * limit) },
      { name: `fc${layer + 1}.bias`, datatype: 'FP32' as const, dims: [fanOut], values: Float32Array.from({ length: fanOut }, () => (random() * 2 - 1) * 0.1) },
    );
    const last = layer + 2 === layers.length;
    const gemmOut = last ? 'scores' : `fc${layer + 1}`;
    nodes.push({ op: 'Gemm', inputs: [current, `fc${layer + 1}.weight`, `fc${layer + 1}.bias`], outputs: [gemmOut], attributes: { transB: 1 } });
    if (!last) {
      nodes.push({ op: 'Relu', inputs: [gemmOut], outputs: [`relu${layer + 1}`] });
      current = `relu${layer + 1}`;
    }
  }
  return buildModel({
    graphName,
    inputs: [{ name: 'features', datatype: 'FP32', dims: ['batch', layers[0]!] }],
    outputs: [{ name: 'scores', datatype: 'FP32', dims: ['batch', layers[layers.length - 1]!] }],
    initializers,
    nodes,
  });
}

export const DIGITS_CONFIG = {
  name: 'digits',
  backend: 'auto',
  max_batch_size: 32,
  input: [{ name: 'pixels', data_type: 'TYPE_FP32', dims: [64] }],
  output: [
    { name: 'probabilities', data_type: 'TYPE_FP32', dims: [10] },
    { name: 'label', data_type: 'TYPE_INT64', dims: [] },
  ],
  // No queue delay: batches form from what arrives while the model is busy, and a lone request
  // is answered at once. No instance_group: every worker may run it.
  dynamic_batching: {
    max_queue_delay_microseconds: 0,
    preferred_batch_size: [8, 16, 32],
    default_queue_policy: { max_queue_size: 1024 },
  },
  version_policy: { latest: { num_versions: 2 } },
};

export const PAIR_CONFIG_PBTXT = `# Two inputs, two outputs: exercises the config.pbtxt path.
name: "pair"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "a", data_type: TYPE_FP32, dims: [ 4 ] },
  { name: "b", data_type: TYPE_FP32, dims: [ 4 ] }
]
output {
  name: "sum"
  data_type: TYPE_FP32
  dims: [ 4 ]
}
output {
  name: "scaled"
  data_type: TYPE_FP32
  dims: [ 3 ]
}
dynamic_batching {
  max_queue_delay_microseconds: 200
  preferred_batch_size: [ 4, 8 ]
}
instance_group [ { count: 1, kind: KIND_CPU } ]
`;

export interface DigitsVersion {
  version: number;
  hidden: number;
  seed: number;
  testAccuracy: number;
}

export const DIGITS_VERSIONS = [
  { version: 1, hidden: 32, seed: 20240601 },
  { version: 2, hidden: 48, seed: 20240917 },
] as const;

/** Write the whole example repository under `outDir`; returns each digits version's test accuracy. */
export function buildExamples(outDir: string, csvPath: string, log: (line: string) => void = () => {}): DigitsVersion[] {
  const data = loadDigits(csvPath);
  const results: DigitsVersion[] = [];
  for (const { version, hidden, seed } of DIGITS_VERSIONS) {
    const weights = trainMlp(data.train, { hidden, seed });
    const testAccuracy = accuracy(weights, data.test);
    const doc = `digits MLP 64-${hidden}-10 trained by umbra build-examples (seed ${seed}); test accuracy ${testAccuracy.toFixed(4)}`;
    writeModel(digitsModel(weights, doc), join(outDir, 'digits', String(version), 'model.onnx'));
    log(`digits/${version}: MLP 64-${hidden}-10, seed ${seed}, train rows ${data.train.rows}, test accuracy ${testAccuracy.toFixed(4)} (${data.test.rows} rows)`);
    results.push({ version, hidden, seed, testAccuracy });
  }
  mkdirSync(join(outDir, 'digits'), { recursive: true });
  writeFileSync(join(outDir, 'digits', 'config.json'), `${JSON.stringify(DIGITS_CONFIG, null, 2)}\n`);

  writeModel(pairModel(), join(outDir, 'pair', '1', 'model.onnx'));
  writeFileSync(join(outDir, 'pair', 'config.pbtxt'), PAIR_CONFIG_PBTXT);
  log('pair/1: a + b and a x W, config.pbtxt');

  writeModel(wideModel(), join(outDir, 'wide', '1', 'model.onnx'));
  log(`wide/1: MLP ${WIDE_LAYERS.join('-')}, seeded random weights, no config (derived)`);
  return results;
}

function main(argv: string[]): void {
  const option = (flag: string, fallback: string): string => {
    const at = argv.indexOf(flag);
    const value = at >= 0 ? argv[at + 1] : undefined;
    if (at >= 0 && !value) throw new Error(`${flag} needs a value`);
    return value ?? fallback;
  };
  const outDir = resolve(option('--out', join(packageRoot, 'models', 'repository')));
  const csvPath = resolve(option('--csv', join(packageRoot, 'models', 'digits.csv')));
  buildExamples(outDir, csvPath, (line) => console.log(line));
  console.log(`wrote ${outDir}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2));
}
