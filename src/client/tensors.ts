// Request/response encoding for the client. Self-contained (DataView, TextEncoder, no Buffer and
// no server modules beyond the framing) so `umbra/client` also runs in browsers.
import type { DataType } from '../protocol/types.js';
import { float32ToHalf, halfArrayToFloat32 } from '../protocol/half.js';
import { bigintForJson, hasInexactInteger, parseKeepingIntegers, unmarkBigints } from '../protocol/json-bigint.js';

export type { DataType };

export type ClientTensorData =
  | Uint8Array | Uint16Array | Uint32Array | BigUint64Array
  | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Float32Array | Float64Array
  | number[] | boolean[] | string[] | bigint[];

export interface ClientTensor {
  name: string;
  datatype: DataType;
  shape: number[];
  /**
   * Typed arrays for tensors answered as bytes; plain arrays for those answered in JSON. Empty for
   * a tensor in shared memory (see `inSharedMemory`): an input's is not sent, an output's is in
   * its region.
   */
  data: ClientTensorData;
  parameters?: Record<string, unknown>;
}

export interface ClientRequestedOutput {
  name: string;
  parameters?: Record<string, unknown>;
}

export interface ClientInferRequest {
  /** Matches the answer to the request on a stream; assigned when absent. */
  id?: string;
  inputs: ClientTensor[];
  outputs?: ClientRequestedOutput[];
  parameters?: Record<string, unknown>;
}

export interface ClientInferResponse {
  model_name: string;
  model_version: string;
  id?: string;
  parameters?: Record<string, unknown>;
  outputs: ClientTensor[];
}

/** A registered shared-memory region, as the status calls report it. */
export interface SharedMemoryRegionStatus {
  name: string;
  key: string;
  offset: number;
  byte_size: number;
}

/** A non-200 answer (HTTP) or an error message (stream), or a stream that closed under a request. */
export class UmbraClientError extends Error {
  override readonly name = 'UmbraClientError';
  constructor(
    message: string,
    /** The HTTP-style status; 0 when the connection failed or closed. */
    readonly status: number,
    /** The request's id, when the server echoed one. */
    readonly id?: unknown,
    /** Seconds the server asked to wait before retrying (503). */
    readonly retryAfter?: number,
    /** WebSocket close code, when the stream closed under the request. */
    readonly closeCode?: number,
  ) {
    super(message);
  }
}

type Storage = new (n: number) => Exclude<ClientTensorData, unknown[]>;
type ViewStorage = new (buffer: ArrayBuffer, byteOffset: number, length: number) => Exclude<ClientTensorData, unknown[]>;

