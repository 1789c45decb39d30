// Maps input columns to model inputs and fills batch tensors row by row. A row whose values do
// not fit (not a number, wrong column count, out of range) is rejected with a reason; its slot
// is reused by the next row, so a batch never holds a half-written row.
import { UmbraError } from '../errors.js';
import { describeValue } from '../errors.js';
// From the files behind the protocol index: this runs on reader threads, which need none of the
// request and response code (nor the native addon) the index loads.
import { integerRange, typedArrayFor } from '../protocol/datatype.js';
import { textElementProblem } from '../protocol/validate.js';
import { float32ToHalf, HALF_MAX } from '../protocol/half.js';
import type { DataType, ModelSignature, Tensor, TensorData } from '../protocol/types.js';
import { jsonObject, type InputRecord } from './reader.js';
import { decodeUtf8, fieldAt, firstBadColumn, lineLayout, radixLiteral, readFloatLine, type LineLayout } from './csv-line.js';
import { jsonNumberKey } from './keys.js';

/** `{"input": ["col", ...]}` or `{"input": "col"}` (one column holding the whole row as an array). */
export type ColumnMapping = Record<string, string | string[]>;

interface InputPlan {
  name: string;
  datatype: DataType;
  /** Per-row dims (without the batch dimension). */
  rowDims: number[];
  rowElements: number;
  /** Scalar columns (one element each), or one column holding an array of rowElements values. */
  columns: string[];
  arrayColumn: boolean;
  /**
   * The model's row dims have a free dimension that an array column fills (token ids of any
   * length): each row has its own length, and the job runs rows of one length together.
   */
  variable: boolean;
  /** Values per position along the free dimension (the product of the fixed row dims). */
  perPosition: number;
  /** The model's row dims, the free one -1 (rowDims resolves it with the first row's length, an estimate of a row's size). */
  freeDims: number[];
  /** CSV: the columns' positions in the header. */
  positions: number[];
}

export interface FeaturePlan {
  inputs: InputPlan[];
  /** Undefined: each row's key is its row number (1 for the first data row). */
  keyColumn: string | undefined;
  /** -1 with row-number keys. */
  keyPosition: number;
  /** CSV: how many fields every record must have. */
  width: number;
  /** CSV: the field delimiter of unsplit lines. */
  delimiter: string;
  /** CSV, when every input is FP32/FP64 fed by scalar columns: where each column's number goes. */
  layout: LineLayout | undefined;
  /** Some input's rows vary in length (InputPlan.variable): the builder keeps each row's length. */
  ragged: boolean;
  /** One line a person can check: which columns feed which input. */
  describe(): string;
}

export class RowRejected extends Error {}

/**
 * Builds the plan from the model signature, the file's columns and an optional mapping. Without
 * a key column, each row's key is its row number.
 */
