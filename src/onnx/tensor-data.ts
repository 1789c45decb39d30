// Converting between typed arrays and ONNX TensorProto payloads. Payloads are written as
// little-endian raw_data (the ONNX convention) regardless of the host's byte order.
import { closeSync, openSync, readSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { UmbraError } from '../errors.js';
import { liesInside } from '../real-path.js';
import type { DataType } from '../protocol/types.js';
import { datatypeFromElemType, elemTypeFromDatatype, int64ToNumber, onnx, type TensorProto } from './model-io.js';
import type pkg from 'onnx-proto';

/** Datatypes a TensorProto can be built from or read into here. */
export type NumericArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;
export type InitializerDatatype = 'FP32' | 'FP64' | 'INT32' | 'INT64' | 'UINT8' | 'BOOL';

const BYTES_PER_ELEMENT: Record<InitializerDatatype, number> = { FP32: 4, FP64: 8, INT32: 4, INT64: 8, UINT8: 1, BOOL: 1 };

/** A TensorProto holding `values` as little-endian raw_data. */
export function makeTensor(
  name: string,
  datatype: InitializerDatatype,
  dims: readonly number[],
  values: ArrayLike<number> | readonly bigint[] | BigInt64Array,
): TensorProto {
  const count = dims.reduce((a, b) => a * b, 1);
  if (values.length !== count) {
    throw new UmbraError('INTERNAL', `tensor "${name}" has dims [${dims.join(', ')}] (${count} elements) but ${values.length} values`);
  }
  const width = BYTES_PER_ELEMENT[datatype];
  const raw = new Uint8Array(count * width);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < count; i++) {
    const v = values[i] as number | bigint;
    switch (datatype) {
      case 'FP32': view.setFloat32(i * 4, Number(v), true); break;
      case 'FP64': view.setFloat64(i * 8, Number(v), true); break;
      case 'INT32': view.setInt32(i * 4, Number(v), true); break;
      case 'INT64': view.setBigInt64(i * 8, BigInt(v), true); break;
      case 'UINT8': view.setUint8(i, Number(v)); break;
      case 'BOOL': view.setUint8(i, Number(v) ? 1 : 0); break;
    }
  }
  return onnx.TensorProto.create({ name, dims: [...dims], dataType: elemTypeFromDatatype(datatype), rawData: raw });
}

export interface TensorValues {
  datatype: DataType;
  dims: number[];
  data: NumericArray;
}

/**
 * Where a model's external data is read: `dir`, the folder of the model file as named, where each
 * location is resolved; and `realDir`, the folder the model file really lies in. The data must
 * really lie in one of them: a model linked in from elsewhere (Umbra links KServe's
 * `/mnt/models/model.onnx` and the data beside it into its repository) keeps its data beside the
 * file itself, and a link in a model folder to any other file is refused.
 */
export interface ModelFolder {
  dir: string;
  realDir?: string;
}

/**
 * The values of an initializer or Constant tensor. `folder` is needed only for tensors whose
 * bytes are external; their location must stay inside it.
 */
export function tensorValues(tensor: pkg.onnx.ITensorProto, folder?: ModelFolder): TensorValues {
  const name = tensor.name ?? '';
  const datatype = datatypeFromElemType(tensor.dataType ?? 0);
  const dims = (tensor.dims ?? []).map((d, i) => int64ToNumber(d, `dim ${i} of tensor "${name}"`));
  const count = dims.reduce((a, b) => a * b, 1);
  if (datatype !== 'FP32' && datatype !== 'FP64' && datatype !== 'INT32' && datatype !== 'INT64' && datatype !== 'UINT8' && datatype !== 'BOOL') {
    throw new UmbraError('LOAD_FAILED', `tensor "${name}" has element type ${tensor.dataType}, which Umbra cannot read as numbers`);
  }
  let raw: Uint8Array | undefined;
  if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    raw = readExternal(tensor, folder, count * BYTES_PER_ELEMENT[datatype]);
  } else if (tensor.rawData && tensor.rawData.length > 0) {
    raw = tensor.rawData;
  }
  if (raw) return { datatype, dims, data: fromRaw(name, datatype, raw, count) };
  return { datatype, dims, data: fromTypedFields(name, datatype, tensor, count) };
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

