// Parse and validate an OIP v2 inference request (JSON, optionally followed by binary tensors)
// against the model's signature. Transport-free: the server passes the body bytes and the
// Inference-Header-Content-Length header value.

import { readClassification } from './classification.js';
import { UmbraError, invalid } from '../errors.js';
import { binaryToTensorData } from './binary-data.js';
import { bytesPerElement, isDataType } from './datatype.js';
import { jsonToTensorData } from './json-data.js';
import { INEXACT_INTEGERS, parseRequestJson } from './request-json.js';
import { parseSpellingIntegers } from './json-bigint.js';
import { readSharedRef, type SharedMemoryTable } from './shared-memory.js';
import type { DataType, InferRequest, ModelSignature, RequestedOutput, Tensor, TensorData, TensorSpec } from './types.js';
import {
  DEFAULT_MAX_ELEMENTS, allowNanFor, badInput, checkDatatype, checkFinite, checkShapeAgainstSpec,
  countElements, isPlainObject, readOptionalBoolean, readParameters, readShape, readString,
} from './validate.js';

export interface ParseInferRequestOptions {
  /** `Inference-Header-Content-Length`: the first N bytes are JSON, the rest binary tensors. */
  headerLength?: number;
  signature: ModelSignature;
  /** Cap on elements per input tensor (default 64 Mi). */
  maxElements?: number;
  /**
   * The JSON header already parsed by the caller (a WebSocket frame is parsed once to read its id
   * and model): used instead of parsing the first bytes of `body` again. Not modified.
   */
  header?: unknown;
  /**
   * The shared-memory regions this thread may read tensors from and write outputs to (Triton's
   * system shared-memory extension); absent where the server takes none.
   */
  sharedMemory?: SharedMemoryTable;
}

interface SignatureIndex {
  inputs: Map<string, TensorSpec>;
  outputs: Set<string>;
}

// Signatures live as long as their loaded model; index each once instead of per request.
const indexes = new WeakMap<ModelSignature, SignatureIndex>();

function indexOf(signature: ModelSignature): SignatureIndex {
  let index = indexes.get(signature);
  if (index === undefined) {
    index = {
      inputs: new Map(signature.inputs.map((s) => [s.name, s])),
      outputs: new Set(signature.outputs.map((s) => s.name)),
    };
    indexes.set(signature, index);
  }
  return index;
}

/**
 * The refusal of `inputs[index]`'s 64-bit integers, worded from the request's text: an integer
 * literal past 64 bits reads as a double, and a refusal would show that double, not what was sent
 * (2^64 + 1 as 18446744073709552000, 10^23 as 1e+23). Parsed again with long integers kept as
 * spelled, the same check words it with the client's digits. Only on the error path (it costs
 * several times JSON.parse); undefined where the text does not say (a header the transport parsed
 * from elsewhere: gRPC's).
 */
function spelledRefusal(bytes: Buffer, jsonEnd: number, index: number, datatype: DataType, shape: readonly number[], count: number, what: string): unknown {
  let inputs: unknown;
  try {
    inputs = (parseSpellingIntegers(bytes.toString('utf8', 0, jsonEnd)) as { inputs?: unknown } | null)?.inputs;
  } catch {
    return undefined;
  }
  const data = Array.isArray(inputs) && isPlainObject(inputs[index]) ? inputs[index]['data'] : undefined;
  if (data === undefined) return undefined;
  try {
    jsonToTensorData(data, datatype, shape, count, what);
  } catch (err) {
    return err;
  }
  return undefined;
}

function listNames(names: Iterable<string>): string {
  return [...names].map((n) => JSON.stringify(n)).join(', ') || '(none)';
}

/**
 * Fixed-size binary inputs are views into `body`'s memory; the caller must not reuse that buffer.
 * Inputs come back in request order. Throws UmbraError('INVALID_INPUT') naming the bad field.
 */
