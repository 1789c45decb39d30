// ModelInferRequest, ModelInferResponse and ModelStreamInferResponse (proto/grpc_service.proto)
// in and out of protobuf bytes, by hand: these carry every inference, so raw tensor bytes stay
// views of the received message, packed numeric contents land in typed arrays without a JS
// array per element, and a message that does not decode says where it broke (ProtoError).
// The server decodes requests and encodes answers; clients (umbra perf, umbra/client) the reverse.
import {
  ProtoError, ProtoReader, ProtoWriter, WIRE_FIXED32, WIRE_FIXED64, WIRE_LENGTH, WIRE_VARINT,
  expectWireType, int64Size, stringSize, varintSize,
} from './wire.js';

/** An InferParameter's value: int64/uint64 past 2^53 stay exact as bigint. `null`: no value was set. */
export type ParameterValue = boolean | number | bigint | string | null;
export type ParameterMap = Record<string, ParameterValue>;

/** InferTensorContents: the field that matches the datatype holds the elements. */
export interface TensorContents {
  bool?: Uint8Array;
  int?: Int32Array;
  int64?: BigInt64Array;
  uint?: Uint32Array;
  uint64?: BigUint64Array;
  fp32?: Float32Array;
  fp64?: Float64Array;
  bytes?: Uint8Array[];
}
export type ContentsField = keyof TensorContents;

/** The proto's name of each contents field, for messages. */
export const CONTENTS_FIELD_NAMES: Record<ContentsField, string> = {
  bool: 'bool_contents', int: 'int_contents', int64: 'int64_contents', uint: 'uint_contents',
  uint64: 'uint64_contents', fp32: 'fp32_contents', fp64: 'fp64_contents', bytes: 'bytes_contents',
};
const CONTENTS_FIELDS: ContentsField[] = ['bool', 'int', 'int64', 'uint', 'uint64', 'fp32', 'fp64', 'bytes'];

/** InferInputTensor and InferOutputTensor (the same fields). */
export interface WireTensor {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: ParameterMap;
  contents?: TensorContents;
}

export interface WireRequestedOutput {
  name: string;
  parameters?: ParameterMap;
}

export interface WireInferRequest {
  modelName: string;
  modelVersion: string;
  id: string;
  parameters?: ParameterMap;
  inputs: WireTensor[];
  outputs: WireRequestedOutput[];
  rawInputContents: Uint8Array[];
}

export interface WireInferResponse {
  modelName: string;
  modelVersion: string;
  id: string;
  parameters?: ParameterMap;
  outputs: WireTensor[];
  rawOutputContents: Uint8Array[];
}

export interface WireStreamResponse {
  errorMessage: string;
  response?: WireInferResponse;
}

// ---- decoding ----

/** Decodes a ModelInferRequest; throws ProtoError when the bytes are not one. */
export function decodeInferRequest(buf: Buffer): WireInferRequest {
  const r = new ProtoReader(buf);
  const out: WireInferRequest = { modelName: '', modelVersion: '', id: '', inputs: [], outputs: [], rawInputContents: [] };
  while (!r.done) {
    const tag = r.tag();
    switch (tag >>> 3) {
      case 1: expectWireType(r, tag, WIRE_LENGTH, 'model_name'); out.modelName = r.string(); break;
      case 2: expectWireType(r, tag, WIRE_LENGTH, 'model_version'); out.modelVersion = r.string(); break;
      case 3: expectWireType(r, tag, WIRE_LENGTH, 'id'); out.id = r.string(); break;
      case 4: expectWireType(r, tag, WIRE_LENGTH, 'parameters'); readParameterEntry(r, (out.parameters ??= {})); break;
      case 5: expectWireType(r, tag, WIRE_LENGTH, 'inputs'); out.inputs.push(readTensor(r)); break;
      case 6: expectWireType(r, tag, WIRE_LENGTH, 'outputs'); out.outputs.push(readRequestedOutput(r)); break;
      case 7: expectWireType(r, tag, WIRE_LENGTH, 'raw_input_contents'); out.rawInputContents.push(r.bytes()); break;
      default: r.skip(tag & 7);
    }
  }
  return out;
}

