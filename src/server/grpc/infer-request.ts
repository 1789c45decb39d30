// A decoded ModelInferRequest in the binary tensor extension's form (a header object and the
// tensors' bytes after it), so parseInferRequest validates it against the model exactly as it
// validates a REST request; and an answer back into ModelInferResponse fields. What only gRPC
// has (typed contents, one raw entry per input) is checked here, worded after the proto's fields.
import { UmbraError } from '../../errors.js';
import { binaryOutputsFor, bytesPerElement, integerRange, isDataType, isSharedOutput, stringifyJson, tensorDataToBinary } from '../../protocol/index.js';
import type { DataType, InferResponse, Tensor } from '../../protocol/types.js';
import { CONTENTS_FIELD_NAMES, type ContentsField, type ParameterMap, type TensorContents, type WireInferRequest, type WireInferResponse, type WireTensor } from '../../protocol/proto/infer-messages.js';

/** The contents field each datatype's elements travel in; FP16 has none (raw only). */
const CONTENTS_FOR: Record<DataType, ContentsField | undefined> = {
  BOOL: 'bool', INT8: 'int', INT16: 'int', INT32: 'int', INT64: 'int64',
  UINT8: 'uint', UINT16: 'uint', UINT32: 'uint', UINT64: 'uint64',
  FP16: undefined, FP32: 'fp32', FP64: 'fp64', BYTES: 'bytes',
};

export interface BinaryForm {
  /** What parseInferRequest reads as the JSON header (without the id: see `id`). */
  header: { parameters: Record<string, unknown>; inputs: Record<string, unknown>[]; outputs?: Record<string, unknown>[] };
  /** Each input's bytes, in input order. */
  chunks: Uint8Array[];
  id: string | undefined;
  /** The request sent its tensors in raw_input_contents (so its answer goes out raw too). */
  raw: boolean;
}

function bad(message: string): UmbraError {
  return new UmbraError('INVALID_INPUT', message);
}

/** Parameter values as the REST path has them: JSON-safe (an int64 past 2^53 becomes its decimal string). */
export function jsParameters(map: ParameterMap | undefined, what: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!map) return out;
  for (const key in map) {
    const value = map[key]!;
    if (value === null) throw bad(`expected a value (bool_param, int64_param, string_param, double_param or uint64_param) for ${what} "${key}" but received none`);
    out[key] = typeof value === 'bigint' ? String(value) : value;
  }
  return out;
}

export function toBinaryForm(wire: WireInferRequest): BinaryForm {
  const raw = wire.rawInputContents.length > 0;
  // Inputs in shared memory have no contents and no raw_input_contents entry.
  const parameters = wire.inputs.map((input) => jsParameters(input.parameters, `input ${JSON.stringify(input.name)} parameter`));
  const shared = parameters.map((p) => p['shared_memory_region'] !== undefined);
  const inMessage = shared.filter((s) => !s).length;
  if (raw && wire.rawInputContents.length !== inMessage) {
    throw bad(`expected one raw_input_contents entry per input not in shared memory (${inMessage}) but received ${wire.rawInputContents.length}`);
  }
  const chunks: Uint8Array[] = [];
  let next = 0;
  const inputs = wire.inputs.map((input, i) => {
    const what = `input ${JSON.stringify(input.name)}`;
    if (shared[i]) {
      if (input.contents && hasElements(input.contents)) throw bad(`expected no contents for ${what} since its parameters place it in shared memory`);
      return { name: input.name, datatype: input.datatype, shape: input.shape, parameters: parameters[i]! };
    }
    let bytes: Uint8Array;
    if (raw) {
      if (input.contents && hasElements(input.contents)) throw bad(`expected no contents for ${what} since the request uses raw_input_contents`);
      bytes = wire.rawInputContents[next]!;
      checkRawSize(input, bytes, what, `raw_input_contents[${next}]`);
      next += 1;
    } else bytes = contentsBytes(input, what);
    chunks.push(bytes);
    return { name: input.name, datatype: input.datatype, shape: input.shape, parameters: { ...parameters[i], binary_data_size: bytes.byteLength } };
  });
  const header: BinaryForm['header'] = { parameters: jsParameters(wire.parameters, 'parameter'), inputs };
  if (wire.outputs.length > 0) {
    header.outputs = wire.outputs.map((o) => {
      const parameters = jsParameters(o.parameters, `output ${JSON.stringify(o.name)} parameter`);
      return Object.keys(parameters).length > 0 ? { name: o.name, parameters } : { name: o.name };
    });
  }
  return { header, chunks, id: wire.id === '' ? undefined : wire.id, raw };
}