export function planFeatures(signature: ModelSignature, columns: string[], keyColumn: string | undefined, mapping?: ColumnMapping, delimiter = ',', sample?: InputRecord): FeaturePlan {
  const keyPosition = keyColumn === undefined ? -1 : columns.indexOf(keyColumn);
  if (keyColumn !== undefined && keyPosition < 0) {
    throw new UmbraError('INVALID_ARGUMENT', `the key column '${keyColumn}' (--key) is not in the input; its columns are: ${preview(columns)}. `
      + 'Name one of them with --key, or leave --key out to key each row by its row number');
  }
  if (mapping) {
    for (const name of Object.keys(mapping)) {
      if (!signature.inputs.some((s) => s.name === name)) {
        throw new UmbraError('INVALID_ARGUMENT', `the mapping names input '${name}' but model '${signature.name}' has inputs: ${signature.inputs.map((s) => s.name).join(', ')}`);
      }
    }
  }
  const featureColumns = columns.filter((c) => c !== keyColumn);
  const inputs = signature.inputs.map((spec): InputPlan => {
    const rowDims = rowDimsOf(signature, spec.dims, spec.name);
    const fixed = rowDims.every((d) => d >= 0);
    const fixedElements = rowDims.reduce((a, b) => a * Math.max(1, b), 1);
    let chosen: string[] | undefined;
    let arrayColumn = false;
    const mapped = mapping?.[spec.name];
    if (mapped !== undefined) {
      if (typeof mapped === 'string' && !columns.includes(mapped) && mapped.includes('..')) {
        chosen = columnRange(columns, mapped, spec.name);
      } else if (typeof mapped === 'string') {
        chosen = [mapped];
        arrayColumn = !(fixed && fixedElements === 1);
      } else {
        chosen = mapped;
      }
    } else if (columns.includes(spec.name) && spec.name !== keyColumn) {
      chosen = [spec.name];
      arrayColumn = !(fixed && fixedElements === 1);
    } else {
      const indexed = indexedColumns(columns, spec.name);
      if (indexed.length > 0) chosen = indexed;
      else if (signature.inputs.length === 1 && rowDims.length === 1) chosen = soleInputColumns(featureColumns, rowDims[0]!, spec.name);
    }
    if (!chosen || chosen.length === 0) {
      throw new UmbraError('INVALID_ARGUMENT', `no columns for input '${spec.name}' of model '${signature.name}': name a column '${spec.name}', columns '${spec.name}_0', '${spec.name}_1', ..., or pass --mapping FILE`);
    }
    for (const c of chosen) {
      if (!columns.includes(c)) throw new UmbraError('INVALID_ARGUMENT', `the mapping names column '${c}' for input '${spec.name}' but the input has no such column; its columns are: ${preview(columns)}`);
    }
    const positions = chosen.map((c) => columns.indexOf(c));
    // A free dimension filled from an array column (token ids of any length): each row keeps its
    // own length (BatchBuilder); the first record's gives the size a row is planned at (batch
    // sizes under a byte budget, the first buffers).
    const variable = arrayColumn && !fixed;
    let rowElements = arrayColumn ? fixedElements : chosen.length;
    if (variable && sample) {
      const values = sampleArray(sample, chosen[0]!, positions[0]!, delimiter);
      const known = rowDims.filter((d) => d >= 0).reduce((a, b) => a * b, 1);
      if (values && values.length > 0 && values.length % known === 0) rowElements = values.length;
    }
    const resolved = resolveDims(rowDims, rowElements, spec.name, arrayColumn ? undefined : chosen);
    const perPosition = rowDims.filter((d) => d >= 0).reduce((a, b) => a * b, 1);
    return { name: spec.name, datatype: spec.datatype, rowDims: resolved, rowElements, columns: chosen, arrayColumn, variable, perPosition, freeDims: rowDims, positions };
  });
  const used = new Set(inputs.flatMap((p) => p.columns));
  const unused = featureColumns.filter((c) => !used.has(c));
  const floatScalars = inputs.every((p) => !p.arrayColumn && (p.datatype === 'FP32' || p.datatype === 'FP64'));
  const describeInput = (p: InputPlan) => `${p.name} <- ${p.arrayColumn ? `${p.columns[0]} (${p.variable ? `arrays of any length${p.perPosition > 1 ? ` (a multiple of ${p.perPosition})` : ''}: rows of one length run together` : `array of ${p.rowElements}`})` : p.columns.length <= 4 ? p.columns.join(', ') : `${p.columns[0]} .. ${p.columns[p.columns.length - 1]} (${p.columns.length} columns)`}`;
  return {
    inputs,
    keyColumn,
    keyPosition,
    width: columns.length,
    delimiter,
    layout: floatScalars && delimiter.length === 1 ? lineLayout(columns.length, inputs) : undefined,
    ragged: inputs.some((p) => p.variable),
    describe: () => [
      ...inputs.map(describeInput),
      keyColumn === undefined ? 'keys: row numbers (no --key)' : `keys <- ${keyColumn}`,
      ...(unused.length > 0 ? [`not used: ${preview(unused)} (--mapping chooses otherwise)`] : []),
    ].join('; '),
  };
}

/**
 * The columns of a model's only input, one value per column, when nothing names them: every
 * column but the key when their count fits. When there are more (a label, a split marker), the
 * one family of numbered columns (f0..f63, pixel_1..pixel_64) that fits exactly; otherwise the
 * error says which mapping to pass.
 */