export function parseInferRequest(body: Uint8Array, opts: ParseInferRequestOptions): InferRequest {
  const { signature } = opts;
  const maxElements = opts.maxElements ?? DEFAULT_MAX_ELEMENTS;
  const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const total = bytes.length;

  let jsonEnd = total;
  if (opts.headerLength !== undefined) {
    const h = opts.headerLength;
    if (!Number.isSafeInteger(h) || h < 1 || h > total) {
      throw invalid('INVALID_INPUT', `an integer between 1 and the body length ${total}`, 'Inference-Header-Content-Length', h);
    }
    jsonEnd = h;
  }

  // A client of the binary extension sends the same header bytes request after request (only
  // the tensors change): the last such header's checked plan is kept per model, so a repeat skips
  // JSON parsing and validation and only reads and checks its tensors.
  const cached = opts.header === undefined && opts.headerLength !== undefined ? plans.get(signature) : undefined;
  if (cached !== undefined && cached.total === total && cached.maxElements === maxElements && cached.header.length === jsonEnd
    && bytes.compare(cached.header, 0, jsonEnd, 0, jsonEnd) === 0) {
    return fromPlan(cached, bytes);
  }

  let root: unknown = opts.header;
  if (root === undefined) {
    try {
      root = parseRequestJson(bytes, jsonEnd);
    } catch (err) {
      throw new UmbraError('INVALID_INPUT', `malformed JSON in the inference request: ${(err as Error).message}`);
    }
  }
  if (!isPlainObject(root)) throw invalid('INVALID_INPUT', 'a JSON object', 'the inference request', root);
  const inexactIntegers = (root as Record<symbol, unknown>)[INEXACT_INTEGERS] === true;

  const request: InferRequest = { parameters: readParameters(root['parameters'], 'parameters') ?? {}, inputs: [] };
  if (root['id'] !== undefined) request.id = readString(root['id'], 'id');
  const binaryDataOutput = readOptionalBoolean(request.parameters['binary_data_output'], 'parameters.binary_data_output');
  if (binaryDataOutput !== undefined) request.binaryDataOutput = binaryDataOutput;
  const requestAllowNan = readOptionalBoolean(request.parameters['allow_nan'], 'parameters.allow_nan') ?? false;

  const index = indexOf(signature);
  const rawInputs = root['inputs'];
  if (!Array.isArray(rawInputs)) throw invalid('INVALID_INPUT', 'an array', 'inputs', rawInputs);

  let cursor = jsonEnd; // next unread byte of the binary section
  let batchSize: number | undefined;
  let batchFrom = '';
  const seen = new Set<string>();
  for (let i = 0; i < rawInputs.length; i++) {
    const raw: unknown = rawInputs[i];
    if (!isPlainObject(raw)) throw invalid('INVALID_INPUT', 'an object', `inputs[${i}]`, raw);
    const name = readString(raw['name'], `inputs[${i}].name`);
    const what = `input ${JSON.stringify(name)}`;
    const spec = index.inputs.get(name);
    if (spec === undefined) {
      throw badInput(`expected one of the inputs ${listNames(index.inputs.keys())} of model "${signature.name}" for inputs[${i}].name but received ${JSON.stringify(name)}`);
    }
    if (seen.has(name)) throw badInput(`expected each input once but ${what} appears more than once`);
    seen.add(name);

    if (!isDataType(raw['datatype'])) throw invalid('INVALID_INPUT', 'an OIP datatype (BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES)', `${what} datatype`, raw['datatype']);
    const datatype = checkDatatype(raw['datatype'], spec, `${what} datatype`);
    const shape = readShape(raw['shape'], `${what} shape`);
    checkShapeAgainstSpec(shape, spec, signature.maxBatchSize, what);
    if (signature.maxBatchSize > 0) {
      if (batchSize === undefined) {
        batchSize = shape[0]!;
        batchFrom = what;
      } else if (shape[0] !== batchSize) {
        throw badInput(`expected batch size ${batchSize} (as ${batchFrom}) for ${what} but received ${shape[0]}`);
      }
    }
    const count = countElements(shape, what, maxElements);
    const parameters = readParameters(raw['parameters'], `${what} parameters`);
    const allowNan = allowNanFor(parameters, requestAllowNan, what);

    const binarySize = parameters?.['binary_data_size'];
    const shared = readSharedRef(parameters, what);
    let tensor: Tensor;
    if (shared !== undefined) {
      if (raw['data'] !== undefined || binarySize !== undefined) {
        throw badInput(`expected the tensor in shared memory or in the request for ${what} but received both (parameters.shared_memory_region with ${raw['data'] !== undefined ? 'data' : 'parameters.binary_data_size'})`);
      }
      if (opts.sharedMemory === undefined) {
        throw badInput(`expected no shared memory for ${what}: this server takes tensors only in the request (start it with --shared-memory on to use registered regions)`);
      }
      if (datatype !== 'BYTES' && shared.byteSize !== count * bytesPerElement(datatype)) {
        throw badInput(`expected shared_memory_byte_size ${count * bytesPerElement(datatype)} for ${what} (${count} ${datatype} elements of ${bytesPerElement(datatype)} bytes) but received ${shared.byteSize}`);
      }
      const bytes = opts.sharedMemory.read(shared, what);
      tensor = { name, datatype, shape, data: binaryToTensorData(bytes, 0, shared.byteSize, datatype, count, what) };
    } else if (binarySize !== undefined) {
      if (typeof binarySize !== 'number' || !Number.isSafeInteger(binarySize) || binarySize < 0) {
        throw invalid('INVALID_INPUT', 'a non-negative integer', `${what} parameters.binary_data_size`, binarySize);
      }
      if (raw['data'] !== undefined) throw badInput(`expected either data or parameters.binary_data_size for ${what} but received both`);
      if (binarySize > total - cursor) {
        throw badInput(`expected ${binarySize} bytes of binary data for ${what} (its binary_data_size) but only ${total - cursor} remain after the JSON header`);
      }
      const data = binaryToTensorData(bytes, cursor, binarySize, datatype, count, what);
      cursor += binarySize;
      tensor = { name, datatype, shape, data };
    } else {
      if (raw['data'] === undefined) throw badInput(`expected data or parameters.binary_data_size for ${what} but received neither`);
      let data: TensorData;
      try {
        data = jsonToTensorData(raw['data'], datatype, shape, count, what, inexactIntegers);
      } catch (err) {
        throw (datatype === 'INT64' || datatype === 'UINT64' ? spelledRefusal(bytes, jsonEnd, i, datatype, shape, count, what) : undefined) ?? err;
      }
      tensor = { name, datatype, shape, data };
    }
    checkFinite(tensor.data, datatype, what, allowNan);
    if (parameters !== undefined) tensor.parameters = parameters;
    request.inputs.push(tensor);
  }
  if (cursor !== total) {
    throw badInput(`expected no bytes after the binary tensor data but received ${total - cursor} that no input's binary_data_size accounts for`);
  }
  for (const spec of signature.inputs) {
    if (!seen.has(spec.name)) throw badInput(`expected input ${JSON.stringify(spec.name)} of model "${signature.name}" but the request does not have it`);
  }

  if (root['outputs'] !== undefined) {
    // An empty list asks for no output in particular, as Triton and gRPC (where an empty repeated
    // field is no field) read it: every output is answered.
    const outputs = readRequestedOutputs(root['outputs'], index, signature.name, opts.sharedMemory);
    if (outputs.length > 0) request.outputs = outputs;
  }
  if (opts.header === undefined && opts.headerLength !== undefined && jsonEnd <= MAX_PLANNED_HEADER_BYTES) {
    const plan = planOf(request, bytes, jsonEnd, total, maxElements);
    if (plan !== undefined) plans.set(signature, plan);
  }
  return request;
}

