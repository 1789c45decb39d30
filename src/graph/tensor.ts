// Values flowing through the native graph executor: a shape and a typed array, row-major.
// Constants keep their ONNX element type; runtime activations are Float32.
import { UmbraError } from '../errors.js';
import type { DataType } from '../protocol/types.js';

export type ValueData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

export interface Value {
  dims: number[];
  data: ValueData;
}

export function sizeOf(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function datatypeOf(data: ValueData): DataType {
  if (data instanceof Float32Array) return 'FP32';
  if (data instanceof Float64Array) return 'FP64';
  if (data instanceof Int32Array) return 'INT32';
  if (data instanceof BigInt64Array) return 'INT64';
  return 'UINT8';
}

/** Element i as a JS number, whatever the array type. */
export function numberAt(data: ValueData, i: number): number {
  return Number(data[i] ?? 0);
}

/** The values as numbers (shape arithmetic on INT64 constants). */
export function toNumbers(value: Value): number[] {
  return Array.from(value.data as ArrayLike<number | bigint>, Number);
}

/** A Float32 view of a value, converting other element types (copies only when needed). */
export function asFloat32(value: Value): Float32Array {
  if (value.data instanceof Float32Array) return value.data;
  return Float32Array.from(toNumbers(value));
}

/** A new array of the same element type as `like`, filled from numbers. */
export function arrayLike(like: ValueData, values: ArrayLike<number>): ValueData {
  if (like instanceof BigInt64Array) return BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v))));
  if (like instanceof Float64Array) return Float64Array.from(values);
  if (like instanceof Int32Array) return Int32Array.from(values);
  if (like instanceof Uint8Array) return Uint8Array.from(values);
  return Float32Array.from(values);
}

/** Normalises a possibly negative axis against a rank; throws naming the node. */
export function normalizeAxis(axis: number, rank: number, where: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new UmbraError('INVALID_INPUT', `${where}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  }
  return a;
}

/** Numpy-style broadcast of two shapes; throws INVALID_INPUT when they do not broadcast. */
export function broadcastDims(a: readonly number[], b: readonly number[], where: string): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new UmbraError('INVALID_INPUT', `${where}: shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Strides of `dims` inside a broadcast result of rank `rank` (0 where the dim is broadcast). */
export function broadcastStrides(dims: readonly number[], rank: number): number[] {
  const strides = new Array<number>(rank).fill(0);
  let stride = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    const d = dims[i]!;
    strides[rank - dims.length + i] = d === 1 ? 0 : stride;
    stride *= d;
  }
  return strides;
}