const STORAGE: Record<Exclude<DataType, 'BYTES'>, { ctor: Storage & ViewStorage; bytes: number }> = {
  BOOL: { ctor: Uint8Array, bytes: 1 },
  UINT8: { ctor: Uint8Array, bytes: 1 },
  UINT16: { ctor: Uint16Array, bytes: 2 },
  UINT32: { ctor: Uint32Array, bytes: 4 },
  UINT64: { ctor: BigUint64Array, bytes: 8 },
  INT8: { ctor: Int8Array, bytes: 1 },
  INT16: { ctor: Int16Array, bytes: 2 },
  INT32: { ctor: Int32Array, bytes: 4 },
  INT64: { ctor: BigInt64Array, bytes: 8 },
  FP16: { ctor: Uint16Array, bytes: 2 },
  FP32: { ctor: Float32Array, bytes: 4 },
  FP64: { ctor: Float64Array, bytes: 8 },
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function jsonReplacer(_key: string, value: unknown): unknown {
  // A 64-bit integer past 2^53 as its exact digits (unquoted by unmarkBigints), not a rounded Number.
  if (typeof value === 'bigint') return bigintForJson(value);
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Array.from(value as unknown as ArrayLike<unknown>);
  return value;
}

/**
 * Whether a tensor's parameters place it in shared memory (Triton's system shared-memory
 * extension: `shared_memory_region`, `shared_memory_byte_size`, `shared_memory_offset`): such an
 * input is sent without data, and such an output comes back without it (`data` is then empty).
 */
export function inSharedMemory(t: { parameters?: Record<string, unknown> }): boolean {
  return t.parameters?.['shared_memory_region'] !== undefined;
}

/** The parameters that place a tensor in a registered region: `byteSize` bytes from `offset`. */
export function sharedMemoryParameters(region: string, byteSize: number, offset = 0): Record<string, unknown> {
  return offset === 0
    ? { shared_memory_region: region, shared_memory_byte_size: byteSize }
    : { shared_memory_region: region, shared_memory_byte_size: byteSize, shared_memory_offset: offset };
}

/** The input as the request lists it: without its data when it lies in shared memory. */
function listedInput(t: ClientTensor): ClientTensor | Omit<ClientTensor, 'data'> {
  if (!inSharedMemory(t)) return t;
  const { data: _data, ...rest } = t;
  return rest;
}

/**
 * The input's data as JSON states it, where the typed array the binary encoding takes means
 * something else written as numbers: FP16 as a Uint16Array of half-float bits (the values they
 * stand for, not the bits: 15360 is 1.0) and BOOL as bytes or 0/1 (true and false, which is all
 * the protocol's JSON accepts for BOOL).
 */
function jsonInput(t: ClientTensor): ClientTensor | Omit<ClientTensor, 'data'> {
  if (inSharedMemory(t)) return listedInput(t);
  if (t.datatype === 'FP16' && t.data instanceof Uint16Array) return { ...t, data: Array.from(halfArrayToFloat32(t.data)) };
  if (t.datatype === 'BOOL' && (ArrayBuffer.isView(t.data) || (t.data as unknown[]).some((v) => typeof v === 'number'))) {
    return { ...t, data: Array.from(t.data as ArrayLike<number | boolean>, (v) => v !== 0 && v !== false) };
  }
  return t;
}

/** The request as JSON text, with transport fields (model_name on a stream) merged in. */
export function encodeJsonRequest(request: ClientInferRequest, extra: Record<string, unknown> = {}): string {
  return unmarkBigints(JSON.stringify({ ...request, ...extra, inputs: request.inputs.map(jsonInput) }, jsonReplacer));
}

/** The request as a JSON header plus the raw bytes of every input not in shared memory, in input order. */
export function encodeBinaryRequest(request: ClientInferRequest, extra: Record<string, unknown> = {}): { header: Uint8Array; tensors: Uint8Array[] } {
  const tensors: Uint8Array[] = [];
  const inputs = request.inputs.map((t) => {
    if (inSharedMemory(t)) return listedInput(t);
    const bytes = tensorBytes(t);
    tensors.push(bytes);
    return { name: t.name, datatype: t.datatype, shape: t.shape, parameters: { ...t.parameters, binary_data_size: bytes.byteLength } };
  });
  const header = encoder.encode(unmarkBigints(JSON.stringify({ ...request, ...extra, inputs }, jsonReplacer)));
  return { header, tensors };
}

/** Little-endian bytes of one tensor (every target this runs on is little-endian). */
export function tensorBytes(t: ClientTensor): Uint8Array {
  if (t.datatype === 'BYTES') return encodeStrings(t.data as string[]);
  const { ctor } = STORAGE[t.datatype];
  let data = t.data;
  // FP16 bits come as a Uint16Array; any other array holds the values, as JSON sends them.
  if (t.datatype === 'FP16' && !(data instanceof Uint16Array)) {
    data = Uint16Array.from(data as ArrayLike<number>, (v, i) => float32ToHalf(checkedElement(t, i, v) as number));
  } else if (!(data instanceof ctor)) {
    const typed = new ctor(data.length);
    const big = typed instanceof BigInt64Array || typed instanceof BigUint64Array;
    for (let i = 0; i < data.length; i++) {
      const v = checkedElement(t, i, data[i]);
      (typed as unknown as (number | bigint)[])[i] = big ? BigInt(v) : Number(v);
    }
    data = typed;
  }
  const view = data as Exclude<ClientTensorData, unknown[]>;
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** The range of each integer datatype's values. */
const INTEGER_RANGE: Partial<Record<DataType, [bigint, bigint]>> = {
  UINT8: [0n, 255n], UINT16: [0n, 65535n], UINT32: [0n, 4294967295n], UINT64: [0n, 2n ** 64n - 1n],
  INT8: [-128n, 127n], INT16: [-32768n, 32767n], INT32: [-2147483648n, 2147483647n], INT64: [-(2n ** 63n), 2n ** 63n - 1n],
};

/**
 * An element the binary path writes into the datatype's storage, checked as the server checks the
 * same element sent as JSON: storing it as it was turned a string into NaN or 0, wrapped 300 to 44
 * in a UINT8 and cut 1.5 to 1 in an INT32, and answered that where JSON was refused.
 */
function checkedElement(t: ClientTensor, index: number, value: unknown): number | bigint {
  const refuse = (expected: string) => new UmbraClientError(`expected ${expected} (${t.datatype}) for input "${t.name}" element ${index} but received ${typeof value === 'string' ? `the string ${JSON.stringify(value)}` : `${typeof value} ${String(value)}`}`, 400);
  if (t.datatype === 'BOOL') {
    if (value === true || value === 1) return 1;
    if (value === false || value === 0) return 0;
    throw refuse('true, false, 0 or 1');
  }
  const range = INTEGER_RANGE[t.datatype];
  if (!range) {
    if (typeof value !== 'number') throw refuse('a number');
    return value;
  }
  if (!(typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value)))) throw refuse('an integer');
  const n = BigInt(value);
  if (n < range[0] || n > range[1]) throw refuse(`an integer from ${range[0]} to ${range[1]}`);
  return value;
}