/** Headers up to this size are remembered (a tensor's worth of JSON data is never planned). */
const MAX_PLANNED_HEADER_BYTES = 4096;

/** What a checked binary-only request header says, kept to check the next identical one. */
interface RequestPlan {
  /** The header's bytes (a copy). */
  header: Buffer;
  /** Body length it was checked against (the binary sizes must account for every byte). */
  total: number;
  maxElements: number;
  id: string | undefined;
  parameters: Record<string, unknown>;
  binaryDataOutput: boolean | undefined;
  outputs: RequestedOutput[] | undefined;
  inputs: { name: string; datatype: Tensor['datatype']; shape: number[]; count: number; size: number; what: string; allowNan: boolean; parameters: Record<string, unknown> | undefined }[];
}

const plans = new WeakMap<ModelSignature, RequestPlan>();

/** The plan of a request just checked, or undefined when a tensor came as JSON data. */
function planOf(request: InferRequest, bytes: Buffer, jsonEnd: number, total: number, maxElements: number): RequestPlan | undefined {
  const inputs: RequestPlan['inputs'] = [];
  const requestAllowNan = request.parameters['allow_nan'] === true;
  for (const t of request.inputs) {
    const size = t.parameters?.['binary_data_size'];
    if (typeof size !== 'number') return undefined;
    const what = `input ${JSON.stringify(t.name)}`;
    inputs.push({ name: t.name, datatype: t.datatype, shape: t.shape.slice(), count: t.data.length, size, what, allowNan: allowNanFor(t.parameters, requestAllowNan, what), parameters: t.parameters && { ...t.parameters } });
  }
  return {
    header: Buffer.from(bytes.subarray(0, jsonEnd)), total, maxElements, id: request.id, parameters: { ...request.parameters },
    binaryDataOutput: request.binaryDataOutput, outputs: request.outputs && copyOutputs(request.outputs), inputs,
  };
}