function fromRaw(name: string, datatype: InitializerDatatype, raw: Uint8Array, count: number): NumericArray {
  const width = BYTES_PER_ELEMENT[datatype];
  if (raw.length !== count * width) {
    throw new UmbraError('LOAD_FAILED', `tensor "${name}" should hold ${count * width} bytes but holds ${raw.length}`);
  }
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (datatype) {
    case 'FP32': {
      // A byte copy on little-endian hosts: element by element, a 400 MB model took ~10 s.
      if (LITTLE_ENDIAN) {
        const out = new Float32Array(count);
        new Uint8Array(out.buffer).set(raw);
        return out;
      }
      return Float32Array.from({ length: count }, (_, i) => view.getFloat32(i * 4, true));
    }
    case 'FP64': return Float64Array.from({ length: count }, (_, i) => view.getFloat64(i * 8, true));
    case 'INT32': return Int32Array.from({ length: count }, (_, i) => view.getInt32(i * 4, true));
    case 'INT64': {
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getBigInt64(i * 8, true);
      return out;
    }
    case 'UINT8':
    case 'BOOL': return Uint8Array.from(raw);
  }
}

function fromTypedFields(name: string, datatype: InitializerDatatype, tensor: pkg.onnx.ITensorProto, count: number): NumericArray {
  let out: NumericArray;
  switch (datatype) {
    case 'FP32': out = Float32Array.from(tensor.floatData ?? []); break;
    case 'FP64': out = Float64Array.from(tensor.doubleData ?? []); break;
    case 'INT32': out = Int32Array.from(tensor.int32Data ?? []); break;
    case 'UINT8':
    case 'BOOL': out = Uint8Array.from(tensor.int32Data ?? []); break;
    case 'INT64': out = BigInt64Array.from((tensor.int64Data ?? []).map((v, i) => BigInt(int64ToNumber(v, `element ${i} of tensor "${name}"`)))); break;
  }
  if (out.length !== count) throw new UmbraError('LOAD_FAILED', `tensor "${name}" should hold ${count} values but holds ${out.length}`);
  return out;
}

function readExternal(tensor: pkg.onnx.ITensorProto, folder: ModelFolder | undefined, byteLength: number): Uint8Array {
  const name = tensor.name ?? '';
  if (folder === undefined) throw new UmbraError('LOAD_FAILED', `tensor "${name}" is stored externally; its model folder is needed to read it`);
  const entries = new Map((tensor.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = entries.get('location') ?? '';
  const normalized = normalize(location);
  // Refuse paths that escape the model folder: a model file must not read arbitrary files.
  if (!location || isAbsolute(location) || normalized.startsWith('..')) {
    throw new UmbraError('LOAD_FAILED', `tensor "${name}" has external location ${JSON.stringify(location)}, which is not inside the model folder`);
  }
  // A model folder from elsewhere may hold the data file as a link out of it (onnxruntime refuses
  // that too): the weights would be any file the server can read, and a model can answer them.
  const modelDir = folder.dir;
  const path = join(modelDir, normalized);
  if (!liesInside(path, modelDir) && !(folder.realDir !== undefined && liesInside(path, folder.realDir))) {
    throw new UmbraError('LOAD_FAILED', `tensor "${name}" has external location ${JSON.stringify(location)}, which links out of the model folder`);
  }
  const offset = Number(entries.get('offset') ?? 0);
  const out = new Uint8Array(byteLength);
  const fd = openSync(path, 'r');
  try {
    const read = readSync(fd, out, 0, byteLength, offset);
    if (read !== byteLength) throw new UmbraError('LOAD_FAILED', `external data for tensor "${name}" ends after ${read} of ${byteLength} bytes`);
  } finally {
    closeSync(fd);
  }
  return out;
}
