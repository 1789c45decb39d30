// JSON tensor data (`inputs[].data`, flat or nested) into typed storage. This is the hot path for
// JSON clients: one pass, writing straight into the final typed array, no per-element allocation.

import { invalid } from '../errors.js';
import { integerRange, slabTypedArrayFor } from './datatype.js';
import { float32ToHalf } from './half.js';
import { PackedNumbers } from './request-json.js';
import type { DataType, TensorData } from './types.js';
import { badInput, textElementProblem } from './validate.js';

/** Writes src's elements (a JSON array's, or a PackedNumbers' values) to out from offset on. */
type Writer = (src: ArrayLike<unknown>, out: TensorData, offset: number, what: string) => void;

// Smallest magnitudes that round to infinity: the max finite value plus half an ulp.
const FP32_OVERFLOW = 3.4028235677973366e38;
const FP16_OVERFLOW = 65520;
const TWO_POW_32 = 4294967296;
const TWO_POW_63 = 9223372036854775808;
const TWO_POW_64 = 18446744073709551616;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const LOW_WORD = LITTLE_ENDIAN ? 0 : 1;
const HIGH_WORD = LITTLE_ENDIAN ? 1 : 0;

const NON_FINITE_WORD = /^[+-]?(nan|inf|infinity)$/i;

/**
 * JSON has no NaN or infinity, so clients spell them as strings. They become the float value here
 * and the single allow_nan gate (`checkFinite`) decides afterwards whether they are accepted.
 */
function nonFiniteFromString(value: unknown, index: number, what: string): number {
  // A long integer a double does not hold exactly, kept exact for 64-bit inputs (request-json.ts): as a float, what JSON.parse reads.
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'string' && NON_FINITE_WORD.test(value)) {
    const lower = value.toLowerCase();
    if (lower.endsWith('nan')) return NaN;
    return lower.startsWith('-') ? -Infinity : Infinity;
  }
  throw invalid('INVALID_INPUT', 'a number', `${what} element ${index}`, value);
}

function floatWriter(limit: number, datatype: DataType): Writer {
  return (src, out, offset, what) => {
    const dst = out as Float32Array | Float64Array;
    for (let i = 0; i < src.length; i++) {
      const v = src[i];
      if (typeof v === 'number') {
        if (v >= limit || v <= -limit) throw invalid('INVALID_INPUT', `a number within the ${datatype} range`, `${what} element ${offset + i}`, v);
        dst[offset + i] = v;
      } else {
        dst[offset + i] = nonFiniteFromString(v, offset + i, what);
      }
    }
  };
}

const writeFp16: Writer = (src, out, offset, what) => {
  const dst = out as Uint16Array;
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    let n: number;
    if (typeof v === 'number' || typeof v === 'bigint') {
      if (v >= FP16_OVERFLOW || v <= -FP16_OVERFLOW) throw invalid('INVALID_INPUT', 'a number within the FP16 range', `${what} element ${offset + i}`, Number(v));
      n = Number(v);
    } else {
      n = nonFiniteFromString(v, offset + i, what);
    }
    dst[offset + i] = float32ToHalf(n);
  }
};

function integerError(v: unknown, datatype: DataType, min: number | string, max: number | string, what: string): Error {
  if (typeof v === 'bigint') return badInput(`expected an integer between ${min} and ${max} (${datatype}) for ${what} but received ${spelledInteger(v)}`);
  if (typeof v === 'number' && Number.isInteger(v)) {
    return invalid('INVALID_INPUT', `an integer between ${min} and ${max} (${datatype})`, what, v);
  }
  return invalid('INVALID_INPUT', `an integer (${datatype})`, what, v);
}

/** An integer's digits, as sent; one of more than 40 digits cut to its first 40 and its length. */
function spelledInteger(v: bigint): string {
  const text = v.toString();
  const digits = v < 0n ? text.length - 1 : text.length;
  return digits <= 40 ? text : `${text.slice(0, v < 0n ? 41 : 40)}... (${digits} digits)`;
}

