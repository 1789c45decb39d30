// Tensors in the prediction log: one binary value per side (inputs, outputs), because formatting
// every number as JSON text cost more CPU than the inference of a small model. Layout:
//   uint32 LE header length | header: JSON [[name, "f32"|"f64"|"i64"|"u64"|"str", shape], ...] | pad to 8 |
//   the numeric tensors' little-endian values, in header order, each padded to 8 bytes. INT64
//   and UINT64 are kept as their 64-bit integers ("i64", "u64"; logs written before kept them as
//   doubles, "f64"), so an id past 2^53 is exported as it was sent.
// String tensors travel inside the header as [name, "str", shape, values]; a tensor over the log's
// value cap as [name, "summary", shape, summary] (tensor-summary.ts), with no values.
import type { LogTensor } from './log-store.js';
import type { PackedPredictions } from './log-packing.js';
import type { TensorSummary } from './tensor-summary.js';

const KIND_F32 = 'f32';
const KIND_F64 = 'f64';
const KIND_I64 = 'i64';
const KIND_U64 = 'u64';
const KIND_STR = 'str';
const KIND_SUMMARY = 'summary';

/** Packed tensors' value kinds (PackedPredictions.tensorKind): where and how their values are kept. */
export const PACKED_F64 = 0;
export const PACKED_F32 = 1;
/** INT64 / UINT64: their exact 64-bit words, kept in `values`' memory (a double would round ids past 2^53). */
export const PACKED_I64 = 2;
export const PACKED_U64 = 3;
const PACKED_KINDS = [KIND_F64, KIND_F32, KIND_I64, KIND_U64];

const align8 = (n: number) => (n + 7) & ~7;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export function encodeTensors(tensors: LogTensor[] | undefined): Buffer | null {
  if (!tensors) return null;
  const header: unknown[] = [];
  let dataBytes = 0;
  for (const t of tensors) {
    if ('summary' in t) header.push([t.name, KIND_SUMMARY, t.shape, t.summary]);
    else if (Array.isArray(t.data)) header.push([t.name, KIND_STR, t.shape, t.data]);
    else {
      const f32 = t.data instanceof Float32Array;
      header.push([t.name, f32 ? KIND_F32 : t.data instanceof BigInt64Array ? KIND_I64 : t.data instanceof BigUint64Array ? KIND_U64 : KIND_F64, t.shape]);
      dataBytes += align8(t.data.length * (f32 ? 4 : 8));
    }
  }
  const head = Buffer.from(JSON.stringify(header));
  const start = align8(4 + head.byteLength);
  const out = Buffer.alloc(start + dataBytes);
  out.writeUInt32LE(head.byteLength, 0);
  head.copy(out, 4);
  let at = start;
  for (const t of tensors) {
    if ('summary' in t || Array.isArray(t.data)) continue;
    const f32 = t.data instanceof Float32Array;
    if (t.data instanceof BigInt64Array || t.data instanceof BigUint64Array) {
      new (t.data.constructor as BigInt64ArrayConstructor)(out.buffer, out.byteOffset + at, t.data.length).set(t.data as BigInt64Array);
    } else {
      // Copy the values whatever their source type (other bigint arrays as numbers).
      const view = f32 ? new Float32Array(out.buffer, out.byteOffset + at, t.data.length) : new Float64Array(out.buffer, out.byteOffset + at, t.data.length);
      const src = t.data as ArrayLike<number | bigint>;
      if (typeof src[0] === 'bigint') for (let i = 0; i < src.length; i++) view[i] = Number(src[i]);
      else view.set(src as ArrayLike<number>);
    }
    at += align8(t.data.length * (f32 ? 4 : 8));
  }
  return out;
}

/**
 * The same encoding for every row of a packed batch, straight from its flat arrays: one buffer
 * for the batch (each row's blob a view into it), and a row's JSON header reused when its tensors
 * have the same names, types and shapes as the previous row's on that side (almost always).
 */