/** Decodes a ModelInferResponse. */
export function decodeInferResponse(buf: Buffer, start = 0, end = buf.length): WireInferResponse {
  const r = new ProtoReader(buf, start, end);
  const out: WireInferResponse = { modelName: '', modelVersion: '', id: '', outputs: [], rawOutputContents: [] };
  while (!r.done) {
    const tag = r.tag();
    switch (tag >>> 3) {
      case 1: expectWireType(r, tag, WIRE_LENGTH, 'model_name'); out.modelName = r.string(); break;
      case 2: expectWireType(r, tag, WIRE_LENGTH, 'model_version'); out.modelVersion = r.string(); break;
      case 3: expectWireType(r, tag, WIRE_LENGTH, 'id'); out.id = r.string(); break;
      case 4: expectWireType(r, tag, WIRE_LENGTH, 'parameters'); readParameterEntry(r, (out.parameters ??= {})); break;
      case 5: expectWireType(r, tag, WIRE_LENGTH, 'outputs'); out.outputs.push(readTensor(r)); break;
      case 6: expectWireType(r, tag, WIRE_LENGTH, 'raw_output_contents'); out.rawOutputContents.push(r.bytes()); break;
      default: r.skip(tag & 7);
    }
  }
  return out;
}

/** Decodes a ModelStreamInferResponse. */
export function decodeStreamResponse(buf: Buffer): WireStreamResponse {
  const r = new ProtoReader(buf);
  const out: WireStreamResponse = { errorMessage: '' };
  while (!r.done) {
    const tag = r.tag();
    switch (tag >>> 3) {
      case 1: expectWireType(r, tag, WIRE_LENGTH, 'error_message'); out.errorMessage = r.string(); break;
      case 2: {
        expectWireType(r, tag, WIRE_LENGTH, 'infer_response');
        const length = r.span();
        out.response = decodeInferResponse(buf, r.pos, r.pos + length);
        r.pos += length;
        break;
      }
      default: r.skip(tag & 7);
    }
  }
  return out;
}

/** Runs `read` over the sub-message at the reader (a length-delimited field), then moves past it. */
function nested<T>(r: ProtoReader, read: (sub: ProtoReader) => T): T {
  const length = r.span();
  const sub = new ProtoReader(r.buf, r.pos, r.pos + length);
  const value = read(sub);
  r.pos += length;
  return value;
}

function readTensor(r: ProtoReader): WireTensor {
  return nested(r, (s) => {
    const t: WireTensor = { name: '', datatype: '', shape: [] };
    let contents: ContentsParts | undefined;
    while (!s.done) {
      const tag = s.tag();
      switch (tag >>> 3) {
        case 1: expectWireType(s, tag, WIRE_LENGTH, 'tensor name'); t.name = s.string(); break;
        case 2: expectWireType(s, tag, WIRE_LENGTH, 'tensor datatype'); t.datatype = s.string(); break;
        case 3:
          if ((tag & 7) === WIRE_LENGTH) {
            const length = s.span();
            const end = s.pos + length;
            while (s.pos < end) t.shape.push(s.int64());
            if (s.pos !== end) throw new ProtoError(`packed shape overruns its field at byte ${s.pos}`);
          } else {
            expectWireType(s, tag, WIRE_VARINT, 'tensor shape');
            t.shape.push(s.int64());
          }
          break;
        case 4: expectWireType(s, tag, WIRE_LENGTH, 'tensor parameters'); readParameterEntry(s, (t.parameters ??= {})); break;
        // A message field seen twice merges, so its repeated fields append (protobuf's rule).
        case 5: expectWireType(s, tag, WIRE_LENGTH, 'tensor contents'); nested(s, (c) => readContents(c, (contents ??= new ContentsParts()))); break;
        default: s.skip(tag & 7);
      }
    }
    if (contents) t.contents = contents.finish();
    return t;
  });
}

function readRequestedOutput(r: ProtoReader): WireRequestedOutput {
  return nested(r, (s) => {
    const o: WireRequestedOutput = { name: '' };
    while (!s.done) {
      const tag = s.tag();
      switch (tag >>> 3) {
        case 1: expectWireType(s, tag, WIRE_LENGTH, 'output name'); o.name = s.string(); break;
        case 2: expectWireType(s, tag, WIRE_LENGTH, 'output parameters'); readParameterEntry(s, (o.parameters ??= {})); break;
        default: s.skip(tag & 7);
      }
    }
    return o;
  });
}

