// The JSON text of an inference request, parsed with the native scanner where it can: the numbers
// of `inputs[i].data` are most of such a body and most of JSON.parse's time on it (V8 needs about
// 65 ns for a 17-digit number; the addon's std::from_chars about a third of that), so the addon
// parses those arrays and JSON.parse builds only the small objects around them. The result is the
// value JSON.parse would give, except that each such array arrives as a `PackedNumbers`, which
// `jsonToTensorData` reads as it reads the nested arrays. Anything else (no addon, a large body,
// a syntax error, an array with strings in it) is JSON.parse's alone, errors worded by it.
import { hasInexactInteger, parseKeepingIntegers } from './json-bigint.js';
import { nativeJson } from './native-json.js';

export { hasInexactInteger };

/** An all-number `data` array, flattened: its values in order and its nesting (lengths per level). */
export class PackedNumbers {
  constructor(readonly values: Float64Array, readonly dims: readonly number[]) {}

  get length(): number {
    return this.values.length;
  }
}

/**
 * Set (true) on a parsed request over MAX_SCANNED_BYTES whose text holds an integer literal that
 * reads as another number (9007199254740993 reads as 9007199254740992): its 64-bit integer inputs
 * past 2^53 may not be the numbers sent, and json-data.ts refuses them instead of running on them.
 * Smaller bodies are parsed exactly instead (parseExactIntegers).
 */
export const INEXACT_INTEGERS = Symbol('inexact integers');

/** Where meta's per-array records start: after the count and the flags (native/src/json/infer_json.h). */
const RECORDS = 2;
const INEXACT_INTEGER_FLAG = 1;

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
      if ((meta[1]! & INEXACT_INTEGER_FLAG) === 0) return root;
      return parseExactIntegers(Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('utf8'), root);
    }
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('utf8');
  const root = JSON.parse(text) as unknown;
  if (!/"U?INT64"/.test(text) || !hasInexactInteger(text)) return root;
  if (end <= MAX_SCANNED_BYTES) return parseExactIntegers(text, root);
  markInexact(root);
  return root;
}

/**
 * JSON.parse, except that integers a double would read as another number are kept exact (bigints),
 * as parseExactIntegers keeps them; where it cannot (a key given twice, a text over
 * MAX_SCANNED_BYTES), JSON.parse's value marked with INEXACT_INTEGERS.
 */
export function parseJsonKeepingIntegers(text: string): unknown {
  const value = JSON.parse(text) as unknown;
  if (!hasInexactInteger(text)) return value;
  if (text.length <= MAX_SCANNED_BYTES) return parseExactIntegers(text, value);
  markInexact(value);
  return value;
}

/**
 * The text parsed again with every integer that a double would not hold as spelled kept as a
 * bigint (lossless-json's parser, with our number rule), so a 64-bit integer input takes it
 * exactly, as Triton's and Python's parsers do; every other number is what JSON.parse gives.
 * Only for bodies that spell such an integer, up to MAX_SCANNED_BYTES: a pure-JavaScript parse
 * costs several times JSON.parse, and past that size such a request is refused instead
 * (INEXACT_INTEGERS).
 */
function parseExactIntegers(text: string, parsed: unknown): unknown {
  try {
    return parseKeepingIntegers(text);
  } catch {
    // A document JSON.parse reads and this parser does not (a key given twice with two values,
    // where JSON.parse keeps the last): JSON.parse's reading, its rounded integers refused.
    markInexact(parsed);
    return parsed;
  }
}

function markInexact(root: unknown): void {
  if (typeof root === 'object' && root !== null) (root as Record<symbol, unknown>)[INEXACT_INTEGERS] = true;
}

/**
 * Swaps the markers left in inputs[i].data (the last "data" key wins, as in JSON.parse) for their
 * arrays; returns the index past the last number the scan wrote.
 */
function unpack(root: unknown, numbers: Float64Array): number {
  const count = meta[0]!;
  let last = RECORDS;
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
    let p = RECORDS;
    for (let j = 0; j < k; j++) p += 3 + meta[p + 2]!;
    const offset = meta[p]!;
    const ndims = meta[p + 2]!;
    const dims: number[] = [];
    for (let d = 0; d < ndims; d++) dims.push(meta[p + 3 + d]!);
    (input as { data?: unknown }).data = new PackedNumbers(numbers.subarray(offset, offset + meta[p + 1]!), dims);
  }
  return usedEnd;
}