function soleInputColumns(candidates: string[], elements: number, input: string): string[] {
  if (elements < 0 || candidates.length === elements) return candidates;
  const families = new Map<string, { index: number; column: string }[]>();
  for (const c of candidates) {
    const m = /^(.*?)(\d+)$/.exec(c);
    if (!m) continue;
    const members = families.get(m[1]!) ?? [];
    members.push({ index: Number(m[2]), column: c });
    families.set(m[1]!, members);
  }
  const fitting = [...families.values()].filter((members) => {
    if (members.length !== elements) return false;
    const sorted = members.map((m) => m.index).sort((a, b) => a - b);
    return sorted.every((v, i) => v === sorted[0]! + i);
  });
  if (fitting.length === 1) return fitting[0]!.sort((a, b) => a.index - b.index).map((m) => m.column);
  if (candidates.length < elements) {
    throw new UmbraError('INVALID_ARGUMENT', `input '${input}' takes ${elements} values per row but the input has only ${candidates.length} columns besides the key: ${preview(candidates)}`);
  }
  const first = candidates.slice(0, elements);
  const suggestion = JSON.stringify({ [input]: `${first[0]}..${first[first.length - 1]}` });
  throw new UmbraError('INVALID_ARGUMENT', `input '${input}' takes ${elements} values per row but the input has ${candidates.length} columns besides the key `
    + `(${preview(candidates)}), and Umbra cannot tell which ${elements} to use. Name them with --mapping, e.g. --mapping '${suggestion}' for the first ${elements} in file order `
    + '(a JSON object, or a file holding one, from input name to a column range "first..last" or a list of columns)');
}

function rowDimsOf(signature: ModelSignature, dims: number[], name: string): number[] {
  if (signature.maxBatchSize > 0) return dims;
  // A model without Triton batching may still have a free leading dimension to batch along; with
  // a leading 1 (a batch-of-one export) the job runs it a row at a time (job.ts, rowRunsReason).
  if (dims[0] === -1 || dims[0] === 1) return dims.slice(1);
  throw new UmbraError('INVALID_ARGUMENT', `model '${signature.name}' input '${name}' has dims [${dims.join(', ')}] and max_batch_size 0: a job feeds a model its rows, one run each or many, which needs a first dim of 1 or a free one`);
}

function resolveDims(rowDims: number[], elements: number, name: string, columns?: string[]): number[] {
  const free = rowDims.filter((d) => d < 0).length;
  const fixed = rowDims.filter((d) => d >= 0).reduce((a, b) => a * b, 1);
  if (free === 0) {
    if (fixed !== elements) {
      throw new UmbraError('INVALID_ARGUMENT', `input '${name}' takes ${fixed} values per row (dims [${rowDims.join(', ')}]) but ${columns ? `${columns.length} columns are mapped to it (${preview(columns)})` : `the array column holds ${elements}`}; `
        + `name its columns with --mapping, e.g. --mapping '${JSON.stringify({ [name]: 'first..last' })}'`);
    }
    return rowDims;
  }
  if (free > 1 || elements % fixed !== 0) throw new UmbraError('INVALID_ARGUMENT', `cannot fit ${elements} columns into input '${name}' with dims [${rowDims.join(', ')}]; pass --mapping FILE`);
  return rowDims.map((d) => (d < 0 ? elements / fixed : d));
}

/** Columns `name_0, name_1, ...` (or `name.0`, `name[0]`), ordered by their index. */
function indexedColumns(columns: string[], name: string): string[] {
  const found: [number, string][] = [];
  for (const c of columns) {
    if (!c.startsWith(name)) continue;
    const m = /^(?:_|\.|\[)(\d+)\]?$/.exec(c.slice(name.length));
    if (m) found.push([Number(m[1]), c]);
  }
  found.sort((a, b) => a[0] - b[0]);
  return found.every(([i], k) => i === k) ? found.map(([, c]) => c) : [];
}

/**
 * An array column's values in one record, flattened: a JSON array (JSON Lines), or a CSV field
 * holding one. Undefined when the value is not an array; throws RowRejected for a field that
 * starts like an array but is not JSON.
 */
function arrayOf(value: unknown, column: string): unknown[] | undefined {
  if (typeof value === 'string' && value.trimStart().startsWith('[')) {
    try {
      value = JSON.parse(value);
    } catch {
      throw new RowRejected(`expected a JSON array for column '${column}' but received ${describeValue(value)}`);
    }
  }
  return Array.isArray(value) ? value.flat(Infinity) as unknown[] : undefined;
}