function hasElements(c: TensorContents): boolean {
  for (const k in c) if ((c[k as ContentsField]?.length ?? 0) > 0) return true;
  return false;
}

/** Elements the shape holds, when every dim is a valid one (otherwise the parser reports the shape). */
function shapeCount(shape: readonly number[]): number | undefined {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) return undefined;
    n *= d;
  }
  return Number.isSafeInteger(n) ? n : undefined;
}

function describeShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function checkRawSize(input: WireTensor, bytes: Uint8Array, what: string, field: string): void {
  if (!isDataType(input.datatype) || input.datatype === 'BYTES') return;
  const count = shapeCount(input.shape);
  if (count === undefined) return;
  const width = bytesPerElement(input.datatype);
  if (bytes.byteLength !== count * width) {
    throw bad(`expected ${count * width} bytes in ${field} for ${what} (${count} ${input.datatype} elements of ${width} bytes, shape ${describeShape(input.shape)}) but received ${bytes.byteLength}`);
  }
}

/** The little-endian bytes of a typed-contents input, after checking its field, count and range. */
function contentsBytes(input: WireTensor, what: string): Uint8Array {
  // An unknown datatype or a bad shape: no bytes, and the parser words the error as REST does.
  if (!isDataType(input.datatype)) return new Uint8Array(0);
  const count = shapeCount(input.shape);
  if (count === undefined) return new Uint8Array(0);
  const datatype = input.datatype;
  const field = CONTENTS_FOR[datatype];
  const contents = input.contents ?? {};
  for (const k in contents) {
    const other = k as ContentsField;
    if (other !== field && (contents[other]?.length ?? 0) > 0) {
      throw bad(`expected ${field ? `contents.${CONTENTS_FIELD_NAMES[field]}` : 'raw_input_contents'} for ${what} (datatype ${datatype}) but received contents.${CONTENTS_FIELD_NAMES[other]}`);
    }
  }
  if (field === undefined) {
    if (count === 0) return new Uint8Array(0);
    throw bad(`expected raw_input_contents for ${what}: ${datatype} has no typed contents field`);
  }
  const data = contents[field];
  const received = data?.length ?? 0;
  if (received !== count) {
    throw bad(`expected ${count} elements in contents.${CONTENTS_FIELD_NAMES[field]} for ${what} (shape ${describeShape(input.shape)}) but received ${received}`);
  }
  if (count === 0 || data === undefined) return new Uint8Array(0);
  if (field === 'bytes') return encodeLengthPrefixed(data as Uint8Array[]);
  const typed = narrow(data as Exclude<TensorContents[ContentsField], Uint8Array[] | undefined>, datatype, what);
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** BYTES elements as the binary extension has them: a 4-byte little-endian length before each. */
function encodeLengthPrefixed(elements: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const e of elements) total += 4 + e.byteLength;
  const out = Buffer.allocUnsafe(total);
  let p = 0;
  for (const e of elements) {
    out.writeUInt32LE(e.byteLength, p);
    out.set(e, p + 4);
    p += 4 + e.byteLength;
  }
  return out;
}

type FixedArray = Exclude<Tensor['data'], string[]>;

/** INT8/INT16 from int_contents and UINT8/UINT16 from uint_contents, range-checked; the rest as they are. */
function narrow(data: FixedArray, datatype: DataType, what: string): FixedArray {
  const range = integerRange(datatype);
  if (datatype === 'INT32' || datatype === 'UINT32' || range === undefined) return data;
  const [min, max] = range;
  const Storage = datatype === 'INT8' ? Int8Array : datatype === 'INT16' ? Int16Array : datatype === 'UINT8' ? Uint8Array : Uint16Array;
  const out = new Storage(data.length);
  const source = data as Int32Array | Uint32Array;
  for (let i = 0; i < source.length; i++) {
    const v = source[i]!;
    if (v < min || v > max) throw bad(`expected an integer between ${min} and ${max} (${datatype}) for ${what} element ${i} but received ${v}`);
    out[i] = v;
  }
  return out;
}

