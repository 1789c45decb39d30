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

/**
 * Bodies past this many bytes go to JSON.parse: the scratch that receives the numbers is sized
 * for the worst case (half a number per byte) and kept, so its bound is this / 2 doubles (4 MiB).
 */
const MAX_SCANNED_BYTES = 1 << 20;
const MARKER = '\u0000';

let numbers = new Float64Array(0);
const meta = new Int32Array(256);

/** Parses bytes[0, end) as JSON.parse would (throwing its SyntaxError), with data arrays packed. */
export function parseRequestJson(bytes: Uint8Array, end: number = bytes.byteLength): unknown {
  const run = end <= MAX_SCANNED_BYTES ? nativeJson()?.scanInferJson : undefined;
  if (run) {
    const need = (end >>> 1) + 1;
    if (numbers.length < need) numbers = new Float64Array(Math.max(need, Math.min(MAX_SCANNED_BYTES >>> 1, numbers.length * 2), 1024));
    const skeleton = run(bytes, end, numbers, meta);
    if (skeleton !== undefined) {
      // The scanner has validated the whole text, so this parse cannot fail.
      const root = JSON.parse(skeleton) as unknown;
      if (meta[0]! > 0) unpack(root);
      return root;
    }
  }
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('utf8'));
}

/** Swaps the markers left in inputs[i].data (the last "data" key wins, as in JSON.parse) for their arrays. */
function unpack(root: unknown): void {
  const count = meta[0]!;
  const inputs = (root as { inputs?: unknown }).inputs;
  if (!Array.isArray(inputs)) return;
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
    // A copy: the scratch serves the next request, and this request may wait in a queue.
    (input as { data?: unknown }).data = new PackedNumbers(numbers.slice(offset, offset + meta[p + 1]!), dims);
  }
}