function smallIntegerWriter(datatype: DataType): Writer {
  const [min, max] = integerRange(datatype)!;
  return (src, out, offset, what) => {
    const dst = out as Int32Array;
    for (let i = 0; i < src.length; i++) {
      const v = src[i];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
        throw integerError(v, datatype, min, max, `${what} element ${offset + i}`);
      }
      dst[offset + i] = v;
    }
  };
}

/** A 64-bit integer past 2^53 in a request whose JSON spells integers that were rounded when read. */
export function roundedIntegerError(v: number, datatype: 'INT64' | 'UINT64', what: string): Error {
  return badInput(`expected an integer JSON carries exactly (within ±${Number.MAX_SAFE_INTEGER}) for ${what} (${datatype}) but received ${v}, `
    + `and this request's JSON holds integers that were rounded when read (a JSON number past 2^53 is a double: 9007199254740993 reads as 9007199254740992); `
    + 'send 64-bit integers past 2^53 in the binary extension (binary_data_size) or over gRPC, which carry them exactly');
}

/**
 * 64-bit integers are written as two 32-bit words to avoid a BigInt per element. JSON has already
 * been read into doubles: a value past 2^53 is kept as that double when the request's text spells
 * every integer exactly (2^62 written out, say), and refused when it holds an integer literal a
 * double does not hold (`inexact`): 9007199254740993 reads as 9007199254740992, and a model
 * would look up the wrong id. The binary extension and gRPC carry 64-bit integers exactly.
 */
function wideIntegerWriter(datatype: 'INT64' | 'UINT64', inexact = false): Writer {
  const min = datatype === 'INT64' ? -TWO_POW_63 : 0;
  const limit = datatype === 'INT64' ? TWO_POW_63 : TWO_POW_64; // exclusive
  const shownMin = datatype === 'INT64' ? '-9223372036854775808' : '0';
  const shownMax = datatype === 'INT64' ? '9223372036854775807' : '18446744073709551615';
  return (src, out, offset, what) => {
    const typed = out as BigInt64Array;
    const words = new Uint32Array(typed.buffer, typed.byteOffset, typed.length * 2);
    for (let i = 0; i < src.length; i++) {
      const v = src[i];
      if (typeof v === 'bigint') {
        // Spelled past what a double holds, and kept exact by the parser (request-json.ts).
        if (v < BigInt(min) || v >= BigInt(limit)) throw integerError(v, datatype, shownMin, shownMax, `${what} element ${offset + i}`);
        (typed as unknown as bigint[])[offset + i] = v;
        continue;
      }
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v >= limit) {
        throw integerError(v, datatype, shownMin, shownMax, `${what} element ${offset + i}`);
      }
      if (inexact && (v > Number.MAX_SAFE_INTEGER || v < -Number.MAX_SAFE_INTEGER)) throw roundedIntegerError(v, datatype, `${what} element ${offset + i}`);
      const j = (offset + i) * 2;
      words[j + LOW_WORD] = v % TWO_POW_32; // Uint32Array stores modulo 2^32, negatives included
      words[j + HIGH_WORD] = Math.floor(v / TWO_POW_32);
    }
  };
}

const writeBool: Writer = (src, out, offset, what) => {
  const dst = out as Uint8Array;
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    if (v === true) dst[offset + i] = 1;
    else if (v === false) dst[offset + i] = 0;
    else throw invalid('INVALID_INPUT', 'true or false (BOOL)', `${what} element ${offset + i}`, v);
  }
};

const writeBytes: Writer = (src, out, offset, what) => {
  const dst = out as string[];
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    if (typeof v !== 'string') throw invalid('INVALID_INPUT', 'a string (BYTES)', `${what} element ${offset + i}`, v);
    const problem = textElementProblem(v);
    if (problem !== undefined) throw badInput(`expected text for ${what} element ${offset + i} (BYTES) but received ${problem}`);
    dst[offset + i] = v;
  }
};

