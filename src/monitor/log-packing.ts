// Predictions packed into a few flat arrays before they cross to the writer thread: cloning
// thousands of small objects and typed arrays cost the serving thread far more than copying
// their numbers into one Float32Array / Float64Array.
import type { Tensor } from '../protocol/types.js';
import type { PredictionColumns } from './log-store.js';
import { encodePackedTensors, PACKED_F32, PACKED_F64, PACKED_I64, PACKED_U64 } from './tensor-blob.js';
import { summarizeTensor, type TensorSummary } from './tensor-summary.js';
import { StringTable } from '../string-table.js';
import { halfArrayToFloat32 } from '../protocol/half.js';

export interface PackedPredictions {
  rows: number;
  /** The ids end to end (one string clones far cheaper than a thousand); row i's ends at idEnds[i]. */
  idText: string;
  idEnds: Int32Array;
  /** Per row: index into texts of its model, version and role. */
  model: Int32Array;
  version: Int32Array;
  role: Int32Array;
  texts: string[];
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
  /** FP32 tensors stay FP32 (half the bytes, and they format faster). */
  values32: Float32Array;
  /** Per tensor: PACKED_F64, PACKED_F32 (in values32), PACKED_I64 or PACKED_U64 (64-bit words in values' memory). */
  tensorKind: Uint8Array;
  /**
   * Tensors whose values travel in the header (tensorLength = -1 - index): a BYTES tensor's
   * strings, or the summary of a tensor over the packer's value cap.
   */
  strings: (string[] | TensorSummary)[];
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

/** A typed array that doubles when full. */
class Grow<T extends Float64Array | Float32Array | Int32Array | Uint8Array> {
  data: T;
  length = 0;
  constructor(private readonly make: (n: number) => T, initial: number) {
    this.data = make(initial);
  }
  reserve(n: number): void {
    if (this.length + n <= this.data.length) return;
    let size = this.data.length * 2;
    while (size < this.length + n) size *= 2;
    const next = this.make(size);
    next.set(this.data.subarray(0, this.length) as never);
    this.data = next;
  }
  push(v: number): void {
    this.reserve(1);
    this.data[this.length++] = v;
  }
  /** An exact-size copy (its buffer is transferred to the writer). */
  take(): T {
    return this.data.slice(0, this.length) as T;
  }
}

/**
 * Copies each prediction's metadata and tensor values into flat arrays as it is answered, so
 * the request and answer objects die young instead of being promoted by the garbage collector
 * while they wait for the next flush.
 */
export class PredictionPacker {
  private ids: string[] = [];
  private idEnds = new Grow((n) => new Int32Array(n), 256);
  private idLength = 0;
  private model = new Grow((n) => new Int32Array(n), 256);
  private version = new Grow((n) => new Int32Array(n), 256);
  private role = new Grow((n) => new Int32Array(n), 256);
  private texts = new StringTable();
  private strings: (string[] | TensorSummary)[] = [];
  private names = new StringTable();
  private timeMs = new Grow((n) => new Float64Array(n), 256);
  private latencyMs = new Grow((n) => new Float64Array(n), 256);
  private inputsAt = new Grow((n) => new Int32Array(n), 256);
  private inputsCount = new Grow((n) => new Int32Array(n), 256);
  private outputsAt = new Grow((n) => new Int32Array(n), 256);
  private outputsCount = new Grow((n) => new Int32Array(n), 256);
  private tensorName = new Grow((n) => new Int32Array(n), 1024);
  private tensorRank = new Grow((n) => new Int32Array(n), 1024);
  private tensorDimsAt = new Grow((n) => new Int32Array(n), 1024);
  private tensorValuesAt = new Grow((n) => new Float64Array(n), 1024);
  private tensorLength = new Grow((n) => new Int32Array(n), 1024);
  private tensorKind = new Grow((n) => new Uint8Array(n), 1024);
  private dims = new Grow((n) => new Int32Array(n), 2048);
  private values = new Grow((n) => new Float64Array(n), 4096);
  private values32 = new Grow((n) => new Float32Array(n), 16384);

  /** Tensors with more values than this are kept as a summary (tensor-summary.ts); 0 keeps every value. */
  constructor(private readonly maxValues = 0) {}

  get rows(): number {
    return this.ids.length;
  }

  /**
   * Copies one prediction in; its inputs only when `withInputs` (and it has them). Returns how
   * many of its tensors were over the value cap and kept as summaries.
   */
  add(r: PackSource, withInputs = true): number {
    let summarized = 0;
    this.ids.push(r.id);
    this.idLength += r.id.length;
    this.idEnds.push(this.idLength);
    this.model.push(this.text(r.model));
    this.version.push(this.text(r.version));
    this.role.push(this.text(r.role));
    this.timeMs.push(r.timeMs);
    this.latencyMs.push(r.latencyMs);
    if (withInputs && r.inputs) {
      this.inputsAt.push(this.tensorName.length);
      this.inputsCount.push(r.inputs.length);
      summarized += this.put(r.inputs);
    } else {
      this.inputsAt.push(-1);
      this.inputsCount.push(0);
    }
    this.outputsAt.push(this.tensorName.length);
    this.outputsCount.push(r.outputs.length);
    return summarized + this.put(r.outputs);
  }

  private text(value: string): number {
    return this.texts.id(value);
  }