/** The plan's sample record (the input's first): its array in `column`, if it holds one. */
function sampleArray(record: InputRecord, column: string, position: number, delimiter: string): unknown[] | undefined {
  let value: unknown;
  if (record.bytes !== undefined) value = decodeUtf8(record.bytes, record.start!, record.end!).split(delimiter)[position];
  else if (record.fields) value = record.fields[position];
  else {
    const object = record.object ?? (record.json !== undefined ? jsonObject(record.json) : undefined);
    value = typeof object === 'object' ? object[column] : undefined;
  }
  try {
    return arrayOf(value, column);
  } catch {
    return undefined;
  }
}

/** `first..last`: every column from first to last in file order. */
function columnRange(columns: string[], range: string, input: string): string[] {
  const [first, last] = range.split('..') as [string, string];
  const a = columns.indexOf(first);
  const b = columns.indexOf(last);
  if (a < 0 || b < a) throw new UmbraError('INVALID_ARGUMENT', `the mapping range '${range}' for input '${input}' does not name two columns of the input in file order; its columns are: ${preview(columns)}`);
  return columns.slice(a, b + 1);
}

function preview(columns: string[]): string {
  return columns.length <= 12 ? columns.join(', ') : `${columns.slice(0, 10).join(', ')}, ... (${columns.length} in all)`;
}

/** Batch tensors of a fixed capacity; `add` writes one row into the next free slot. */
export class BatchBuilder {
  readonly data: TensorData[];
  rows = 0;
  /** Per input: where the next row starts (for readFloatLine). */
  private readonly bases: Int32Array;
  /** A ragged plan's variable inputs: values used, and each row's count of values. */
  private readonly used: number[];
  private readonly lengths: number[][];
  /** The row being added: its variable inputs' counts of values (kept only once the row is whole). */
  private readonly pending: number[];

  constructor(private readonly plan: FeaturePlan, readonly capacity: number) {
    this.data = plan.inputs.map((p) => typedArrayFor(p.datatype, capacity * p.rowElements));
    this.bases = new Int32Array(plan.inputs.length);
    this.used = plan.inputs.map(() => 0);
    this.lengths = plan.inputs.map(() => []);
    this.pending = plan.inputs.map(() => 0);
  }

  /** Per input, each row's count of values (a ragged plan's; fixed inputs give their rowElements). */
  rowLengths(): Int32Array[] {
    return this.plan.inputs.map((p, j) => (p.variable ? Int32Array.from(this.lengths[j]!) : new Int32Array(this.rows).fill(p.rowElements)));
  }

  /** Room for `more` values of variable input j past those used. */
  private reserve(j: number, more: number): TensorData {
    const data = this.data[j]!;
    const need = this.used[j]! + more;
    if (Array.isArray(data) || data.length >= need) return data;
    const grown = typedArrayFor(this.plan.inputs[j]!.datatype, Math.max(need, data.length * 2)) as Float32Array;
    grown.set((data as Float32Array).subarray(0, this.used[j]!));
    this.data[j] = grown;
    return grown;
  }

  /** The record's key (`row`, its row number, when the plan has no key column), or throws RowRejected. */
  static keyOf(plan: FeaturePlan, record: InputRecord, row: number): string {
    if (record.error) throw new RowRejected(record.error);
    if (record.object === undefined && record.json !== undefined) {
      const object = jsonObject(record.json);
      if (typeof object === 'string') throw new RowRejected(object);
      record.object = object;
    }
    if (plan.keyColumn === undefined) return String(row);
    let raw: unknown;
    if (record.bytes !== undefined) {
      raw = fieldAt(record.bytes, record.start!, record.end!, plan.delimiter.charCodeAt(0), plan.keyPosition);
    } else {
      raw = record.fields ? record.fields[plan.keyPosition] : record.object?.[plan.keyColumn];
    }
    if (raw === undefined || raw === null || raw === '') throw new RowRejected(`missing value for the key column '${plan.keyColumn}'`);
    if (typeof raw === 'string') return raw;
    if (typeof raw === 'number' && !Number.isSafeInteger(raw) && record.json !== undefined) {
      // JSON.parse read the number as a double: the key is taken from the line's text instead.
      const taken = jsonNumberKey(raw, record.json, plan.keyColumn);
      if ('problem' in taken) throw new RowRejected(taken.problem);
      return taken.key;
    }
    if (typeof raw === 'number' || typeof raw === 'boolean' || typeof raw === 'bigint') return String(raw);
    throw new RowRejected(`expected a string or number for the key column '${plan.keyColumn}' but received ${describeValue(raw)}`);
  }

