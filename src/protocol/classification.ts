// The classification extension (Triton's): an output requested with `parameters.classification`
// N is answered as its N highest values per row (every value where a row has fewer), each the string
// "<value>:<index>[:<label>]" in a BYTES tensor of shape [rows, N] ([N] for a model that does not
// batch), highest first, labels
// from the output's `label_filename` in the model config.
import { UmbraError } from '../errors.js';
import { halfArrayToFloat32 } from './half.js';
import type { InferRequest, InferResponse, ModelSignature, Tensor } from './types.js';

/** `parameters.classification` of a requested output: a positive integer (gRPC's int64 arrives as text). */
export function readClassification(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) {
    throw new UmbraError('INVALID_INPUT', `expected a positive integer (how many classes to return) for ${what} but received ${JSON.stringify(value)}`);
  }
  return n;
}

/** The top `count` classes of each row of `tensor` (rows along the first dim where `batched`). */
export function classify(tensor: Tensor, count: number, batched: boolean, labels?: readonly string[]): Tensor {
  if (tensor.datatype === 'BYTES') {
    throw new UmbraError('INVALID_INPUT', `output "${tensor.name}" holds strings (BYTES); parameters.classification ranks numbers`);
  }
  // FP16 arrives as its bit patterns: ranked and written as the numbers they stand for.
  const values: ArrayLike<number | bigint> = tensor.datatype === 'FP16' ? halfArrayToFloat32(tensor.data as Uint16Array) : (tensor.data as ArrayLike<number | bigint>);
  const rows = batched ? (tensor.shape[0] ?? 1) : 1;
  const perRow = rows === 0 ? 0 : values.length / rows;
  // More classes than a row has: all of them, as Triton answers (its clients ask a fixed top-k of any model).
  const top = Math.min(count, perRow);
  const data: string[] = [];
  const order = Array.from({ length: perRow }, (_, i) => i);
  for (let r = 0; r < rows; r++) {
    const base = r * perRow;
    // Highest first; equal values keep their index order. NaN ranks last.
    const rank = (i: number) => {
      const v = values[base + i]!;
      return typeof v === 'number' && Number.isNaN(v) ? -Infinity : v;
    };
    const ranked = order.slice().sort((a, b) => {
      const x = rank(a);
      const y = rank(b);
      return x > y ? -1 : x < y ? 1 : a - b;
    });
    for (let k = 0; k < top; k++) {
      const index = ranked[k]!;
      const label = labels?.[index];
      data.push(`${String(values[base + index])}:${index}${label !== undefined && label !== '' ? `:${label}` : ''}`);
    }
  }
  return { name: tensor.name, datatype: 'BYTES', shape: batched ? [rows, top] : [top], data };
}

/**
 * The answer as the client asked for it: outputs requested with `parameters.classification`
 * classified, the rest as they are. The same object where none was (the usual case).
 */
export function withClassification(request: InferRequest, response: InferResponse, signature: ModelSignature): InferResponse {
  const wanted = request.outputs;
  if (!wanted || !wanted.some((o) => o.classification !== undefined)) return response;
  const batched = signature.maxBatchSize > 0;
  const outputs = response.outputs.map((t) => {
    const count = wanted.find((o) => o.name === t.name)?.classification;
    return count === undefined ? t : classify(t, count, batched, signature.outputs.find((s) => s.name === t.name)?.labels);
  });
  const out: InferResponse = { model_name: response.model_name, model_version: response.model_version, outputs };
  if (response.id !== undefined) out.id = response.id;
  if (response.parameters !== undefined) out.parameters = response.parameters;
  return out;
}
