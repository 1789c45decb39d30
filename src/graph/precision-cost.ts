// What a lower-precision GPU run costs in accuracy: the same batch through the model at fp32 and
// at the configured precision, compared output by output. Measured once at load (the native
// backend on CUDA, `"precision"` other than fp32) and reported in the model's metadata, so the
// choice of tf32 or bf16 is made with its cost in view, not assumed.
import type { Value } from './tensor.js';
import { seededRandom } from '../random.js';

export interface PrecisionCost {
  /** The precision the model serves at. */
  precision: string;
  /** What it was compared with: the same chains at fp32 on the same device. */
  reference: 'fp32';
  /** Rows of the seeded batch both ran. */
  rows: number;
  /** Largest |got - reference| over every float output value. */
  maxAbsDiff: number;
  /** ||got - reference|| / ||reference|| over every float output value (0 when the reference is all zeros and so is got). */
  relL2: number;
}

/** Compares two runs' outputs (float outputs only; a NaN or infinity where the reference is finite counts as an infinite error). */
export function precisionCost(precision: string, rows: number, reference: ReadonlyMap<string, Value>, got: ReadonlyMap<string, Value>): PrecisionCost {
  let maxAbsDiff = 0;
  let diff2 = 0;
  let ref2 = 0;
  for (const [name, ref] of reference) {
    if (!(ref.data instanceof Float32Array || ref.data instanceof Float64Array)) continue;
    const other = got.get(name);
    if (!other || other.data.length !== ref.data.length) throw new Error(`precision check: output "${name}" is missing or differs in size at ${precision}`);
    const a = ref.data;
    const b = other.data as Float32Array | Float64Array;
    for (let i = 0; i < a.length; i++) {
      const r = a[i]!;
      const d = Math.abs(b[i]! - r);
      if (!Number.isFinite(r)) continue;
      if (!Number.isFinite(d)) {
        maxAbsDiff = Infinity;
        diff2 = Infinity;
        continue;
      }
      if (d > maxAbsDiff) maxAbsDiff = d;
      diff2 += d * d;
      ref2 += r * r;
    }
  }
  const relL2 = diff2 === 0 ? 0 : ref2 === 0 ? Infinity : Math.sqrt(diff2 / ref2);
  return { precision, reference: 'fp32', rows, maxAbsDiff, relL2 };
}

/** A seeded batch of `rows` rows of FP32 values in [-1, 1) for every input (the native backend takes FP32 inputs only). */
export function seededBatch(inputs: readonly { name: string; shape: readonly number[] }[], rows: number, seed = 29): Map<string, Value> {
  const next = seededRandom(seed);
  const feeds = new Map<string, Value>();
  for (const input of inputs) {
    const dims = input.shape.map((d, i) => (d >= 0 ? d : i === 0 ? rows : 1));
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = next() * 2 - 1;
    feeds.set(input.name, { dims, data });
  }
  return feeds;
}