const WRITERS: Record<DataType, Writer> = {
  BOOL: writeBool,
  UINT8: smallIntegerWriter('UINT8'),
  UINT16: smallIntegerWriter('UINT16'),
  UINT32: smallIntegerWriter('UINT32'),
  UINT64: wideIntegerWriter('UINT64'),
  INT8: smallIntegerWriter('INT8'),
  INT16: smallIntegerWriter('INT16'),
  INT32: smallIntegerWriter('INT32'),
  INT64: wideIntegerWriter('INT64'),
  FP16: writeFp16,
  FP32: floatWriter(FP32_OVERFLOW, 'FP32'),
  FP64: floatWriter(Infinity, 'FP64'),
  BYTES: writeBytes,
};

const INEXACT_WIDE_WRITERS = { INT64: wideIntegerWriter('INT64', true), UINT64: wideIntegerWriter('UINT64', true) };

function suffixProduct(shape: readonly number[], from: number): number {
  let n = 1;
  for (let i = from; i < shape.length; i++) n *= shape[i]!;
  return n;
}

/**
 * Walk nested data against the shape. A level whose first item is not an array is a flat run of
 * every remaining element, so flat data (the common, fast case) is one run at depth 0, and
 * partly nested data (rows of flattened features) is accepted too.
 */
function fill(node: unknown[], depth: number, shape: readonly number[], out: TensorData, offset: number, write: Writer, what: string): number {
  if (node.length === 0 || !Array.isArray(node[0])) {
    const expected = suffixProduct(shape, depth);
    if (node.length !== expected) {
      const where = depth === 0 ? `${what} data` : `${what} data at depth ${depth}`;
      throw badInput(`expected ${expected} elements for ${where} (shape [${shape.join(', ')}]) but received ${node.length}`);
    }
    write(node, out, offset, what);
    return offset + node.length;
  }
  if (depth >= shape.length || node.length !== shape[depth]) {
    throw badInput(`expected nested data matching shape [${shape.join(', ')}] for ${what} but received an array of length ${node.length} at depth ${depth}`);
  }
  for (const child of node) {
    if (!Array.isArray(child)) throw invalid('INVALID_INPUT', `an array at depth ${depth + 1}`, `${what} data`, child);
    offset = fill(child, depth + 1, shape, out, offset, write, what);
  }
  return offset;
}

/**
 * `fill` for an array the native scanner packed (request-json.ts): regular, so checking its
 * lengths level by level against the shape finds what fill's walk would find first, in the same
 * words, and its values go in as one flat run.
 */
function fillPacked(packed: PackedNumbers, shape: readonly number[], out: TensorData, write: Writer, what: string): void {
  const dims = packed.dims;
  const last = dims.length - 1;
  for (let depth = 0; depth < last; depth++) {
    if (depth >= shape.length || dims[depth] !== shape[depth]) {
      throw badInput(`expected nested data matching shape [${shape.join(', ')}] for ${what} but received an array of length ${dims[depth]} at depth ${depth}`);
    }
  }
  const expected = suffixProduct(shape, last);
  if (dims[last] !== expected) {
    const where = last === 0 ? `${what} data` : `${what} data at depth ${last}`;
    throw badInput(`expected ${expected} elements for ${where} (shape [${shape.join(', ')}]) but received ${dims[last]}`);
  }
  write(packed.values, out, 0, what);
}

/** Convert `inputs[].data` to storage for `count` elements of `datatype`; `what` names the input. */
/** `inexactIntegers`: the request's text holds an integer literal a double does not hold exactly (request-json.ts). */
export function jsonToTensorData(data: unknown, datatype: DataType, shape: readonly number[], count: number, what: string, inexactIntegers = false): TensorData {
  const writer = inexactIntegers && (datatype === 'INT64' || datatype === 'UINT64') ? INEXACT_WIDE_WRITERS[datatype] : WRITERS[datatype];
  if (data instanceof PackedNumbers) {
    const out = slabTypedArrayFor(datatype, count);
    fillPacked(data, shape, out, writer, what);
    return out;
  }
  if (!Array.isArray(data)) throw invalid('INVALID_INPUT', 'an array', `${what} data`, data);
  const out = slabTypedArrayFor(datatype, count);
  fill(data, 0, shape, out, 0, writer, what);
  return out;
}
