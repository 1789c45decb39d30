// Which tensor columns drift monitoring watches, and reading them out of requests and answers.
import type { DataType, ModelSignature, Tensor, TensorSpec } from '../protocol/types.js';
import { halfToFloat32 } from '../protocol/half.js';

/** Input columns watched per model (the first ones in signature order). */
export const MAX_INPUT_COLUMNS = 256;
/** Outputs wider than this per row (embeddings, large score vectors) are not watched. */
export const MAX_OUTPUT_COLUMNS = 32;

const NUMERIC: ReadonlySet<DataType> = new Set(['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64']);
const INTEGER: ReadonlySet<DataType> = new Set(['UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64']);
const FLOATING: ReadonlySet<DataType> = new Set(['FP16', 'FP32', 'FP64']);

/**
 * An input whose rows vary in shape (a sequence of token ids `[B, T]`, of feature vectors
 * `[B, T, C]`): its values cannot be columns, so what is watched is what a row's shape and values
 * say about it: how many positions it has along its free dims (a text's length), and for floating
 * point values laid out as `[free dims..., channels]`, each channel's mean over the positions.
 */
export interface Positions {
  /** Values per position (the product of the row's fixed dims). */
  perPosition: number;
  /** Channels whose means are watched (0: the length only). */
  means: number;
  /** Rows lie along the tensor's first dim (a batching model, or a free first dim); else one row. */
  rowsAlongFirst: boolean;
}

export interface WatchedTensor {
  tensor: string;
  /** Columns per row in the tensor (for `positions`, the columns derived per row). */
  width: number;
  /** Columns watched (<= width). */
  columns: number;
  /** Index of its first column among all watched columns. */
  offset: number;
  /** Integer outputs of one column are predicted classes. */
  categorical: boolean;
  /** Set for an input whose rows vary in shape: its columns are derived (see Positions). */
  positions?: Positions;
  /** FP16: the tensor holds half-precision bits, read as numbers for counting (watchedRows). */
  half?: boolean;
}

/** A tensor of the signature that is not watched (or not whole), and why: drift reports say so. */
export interface Unwatched {
  name: string;
  side: 'input' | 'output';
  reason: string;
}

export interface ColumnLayout {
  tensors: WatchedTensor[];
  columns: number;
  names: string[];
  unwatched: Unwatched[];
}

/**
 * A row's dims. `freeRows`: an input of a model that does not batch (max_batch_size 0) whose first
 * dim is free has its rows along that dim, as a batching model's inputs along the batch (outputs
 * of such a model may count something else there).
 */
function rowDimsOf(spec: TensorSpec, freeRows: boolean): number[] {
  return freeRows && spec.dims.length > 1 && spec.dims[0] === -1 ? spec.dims.slice(1) : spec.dims;
}

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/**
 * Numeric tensors with fixed per-row shapes, value by value; inputs whose rows vary in shape by
 * their length and channel means (Positions). FP16 is read as numbers; BYTES is not watched.
 */
export function columnLayout(signature: ModelSignature, side: 'inputs' | 'outputs'): ColumnLayout {
  const tensors: WatchedTensor[] = [];
  const names: string[] = [];
  const unwatched: Unwatched[] = [];
  const sideName = side === 'inputs' ? 'input' : 'output';
  const skip = (name: string, reason: string) => unwatched.push({ name, side: sideName, reason });
  let offset = 0;
  const limit = side === 'inputs' ? MAX_INPUT_COLUMNS : Infinity;
  for (const spec of signature[side]) {
    if (!NUMERIC.has(spec.datatype)) {
      skip(spec.name, spec.datatype === 'BYTES' ? 'BYTES (text) tensors are not watched' : `${spec.datatype} tensors are not watched`);
      continue;
    }
    const freeRows = side === 'inputs' && signature.maxBatchSize === 0;
    const dims = rowDimsOf(spec, freeRows);
    let width: number;
    let positions: Positions | undefined;
    const rowNames: string[] = [];
    if (dims.some((d) => d < 0)) {
      if (side === 'outputs') {
        skip(spec.name, 'its shape per row varies');
        continue;
      }
      const lastFree = dims.findLastIndex((d) => d < 0);
      // Values per position: every fixed dim's (an image [3, H, W] has H x W positions of 3).
      const perPosition = product(dims.filter((d) => d >= 0));
      // Channel means only where every free dim comes before the channels ([T, C], not [C, H, W]).
      const channelsLast = dims.slice(0, lastFree).every((d) => d < 0);
      const means = FLOATING.has(spec.datatype) && channelsLast && perPosition > 0 ? perPosition : 0;
      positions = { perPosition, means, rowsAlongFirst: signature.maxBatchSize > 0 || dims !== spec.dims };
      width = 1 + means;
      rowNames.push(`${spec.name}.length`);
      for (let c = 0; c < means; c++) rowNames.push(means === 1 ? `${spec.name}.mean` : `${spec.name}.mean[${c}]`);
    } else {
      width = product(dims);
      if (width === 0) {
        skip(spec.name, 'it holds no values per row');
        continue;
      }
      if (side === 'outputs' && width > MAX_OUTPUT_COLUMNS) {
        skip(spec.name, `${width} columns per row, more than the ${MAX_OUTPUT_COLUMNS} an output may have to be watched (an embedding, a wide score vector)`);
        continue;
      }
      for (let c = 0; c < width; c++) rowNames.push(width === 1 ? spec.name : `${spec.name}[${c}]`);
    }
    const columns = Math.min(width, limit - offset);
    if (columns <= 0) {
      skip(spec.name, `past the first ${MAX_INPUT_COLUMNS} input columns, which are all that are watched`);
      continue;
    }
    if (columns < width) skip(spec.name, `only its first ${columns} of ${width} columns are watched (${MAX_INPUT_COLUMNS} input columns in all)`);
    const watched: WatchedTensor = { tensor: spec.name, width, columns, offset, categorical: side === 'outputs' && width === 1 && INTEGER.has(spec.datatype) };
    if (positions) watched.positions = positions;
    if (spec.datatype === 'FP16') watched.half = true;
    tensors.push(watched);
    names.push(...rowNames.slice(0, columns));
    offset += columns;
  }
  return { tensors, columns: offset, names, unwatched };
}

