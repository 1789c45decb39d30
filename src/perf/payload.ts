// Request payloads for a model: random (seeded) inputs built from the server's model metadata,
// or inputs read from a file; encoded once, up front, as OIP JSON, Triton binary or WS text.
import { readFileSync } from 'node:fs';
import { FlagError, UmbraError, invalid } from '../errors.js';
import { float32ToHalf, halfToFloat32 } from '../protocol/half.js';
import { isDataType, typedArrayFor } from '../protocol/datatype.js';
import { tensorDataToBinary } from '../protocol/binary-data.js';
import type { DataType, Tensor } from '../protocol/types.js';
export { seededRandom } from '../random.js';
import { seededRandom } from '../random.js';

export type Protocol = 'http' | 'http-binary' | 'ws' | 'grpc' | 'grpc-stream';
export const PROTOCOLS: readonly Protocol[] = ['http', 'http-binary', 'ws', 'grpc', 'grpc-stream'];

/** Whether a protocol speaks gRPC (its --url is the server's gRPC address). */
export function isGrpc(protocol: Protocol): boolean {
  return protocol === 'grpc' || protocol === 'grpc-stream';
}

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelMetadata {
  name: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

/** One request, pre-encoded. `json` is the OIP JSON body; `binary` the Triton binary body; `tensors` each input's raw bytes (gRPC). */
export interface Payload {
  json: string;
  binary: { body: Buffer; headerLength: number };
  /** A tensor with `parameters` naming a shared-memory slice has no bytes here (and no raw entry on gRPC). */
  tensors: { name: string; datatype: DataType; shape: number[]; bytes: Buffer; parameters?: Record<string, unknown> }[];
  /** Outputs asked for (gRPC), with their parameters; absent: every output, in the body. */
  outputs?: { name: string; parameters: Record<string, unknown> }[];
}

export async function fetchModelMetadata(url: string, model: string, signal?: AbortSignal): Promise<ModelMetadata> {
  const target = `${url.replace(/\/$/, '')}/v2/models/${encodeURIComponent(model)}`;
  const init: RequestInit = signal ? { signal } : {};
  let res: Response;
  try {
    res = await fetch(target, init);
  } catch (err) {
    throw new UmbraError('INVALID_ARGUMENT', `could not reach ${target} (${(err as Error).message}); check --url and that the server is running`);
  }
  const text = await res.text();
  if (!res.ok) throw new UmbraError('INVALID_ARGUMENT', `model metadata ${target} answered ${res.status}: ${text.slice(0, 200)}`);
  const body = JSON.parse(text) as Partial<ModelMetadata>;
  if (!Array.isArray(body.inputs)) throw invalid('INVALID_ARGUMENT', 'model metadata with an inputs array', target, body);
  return { name: body.name ?? model, inputs: body.inputs, outputs: Array.isArray(body.outputs) ? body.outputs : [] };
}

/** Shapes given per input (`--shape NAME:DIMS`), as perf_analyzer takes them: without the batch dim, or whole. */
export type InputShapes = ReadonlyMap<string, readonly number[]>;

/**
 * Parses `--shape` values (`NAME:D1,D2,...`, the name may itself hold colons) into InputShapes.
 * Checked against the model when payloads are made (checkShapes).
 */
/**
 * A flag's value that is malformed or does not fit the model (--shape, the --input-data file): the
 * command line is at fault, not the server, so `umbra perf` reports it as a usage error (exit 2)
 * rather than a failed run.
 */
export { FlagError };

export function parseShapes(values: readonly string[]): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const value of values) {
    const at = value.lastIndexOf(':');
    const name = at > 0 ? value.slice(0, at) : '';
    const dims = at > 0 ? value.slice(at + 1).split(',') : [];
    if (name === '' || dims.length === 0 || dims.some((d) => !/^[1-9]\d{0,8}$/.test(d.trim()))) {
      throw new FlagError(`--shape ${JSON.stringify(value)}: expected NAME:DIMS, the input's name and its dims as positive integers (e.g. --shape input_ids:128, or input_ids:1,128 with the batch dim)`);
    }
    shapes.set(name, dims.map((d) => Number(d)));
  }
  return shapes;
}

