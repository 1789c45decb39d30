// Trains the example digits classifier in plain TypeScript: a one-hidden-layer MLP on the 8x8
// digits data (pixels 0..16 scaled by 1/16), softmax cross-entropy, seeded mini-batch Adam.
// Deterministic: same seed and data give the same weights.
import { readFileSync } from 'node:fs';
export { seededRandom } from '../random.js';
import { seededRandom } from '../random.js';

export interface DigitsSplit {
  /** Row-major [rows, 64], raw pixel values 0..16. */
  pixels: Float32Array;
  labels: Int32Array;
  rows: number;
}

export interface DigitsData {
  train: DigitsSplit;
  test: DigitsSplit;
}

export const DIGIT_FEATURES = 64;
export const DIGIT_CLASSES = 10;
export const PIXEL_SCALE = 1 / 16;

/** Parse models/digits.csv: header f0..f63,label,split; split is "train" or "test". */
export function loadDigits(csvPath: string): DigitsData {
  const lines = readFileSync(csvPath, 'utf8').split(/\r?\n/).filter((l) => l.length > 0);
  const header = lines[0]?.split(',') ?? [];
  const labelAt = header.indexOf('label');
  const splitAt = header.indexOf('split');
  if (labelAt !== DIGIT_FEATURES || splitAt < 0) throw new Error(`${csvPath}: expected columns f0..f63,label,split`);
  const rows: Record<'train' | 'test', { pixels: number[]; labels: number[] }> = {
    train: { pixels: [], labels: [] },
    test: { pixels: [], labels: [] },
  };
  for (let i = 1; i < lines.length; i++) {
    const cells = lines[i]!.split(',');
    const split = cells[splitAt];
    if (split !== 'train' && split !== 'test') throw new Error(`${csvPath}:${i + 1}: unknown split ${split}`);
    for (let f = 0; f < DIGIT_FEATURES; f++) rows[split].pixels.push(Number(cells[f]));
    rows[split].labels.push(Number(cells[labelAt]));
  }
  const toSplit = (r: { pixels: number[]; labels: number[] }): DigitsSplit => ({
    pixels: Float32Array.from(r.pixels), labels: Int32Array.from(r.labels), rows: r.labels.length,
  });
  return { train: toSplit(rows.train), test: toSplit(rows.test) };
}

/** Weights in PyTorch's Linear layout: w1 [hidden, 64], w2 [10, hidden] (used with Gemm transB=1). */
export interface MlpWeights {
  hidden: number;
  w1: Float64Array;
  b1: Float64Array;
  w2: Float64Array;
  b2: Float64Array;
}

export interface TrainOptions {
  hidden: number;
  seed: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  weightDecay?: number;
}

function forward(weights: MlpWeights, pixels: Float32Array, row: number, hiddenOut: Float64Array, probsOut: Float64Array): void {
  const { hidden, w1, b1, w2, b2 } = weights;
  const base = row * DIGIT_FEATURES;
  for (let h = 0; h < hidden; h++) {
    let sum = b1[h]!;
    for (let f = 0; f < DIGIT_FEATURES; f++) sum += w1[h * DIGIT_FEATURES + f]! * pixels[base + f]! * PIXEL_SCALE;
    hiddenOut[h] = sum > 0 ? sum : 0;
  }
  let max = -Infinity;
  for (let c = 0; c < DIGIT_CLASSES; c++) {
    let sum = b2[c]!;
    for (let h = 0; h < hidden; h++) sum += w2[c * hidden + h]! * hiddenOut[h]!;
    probsOut[c] = sum;
    if (sum > max) max = sum;
  }
  let total = 0;
  for (let c = 0; c < DIGIT_CLASSES; c++) {
    probsOut[c] = Math.exp(probsOut[c]! - max);
    total += probsOut[c]!;
  }
  for (let c = 0; c < DIGIT_CLASSES; c++) probsOut[c] = probsOut[c]! / total;
}