export function encodePackedTensors(p: PackedPredictions): { inputs: (Buffer | null)[]; outputs: Buffer[] } {
  const heads: (Buffer | null)[] = new Array(p.rows * 2);
  const sizes = new Int32Array(p.rows * 2);
  let total = 0;
  const sides: { at: Int32Array; count: Int32Array; previous: number; head: Buffer }[] = [{ at: p.inputsAt, count: p.inputsCount, previous: -1, head: EMPTY }, { at: p.outputsAt, count: p.outputsCount, previous: -1, head: EMPTY }];
  for (let r = 0; r < p.rows; r++) {
    for (let s = 0; s < 2; s++) {
      const side = sides[s]!;
      const first = side.at[r]!;
      const count = side.count[r]!;
      if (first < 0) {
        heads[r * 2 + s] = null;
        continue;
      }
      if (side.previous < 0 || side.count[side.previous]! !== count || !sameLayout(p, side.at[side.previous]!, first, count)) side.head = packedHeader(p, first, count);
      side.previous = r;
      let size = align8(4 + side.head.byteLength);
      for (let k = first; k < first + count; k++) {
        const length = p.tensorLength[k]!;
        if (length >= 0) size += align8(length * (p.tensorKind[k] === PACKED_F32 ? 4 : 8));
      }
      heads[r * 2 + s] = side.head;
      sizes[r * 2 + s] = size;
      total += size;
    }
  }
  const out = Buffer.alloc(total);
  const inputs: (Buffer | null)[] = new Array(p.rows);
  const outputs: Buffer[] = new Array(p.rows);
  let at = 0;
  for (let r = 0; r < p.rows; r++) {
    for (let s = 0; s < 2; s++) {
      const head = heads[r * 2 + s];
      if (!head) {
        inputs[r] = null;
        continue;
      }
      const start = at;
      out.writeUInt32LE(head.byteLength, at);
      head.copy(out, at + 4);
      at += align8(4 + head.byteLength);
      const first = (s === 0 ? p.inputsAt : p.outputsAt)[r]!;
      const count = (s === 0 ? p.inputsCount : p.outputsCount)[r]!;
      for (let k = first; k < first + count; k++) {
        const length = p.tensorLength[k]!;
        if (length < 0) continue;
        const from = p.tensorValuesAt[k]!;
        if (p.tensorKind[k] === PACKED_F32) {
          new Float32Array(out.buffer, out.byteOffset + at, length).set(p.values32.subarray(from, from + length));
          at += align8(length * 4);
        } else {
          // Doubles, or 64-bit integers' words kept in the same memory: copied as bytes.
          new Uint8Array(out.buffer, out.byteOffset + at, length * 8).set(new Uint8Array(p.values.buffer, p.values.byteOffset + from * 8, length * 8));
          at += align8(length * 8);
        }
      }
      const blob = out.subarray(start, at);
      if (s === 0) inputs[r] = blob;
      else outputs[r] = blob;
    }
  }
  return { inputs, outputs };
}

const EMPTY: Buffer = Buffer.alloc(0);

/** Same names, value types and shapes for tensors a.. and b.. (string tensors never match: their values are in the header). */
function sameLayout(p: PackedPredictions, a: number, b: number, count: number): boolean {
  for (let k = 0; k < count; k++) {
    const x = a + k;
    const y = b + k;
    if (p.tensorLength[x]! < 0 || p.tensorLength[x] !== p.tensorLength[y] || p.tensorName[x] !== p.tensorName[y] || p.tensorKind[x] !== p.tensorKind[y]) return false;
    const rank = p.tensorRank[x]!;
    if (rank !== p.tensorRank[y]) return false;
    const dx = p.tensorDimsAt[x]!;
    const dy = p.tensorDimsAt[y]!;
    for (let d = 0; d < rank; d++) if (p.dims[dx + d] !== p.dims[dy + d]) return false;
  }
  return true;
}

function packedHeader(p: PackedPredictions, first: number, count: number): Buffer {
  const header: unknown[] = [];
  for (let k = first; k < first + count; k++) {
    const name = p.names[p.tensorName[k]!]!;
    const dimsAt = p.tensorDimsAt[k]!;
    const shape = Array.from(p.dims.subarray(dimsAt, dimsAt + p.tensorRank[k]!));
    const length = p.tensorLength[k]!;
    if (length < 0) {
      const inHeader = p.strings[-1 - length]!;
      header.push([name, Array.isArray(inHeader) ? KIND_STR : KIND_SUMMARY, shape, inHeader]);
    }
    else header.push([name, PACKED_KINDS[p.tensorKind[k]!], shape]);
  }
  return Buffer.from(JSON.stringify(header));
}

/** A logged tensor: its values, or (over the log's value cap) only its summary. */
export type DecodedTensor = { shape: number[]; data: (number | bigint | string)[] } | { shape: number[]; summary: TensorSummary };
export type DecodedTensors = Record<string, DecodedTensor>;

/** Back to `{name: {shape, data}}` with plain numbers (FP32 values as their exact doubles). */
export function decodeTensors(blob: Uint8Array | null): DecodedTensors | null {
  if (blob === null) return null;
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  const headLength = buf.readUInt32LE(0);
  const header = JSON.parse(buf.subarray(4, 4 + headLength).toString('utf8')) as [string, string, number[], (string[] | TensorSummary)?][];
  // Copy so the typed views below are aligned whatever the driver handed us.
  const data = Buffer.from(buf.subarray(align8(4 + headLength)));
  const out: DecodedTensors = {};
  let at = 0;
  for (const [name, kind, shape, inHeader] of header) {
    if (kind === KIND_STR) {
      out[name] = { shape, data: (inHeader as string[] | undefined) ?? [] };
      continue;
    }
    if (kind === KIND_SUMMARY) {
      out[name] = { shape, summary: inHeader as TensorSummary };
      continue;
    }
    const count = shape.reduce((a, b) => a * b, 1);
    const bytes = count * (kind === KIND_F32 ? 4 : 8);
    if (kind === KIND_I64 || kind === KIND_U64) {
      // Numbers where a double holds them exactly; bigints past 2^53 (an id as it was sent).
      const words = kind === KIND_I64 ? new BigInt64Array(data.buffer, data.byteOffset + at, count) : new BigUint64Array(data.buffer, data.byteOffset + at, count);
      out[name] = { shape, data: Array.from(words, (v: bigint) => (v >= -SAFE && v <= SAFE ? Number(v) : v)) };
    } else {
      const values = kind === KIND_F32 ? new Float32Array(data.buffer, data.byteOffset + at, count) : new Float64Array(data.buffer, data.byteOffset + at, count);
      out[name] = { shape, data: Array.from(values) };
    }
    at += align8(bytes);
  }
  return out;
}