/**
 * The answer as ModelInferResponse fields. The protocol puts all outputs in raw_output_contents
 * or none: raw when the request was raw or asked for binary outputs (binary_data_output, or an
 * output's binary_data), unless it set binary_data_output to false and no output asks for binary;
 * and always when an output is FP16, which has no typed field.
 */
export function wireAnswer(response: InferResponse, requestRaw: boolean, binaryDataOutput: boolean | undefined, binaryOutputs: ReturnType<typeof binaryOutputsFor>): WireInferResponse {
  let raw = binaryOutputs !== 'none' || (requestRaw && binaryDataOutput !== false);
  for (const o of response.outputs) if (CONTENTS_FOR[o.datatype] === undefined) raw = true;
  return toWireResponse(response, raw);
}

/** Umbra's answer as ModelInferResponse fields. */
export function toWireResponse(response: InferResponse, raw: boolean): WireInferResponse {
  const out: WireInferResponse = {
    modelName: response.model_name,
    modelVersion: response.model_version,
    id: response.id ?? '',
    outputs: [],
    rawOutputContents: [],
  };
  if (response.parameters !== undefined) out.parameters = wireParameters(response.parameters);
  for (const t of response.outputs) {
    const tensor: WireTensor = { name: t.name, datatype: t.datatype, shape: t.shape };
    if (t.parameters !== undefined) tensor.parameters = wireParameters(t.parameters);
    // An output left in shared memory keeps its place among the raw entries (empty), so the
    // entries still line up with the outputs by position.
    if (raw) out.rawOutputContents.push(isSharedOutput(t) ? new Uint8Array(0) : tensorDataToBinary(t));
    else if (!isSharedOutput(t)) tensor.contents = typedContents(t);
    out.outputs.push(tensor);
  }
  return out;
}

function typedContents(t: Tensor): TensorContents {
  const field = CONTENTS_FOR[t.datatype]!;
  const data = t.data;
  switch (field) {
    case 'bytes': return { bytes: (data as string[]).map((s) => Buffer.from(s, 'utf8')) };
    case 'int': return { int: data instanceof Int32Array ? data : Int32Array.from(data as Int8Array | Int16Array) };
    case 'uint': return { uint: data instanceof Uint32Array ? data : Uint32Array.from(data as Uint8Array | Uint16Array) };
    default: return { [field]: data } as TensorContents;
  }
}

/** Response parameters as InferParameters: objects (which the protocol has no kind for) as JSON text. */
function wireParameters(params: Record<string, unknown>): ParameterMap {
  const out: ParameterMap = {};
  for (const key in params) {
    const v = params[key];
    if (v === undefined) continue;
    out[key] = typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string' || typeof v === 'bigint' ? v : stringifyJson(v);
  }
  return out;
}

/** The binary extension body for the core to parse itself: the header as JSON, then the tensors. */
export function binaryBody(form: BinaryForm): { body: Buffer; headerLength: number } {
  const header = Buffer.from(JSON.stringify(form.id === undefined ? form.header : { id: form.id, ...form.header }));
  return { body: Buffer.concat([header, ...form.chunks]), headerLength: header.byteLength };
}

/**
 * The tensors as a body whose first byte stands for the (already parsed) header: one input is a
 * view of the received message (the byte before it is the field's length), several are copied.
 */
export function tensorBody(chunks: readonly Uint8Array[]): Uint8Array {
  if (chunks.length === 1) {
    const only = chunks[0]!;
    if (only.byteOffset > 0) return new Uint8Array(only.buffer, only.byteOffset - 1, only.byteLength + 1);
  }
  let total = 1;
  for (const c of chunks) total += c.byteLength;
  const body = Buffer.allocUnsafe(total);
  let p = 1;
  for (const c of chunks) {
    body.set(c, p);
    p += c.byteLength;
  }
  return body;
}