/** Rows of a tensor as the layout reads them: `n` rows of `w.width` values each in `data`. */
export interface WatchedRows {
  data: ArrayLike<number | bigint>;
  n: number;
}

/** Derived rows (Positions) are written here, reused: read them before the next call. */
let derived = new Float64Array(64);
/** FP16 values read as numbers, reused likewise. */
let halves = new Float64Array(64);

/**
 * Values a row's channel means read at most: a long sequence of wide vectors ([512, 768]) is
 * averaged over evenly spaced positions, not every one, so counting stays microseconds per row.
 */
export const MEAN_VALUES_PER_ROW = 4096;

/** Rows of `t` as the layout reads them. */
export function rowsIn(w: WatchedTensor, t: Tensor): number {
  if (!w.positions) return Math.floor((t.data as ArrayLike<unknown>).length / w.width);
  return w.positions.rowsAlongFirst ? (t.shape[0] ?? 0) : 1;
}

/**
 * The watched rows of `t`: its own values, or for an input whose rows vary in shape each row's
 * length and channel means (written into a buffer reused by the next call). Of derived rows only
 * rows first, first + step, ... are filled (those a sampled count reads).
 */
export function watchedRows(w: WatchedTensor, t: Tensor, first = 0, step = 1): WatchedRows {
  let data = t.data as ArrayLike<number | bigint>;
  const p = w.positions;
  const n = rowsIn(w, t);
  if (n === 0) return { data, n };
  if (w.half) data = fromHalves(data as Uint16Array, p ? undefined : { width: w.width, columns: w.columns, first, step, n });
  if (!p) return { data, n };
  const perRow = data.length / n;
  const length = p.perPosition > 0 ? perRow / p.perPosition : 0;
  // Only the channels watched (the layout may keep fewer than the row has).
  const means = Math.min(p.means, w.columns - 1);
  const stride = Math.max(1, Math.ceil((length * means) / MEAN_VALUES_PER_ROW));
  if (derived.length < n * w.width) derived = new Float64Array(Math.max(n * w.width, derived.length * 2));
  for (let r = first; r < n; r += step) {
    const out = r * w.width;
    derived[out] = length;
    if (means <= 0 || length === 0) continue;
    let counted = 0;
    for (let c = 0; c < means; c++) derived[out + 1 + c] = 0;
    for (let at = r * perRow, end = at + perRow; at < end; at += stride * p.perPosition, counted++) {
      for (let c = 0; c < means; c++) derived[out + 1 + c] = derived[out + 1 + c]! + (data[at + c] as number);
    }
    for (let c = 0; c < means; c++) derived[out + 1 + c] = derived[out + 1 + c]! / counted;
  }
  return { data: derived, n };
}

/**
 * Half-precision bits as numbers, into a buffer reused by the next call: where `rows` is given,
 * only the watched columns of the rows counted (first, first + step, ...), the rest left as is.
 */
function fromHalves(bits: Uint16Array, rows?: { width: number; columns: number; first: number; step: number; n: number }): Float64Array {
  if (halves.length < bits.length) halves = new Float64Array(Math.max(bits.length, halves.length * 2));
  if (!rows) {
    for (let i = 0; i < bits.length; i++) halves[i] = halfToFloat32(bits[i]!);
    return halves;
  }
  for (let r = rows.first; r < rows.n; r += rows.step) {
    for (let c = 0, at = r * rows.width; c < rows.columns; c++, at++) halves[at] = halfToFloat32(bits[at]!);
  }
  return halves;
}

/** Calls `visit(column, value)` for every watched column of row `row`. */
export type RowVisitor = (row: number, column: number, value: number) => void;

/** Rows in a tensor list (the batch dimension of the first watched tensor); 0 if none is present. */
export function visitRows(layout: ColumnLayout, tensors: readonly Tensor[], visit: RowVisitor): number {
  let rows = 0;
  for (const w of layout.tensors) {
    const t = findTensor(tensors, w.tensor);
    if (!t || Array.isArray(t.data)) continue;
    const { data, n } = watchedRows(w, t);
    rows = Math.max(rows, n);
    const big = typeof data[0] === 'bigint';
    for (let r = 0; r < n; r++) {
      const base = r * w.width;
      for (let c = 0; c < w.columns; c++) {
        const v = data[base + c]!;
        visit(r, w.offset + c, big ? Number(v) : (v as number));
      }
    }
  }
  return rows;
}

export function findTensor(tensors: readonly Tensor[], name: string): Tensor | undefined {
  for (const t of tensors) if (t.name === name) return t;
  return undefined;
}