/** One map<string, InferParameter> entry into `into` (a repeated key: the last one wins). */
function readParameterEntry(r: ProtoReader, into: ParameterMap): void {
  nested(r, (s) => {
    let key = '';
    let value: ParameterValue = null;
    while (!s.done) {
      const tag = s.tag();
      switch (tag >>> 3) {
        case 1: expectWireType(s, tag, WIRE_LENGTH, 'parameter name'); key = s.string(); break;
        case 2: expectWireType(s, tag, WIRE_LENGTH, 'parameter value'); value = nested(s, readParameterValue); break;
        default: s.skip(tag & 7);
      }
    }
    into[key] = value;
  });
}

function readParameterValue(s: ProtoReader): ParameterValue {
  let value: ParameterValue = null;
  while (!s.done) {
    const tag = s.tag();
    switch (tag >>> 3) {
      case 1: expectWireType(s, tag, WIRE_VARINT, 'bool_param'); value = s.bool(); break;
      case 2:
        expectWireType(s, tag, WIRE_VARINT, 'int64_param');
        s.varint64();
        value = exactInteger(s.lo, s.hi, true);
        break;
      case 3: expectWireType(s, tag, WIRE_LENGTH, 'string_param'); value = s.string(); break;
      case 4: expectWireType(s, tag, WIRE_FIXED64, 'double_param'); value = s.double(); break;
      case 5:
        expectWireType(s, tag, WIRE_VARINT, 'uint64_param');
        s.varint64();
        value = exactInteger(s.lo, s.hi, false);
        break;
      default: s.skip(tag & 7);
    }
  }
  return value;
}

/** A 64-bit integer as a number when exact, else as a bigint. */
function exactInteger(lo: number, hi: number, signed: boolean): number | bigint {
  const value = (signed ? hi | 0 : hi) * 4294967296 + lo;
  if (Number.isSafeInteger(value)) return value;
  const big = (BigInt(hi) << 32n) | BigInt(lo);
  return signed ? BigInt.asIntN(64, big) : big;
}

type Part = ArrayBufferView | number | bigint;

/** Each contents field's pieces as they arrive (packed runs, or single unpacked elements). */
class ContentsParts {
  readonly parts: Record<Exclude<ContentsField, 'bytes'>, Part[]> = { bool: [], int: [], int64: [], uint: [], uint64: [], fp32: [], fp64: [] };
  bytes: Uint8Array[] | undefined;

  finish(): TensorContents {
    const out: TensorContents = {};
    if (this.parts.bool.length) out.bool = join(this.parts.bool, Uint8Array);
    if (this.parts.int.length) out.int = join(this.parts.int, Int32Array);
    if (this.parts.int64.length) out.int64 = join(this.parts.int64, BigInt64Array);
    if (this.parts.uint.length) out.uint = join(this.parts.uint, Uint32Array);
    if (this.parts.uint64.length) out.uint64 = join(this.parts.uint64, BigUint64Array);
    if (this.parts.fp32.length) out.fp32 = join(this.parts.fp32, Float32Array);
    if (this.parts.fp64.length) out.fp64 = join(this.parts.fp64, Float64Array);
    if (this.bytes) out.bytes = this.bytes;
    return out;
  }
}

type ArrayOf<T> = { new (n: number): T; BYTES_PER_ELEMENT: number };

function join<T extends { length: number; set(values: ArrayLike<number | bigint>, offset?: number): void; [i: number]: number | bigint }>(parts: Part[], Type: ArrayOf<T>): T {
  const first = parts[0]!;
  if (parts.length === 1 && ArrayBuffer.isView(first) && first instanceof (Type as unknown as Function)) return first as unknown as T;
  let n = 0;
  for (const p of parts) n += ArrayBuffer.isView(p) ? (p as unknown as T).length : 1;
  const out = new Type(n);
  let at = 0;
  for (const p of parts) {
    if (ArrayBuffer.isView(p)) {
      out.set(p as unknown as T, at);
      at += (p as unknown as T).length;
    } else out[at++] = p;
  }
  return out;
}