/** A request from a known header: fresh objects around this body's tensors, checked as a full parse checks them. */
function fromPlan(plan: RequestPlan, bytes: Buffer): InferRequest {
  const request: InferRequest = { parameters: { ...plan.parameters }, inputs: [] };
  if (plan.id !== undefined) request.id = plan.id;
  if (plan.binaryDataOutput !== undefined) request.binaryDataOutput = plan.binaryDataOutput;
  let cursor = plan.header.length;
  for (const p of plan.inputs) {
    const data = binaryToTensorData(bytes, cursor, p.size, p.datatype, p.count, p.what);
    cursor += p.size;
    checkFinite(data, p.datatype, p.what, p.allowNan);
    const tensor: Tensor = { name: p.name, datatype: p.datatype, shape: p.shape.slice(), data };
    if (p.parameters !== undefined) tensor.parameters = { ...p.parameters };
    request.inputs.push(tensor);
  }
  if (plan.outputs !== undefined) request.outputs = copyOutputs(plan.outputs);
  return request;
}

function copyOutputs(outputs: RequestedOutput[]): RequestedOutput[] {
  return outputs.map((o) => (o.parameters !== undefined ? { ...o, parameters: { ...o.parameters } } : { ...o }));
}

function readRequestedOutputs(value: unknown, index: SignatureIndex, model: string, sharedMemory: SharedMemoryTable | undefined): RequestedOutput[] {
  if (!Array.isArray(value)) throw invalid('INVALID_INPUT', 'an array', 'outputs', value);
  const outputs: RequestedOutput[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < value.length; i++) {
    const raw: unknown = value[i];
    if (!isPlainObject(raw)) throw invalid('INVALID_INPUT', 'an object', `outputs[${i}]`, raw);
    const name = readString(raw['name'], `outputs[${i}].name`);
    if (!index.outputs.has(name)) {
      throw badInput(`expected one of the outputs ${listNames(index.outputs)} of model "${model}" for outputs[${i}].name but received ${JSON.stringify(name)}`);
    }
    if (seen.has(name)) throw badInput(`expected each output once but output ${JSON.stringify(name)} is requested more than once`);
    seen.add(name);
    const out: RequestedOutput = { name };
    const parameters = readParameters(raw['parameters'], `output ${JSON.stringify(name)} parameters`);
    if (parameters !== undefined) {
      out.parameters = parameters;
      const binary = readOptionalBoolean(parameters['binary_data'], `output ${JSON.stringify(name)} parameters.binary_data`);
      if (binary !== undefined) out.binaryData = binary;
      const classification = readClassification(parameters['classification'], `output ${JSON.stringify(name)} parameters.classification`);
      if (classification !== undefined) out.classification = classification;
      const what = `output ${JSON.stringify(name)}`;
      const shared = readSharedRef(parameters, what);
      if (shared !== undefined) {
        if (sharedMemory === undefined) {
          throw badInput(`expected no shared memory for ${what}: this server answers only in the body (start it with --shared-memory on to use registered regions)`);
        }
        // Checked now, so a request naming an unknown region fails before it runs.
        sharedMemory.resolve(shared, what);
        out.sharedMemory = shared;
      }
    }
    outputs.push(out);
  }
  return outputs;
}

/**
 * Which outputs to answer as binary: an output's own `binary_data` wins, otherwise the
 * request-level `binary_data_output` applies. Feed the result to `encodeInferResponse`.
 */
export function binaryOutputsFor(request: InferRequest): Set<string> | 'all' | 'none' {
  const byDefault = request.binaryDataOutput === true;
  if (request.outputs === undefined) return byDefault ? 'all' : 'none';
  const names = new Set<string>();
  for (const o of request.outputs) if (o.sharedMemory === undefined && (o.binaryData ?? byDefault)) names.add(o.name);
  return names.size === 0 ? 'none' : names;
}
