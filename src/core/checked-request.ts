// Requests built in this process (predict()'s tensors, a request object given to infer()) are
// checked by the protocol's own parser, so they get exactly the checks and messages of an HTTP
// body: each is written in the binary extension's form (or as JSON) and parsed against the model.
import { UmbraError, describeValue, invalid } from '../errors.js';
import { elementCount, parseInferRequest, typedArrayFor, type ParseInferRequestOptions } from '../protocol/index.js';
import { DATATYPES, type DataType, type InferRequest, type Tensor, type TensorData } from '../protocol/types.js';

type Signature = ParseInferRequestOptions['signature'];

/**
 * A typed array must be the datatype's own storage (Float32Array for FP32, Uint16Array for FP16's
 * bits, Uint8Array for BOOL): its bytes are sent as they are, so an Int32Array given for FP32
 * would be read as floats (1 as 1.4e-45), and one of another element size would be refused as a
 * binary_data_size the caller never gave.
 */
export function checkStorage(name: string, datatype: DataType, data: unknown): void {
  if (Array.isArray(data)) return;
  const article = (type: string) => (/^[AEIO]/.test(type) ? 'an' : 'a');
  const received = ArrayBuffer.isView(data) ? `${article(data.constructor.name)} ${data.constructor.name}` : describeValue(data);
  // A typed array given for BYTES was described as "received object".
  if (datatype === 'BYTES') throw new UmbraError('INVALID_INPUT', `expected an array of strings for input '${name}' (BYTES) but received ${received}`);
  const storage = (typedArrayFor(datatype, 0) as object).constructor as new () => object;
  if (data instanceof storage || (storage === Uint8Array && data instanceof Uint8ClampedArray)) return;
  throw new UmbraError('INVALID_INPUT', `expected ${article(storage.name)} ${storage.name} or an array of numbers for input '${name}' (${datatype}) but received ${received}`);
}

/**
 * Parses tensors and the rest of a request (`header`: id, parameters, outputs in their wire form)
 * against `signature`. Typed arrays whose length matches their shape go as binary tensors; plain
 * arrays, and typed data whose length disagrees with its shape, as JSON (whose parse says why).
 */
export function parseTensors(signature: Signature, tensors: Tensor[], header: Record<string, unknown>): InferRequest {
  const typed = tensors.every((t) => !Array.isArray(t.data) && Array.isArray(t.shape) && elementCount(t.shape) === (t.data as ArrayLike<number>).length);
  if (typed) return parseTyped(signature, tensors, header);
  const inputs = tensors.map((t) => {
    const input: Record<string, unknown> = {
      name: t.name, datatype: t.datatype, shape: t.shape,
      data: Array.isArray(t.data) ? t.data.map((x, i) => jsonNumber(x, t.name, i)) : Array.from(t.data as ArrayLike<number>, (x) => (typeof x === 'bigint' ? Number(x) : x)),
    };
    if (t.parameters !== undefined) {
      // The data goes as JSON here: a size of binary data the tensor once came with no longer applies.
      const { binary_data_size: _, ...parameters } = t.parameters;
      input.parameters = parameters;
    }
    return input;
  });
  return parseInferRequest(Buffer.from(json({ ...header, inputs })), { signature });
}

/**
 * A request object built by the caller (infer() without `accepts`), checked as an HTTP body is:
 * names, datatypes, shapes against the model and against each tensor's data, NaN, outputs. What
 * comes back is the parsed request, the only form that reaches a model.
 */