function readContents(c: ProtoReader, into: ContentsParts): void {
  const parts = into.parts;
  while (!c.done) {
    const tag = c.tag();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 8) {
      expectWireType(c, tag, WIRE_LENGTH, 'bytes_contents');
      (into.bytes ??= []).push(c.bytes());
      continue;
    }
    if (field < 1 || field > 7) {
      c.skip(wire);
      continue;
    }
    const name = CONTENTS_FIELDS[field - 1]! as Exclude<ContentsField, 'bytes'>;
    const fixedWidth = field === 6 ? 4 : field === 7 ? 8 : 0;
    if (wire === WIRE_LENGTH) {
      parts[name].push(fixedWidth ? readPackedFixed(c, field === 6) : readPackedVarints(c, name as VarintField));
      continue;
    }
    // Unpacked: one element per field occurrence.
    if (fixedWidth) {
      expectWireType(c, tag, fixedWidth === 4 ? WIRE_FIXED32 : WIRE_FIXED64, CONTENTS_FIELD_NAMES[name]);
      const at = c.need(fixedWidth);
      parts[name].push(fixedWidth === 4 ? c.buf.readFloatLE(at) : c.buf.readDoubleLE(at));
      continue;
    }
    expectWireType(c, tag, WIRE_VARINT, CONTENTS_FIELD_NAMES[name]);
    c.varint64();
    parts[name].push(varintElement(name as VarintField, c.lo, c.hi));
  }
}

type VarintField = Exclude<ContentsField, 'bytes' | 'fp32' | 'fp64'>;

/** One varint-encoded element as its contents field stores it. */
function varintElement(name: VarintField, lo: number, hi: number): number | bigint {
  switch (name) {
    case 'bool': return lo !== 0 || hi !== 0 ? 1 : 0;
    case 'int': return lo | 0;
    case 'uint': return lo;
    case 'int64': return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
    case 'uint64': return (BigInt(hi) << 32n) | BigInt(lo);
  }
}

/** A packed run of floats or doubles: a view of the message when aligned, else one copy. */
function readPackedFixed(c: ProtoReader, float: boolean): Float32Array | Float64Array {
  const length = c.span();
  const width = float ? 4 : 8;
  if (length % width !== 0) throw new ProtoError(`packed ${float ? 'fp32' : 'fp64'}_contents of ${length} bytes is not a whole number of elements at byte ${c.pos}`);
  const start = c.buf.byteOffset + c.pos;
  c.pos += length;
  const Type = float ? Float32Array : Float64Array;
  const buffer = c.buf.buffer as ArrayBuffer;
  if (start % width === 0) return new Type(buffer, start, length / width);
  const out = new Type(length / width);
  new Uint8Array(out.buffer).set(new Uint8Array(buffer, start, length));
  return out;
}

function readPackedVarints(c: ProtoReader, name: VarintField): ArrayBufferView {
  const length = c.span();
  const end = c.pos + length;
  const buf = c.buf;
  // Count first (every element ends on a byte below 0x80), so the array is allocated once.
  let count = 0;
  for (let i = c.pos; i < end; i++) if (buf[i]! < 0x80) count++;
  if (length > 0 && buf[end - 1]! >= 0x80) throw new ProtoError(`packed ${CONTENTS_FIELD_NAMES[name]} ends inside a varint at byte ${end}`);
  const sub = new ProtoReader(buf, c.pos, end);
  c.pos = end;
  switch (name) {
    case 'bool': {
      const out = new Uint8Array(count);
      for (let i = 0; i < count; i++) {
        sub.varint64();
        out[i] = sub.lo !== 0 || sub.hi !== 0 ? 1 : 0;
      }
      return out;
    }
    case 'int':
    case 'uint': {
      const out = name === 'int' ? new Int32Array(count) : new Uint32Array(count);
      for (let i = 0; i < count; i++) out[i] = sub.uint32();
      return out;
    }
    case 'int64':
    case 'uint64': {
      const out = name === 'int64' ? new BigInt64Array(count) : new BigUint64Array(count);
      // The two halves written straight into the 64-bit slots (little-endian host).
      const halves = new Uint32Array(out.buffer, out.byteOffset, count * 2);
      for (let i = 0; i < count; i++) {
        sub.varint64();
        halves[2 * i] = sub.lo;
        halves[2 * i + 1] = sub.hi;
      }
      return out;
    }
  }
}

// ---- encoding ----

/** Sizes computed once and reused by the write pass. */
interface Sized {
  size: number;
}

function parameterValueSize(value: ParameterValue): number {
  if (typeof value === 'boolean') return 2;
  if (typeof value === 'string') return 1 + stringSize(value);
  if (typeof value === 'bigint') return 1 + int64Size(value);
  if (typeof value === 'number') return Number.isSafeInteger(value) ? 1 + varintSize(value) : 9;
  return 0;
}

