// A batch of predictions packed into a few flat arrays before it crosses to the writer thread:
// cloning thousands of small objects and typed arrays cost the serving thread far more than
// copying their numbers into one Float64Array.
import type { Tensor } from '../protocol/types.js';
import type { LogTensor, PredictionRecord } from './log-store.js';

export interface PackedPredictions {
  rows: number;
  ids: string[];
  models: string[];
  versions: string[];
  roles: string[];
  timeMs: Float64Array;
  latencyMs: Float64Array;
  /** Per row: first tensor index and count for inputs (-1 when not logged) and outputs. */
  inputsAt: Int32Array;
  inputsCount: Int32Array;
  outputsAt: Int32Array;
  outputsCount: Int32Array;
  /** Per tensor: index into names, rank, start into dims, start and length into values. */
  tensorName: Int32Array;
  tensorRank: Int32Array;
  tensorDimsAt: Int32Array;
  tensorValuesAt: Float64Array;
  tensorLength: Int32Array;
  names: string[];
  dims: Int32Array;
  values: Float64Array;
  /** FP32 tensors stay FP32 (half the bytes, and they format faster); tensorIsF32 marks them. */
  values32: Float32Array;
  tensorIsF32: Uint8Array;
  /** BYTES tensors keep their strings here (tensorLength = -1 - index). */
  strings: string[][];
}

export interface PackSource {
  id: string;
  model: string;
  version: string;
  role: string;
  timeMs: number;
  latencyMs: number;
  inputs?: readonly Tensor[];
  outputs: readonly Tensor[];
}

export function packPredictions(rows: readonly PackSource[]): PackedPredictions {
  let tensors = 0;
  let valueCount = 0;
  let value32Count = 0;
  let dimCount = 0;
  for (const r of rows) {
    for (const list of [r.inputs, r.outputs]) {
      if (!list) continue;
      tensors += list.length;
      for (const t of list) {
        dimCount += t.shape.length;
        if (t.data instanceof Float32Array) value32Count += t.data.length;
        else if (!Array.isArray(t.data)) valueCount += t.data.length;
      }
    }
  }
  const n = rows.length;
  const p: PackedPredictions = {
    rows: n,
    ids: new Array<string>(n), models: new Array<string>(n), versions: new Array<string>(n), roles: new Array<string>(n),
    timeMs: new Float64Array(n), latencyMs: new Float64Array(n),
    inputsAt: new Int32Array(n), inputsCount: new Int32Array(n), outputsAt: new Int32Array(n), outputsCount: new Int32Array(n),
    tensorName: new Int32Array(tensors), tensorRank: new Int32Array(tensors), tensorDimsAt: new Int32Array(tensors),
    tensorValuesAt: new Float64Array(tensors), tensorLength: new Int32Array(tensors),
    names: [], dims: new Int32Array(dimCount), values: new Float64Array(valueCount), strings: [],
    values32: new Float32Array(value32Count), tensorIsF32: new Uint8Array(tensors),
  };
  const nameIndex = new Map<string, number>();
  let ti = 0;
  let di = 0;
  let vi = 0;
  let vi32 = 0;
  const put = (list: readonly Tensor[]) => {
    const at = ti;
    for (const t of list) {
      let ni = nameIndex.get(t.name);
      if (ni === undefined) {
        ni = p.names.length;
        p.names.push(t.name);
        nameIndex.set(t.name, ni);
      }
      p.tensorName[ti] = ni;
      p.tensorRank[ti] = t.shape.length;
      p.tensorDimsAt[ti] = di;
      for (const d of t.shape) p.dims[di++] = d;
      if (Array.isArray(t.data)) {
        p.tensorLength[ti] = -1 - p.strings.length;
        p.strings.push(t.data as string[]);
      } else if (t.data instanceof Float32Array) {
        p.tensorIsF32[ti] = 1;
        p.tensorValuesAt[ti] = vi32;
        p.tensorLength[ti] = t.data.length;
        p.values32.set(t.data, vi32);
        vi32 += t.data.length;
      } else {
        const data = t.data as ArrayLike<number | bigint>;
        p.tensorValuesAt[ti] = vi;
        p.tensorLength[ti] = data.length;
        if (typeof data[0] === 'bigint') for (let i = 0; i < data.length; i++) p.values[vi++] = Number(data[i]);
        else {
          p.values.set(data as ArrayLike<number>, vi);
          vi += data.length;
        }
      }
      ti += 1;
    }
    return at;
  };
  rows.forEach((r, i) => {
    p.ids[i] = r.id;
    p.models[i] = r.model;
    p.versions[i] = r.version;
    p.roles[i] = r.role;
    p.timeMs[i] = r.timeMs;
    p.latencyMs[i] = r.latencyMs;
    if (r.inputs) {
      p.inputsAt[i] = put(r.inputs);
      p.inputsCount[i] = r.inputs.length;
    } else p.inputsAt[i] = -1;
    p.outputsAt[i] = put(r.outputs);
    p.outputsCount[i] = r.outputs.length;
  });
  return p;
}

export function unpackPredictions(p: PackedPredictions): PredictionRecord[] {
  const tensor = (i: number): LogTensor => {
    const rank = p.tensorRank[i]!;
    const dimsAt = p.tensorDimsAt[i]!;
    const shape = Array.from(p.dims.subarray(dimsAt, dimsAt + rank));
    const length = p.tensorLength[i]!;
    const name = p.names[p.tensorName[i]!]!;
    if (length < 0) return { name, shape, data: p.strings[-1 - length]! };
    const at = p.tensorValuesAt[i]!;
    return { name, shape, data: (p.tensorIsF32[i] ? p.values32 : p.values).subarray(at, at + length) };
  };
  const list = (at: number, count: number) => Array.from({ length: count }, (_, k) => tensor(at + k));
  const out: PredictionRecord[] = [];
  for (let i = 0; i < p.rows; i++) {
    const r: PredictionRecord = {
      id: p.ids[i]!, model: p.models[i]!, version: p.versions[i]!, role: p.roles[i]!,
      timeMs: p.timeMs[i]!, latencyMs: p.latencyMs[i]!,
      outputs: list(p.outputsAt[i]!, p.outputsCount[i]!),
    };
    if (p.inputsAt[i]! >= 0) r.inputs = list(p.inputsAt[i]!, p.inputsCount[i]!);
    out.push(r);
  }
  return out;
}