/**
 * An input's shape as sent: a leading -1 is the batch dim (batchSize rows); other free dims take
 * the --shape given for the input, else 1 (see freeDimsDefaulted).
 */
export function concreteShape(meta: { name: string; shape: readonly number[] }, batchSize: number, shapes?: InputShapes): number[] {
  const given = shapes?.get(meta.name);
  if (given) {
    const batched = meta.shape[0] === -1 && given.length === meta.shape.length - 1;
    const shape = batched ? [batchSize, ...given] : [...given];
    if (shape.length !== meta.shape.length) {
      throw new FlagError(`--shape ${meta.name}:${given.join(',')} gives ${given.length} dims, but input ${meta.name} has shape [${meta.shape.join(', ')}]; give ${meta.shape[0] === -1 ? `the ${dimsWord(meta.shape.length - 1)} after the batch dim (the batch size is a flag of its own), or all ${meta.shape.length}` : `its ${dimsWord(meta.shape.length)}`}`);
    }
    meta.shape.forEach((d, i) => {
      if (d >= 0 && shape[i] !== d) throw new FlagError(`--shape ${meta.name}:${given.join(',')}: dim ${i} of input ${meta.name} is fixed at ${d} (shape [${meta.shape.join(', ')}])`);
    });
    return shape;
  }
  return meta.shape.map((d, i) => (d >= 0 ? d : i === 0 ? batchSize : 1));
}

const dimsWord = (n: number) => `${n} dim${n === 1 ? '' : 's'}`;

/** Checks every --shape names an input of the model (its shape is checked as payloads are made). */
export function checkShapes(meta: { inputs: readonly { name: string }[] }, shapes: InputShapes): void {
  for (const name of shapes.keys()) {
    if (!meta.inputs.some((m) => m.name === name)) throw new FlagError(invalid('INVALID_ARGUMENT', `one of the model inputs (${meta.inputs.map((m) => m.name).join(', ')})`, `the input named by --shape`, name).message);
  }
}

/**
 * Inputs with a free dim past the batch dim that no --shape sets: they are sent with 1 there (a
 * sequence of one token), which measures a model unlike the one users send; perf says so.
 */
export function freeDimsDefaulted<T extends { name: string; shape: readonly number[] }>(meta: { inputs: readonly T[] }, shapes?: InputShapes): T[] {
  return meta.inputs.filter((m) => !shapes?.has(m.name) && m.shape.some((d, i) => d < 0 && i > 0));
}

function datatypeOf(meta: TensorMetadata): DataType {
  if (!isDataType(meta.datatype)) throw invalid('INVALID_ARGUMENT', 'an OIP datatype', `input ${meta.name} datatype`, meta.datatype);
  return meta.datatype;
}

function randomTensor(meta: TensorMetadata, batchSize: number, random: () => number, shapes?: InputShapes): Tensor {
  const datatype = datatypeOf(meta);
  const shape = concreteShape(meta, batchSize, shapes);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = typedArrayFor(datatype, n);
  for (let i = 0; i < n; i++) {
    const r = random();
    if (Array.isArray(data)) data[i] = `s${Math.floor(r * 1e6)}`;
    else if (data instanceof BigInt64Array || data instanceof BigUint64Array) data[i] = BigInt(Math.floor(r * 16));
    else if (datatype === 'FP16') data[i] = float32ToHalf(r);
    else if (data instanceof Float32Array || data instanceof Float64Array) data[i] = r * 16;
    else if (datatype === 'BOOL') data[i] = r < 0.5 ? 0 : 1;
    else data[i] = Math.floor(r * 16);
  }
  return { name: meta.name, datatype, shape, data };
}

function jsonData(t: Tensor): unknown[] {
  const d = t.data;
  if (Array.isArray(d)) return d;
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) return Array.from(d, (v) => Number(v));
  if (t.datatype === 'FP16') return Array.from(d as Uint16Array, (v) => halfToFloat32(v));
  if (t.datatype === 'BOOL') return Array.from(d as Uint8Array, (v) => v !== 0);
  return Array.from(d as ArrayLike<number>);
}