/** Train with Adam on shuffled mini-batches. */
export function trainMlp(data: DigitsSplit, options: TrainOptions): MlpWeights {
  const { hidden, seed } = options;
  const epochs = options.epochs ?? 60;
  const batchSize = options.batchSize ?? 32;
  const lr = options.learningRate ?? 0.005;
  const weightDecay = options.weightDecay ?? 1e-4;
  const random = seededRandom(seed);
  // He-uniform initialization for the ReLU layer, Glorot-uniform for the output layer.
  const uniform = (n: number, limit: number): Float64Array => Float64Array.from({ length: n }, () => (random() * 2 - 1) * limit);
  const weights: MlpWeights = {
    hidden,
    w1: uniform(hidden * DIGIT_FEATURES, Math.sqrt(6 / DIGIT_FEATURES)),
    b1: new Float64Array(hidden),
    w2: uniform(DIGIT_CLASSES * hidden, Math.sqrt(6 / (hidden + DIGIT_CLASSES))),
    b2: new Float64Array(DIGIT_CLASSES),
  };
  const params = [weights.w1, weights.b1, weights.w2, weights.b2];
  const grads = params.map((p) => new Float64Array(p.length));
  const m = params.map((p) => new Float64Array(p.length));
  const v = params.map((p) => new Float64Array(p.length));
  const [gw1, gb1, gw2, gb2] = grads as [Float64Array, Float64Array, Float64Array, Float64Array];
  const hiddenAct = new Float64Array(hidden);
  const probs = new Float64Array(DIGIT_CLASSES);
  const dHidden = new Float64Array(hidden);
  const order = Int32Array.from({ length: data.rows }, (_, i) => i);
  const beta1 = 0.9;
  const beta2 = 0.999;
  let step = 0;

  for (let epoch = 0; epoch < epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (let start = 0; start < order.length; start += batchSize) {
      const end = Math.min(start + batchSize, order.length);
      for (const g of grads) g.fill(0);
      for (let k = start; k < end; k++) {
        const row = order[k]!;
        forward(weights, data.pixels, row, hiddenAct, probs);
        const label = data.labels[row]!;
        dHidden.fill(0);
        for (let c = 0; c < DIGIT_CLASSES; c++) {
          const dLogit = probs[c]! - (c === label ? 1 : 0);
          gb2[c]! += dLogit;
          for (let h = 0; h < hidden; h++) {
            gw2[c * hidden + h]! += dLogit * hiddenAct[h]!;
            dHidden[h]! += dLogit * weights.w2[c * hidden + h]!;
          }
        }
        const base = row * DIGIT_FEATURES;
        for (let h = 0; h < hidden; h++) {
          if (hiddenAct[h]! <= 0) continue;
          const d = dHidden[h]!;
          gb1[h]! += d;
          for (let f = 0; f < DIGIT_FEATURES; f++) gw1[h * DIGIT_FEATURES + f]! += d * data.pixels[base + f]! * PIXEL_SCALE;
        }
      }
      step++;
      const scale = 1 / (end - start);
      const correction1 = 1 - beta1 ** step;
      const correction2 = 1 - beta2 ** step;
      params.forEach((p, index) => {
        const g = grads[index]!;
        const mp = m[index]!;
        const vp = v[index]!;
        // Decay only weight matrices (indices 0 and 2), not biases.
        const decay = index % 2 === 0 ? weightDecay : 0;
        for (let i = 0; i < p.length; i++) {
          const grad = g[i]! * scale + decay * p[i]!;
          mp[i] = beta1 * mp[i]! + (1 - beta1) * grad;
          vp[i] = beta2 * vp[i]! + (1 - beta2) * grad * grad;
          p[i] = p[i]! - (lr * (mp[i]! / correction1)) / (Math.sqrt(vp[i]! / correction2) + 1e-8);
        }
      });
    }
  }
  return weights;
}

/** Fraction of rows whose most probable class is the label. */
export function accuracy(weights: MlpWeights, data: DigitsSplit): number {
  const hiddenAct = new Float64Array(weights.hidden);
  const probs = new Float64Array(DIGIT_CLASSES);
  let correct = 0;
  for (let row = 0; row < data.rows; row++) {
    forward(weights, data.pixels, row, hiddenAct, probs);
    let best = 0;
    for (let c = 1; c < DIGIT_CLASSES; c++) if (probs[c]! > probs[best]!) best = c;
    if (best === data.labels[row]) correct++;
  }
  return correct / data.rows;
}