  /** Writes the record's features into slot `rows`; throws RowRejected and leaves `rows` as it was. */
  add(record: InputRecord): void {
    const plan = this.plan;
    if (record.bytes !== undefined) {
      if (plan.layout) {
        this.addFloatLine(record.bytes, record.start!, record.end!, plan.layout);
        return;
      }
      record = { line: record.line, fields: decodeUtf8(record.bytes, record.start!, record.end!).split(plan.delimiter) };
    }
    if (record.fields && record.fields.length !== plan.width) {
      throw new RowRejected(`expected ${plan.width} columns but received ${record.fields.length}`);
    }
    for (let j = 0; j < plan.inputs.length; j++) {
      const p = plan.inputs[j]!;
      const target = this.data[j]!;
      const base = this.rows * p.rowElements;
      if (p.arrayColumn) {
        const value: unknown = record.fields ? record.fields[p.positions[0]!] : record.object?.[p.columns[0]!];
        const flat = arrayOf(value, p.columns[0]!);
        if (flat && p.variable) {
          // Any length: the job runs rows of one length together (BatchAssembly.groups).
          if (flat.length === 0 || flat.length % p.perPosition !== 0) {
            throw new RowRejected(`expected a non-empty array${p.perPosition > 1 ? ` of a multiple of ${p.perPosition} values` : ''} for column '${p.columns[0]}' (input '${p.name}', dims [${p.freeDims.join(', ')}]) but received one of ${flat.length}`);
          }
          const into = this.reserve(j, flat.length);
          for (let i = 0; i < flat.length; i++) writeValue(into, this.used[j]! + i, p.datatype, flat[i], p.columns[0]!);
          this.pending[j] = flat.length;
          continue;
        }
        if (!flat || flat.length !== p.rowElements) {
          throw new RowRejected(`expected an array of ${p.rowElements} values for column '${p.columns[0]}' but received ${describeValue(flat ?? value)}`);
        }
        for (let i = 0; i < p.rowElements; i++) writeValue(target, base + i, p.datatype, flat[i], p.columns[0]!);
      } else if (record.fields) {
        for (let i = 0; i < p.rowElements; i++) writeValue(target, base + i, p.datatype, record.fields[p.positions[i]!], p.columns[i]!);
      } else {
        for (let i = 0; i < p.rowElements; i++) writeValue(target, base + i, p.datatype, record.object?.[p.columns[i]!], p.columns[i]!);
      }
    }
    if (plan.ragged) {
      for (let j = 0; j < plan.inputs.length; j++) {
        if (!plan.inputs[j]!.variable) continue;
        this.used[j] = this.used[j]! + this.pending[j]!;
        this.lengths[j]!.push(this.pending[j]!);
      }
    }
    this.rows += 1;
  }

  // The hot loop of wide numeric CSV inputs: one pass over the line. A row that does not fit is
  // rejected afterwards with the general path's message; its slot is simply written again.
  private addFloatLine(bytes: Uint8Array, start: number, end: number, layout: LineLayout): void {
    const plan = this.plan;
    const delimiter = plan.delimiter.charCodeAt(0);
    for (let j = 0; j < plan.inputs.length; j++) this.bases[j] = this.rows * plan.inputs[j]!.rowElements;
    const count = readFloatLine(bytes, start, end, delimiter, layout, this.data as (Float32Array | Float64Array)[], this.bases);
    if (count !== plan.width) throw new RowRejected(`expected ${plan.width} columns but received ${count}`);
    if (firstBadColumn >= 0) {
      // Throws the general path's rejection for that field.
      const j = layout.input[firstBadColumn]!;
      const i = layout.offset[firstBadColumn]!;
      writeValue(this.data[j]!, this.bases[j]! + i, plan.inputs[j]!.datatype, fieldAt(bytes, start, end, delimiter, firstBadColumn), plan.inputs[j]!.columns[i]!);
    }
    this.rows += 1;
  }

