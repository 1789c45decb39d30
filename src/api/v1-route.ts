// KServe's V1 data plane, which is TensorFlow Serving's REST predict API, for clients written
// against either: POST /v1/models/{m}[/versions/{v}]:predict with rows (`instances`) or columns
// (`inputs`), answered with `predictions` or `outputs`. A request is turned into the Open
// Inference Protocol request it stands for and runs on the same path as /v2 infer (validation,
// routing, batching, the hooks); its answer is turned back.
import { UmbraError } from '../errors.js';
import { halfArrayToFloat32 } from '../protocol/half.js';
import { roundedIntegerError } from '../protocol/json-data.js';
import { stringifyExact } from '../protocol/json-bigint.js';
import type { ModelSignature, Tensor, TensorSpec } from '../protocol/types.js';
import type { Umbra } from '../core/umbra.js';
import type { RequestContext } from '../core/hooks.js';
import type { InferBodyOptions } from '../core/front.js';
import type { ApiReply, ApiRequest } from './api.js';

const VERB = ':predict';

/** The model (or version) named by a V1 predict path's last segment, or undefined for another verb. */
export function predictTarget(segment: string): string | undefined {
  return segment.endsWith(VERB) && segment.length > VERB.length ? segment.slice(0, -VERB.length) : undefined;
}

/** Runs a V1 predict request; `body` is the request's parsed JSON object. */
export async function v1Predict(umbra: Umbra, req: ApiRequest, body: Record<string, unknown>, model: string, version?: string, inexactIntegers = false): Promise<ApiReply> {
  // Unversioned: the inputs of the version such requests go to (the policy's primary).
  const signature = (version ? umbra.manager.get(model, version) : umbra.defaultVersion(model)).signature;
  const rows = body.instances !== undefined;
  if (rows === (body.inputs !== undefined)) {
    throw new UmbraError('INVALID_INPUT', 'expected either "instances" (a list of rows) or "inputs" (the inputs as columns) in the request body, not both or neither');
  }
  const tensors = rows ? fromInstances(body.instances, signature) : fromColumns(body.inputs, signature);
  // A body read into doubles after all (lossless-json refused it: a key given twice): re-encoding
  // below would spell the rounded value, so such values are refused.
  if (inexactIntegers) for (const t of tensors) refuseRounded(t);
  const context: RequestContext = { headers: req.headers, transport: 'http' };
  const options: InferBodyOptions = { context };
  if (req.signal) options.signal = req.signal;
  if (req.receivedAt !== undefined) options.receivedAt = req.receivedAt;
  // Integers the body spelled past what a double holds are bigints here, and stay exact.
  const oip = Buffer.from(stringifyExact({ inputs: tensors }));
  const { response } = await umbra.inferBody(model, version, oip, undefined, options);
  const outputs = response.outputs;
  let answer: unknown;
  if (rows) {
    const n = tensors[0]!.shape[0]!;
    // One prediction per instance where every output has a row per instance; a model whose
    // answer is not a row per row (a reduction) answers as a whole.
    const perRow = outputs.every((o) => o.shape[0] === n);
    if (perRow) {
      answer = Array.from({ length: n }, (_, r) => (outputs.length === 1 ? rowOf(outputs[0]!, r, n) : Object.fromEntries(outputs.map((o) => [o.name, rowOf(o, r, n)]))));
    } else {
      answer = outputs.length === 1 ? nested(outputs[0]!) : Object.fromEntries(outputs.map((o) => [o.name, nested(o)]));
    }
  } else {
    answer = outputs.length === 1 ? nested(outputs[0]!) : Object.fromEntries(outputs.map((o) => [o.name, nested(o)]));
  }
  return { status: 200, headers: { 'content-type': 'application/json', 'x-umbra-version': response.model_version }, body: stringifyExact(rows ? { predictions: answer } : { outputs: answer }) };
}

interface OipTensor {
  name: string;
  datatype: string;
  shape: number[];
  data: unknown[];
}

/** A 64-bit integer input's value past 2^53, where the body spelled integers a double rounded (request-json.ts). */
function refuseRounded(t: OipTensor): void {
  if (t.datatype !== 'INT64' && t.datatype !== 'UINT64') return;
  t.data.forEach((v, i) => {
    if (typeof v === 'number' && (v > Number.MAX_SAFE_INTEGER || v < -Number.MAX_SAFE_INTEGER)) throw roundedIntegerError(v, t.datatype as 'INT64' | 'UINT64', `input "${t.name}" element ${i}`);
  });
}

