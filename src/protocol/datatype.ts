// Facts about each OIP v2 datatype in one table: element size, storage, integer range and the
// onnxruntime-node tensor type it maps to. Everything else asks this module instead of switching.

import { UmbraError, invalid } from '../errors.js';
import { alignedBytes } from '../native/kernels.js';
import { DATATYPES, type DataType, type TensorData } from './types.js';

/** Tensor type names as onnxruntime-node spells them (`Tensor.type`, `inputMetadata[].type`). */
export type OrtTensorType =
  | 'bool' | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'int8' | 'int16' | 'int32' | 'int64'
  | 'float16' | 'float32' | 'float64' | 'string';

type FixedArrayConstructor =
  | Uint8ArrayConstructor | Uint16ArrayConstructor | Uint32ArrayConstructor | BigUint64ArrayConstructor
  | Int8ArrayConstructor | Int16ArrayConstructor | Int32ArrayConstructor | BigInt64ArrayConstructor
  | Float32ArrayConstructor | Float64ArrayConstructor;

interface DatatypeInfo {
  /** Bytes per element in the binary encoding; 0 for BYTES (variable length). */
  bytes: number;
  ort: OrtTensorType;
  storage: FixedArrayConstructor | null;
  /** Inclusive bounds for integer types, as doubles (the 64-bit ones are checked separately). */
  range?: readonly [number, number];
}

const INFO: Record<DataType, DatatypeInfo> = {
  BOOL: { bytes: 1, ort: 'bool', storage: Uint8Array },
  UINT8: { bytes: 1, ort: 'uint8', storage: Uint8Array, range: [0, 255] },
  UINT16: { bytes: 2, ort: 'uint16', storage: Uint16Array, range: [0, 65535] },
  UINT32: { bytes: 4, ort: 'uint32', storage: Uint32Array, range: [0, 4294967295] },
  UINT64: { bytes: 8, ort: 'uint64', storage: BigUint64Array },
  INT8: { bytes: 1, ort: 'int8', storage: Int8Array, range: [-128, 127] },
  INT16: { bytes: 2, ort: 'int16', storage: Int16Array, range: [-32768, 32767] },
  INT32: { bytes: 4, ort: 'int32', storage: Int32Array, range: [-2147483648, 2147483647] },
  INT64: { bytes: 8, ort: 'int64', storage: BigInt64Array },
  FP16: { bytes: 2, ort: 'float16', storage: Uint16Array },
  FP32: { bytes: 4, ort: 'float32', storage: Float32Array },
  FP64: { bytes: 8, ort: 'float64', storage: Float64Array },
  BYTES: { bytes: 0, ort: 'string', storage: null },
};

const FROM_ORT = new Map<string, DataType>(DATATYPES.map((d) => [INFO[d].ort, d]));
// ONNX's own spelling (`tensor(float)`), as model metadata and onnx-proto tools print it.
for (const [onnx, d] of [
  ['bool', 'BOOL'], ['uint8', 'UINT8'], ['uint16', 'UINT16'], ['uint32', 'UINT32'], ['uint64', 'UINT64'],
  ['int8', 'INT8'], ['int16', 'INT16'], ['int32', 'INT32'], ['int64', 'INT64'],
  ['float16', 'FP16'], ['float', 'FP32'], ['double', 'FP64'], ['string', 'BYTES'],
] as const) FROM_ORT.set(`tensor(${onnx})`, d);

const DATATYPE_SET: ReadonlySet<string> = new Set(DATATYPES);

export function isDataType(value: unknown): value is DataType {
  return typeof value === 'string' && DATATYPE_SET.has(value);
}

/** Bytes per element in the binary encoding; 0 for BYTES, whose elements vary in length. */
export function bytesPerElement(datatype: DataType): number {
  return INFO[datatype].bytes;
}

/** Inclusive [min, max] for integer datatypes up to 32 bits; undefined for the others. */
export function integerRange(datatype: DataType): readonly [number, number] | undefined {
  return INFO[datatype].range;
}