  private put(list: readonly Tensor[]): number {
    let summarized = 0;
    for (const t of list) {
      this.tensorName.push(this.names.id(t.name));
      this.tensorRank.push(t.shape.length);
      this.tensorDimsAt.push(this.dims.length);
      for (const d of t.shape) this.dims.push(d);
      const data = t.data;
      if (this.maxValues > 0 && data.length > this.maxValues) {
        this.tensorLength.push(-1 - this.strings.length);
        this.strings.push(summarizeTensor(t.datatype, data));
        this.tensorValuesAt.push(0);
        this.tensorKind.push(PACKED_F64);
        summarized += 1;
      } else if (Array.isArray(data)) {
        this.tensorLength.push(-1 - this.strings.length);
        this.strings.push(data.slice() as string[]);
        this.tensorValuesAt.push(0);
        this.tensorKind.push(PACKED_F64);
      } else if (data instanceof Float32Array || t.datatype === 'FP16') {
        // FP16's half-float bits are logged as the values they stand for (each exact in float32),
        // as the JSON API answers them: the bits as numbers (15360 for 1.0) are no data to retrain on.
        const floats = t.datatype === 'FP16' ? halfArrayToFloat32(data as Uint16Array) : (data as Float32Array);
        this.tensorKind.push(PACKED_F32);
        this.tensorValuesAt.push(this.values32.length);
        this.tensorLength.push(floats.length);
        this.values32.reserve(floats.length);
        this.values32.data.set(floats, this.values32.length);
        this.values32.length += floats.length;
      } else if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
        // INT64 / UINT64 as their exact words, in the doubles' memory (8 bytes either way).
        this.tensorKind.push(data instanceof BigInt64Array ? PACKED_I64 : PACKED_U64);
        this.tensorValuesAt.push(this.values.length);
        this.tensorLength.push(data.length);
        this.values.reserve(data.length);
        const words = this.values.data;
        new Uint8Array(words.buffer, words.byteOffset + this.values.length * 8, data.length * 8).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        this.values.length += data.length;
      } else {
        const values = data as ArrayLike<number | bigint>;
        this.tensorKind.push(PACKED_F64);
        this.tensorValuesAt.push(this.values.length);
        this.tensorLength.push(values.length);
        this.values.reserve(values.length);
        const out = this.values.data;
        let at = this.values.length;
        if (typeof values[0] === 'bigint') for (let i = 0; i < values.length; i++) out[at++] = Number(values[i]);
        else for (let i = 0; i < values.length; i++) out[at++] = values[i] as number;
        this.values.length = at;
      }
    }
    return summarized;
  }

  /** Everything added so far, as flat arrays; the packer starts empty again. */
  take(): PackedPredictions {
    const p: PackedPredictions = {
      rows: this.ids.length,
      idText: this.ids.join(''), idEnds: this.idEnds.take(),
      model: this.model.take(), version: this.version.take(), role: this.role.take(), texts: this.texts.list,
      timeMs: this.timeMs.take(), latencyMs: this.latencyMs.take(),
      inputsAt: this.inputsAt.take(), inputsCount: this.inputsCount.take(), outputsAt: this.outputsAt.take(), outputsCount: this.outputsCount.take(),
      tensorName: this.tensorName.take(), tensorRank: this.tensorRank.take(), tensorDimsAt: this.tensorDimsAt.take(),
      tensorValuesAt: this.tensorValuesAt.take(), tensorLength: this.tensorLength.take(), tensorKind: this.tensorKind.take(),
      names: this.names.list, dims: this.dims.take(), values: this.values.take(), values32: this.values32.take(), strings: this.strings,
    };
    this.ids = [];
    this.idLength = 0;
    this.texts = new StringTable();
    this.strings = [];
    this.names = new StringTable();
    for (const g of [this.idEnds, this.model, this.version, this.role, this.timeMs, this.latencyMs, this.inputsAt, this.inputsCount, this.outputsAt, this.outputsCount, this.tensorName, this.tensorRank, this.tensorDimsAt, this.tensorValuesAt, this.tensorLength, this.tensorKind, this.dims, this.values, this.values32]) g.length = 0;
    return p;
  }
}

/** Packs a list at once (tests, and callers that already hold the rows). */
export function packPredictions(rows: readonly PackSource[], maxValues = 0): PackedPredictions {
  const packer = new PredictionPacker(maxValues);
  for (const r of rows) packer.add(r);
  return packer.take();
}

/** The writer's side: the batch as insertable columns, tensors encoded (tensor-blob.ts). */
export function packedColumns(p: PackedPredictions): PredictionColumns {
  const { inputs, outputs } = encodePackedTensors(p);
  const ids: string[] = new Array(p.rows);
  const models: string[] = new Array(p.rows);
  const versions: string[] = new Array(p.rows);
  const roles: string[] = new Array(p.rows);
  for (let i = 0, start = 0; i < p.rows; i++) {
    const end = p.idEnds[i]!;
    ids[i] = p.idText.slice(start, end);
    start = end;
    models[i] = p.texts[p.model[i]!]!;
    versions[i] = p.texts[p.version[i]!]!;
    roles[i] = p.texts[p.role[i]!]!;
  }
  return { rows: p.rows, ids, models, versions, roles, timeMs: p.timeMs, latencyMs: p.latencyMs, inputs, outputs };
}