function encodeStrings(values: readonly string[]): Uint8Array {
  const parts = values.map((v) => encoder.encode(v));
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.byteLength, 0));
  const view = new DataView(out.buffer);
  let p = 0;
  for (const part of parts) {
    view.setUint32(p, part.byteLength, true);
    out.set(part, p + 4);
    p += 4 + part.byteLength;
  }
  return out;
}

/**
 * Decodes an answer: `body`'s first `headerLength` bytes are JSON, then the bytes of each output
 * that carries `parameters.binary_data_size`. Errors become UmbraClientError.
 */
export function decodeResponse(body: Uint8Array, headerLength = body.byteLength, status = 200): ClientInferResponse {
  const response = answerOf(parseHeader(decoder.decode(body.subarray(0, headerLength)), status), status);
  let cursor = headerLength;
  for (const out of response.outputs ?? []) {
    if (inSharedMemory(out) && out.data === undefined) out.data = [];
    const size = out.parameters?.binary_data_size;
    if (typeof size !== 'number') continue;
    out.data = tensorFromBytes(body, cursor, size, out.datatype, out.shape);
    cursor += size;
  }
  return response;
}

/** Decodes an all-JSON answer (a text frame). */
export function decodeJsonResponse(text: string, status = 200): ClientInferResponse {
  const response = answerOf(parseHeader(text, status), status);
  for (const out of response.outputs ?? []) if (inSharedMemory(out) && out.data === undefined) out.data = [];
  return response;
}

function parseHeader(text: string, status: number): Record<string, unknown> {
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new UmbraClientError(`the server's answer is not JSON: ${(err as Error).message}`, status);
  }
  // The server spells 64-bit integers past 2^53 exactly; JSON.parse would round them.
  return hasInexactInteger(text) ? exactIntegerOutputs(header, text) : header;
}

/** The answer read again with its large integers kept: an INT64 or UINT64 output holding one comes back as bigint[]. */
function exactIntegerOutputs(header: Record<string, unknown>, text: string): Record<string, unknown> {
  let exact: Record<string, unknown>;
  try {
    exact = parseKeepingIntegers(text) as Record<string, unknown>;
  } catch {
    return header;
  }
  for (const out of (exact.outputs ?? []) as { datatype?: unknown; data?: unknown }[]) {
    if (!Array.isArray(out.data) || !out.data.some((v) => typeof v === 'bigint')) continue;
    // Any other datatype is a double, as JSON.parse reads it (a server that spells one with more digits than it needs).
    out.data = out.datatype === 'INT64' || out.datatype === 'UINT64' ? out.data.map((v: number | bigint) => BigInt(v)) : out.data.map((v: unknown) => (typeof v === 'bigint' ? Number(v) : v));
  }
  return exact;
}

function answerOf(header: Record<string, unknown>, status: number): ClientInferResponse {
  if (typeof header.error === 'string') {
    const retry = typeof header.retry_after === 'number' ? header.retry_after : undefined;
    throw new UmbraClientError(header.error, typeof header.status === 'number' ? header.status : status, header.id, retry);
  }
  return header as unknown as ClientInferResponse;
}

/** `size` bytes of `body` at `start` as a tensor's data (a view when aligned, else one copy). */
export function tensorFromBytes(body: Uint8Array, start: number, size: number, datatype: DataType, shape: number[]): ClientTensorData {
  if (datatype === 'BYTES') {
    const view = new DataView(body.buffer, body.byteOffset + start, size);
    const out: string[] = [];
    for (let p = 0; p < size;) {
      const n = view.getUint32(p, true);
      out.push(decoder.decode(body.subarray(start + p + 4, start + p + 4 + n)));
      p += 4 + n;
    }
    return out;
  }
  const { ctor, bytes } = STORAGE[datatype];
  const count = shape.reduce((a, b) => a * b, 1);
  if (count * bytes !== size) throw new UmbraClientError(`output of ${size} bytes does not hold ${count} ${datatype} elements`, 0);
  const offset = body.byteOffset + start;
  // A view when aligned; otherwise one copy, since typed arrays need aligned offsets.
  if (offset % bytes === 0) return new ctor(body.buffer as ArrayBuffer, offset, count);
  // A copy of its own (a Buffer's slice would be a view of the whole pool).
  return new ctor(new Uint8Array(body.subarray(start, start + size)).buffer, 0, count);
}
