// Triton's binary tensor extension: raw little-endian elements after the JSON header, BOOL as one
// byte 0/1, BYTES as a 4-byte little-endian length before each element. No number parsing here:
// fixed-size tensors are views of the body (or one aligned copy when the offset is unaligned).

import { UmbraError } from '../errors.js';
import { bytesPerElement, slabTypedArrayFor, typedArrayView } from './datatype.js';
import type { DataType, Tensor, TensorData } from './types.js';
import { badInput, textElementProblem } from './validate.js';
import { isUtf8 } from 'node:buffer';

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndian(): void {
  // Typed-array views use host byte order; the wire is little-endian. Every Node target is LE.
  if (!LITTLE_ENDIAN) throw new UmbraError('INTERNAL', 'binary tensor data needs a little-endian host');
}

/**
 * Decode `size` bytes of `body` at `start` as `count` elements of `datatype`. Fixed-size results
 * share memory with `body` when aligned, so the caller must not reuse the body's buffer.
 */
export function binaryToTensorData(body: Buffer, start: number, size: number, datatype: DataType, count: number, what: string): TensorData {
  requireLittleEndian();
  if (datatype === 'BYTES') return decodeBytesElements(body, start, size, count, what);
  const width = bytesPerElement(datatype);
  const expected = count * width;
  if (size !== expected) {
    throw badInput(`expected binary_data_size ${expected} for ${what} (${count} ${datatype} elements of ${width} bytes) but received ${size}`);
  }
  let data: TensorData;
  const absolute = body.byteOffset + start;
  if (absolute % width === 0) {
    data = typedArrayView(datatype, body.buffer, absolute, count);
  } else {
    // One aligned copy, carved from a slab when small: no backing store of its own per request.
    data = slabTypedArrayFor(datatype, count);
    const view = data as Exclude<TensorData, string[]>;
    new Uint8Array(view.buffer, view.byteOffset, expected).set(body.subarray(start, start + expected));
  }
  if (datatype === 'BOOL') {
    const bytes = data as Uint8Array;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i]! > 1) throw badInput(`expected a byte 0 or 1 (BOOL) for ${what} element ${i} but received ${bytes[i]}`);
    }
  }
  return data;
}

/** The first bytes of an element, in hex, for a message. */
function describeBytes(bytes: Uint8Array): string {
  const shown = Buffer.from(bytes.subarray(0, 16)).toString('hex').replace(/(..)(?!$)/g, '$1 ');
  return `${bytes.length} bytes: ${shown}${bytes.length > 16 ? ' ...' : ''}`;
}

function decodeBytesElements(body: Buffer, start: number, size: number, count: number, what: string): string[] {
  const end = start + size;
  const out = new Array<string>(count);
  let p = start;
  for (let i = 0; i < count; i++) {
    if (end - p < 4) {
      throw badInput(`expected a 4-byte length for ${what} element ${i} but only ${end - p} bytes of its binary_data_size ${size} remain`);
    }
    const length = body.readUInt32LE(p);
    p += 4;
    if (length > end - p) {
      throw badInput(`expected ${length} bytes for ${what} element ${i} but only ${end - p} bytes of its binary_data_size ${size} remain`);
    }
    // Decoded only when it is UTF-8 text with no NUL: otherwise the decoder's U+FFFD, or the NUL
    // that ends onnxruntime's strings, would hand the model other bytes than were sent.
    const element = body.subarray(p, p + length);
    if (!isUtf8(element)) {
      throw badInput(`expected UTF-8 text for ${what} element ${i} (BYTES: onnxruntime's string tensors hold text) but received bytes that are not UTF-8 (${describeBytes(element)})`);
    }
    out[i] = body.toString('utf8', p, p + length);
    const problem = element.includes(0) ? textElementProblem(out[i]!) : undefined;
    if (problem !== undefined) throw badInput(`expected text for ${what} element ${i} (BYTES) but received ${problem}`);
    p += length;
  }
  if (p !== end) {
    throw badInput(`expected binary_data_size ${p - start} for ${what} (${count} BYTES elements) but received ${size}`);
  }
  return out;
}

/** BYTES elements as the wire wants them: a 4-byte LE length, then the UTF-8 bytes, per element. */
export function encodeBytesElements(values: readonly string[]): Buffer {
  let total = 0;
  const lengths = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) {
    const n = Buffer.byteLength(values[i]!, 'utf8');
    lengths[i] = n;
    total += 4 + n;
  }
  const out = Buffer.allocUnsafe(total);
  let p = 0;
  for (let i = 0; i < values.length; i++) {
    out.writeUInt32LE(lengths[i]!, p);
    p += 4;
    p += out.write(values[i]!, p, 'utf8');
  }
  return out;
}

/** The binary encoding of a tensor's data: a view for fixed-size types, a fresh buffer for BYTES. */
export function tensorDataToBinary(tensor: Tensor): Uint8Array {
  requireLittleEndian();
  const data = tensor.data;
  if (Array.isArray(data)) return encodeBytesElements(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
