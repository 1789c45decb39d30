// Tensors in the prediction log: one binary value per side (inputs, outputs), because formatting
// every number as JSON text cost more CPU than the inference of a small model. Layout:
//   uint32 LE header length | header: JSON [[name, "f32"|"f64"|"str", shape], ...] | pad to 8 |
//   the numeric tensors' little-endian values, in header order, each padded to 8 bytes.
// String tensors travel inside the header as [name, "str", shape, values].
import type { LogTensor } from './log-store.js';

const KIND_F32 = 'f32';
const KIND_F64 = 'f64';
const KIND_STR = 'str';

const align8 = (n: number) => (n + 7) & ~7;

export function encodeTensors(tensors: LogTensor[] | undefined): Buffer | null {
  if (!tensors) return null;
  const header: unknown[] = [];
  let dataBytes = 0;
  for (const t of tensors) {
    if (Array.isArray(t.data)) header.push([t.name, KIND_STR, t.shape, t.data]);
    else {
      const f32 = t.data instanceof Float32Array;
      header.push([t.name, f32 ? KIND_F32 : KIND_F64, t.shape]);
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
    if (Array.isArray(t.data)) continue;
    const f32 = t.data instanceof Float32Array;
    // Copy the values whatever their source type (bigint rows were made numbers when packed).
    const view = f32 ? new Float32Array(out.buffer, out.byteOffset + at, t.data.length) : new Float64Array(out.buffer, out.byteOffset + at, t.data.length);
    const src = t.data as ArrayLike<number | bigint>;
    if (typeof src[0] === 'bigint') for (let i = 0; i < src.length; i++) view[i] = Number(src[i]);
    else view.set(src as ArrayLike<number>);
    at += align8(t.data.length * (f32 ? 4 : 8));
  }
  return out;
}

export type DecodedTensors = Record<string, { shape: number[]; data: (number | string)[] }>;

/** Back to `{name: {shape, data}}` with plain numbers (FP32 values as their exact doubles). */
export function decodeTensors(blob: Uint8Array | null): DecodedTensors | null {
  if (blob === null) return null;
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  const headLength = buf.readUInt32LE(0);
  const header = JSON.parse(buf.subarray(4, 4 + headLength).toString('utf8')) as [string, string, number[], string[]?][];
  // Copy so the typed views below are aligned whatever the driver handed us.
  const data = Buffer.from(buf.subarray(align8(4 + headLength)));
  const out: DecodedTensors = {};
  let at = 0;
  for (const [name, kind, shape, strings] of header) {
    if (kind === KIND_STR) {
      out[name] = { shape, data: strings ?? [] };
      continue;
    }
    const count = shape.reduce((a, b) => a * b, 1);
    const bytes = count * (kind === KIND_F32 ? 4 : 8);
    const values = kind === KIND_F32 ? new Float32Array(data.buffer, data.byteOffset + at, count) : new Float64Array(data.buffer, data.byteOffset + at, count);
    out[name] = { shape, data: Array.from(values) };
    at += align8(bytes);
  }
  return out;
}