function parameterEntrySize(key: string, value: ParameterValue): number {
  const v = parameterValueSize(value);
  return 1 + stringSize(key) + 1 + varintSize(v) + v;
}

function parametersSize(field: number, params: ParameterMap | undefined): number {
  if (!params) return 0;
  let size = 0;
  for (const key in params) {
    const entry = parameterEntrySize(key, params[key]!);
    size += varintSize(field << 3) + varintSize(entry) + entry;
  }
  return size;
}

function writeParameters(w: ProtoWriter, field: number, params: ParameterMap | undefined): void {
  if (!params) return;
  for (const key in params) {
    const value = params[key]!;
    w.tag(field, WIRE_LENGTH);
    w.varint(parameterEntrySize(key, value));
    w.string(1, key);
    const size = parameterValueSize(value);
    w.tag(2, WIRE_LENGTH);
    w.varint(size);
    if (typeof value === 'boolean') {
      w.tag(1, WIRE_VARINT);
      w.varint(value ? 1 : 0);
    } else if (typeof value === 'string') w.string(3, value);
    else if (typeof value === 'bigint') {
      w.tag(value < 0n || value <= 0x7fffffffffffffffn ? 2 : 5, WIRE_VARINT);
      w.int64(value);
    } else if (typeof value === 'number') {
      if (Number.isSafeInteger(value)) {
        w.tag(2, WIRE_VARINT);
        w.varint(value);
      } else {
        w.tag(4, WIRE_FIXED64);
        w.double(value);
      }
    }
  }
}

function packedVarintBytes(field: ContentsField, data: ArrayLike<number | bigint>): number {
  let n = 0;
  if (field === 'bool') return data.length;
  if (field === 'int64' || field === 'uint64') {
    for (let i = 0; i < data.length; i++) n += int64Size(data[i] as bigint);
    return n;
  }
  for (let i = 0; i < data.length; i++) n += varintSize(data[i] as number);
  return n;
}

/** The bytes of an InferTensorContents body (without its own tag and length). */
function contentsSize(c: TensorContents): number {
  let size = 0;
  for (const field of CONTENTS_FIELDS) {
    const data = c[field];
    if (!data || data.length === 0) continue;
    const number = CONTENTS_FIELDS.indexOf(field) + 1;
    if (field === 'bytes') {
      for (const b of data as Uint8Array[]) size += 1 + varintSize(b.byteLength) + b.byteLength;
      continue;
    }
    const body = field === 'fp32' || field === 'fp64' ? (data as Float32Array).byteLength : packedVarintBytes(field, data as ArrayLike<number>);
    size += varintSize(number << 3) + varintSize(body) + body;
  }
  return size;
}