export function checkedRequest(signature: Signature, request: unknown): InferRequest {
  checkRequestObject(request);
  const { id, parameters, inputs, outputs, binaryDataOutput } = request as Partial<InferRequest>;
  if (!Array.isArray(inputs)) throw invalid('INVALID_INPUT', 'an array', 'inputs', inputs);
  const tensors = inputs.map((input: unknown, i) => {
    if (!isObject(input)) throw invalid('INVALID_INPUT', 'an object', `inputs[${i}]`, input);
    const t = input as Partial<Tensor>;
    const name = typeof t.name === 'string' ? t.name : `inputs[${i}]`;
    if (!DATATYPES.includes(t.datatype as DataType)) throw invalid('INVALID_INPUT', `one of ${DATATYPES.join(', ')}`, `the datatype of input '${name}'`, t.datatype);
    checkStorage(name, t.datatype!, t.data);
    if (t.parameters !== undefined && !isObject(t.parameters)) throw invalid('INVALID_INPUT', 'an object', `input '${name}' parameters`, t.parameters);
    return t as Tensor;
  });
  const header: Record<string, unknown> = { parameters: binaryDataOutput === undefined ? parameters ?? {} : { binary_data_output: binaryDataOutput, ...parameters } };
  if (id !== undefined) header.id = id;
  if (outputs !== undefined) header.outputs = Array.isArray(outputs) ? outputs.map(wireOutput) : outputs;
  return parseTensors(signature, tensors, header);
}

/** Refuses a request that is not an object, or whose parameters (which routing reads first) are not one. */
export function checkRequestObject(request: unknown): asserts request is Partial<InferRequest> {
  if (!isObject(request)) throw invalid('INVALID_INPUT', 'an object', 'the inference request', request);
  if (request.parameters !== undefined && !isObject(request.parameters)) throw invalid('INVALID_INPUT', 'an object', 'parameters', request.parameters);
}

/** A requested output in its wire form: what the parser reads from parameters, put back there. */
function wireOutput(output: unknown): unknown {
  if (!isObject(output)) return output;
  const o = output as Partial<NonNullable<InferRequest['outputs']>[number]>;
  const parameters: Record<string, unknown> = isObject(o.parameters) ? { ...o.parameters } : {};
  if (o.binaryData !== undefined) parameters.binary_data = o.binaryData;
  if (o.classification !== undefined) parameters.classification = o.classification;
  if (o.sharedMemory !== undefined) {
    parameters.shared_memory_region = o.sharedMemory.region;
    parameters.shared_memory_offset = o.sharedMemory.offset;
    parameters.shared_memory_byte_size = o.sharedMemory.byteSize;
  }
  return o.parameters !== undefined && !isObject(o.parameters) ? { name: o.name, parameters: o.parameters } : { name: o.name, parameters };
}

/** The request's JSON; what JSON cannot carry (a bigint parameter, a cycle) is the caller's mistake, not a TypeError. */
function json(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (err) {
    throw new UmbraError('INVALID_INPUT', `expected a request JSON can carry but received one it cannot: ${(err as Error).message}`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * An element as the JSON path reads it. JSON has no NaN or Infinity and JSON.stringify writes null
 * for them, which was refused as "received null": they go as the strings the protocol reads.
 * A bigint past 2^53 is refused rather than rounded (JSON.stringify cannot spell it).
 */
function jsonNumber(x: unknown, name: string, index: number): unknown {
  if (typeof x === 'number' && !Number.isFinite(x)) return String(x);
  // JSON.stringify throws a bare TypeError on a bigint; one a double holds exactly is that number.
  if (typeof x === 'bigint') {
    if (Number.isSafeInteger(Number(x))) return Number(x);
    throw invalid('INVALID_INPUT', 'a number within 2^53 (a BigInt64Array or BigUint64Array carries any 64-bit integer)', `input '${name}' element ${index}`, x);
  }
  return x;
}

/** Typed arrays skip JSON entirely: encode them as the binary extension does and parse that. */
function parseTyped(signature: Signature, tensors: Tensor[], header: Record<string, unknown>): InferRequest {
  const chunks: Buffer[] = [];
  const inputs = tensors.map((t) => {
    const view = t.data as Exclude<TensorData, string[]>;
    const bytes = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
    chunks.push(bytes);
    return { name: t.name, datatype: t.datatype, shape: t.shape, parameters: { ...t.parameters, binary_data_size: bytes.byteLength } };
  });
  const head = Buffer.from(json({ ...header, inputs }));
  return parseInferRequest(Buffer.concat([head, ...chunks]), { signature, headerLength: head.byteLength });
}