export function encodePayload(inputs: Tensor[]): Payload {
  const json = JSON.stringify({
    inputs: inputs.map((t) => ({ name: t.name, shape: t.shape, datatype: t.datatype, data: jsonData(t) })),
  });
  const blobs = inputs.map((t) => Buffer.from(tensorDataToBinary(t)));
  const header = Buffer.from(JSON.stringify({
    inputs: inputs.map((t, i) => ({ name: t.name, shape: t.shape, datatype: t.datatype, parameters: { binary_data_size: blobs[i]!.byteLength } })),
    parameters: { binary_data_output: true },
  }));
  const tensors = inputs.map((t, i) => ({ name: t.name, datatype: t.datatype, shape: t.shape, bytes: blobs[i]! }));
  return { json, binary: { body: Buffer.concat([header, ...blobs]), headerLength: header.byteLength }, tensors };
}

export function randomPayloads(meta: ModelMetadata, batchSize: number, count: number, seed: number, shapes?: InputShapes): Payload[] {
  const random = seededRandom(seed);
  const out: Payload[] = [];
  for (let i = 0; i < count; i++) out.push(encodePayload(meta.inputs.map((m) => randomTensor(m, batchSize, random, shapes))));
  return out;
}

/**
 * Payloads from a JSON file: an OIP request (`{"inputs": [...]}`), an array of them, or
 * perf_analyzer's form `{"data": [{"NAME": [values] | {"content": [...], "shape": [...]}}]}`.
 */
export function filePayloads(file: string, meta: ModelMetadata, batchSize: number, shapes?: InputShapes): Payload[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new FlagError(`--input-data ${file}: ${(err as Error).message}`);
  }
  const requests: { inputs: { name: string; shape?: number[]; datatype?: string; data: unknown[] }[] }[] = [];
  if (Array.isArray(raw)) requests.push(...(raw as typeof requests));
  else if (raw && typeof raw === 'object' && Array.isArray((raw as { inputs?: unknown }).inputs)) requests.push(raw as (typeof requests)[number]);
  else if (raw && typeof raw === 'object' && Array.isArray((raw as { data?: unknown }).data)) {
    for (const entry of (raw as { data: Record<string, unknown>[] }).data) {
      requests.push({
        inputs: Object.entries(entry).map(([name, v]) => {
          const content = Array.isArray(v) ? v : (v as { content?: unknown[] }).content;
          const shape = Array.isArray(v) ? undefined : (v as { shape?: number[] }).shape;
          if (!Array.isArray(content)) throw new FlagError(invalid('INVALID_ARGUMENT', 'an array or {content, shape}', `--input-data input ${name}`, v).message);
          return shape ? { name, shape, data: content } : { name, data: content };
        }),
      });
    }
  } else throw new FlagError(invalid('INVALID_ARGUMENT', 'an OIP request, an array of them or {"data": [...]}', `--input-data ${file}`, raw).message);
  if (requests.length === 0) throw new FlagError(`--input-data ${file} holds no requests`);
  return requests.map((r) => encodePayload(r.inputs.map((input) => {
    const inputMeta = findInput(meta, input.name, file);
    const datatype = isDataType(input.datatype) ? input.datatype : datatypeOf(inputMeta);
    const flat = (input.data as unknown[]).flat(Infinity);
    const shape = input.shape ?? concreteShape(inputMeta, batchSize, shapes);
    const data = typedArrayFor(datatype, flat.length);
    flat.forEach((v, i) => {
      if (Array.isArray(data)) data[i] = String(v);
      else if (data instanceof BigInt64Array || data instanceof BigUint64Array) data[i] = BigInt(v as number);
      else if (datatype === 'FP16') data[i] = float32ToHalf(Number(v));
      else data[i] = Number(v);
    });
    return { name: input.name, datatype, shape, data };
  })));
}

function findInput(meta: ModelMetadata, name: string, file: string): TensorMetadata {
  const found = meta.inputs.find((m) => m.name === name);
  if (!found) throw new FlagError(invalid('INVALID_ARGUMENT', `one of the model inputs (${meta.inputs.map((m) => m.name).join(', ')})`, `an input name in --input-data ${file}`, name).message);
  return found;
}
