// Encode an OIP v2 inference response: a JSON header, and, for outputs answered as binary, their
// raw bytes appended in output order (Triton's binary tensor extension).

import { UmbraError } from '../errors.js';
import { tensorDataToBinary } from './binary-data.js';
import { halfArrayToFloat32 } from './half.js';
import { nativeJson } from './native-json.js';
import { elementCount } from './tensor.js';
import { isSharedOutput } from './shared-memory.js';
import type { InferResponse, Tensor } from './types.js';

export interface EncodeInferResponseOptions {
  /** Outputs to send as binary: a set of names, every output, or none (all JSON). */
  binaryOutputs: Set<string> | 'all' | 'none';
}

export interface EncodedResponse {
  body: Buffer;
  /** Present when any output is binary: the JSON length, for `Inference-Header-Content-Length`. */
  headerLength?: number;
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(value as unknown as ArrayLike<unknown>, (v) => (typeof v === 'bigint' ? Number(v) : v));
  }
  return value;
}

/** JSON text for any value, BigInts as numbers and typed arrays as arrays. */
export function stringifyJson(value: unknown): string {
  return JSON.stringify(value, jsonReplacer) ?? 'null';
}

/** `stringifyJson` as UTF-8 bytes, ready to send. */
export function encodeJson(value: unknown): Buffer {
  return Buffer.from(stringifyJson(value), 'utf8');
}

type NumberArray = Float32Array | Float64Array | Uint8Array | Uint16Array | Uint32Array | Int8Array | Int16Array | Int32Array;

// V8's JSON.stringify has the fastest number formatting on offer; feeding it bounded slices keeps
// the intermediate JS array small instead of materialising one element object per output value.
const JSON_CHUNK = 8192;

function numbersToJson(values: NumberArray): string {
  if (values.length <= JSON_CHUNK) return JSON.stringify(Array.from(values));
  const parts: string[] = [];
  for (let i = 0; i < values.length; i += JSON_CHUNK) {
    parts.push(JSON.stringify(Array.from(values.subarray(i, i + JSON_CHUNK))).slice(1, -1));
  }
  return `[${parts.join(',')}]`;
}

/**
 * JSON has no NaN or infinity; they go out as the strings "NaN", "Infinity" and "-Infinity",
 * the same spellings the request parser accepts under allow_nan. The addon writes the same
 * numbers (shortest round-trip decimals) in about a third of V8's time, and keeps -0's sign.
 */
function floatsToJson(values: Float32Array | Float64Array): string {
  const fast = nativeJson();
  if (fast) return fast.formatNumbersJson(values);
  let finite = true;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v - v !== 0) {
      finite = false;
      break;
    }
  }
  if (finite) return numbersToJson(values);
  let text = '[';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (i > 0) text += ',';
    text += v - v === 0 ? String(v) : `"${String(v)}"`;
  }
  return `${text}]`;
}

function boolsToJson(values: Uint8Array): string {
  let text = '[';
  for (let i = 0; i < values.length; i++) text += (i > 0 ? ',' : '') + (values[i] ? 'true' : 'false');
  return `${text}]`;
}

function dataToJson(t: Tensor): string {
  switch (t.datatype) {
    case 'BYTES': return JSON.stringify(t.data);
    case 'BOOL': return boolsToJson(t.data as Uint8Array);
    case 'FP16': return floatsToJson(halfArrayToFloat32(t.data as Uint16Array));
    case 'FP32':
    case 'FP64': return floatsToJson(t.data as Float32Array | Float64Array);
    // BigInt arrays join to exact decimal digits (JSON.stringify refuses BigInt).
    case 'INT64':
    case 'UINT64': return `[${(t.data as BigInt64Array).join(',')}]`;
    default: return numbersToJson(t.data as NumberArray);
  }
}

function isBinary(name: string, binaryOutputs: EncodeInferResponseOptions['binaryOutputs']): boolean {
  return binaryOutputs === 'all' || (binaryOutputs !== 'none' && binaryOutputs.has(name));
}

