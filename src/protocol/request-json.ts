// The JSON text of an inference request, parsed with the native scanner where it can: the numbers
// of `inputs[i].data` are most of such a body and most of JSON.parse's time on it (V8 needs about
// 65 ns for a 17-digit number; the addon's std::from_chars about a third of that), so the addon
// parses those arrays and JSON.parse builds only the small objects around them. The result is the
// value JSON.parse would give, except that each such array arrives as a `PackedNumbers`, which
// `jsonToTensorData` reads as it reads the nested arrays. Anything else (no addon, a large body,
// a syntax error, an array with strings in it) is JSON.parse's alone, errors worded by it.
import { nativeJson } from './native-json.js';

/** An all-number `data` array, flattened: its values in order and its nesting (lengths per level). */
export class PackedNumbers {
  constructor(readonly values: Float64Array, readonly dims: readonly number[]) {}

  get length(): number {
    return this.values.length;
  }
}

/** Bodies past this many bytes go to JSON.parse. */
const MAX_SCANNED_BYTES = 1 << 20;
const MARKER = '\u0000';

/**
 * The scanner writes numbers into a slab, and each request's arrays are views of the part it
 * used: no allocation per request (a small Float64Array of its own costs a backing store and
 * garbage-collector work). A slab is dropped once full; views keep it alive while they live.
 * A body whose worst case (half a number per byte) would not fit in a fresh slab gets its own.
 */
const SLAB_DOUBLES = 1 << 16;
let slab = new Float64Array(SLAB_DOUBLES);
let slabUsed = 0;
const meta = new Int32Array(256);

/** Parses bytes[0, end) as JSON.parse would (throwing its SyntaxError), with data arrays packed. */
export function parseRequestJson(bytes: Uint8Array, end: number = bytes.byteLength): unknown {
  const run = end <= MAX_SCANNED_BYTES ? nativeJson()?.scanInferJson : undefined;
  if (run) {
    const need = (end >>> 1) + 1;
    let numbers = slab;
    let start = slabUsed;
    if (need > SLAB_DOUBLES) {
      numbers = new Float64Array(need);
      start = 0;
    } else if (start + need > slab.length) {
      numbers = slab = new Float64Array(SLAB_DOUBLES);
      start = slabUsed = 0;
    }
    const skeleton = run(bytes, end, numbers, start, meta);
    if (skeleton !== undefined) {
      // The scanner has validated the whole text, so this parse cannot fail.
      const root = JSON.parse(skeleton) as unknown;
      if (meta[0]! > 0) {
        const used = unpack(root, numbers);
        if (numbers === slab) slabUsed = used;
      }
      return root;
    }
  }
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('utf8'));
}

/**
 * Swaps the markers left in inputs[i].data (the last "data" key wins, as in JSON.parse) for their
 * arrays; returns the index past the last number the scan wrote.
 */
function unpack(root: unknown, numbers: Float64Array): number {
  const count = meta[0]!;
  let last = 1;
  for (let j = 0; j < count - 1; j++) last += 3 + meta[last + 2]!;
  const usedEnd = meta[last]! + meta[last + 1]!;
  const inputs = (root as { inputs?: unknown }).inputs;
  if (!Array.isArray(inputs)) return usedEnd;
  for (const input of inputs) {
    if (typeof input !== 'object' || input === null) continue;
    const data = (input as { data?: unknown }).data;
    if (typeof data !== 'object' || data === null || Array.isArray(data)) continue;
    const k = (data as Record<string, unknown>)[MARKER];
    if (typeof k !== 'number' || !(k >= 0 && k < count)) continue;
    // The K-th array's record: records are [offset, count, ndims, dims...], one after another.
    let p = 1;
    for (let j = 0; j < k; j++) p += 3 + meta[p + 2]!;
    const offset = meta[p]!;
    const ndims = meta[p + 2]!;
    const dims: number[] = [];
    for (let d = 0; d < ndims; d++) dims.push(meta[p + 3 + d]!);
    (input as { data?: unknown }).data = new PackedNumbers(numbers.subarray(offset, offset + meta[p + 1]!), dims);
  }
  return usedEnd;
}