/** A zero-filled storage array for `n` elements (BYTES: an array of empty strings). */
export function typedArrayFor(datatype: DataType, n: number): TensorData {
  const storage = INFO[datatype].storage;
  return storage === null ? new Array<string>(n).fill('') : new storage(n);
}

/**
 * Storage for `n` elements whose bytes are not cleared first, in an ArrayBuffer of its own (so it
 * can be transferred): for a caller that writes every element at once, such as a batch merge (a
 * 64-row batch of 512 floats saved clearing 128 KB per batch). Never BYTES.
 */
export function uninitializedTypedArrayFor(datatype: Exclude<DataType, 'BYTES'>, n: number): Exclude<TensorData, string[]> {
  const storage = INFO[datatype].storage!;
  const bytes = Buffer.allocUnsafeSlow(n * INFO[datatype].bytes);
  return new storage(bytes.buffer, bytes.byteOffset, n) as Exclude<TensorData, string[]>;
}

/**
 * Small tensors' storage is carved from shared slabs instead of one ArrayBuffer each: a backing
 * store per request tensor costs an allocation and garbage-collector work that, on a model that
 * computes in microseconds, shows in the request rate. A slab lives while any of its tensors do.
 * Such arrays are views: code that transfers a buffer to another thread copies views first
 * (workers/messages.ts), as it must for any view.
 */
const SLAB_BYTES = 256 * 1024;
const SLAB_MAX_TENSOR_BYTES = 16 * 1024;
/**
 * Each tensor starts on a 64-byte boundary (the slab's start is one, where the addon can place
 * it): onnxruntime's vectorised reductions sum in an order set by where their input lies, and a
 * request's answer must not depend on where in a slab its tensor fell (native/kernels.ts's
 * onCacheLine copies what is not aligned; this keeps the common case from needing to).
 */
const SLAB_ALIGN = 64;
let slab: Uint8Array<ArrayBuffer> | undefined;
let slabUsed = 0;

/** `typedArrayFor`, from a slab when the tensor is small and of a fixed-size datatype. */
export function slabTypedArrayFor(datatype: DataType, n: number): TensorData {
  const info = INFO[datatype];
  const bytes = info.bytes * n;
  if (info.storage === null || bytes > SLAB_MAX_TENSOR_BYTES) return typedArrayFor(datatype, n);
  if (slab === undefined || slabUsed + bytes > SLAB_BYTES) {
    slab = alignedBytes(SLAB_BYTES);
    slabUsed = 0;
  }
  // Zero-filled like typedArrayFor's: a slab is fresh memory, and no part of it is handed out twice.
  const view = new info.storage(slab.buffer, slab.byteOffset + slabUsed, n);
  slabUsed += (bytes + SLAB_ALIGN - 1) & ~(SLAB_ALIGN - 1);
  return view;
}

/** View `length` elements of `buffer` at `byteOffset` (which must be aligned) as the datatype's storage. */
export function typedArrayView(datatype: DataType, buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData {
  const storage = INFO[datatype].storage;
  if (storage === null) throw new UmbraError('INTERNAL', 'BYTES tensors have no fixed-size view');
  // SharedArrayBuffer-backed views are fine too; the cast only narrows the constructor overloads.
  return new storage(buffer as ArrayBuffer, byteOffset, length);
}

export function tensorToOrtType(datatype: DataType): OrtTensorType {
  return INFO[datatype].ort;
}

/** Same as `tensorToOrtType`, under the name the worker backend uses. */
export const datatypeToOrtType = tensorToOrtType;

/** Accepts onnxruntime-node names ('float32') and ONNX names ('tensor(float)'). */
export function ortTypeToDatatype(ortType: string): DataType {
  const d = FROM_ORT.get(ortType);
  if (d === undefined) throw invalid('INVALID_ARGUMENT', 'a tensor type Umbra can serve (float16/32/64, (u)int8-64, bool, string)', 'the model tensor type', ortType);
  return d;
}