function writeContents(w: ProtoWriter, c: TensorContents): void {
  for (let k = 0; k < CONTENTS_FIELDS.length; k++) {
    const field = CONTENTS_FIELDS[k]!;
    const data = c[field];
    if (!data || data.length === 0) continue;
    if (field === 'bytes') {
      for (const b of data as Uint8Array[]) w.bytes(8, b);
      continue;
    }
    if (field === 'fp32' || field === 'fp64') {
      const view = data as Float32Array | Float64Array;
      w.bytes(k + 1, new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
      continue;
    }
    w.tag(k + 1, WIRE_LENGTH);
    w.varint(packedVarintBytes(field, data as ArrayLike<number>));
    if (field === 'int64' || field === 'uint64') for (const v of data as BigInt64Array) w.int64(v);
    else if (field === 'int') for (const v of data as Int32Array) w.varint(v);
    else for (const v of data as Uint8Array | Uint32Array) w.varint(field === 'bool' ? (v ? 1 : 0) : v);
  }
}

interface SizedTensor extends Sized {
  tensor: WireTensor;
  shapeBytes: number;
  contentsBytes: number;
}

function sizeTensor(t: WireTensor): SizedTensor {
  let shapeBytes = 0;
  for (const d of t.shape) shapeBytes += varintSize(d);
  let size = stringSize(t.name) + 1 + stringSize(t.datatype) + 1;
  if (shapeBytes > 0) size += 1 + varintSize(shapeBytes) + shapeBytes;
  size += parametersSize(4, t.parameters);
  const contentsBytes = t.contents ? contentsSize(t.contents) : 0;
  if (t.contents) size += 1 + varintSize(contentsBytes) + contentsBytes;
  return { size, tensor: t, shapeBytes, contentsBytes };
}

function writeTensor(w: ProtoWriter, field: number, s: SizedTensor): void {
  const t = s.tensor;
  w.tag(field, WIRE_LENGTH);
  w.varint(s.size);
  w.string(1, t.name);
  w.string(2, t.datatype);
  if (s.shapeBytes > 0) {
    w.tag(3, WIRE_LENGTH);
    w.varint(s.shapeBytes);
    for (const d of t.shape) w.varint(d);
  }
  writeParameters(w, 4, t.parameters);
  if (t.contents) {
    w.tag(5, WIRE_LENGTH);
    w.varint(s.contentsBytes);
    writeContents(w, t.contents);
  }
}

function optionalStringSize(value: string): number {
  return value === '' ? 0 : 1 + stringSize(value);
}

function writeOptionalString(w: ProtoWriter, field: number, value: string): void {
  if (value !== '') w.string(field, value);
}

function rawSize(raw: readonly Uint8Array[]): number {
  let size = 0;
  for (const b of raw) size += 1 + varintSize(b.byteLength) + b.byteLength;
  return size;
}

/** Encodes a ModelInferResponse, leaving `prefix` bytes free at the front for a wrapper. */
function encodeResponseInto(resp: WireInferResponse, prefix: (size: number) => number, writePrefix: (w: ProtoWriter, size: number) => void): Buffer {
  const outputs = resp.outputs.map(sizeTensor);
  let size = optionalStringSize(resp.modelName) + optionalStringSize(resp.modelVersion) + optionalStringSize(resp.id) + parametersSize(4, resp.parameters);
  for (const o of outputs) size += 1 + varintSize(o.size) + o.size;
  size += rawSize(resp.rawOutputContents);
  const head = prefix(size);
  const w = new ProtoWriter(Buffer.allocUnsafe(head + size));
  writePrefix(w, size);
  writeOptionalString(w, 1, resp.modelName);
  writeOptionalString(w, 2, resp.modelVersion);
  writeOptionalString(w, 3, resp.id);
  writeParameters(w, 4, resp.parameters);
  for (const o of outputs) writeTensor(w, 5, o);
  for (const b of resp.rawOutputContents) w.bytes(6, b);
  return w.finish();
}

export function encodeInferResponse(resp: WireInferResponse): Buffer {
  return encodeResponseInto(resp, () => 0, () => undefined);
}

/** A ModelStreamInferResponse around `resp` (and `errorMessage` when the request failed). */
export function encodeStreamResponse(resp: WireInferResponse, errorMessage = ''): Buffer {
  const error = optionalStringSize(errorMessage);
  return encodeResponseInto(resp, (size) => error + 1 + varintSize(size), (w, size) => {
    writeOptionalString(w, 1, errorMessage);
    w.tag(2, WIRE_LENGTH);
    w.varint(size);
  });
}

export function encodeInferRequest(req: WireInferRequest): Buffer {
  const inputs = req.inputs.map(sizeTensor);
  const outputs = req.outputs.map((o) => stringSize(o.name) + 1 + parametersSize(2, o.parameters));
  let size = optionalStringSize(req.modelName) + optionalStringSize(req.modelVersion) + optionalStringSize(req.id) + parametersSize(4, req.parameters);
  for (const i of inputs) size += 1 + varintSize(i.size) + i.size;
  for (const o of outputs) size += 1 + varintSize(o) + o;
  size += rawSize(req.rawInputContents);
  const w = new ProtoWriter(Buffer.allocUnsafe(size));
  writeOptionalString(w, 1, req.modelName);
  writeOptionalString(w, 2, req.modelVersion);
  writeOptionalString(w, 3, req.id);
  writeParameters(w, 4, req.parameters);
  for (const i of inputs) writeTensor(w, 5, i);
  req.outputs.forEach((o, k) => {
    w.tag(6, WIRE_LENGTH);
    w.varint(outputs[k]!);
    w.string(1, o.name);
    writeParameters(w, 2, o.parameters);
  });
  for (const b of req.rawInputContents) w.bytes(7, b);
  return w.finish();
}