  /** The filled rows as request tensors (views are copied by the pool before transfer). */
  tensors(): Tensor[] {
    return this.plan.inputs.map((p, j) => {
      const data = this.data[j]!;
      // A variable input's shape is per row (rowLengths); this is its values end to end.
      const used = p.variable ? this.used[j]! : this.rows * p.rowElements;
      const view = Array.isArray(data) ? data.slice(0, used) : (data.length === used ? data : data.subarray(0, used)) as TensorData;
      return { name: p.name, datatype: p.datatype, shape: [this.rows, ...p.rowDims], data: view };
    });
  }
}

const DIGITS = /^\s*-?\d+\s*$/;
/** The largest finite FP32, as the shortest text that reads as it. */
const FP32_MAX = '3.4028235e38';

function writeValue(target: TensorData, at: number, datatype: DataType, raw: unknown, column: string): void {
  if (datatype === 'BYTES') {
    if (raw === undefined || raw === null) throw new RowRejected(`missing value for column '${column}'`);
    const text = typeof raw === 'string' ? raw : JSON.stringify(raw);
    // The online path's rule (a NUL would shorten the string the model sees): a reject, not a wrong answer.
    const problem = textElementProblem(text);
    if (problem) throw new RowRejected(`column '${column}' holds ${problem}`);
    (target as string[])[at] = text;
    return;
  }
  if (datatype === 'BOOL') {
    const b = raw === true || raw === 1 || raw === '1' || raw === 'true' ? 1 : raw === false || raw === 0 || raw === '0' || raw === 'false' ? 0 : -1;
    if (b < 0) throw new RowRejected(`expected a boolean for column '${column}' but received ${describeValue(raw)}`);
    (target as Uint8Array)[at] = b;
    return;
  }
  if ((datatype === 'INT64' || datatype === 'UINT64') && (typeof raw === 'bigint' || (typeof raw === 'string' && DIGITS.test(raw)))) {
    // Digits (a CSV field, Parquet's INT64 past 2^53) are taken as the integer they spell, past
    // 2^53 too: through a double, 9007199254740993 would be 9007199254740992 (and was refused).
    const v = typeof raw === 'bigint' ? raw : BigInt(raw.trim());
    if (datatype === 'INT64' ? v !== BigInt.asIntN(64, v) : v !== BigInt.asUintN(64, v)) {
      throw new RowRejected(`expected an integer within ${datatype === 'INT64' ? 'INT64 (-2^63 to 2^63-1)' : 'UINT64 (0 to 2^64-1)'} for column '${column}' but received ${describeValue(raw)}`);
    }
    (target as unknown as bigint[])[at] = v;
    return;
  }
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' && !radixLiteral(raw) ? Number(raw) : Number.NaN;
  if (!Number.isFinite(n)) {
    const radix = typeof raw === 'string' && radixLiteral(raw) ? ' (numbers are read as decimals: hexadecimal, binary and octal literals are not)' : '';
    throw new RowRejected(`expected a finite number for column '${column}' but received ${describeValue(raw)}${radix}`);
  }
  switch (datatype) {
    case 'FP32': {
      // Past FP32's range a number would be stored as an infinity, and predicted as NaN.
      const f = Math.fround(n);
      if (f - f !== 0) throw new RowRejected(`expected a number within the FP32 range (at most ${FP32_MAX} in magnitude) for column '${column}' but received ${describeValue(raw)}`);
      (target as Float32Array)[at] = f;
      return;
    }
    case 'FP64':
      (target as Float64Array)[at] = n;
      return;
    case 'FP16': {
      const half = float32ToHalf(n);
      if ((half & 0x7fff) === 0x7c00) throw new RowRejected(`expected a number within the FP16 range (at most ${HALF_MAX} in magnitude) for column '${column}' but received ${describeValue(raw)}`);
      (target as Uint16Array)[at] = half;
      return;
    }
    case 'INT64':
    case 'UINT64':
      if (!Number.isSafeInteger(n) || (datatype === 'UINT64' && n < 0)) throw new RowRejected(`expected an integer${datatype === 'UINT64' ? ' >= 0' : ''} for column '${column}' but received ${describeValue(raw)}`);
      (target as BigInt64Array)[at] = BigInt(n);
      return;
    default: {
      const range = integerRange(datatype);
      if (!Number.isInteger(n) || (range && (n < range[0] || n > range[1]))) {
        throw new RowRejected(`expected an integer${range ? ` in ${range[0]}..${range[1]}` : ''} for column '${column}' but received ${describeValue(raw)}`);
      }
      (target as Int32Array)[at] = n;
    }
  }
}