/** The JSON header and, in output order, the binary outputs' bytes. */
function encodeParts(resp: InferResponse, opts: EncodeInferResponseOptions): { header: string; chunks: Uint8Array[]; binaryBytes: number } {
  let header = `{"model_name":${JSON.stringify(resp.model_name)},"model_version":${JSON.stringify(resp.model_version)}`;
  if (resp.id !== undefined) header += `,"id":${JSON.stringify(resp.id)}`;
  if (resp.parameters !== undefined) header += `,"parameters":${stringifyJson(resp.parameters)}`;
  header += ',"outputs":[';
  const chunks: Uint8Array[] = [];
  let binaryBytes = 0;
  for (let i = 0; i < resp.outputs.length; i++) {
    const t = resp.outputs[i]!;
    if (isSharedOutput(t)) {
      // Written to the client's shared memory: the body says where, and carries no data.
      if (i > 0) header += ',';
      header += `{"name":${JSON.stringify(t.name)},"datatype":"${t.datatype}","shape":[${t.shape.join(',')}],"parameters":${stringifyJson(t.parameters)}}`;
      continue;
    }
    if (t.data.length !== elementCount(t.shape)) {
      throw new UmbraError('INTERNAL', `output "${t.name}" has ${t.data.length} elements but shape [${t.shape.join(', ')}]`);
    }
    if (i > 0) header += ',';
    header += `{"name":${JSON.stringify(t.name)},"datatype":"${t.datatype}","shape":[${t.shape.join(',')}]`;
    if (isBinary(t.name, opts.binaryOutputs)) {
      const bytes = tensorDataToBinary(t);
      chunks.push(bytes);
      binaryBytes += bytes.byteLength;
      header += `,"parameters":${stringifyJson(Object.assign({}, t.parameters, { binary_data_size: bytes.byteLength }))}}`;
    } else {
      if (t.parameters !== undefined) header += `,"parameters":${stringifyJson(t.parameters)}`;
      header += `,"data":${dataToJson(t)}}`;
    }
  }
  header += ']}';
  return { header, chunks, binaryBytes };
}

/** Where a binary answer's bytes go: a fresh buffer unless the caller lends one. */
export type ReplyAllocator = (bytes: number) => Buffer;

function joinParts(header: string, chunks: Uint8Array[], binaryBytes: number, allocate: ReplyAllocator = Buffer.allocUnsafe): Required<EncodedResponse> {
  const headerLength = Buffer.byteLength(header, 'utf8');
  const body = allocate(headerLength + binaryBytes);
  body.write(header, 0, 'utf8');
  let p = headerLength;
  for (const c of chunks) {
    body.set(c, p);
    p += c.byteLength;
  }
  return { body, headerLength };
}

export function encodeInferResponse(resp: InferResponse, opts: EncodeInferResponseOptions): EncodedResponse {
  const { header, chunks, binaryBytes } = encodeParts(resp, opts);
  if (chunks.length === 0) return { body: Buffer.from(header, 'utf8') };
  return joinParts(header, chunks, binaryBytes);
}

/** Longest all-JSON answer `encodeInferResponseText` leaves as a string (larger ones are sent as the socket drains). */
const TEXT_ANSWER_MAX_CHARS = 64 * 1024;

/**
 * `encodeInferResponse` for a transport that writes strings itself (uWebSockets.js copies a
 * string straight into its send buffer): a small all-JSON answer stays the string it was built
 * as, which saves a Buffer per answer on the hot path.
 */
export function encodeInferResponseText(resp: InferResponse, opts: EncodeInferResponseOptions, allocate?: ReplyAllocator): { body: Buffer | string; headerLength?: number } {
  const { header, chunks, binaryBytes } = encodeParts(resp, opts);
  if (chunks.length === 0) return { body: header.length <= TEXT_ANSWER_MAX_CHARS ? header : Buffer.from(header, 'utf8') };
  return joinParts(header, chunks, binaryBytes, allocate);
}