/** Rows: each instance is the single input's value, or an object of every input's value. */
function fromInstances(value: unknown, signature: ModelSignature): OipTensor[] {
  if (!Array.isArray(value) || value.length === 0) throw new UmbraError('INVALID_INPUT', `expected a non-empty list for "instances" but received ${describe(value)}`);
  const single = signature.inputs.length === 1 ? signature.inputs[0]! : undefined;
  return signature.inputs.map((spec) => {
    const values = value.map((instance, i) => {
      const named = isObject(instance);
      if (single && !(named && Object.prototype.hasOwnProperty.call(instance, spec.name))) {
        if (named) throw new UmbraError('INVALID_INPUT', `instances[${i}] is an object without the input "${spec.name}"; give the row itself or {"${spec.name}": row}`);
        return instance;
      }
      if (!named || !Object.prototype.hasOwnProperty.call(instance, spec.name)) {
        throw new UmbraError('INVALID_INPUT', `instances[${i}] has no value for the input "${spec.name}"; each instance of model '${signature.name}' is an object of its inputs: ${signature.inputs.map((s) => s.name).join(', ')}`);
      }
      return (instance as Record<string, unknown>)[spec.name];
    });
    const shape = shapeOf(values[0], `instances[0] "${spec.name}"`);
    // Rows stack on a new first dimension: a model without a batch dimension whose input already
    // has an instance's rank has no room for it (the check would name a shape the client never sent).
    if (signature.maxBatchSize === 0 && shape.length + 1 > spec.dims.length) {
      throw new UmbraError('INVALID_INPUT', `expected "inputs" (the whole tensor) for model '${signature.name}', which has no batch dimension (max_batch_size 0), but received "instances": its rows would give input "${spec.name}" shape [${[values.length, ...shape].join(', ')}] where it takes [${spec.dims.join(', ')}]`);
    }
    const data: unknown[] = [];
    values.forEach((v, i) => {
      const own = shapeOf(v, `instances[${i}] "${spec.name}"`);
      if (own.join() !== shape.join()) {
        throw new UmbraError('INVALID_INPUT', `instances[${i}] has "${spec.name}" of shape [${own.join(', ')}] but instances[0] has [${shape.join(', ')}]; every instance of a request has the same shape`);
      }
      flattenInto(v, data);
    });
    return { name: spec.name, datatype: spec.datatype, shape: [values.length, ...shape], data: data.map((x) => scalar(x, spec)) };
  });
}

/** Columns: the single input's whole value (its batch dim included), or an object of every input's. */
function fromColumns(value: unknown, signature: ModelSignature): OipTensor[] {
  const single = signature.inputs.length === 1 ? signature.inputs[0]! : undefined;
  const named = isObject(value) && (!single || Object.prototype.hasOwnProperty.call(value, single.name));
  if (!named && !single) {
    throw new UmbraError('INVALID_INPUT', `expected "inputs" to be an object of the inputs of model '${signature.name}' (${signature.inputs.map((s) => s.name).join(', ')}) but received ${describe(value)}`);
  }
  return signature.inputs.map((spec) => {
    const v = named ? (value as Record<string, unknown>)[spec.name] : value;
    if (v === undefined) throw new UmbraError('INVALID_INPUT', `"inputs" has no value for the input "${spec.name}"`);
    const data: unknown[] = [];
    flattenInto(v, data);
    return { name: spec.name, datatype: spec.datatype, shape: shapeOf(v, `inputs "${spec.name}"`), data: data.map((x) => scalar(x, spec)) };
  });
}

/** The shape of a nested list (a scalar's is []); ragged lists are refused. */
function shapeOf(value: unknown, what: string): number[] {
  if (!Array.isArray(value)) return [];
  if (value.length === 0) return [0];
  const inner = shapeOf(value[0], what);
  for (let i = 1; i < value.length; i++) {
    if (shapeOf(value[i], what).join() !== inner.join()) throw new UmbraError('INVALID_INPUT', `${what} is a ragged list: its elements differ in shape`);
  }
  return [value.length, ...inner];
}

function flattenInto(value: unknown, out: unknown[]): void {
  if (Array.isArray(value)) for (const v of value) flattenInto(v, out);
  else out.push(value);
}

/** A value as the /v2 JSON form takes it; TF Serving's {"b64": ...} binary strings are refused, saying where they go. */
function scalar(value: unknown, spec: TensorSpec): unknown {
  if (spec.datatype === 'BYTES' && isObject(value) && value.b64 !== undefined) {
    throw new UmbraError('INVALID_INPUT', `input "${spec.name}": binary strings ({"b64": ...}) are not taken over /v1; send them to /v2/models/{m}/infer as binary tensor data`);
  }
  return value;
}

/** Row `r` of an output with `n` rows, as nested lists of its remaining dims. */
function rowOf(tensor: Tensor, r: number, n: number): unknown {
  const values = plain(tensor);
  const per = n === 0 ? 0 : values.length / n;
  return shapeUp(values.slice(r * per, (r + 1) * per), tensor.shape.slice(1));
}

function nested(tensor: Tensor): unknown {
  return shapeUp(plain(tensor), tensor.shape);
}

function shapeUp(values: unknown[], dims: readonly number[]): unknown {
  if (dims.length === 0) return values[0];
  if (dims.length === 1) return values;
  const step = values.length / dims[0]!;
  return Array.from({ length: dims[0]! }, (_, i) => shapeUp(values.slice(i * step, (i + 1) * step), dims.slice(1)));
}

/** An output's values as JSON-ready numbers, booleans and strings (NaN and the infinities as strings, as /v2 writes them). */
function plain(tensor: Tensor): unknown[] {
  const data = tensor.datatype === 'FP16' ? halfArrayToFloat32(tensor.data as Uint16Array) : tensor.data;
  return Array.from(data as ArrayLike<unknown>, (v) => {
    if (typeof v === 'bigint') return v; // written as its digits (stringifyExact)
    if (tensor.datatype === 'BOOL') return v !== 0 && v !== false;
    if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
    return v;
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
