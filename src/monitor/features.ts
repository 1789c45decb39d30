// Which tensor columns drift monitoring watches, and reading them out of requests and answers.
import type { DataType, ModelSignature, Tensor, TensorSpec } from '../protocol/types.js';

/** Input columns watched per model (the first ones in signature order). */
export const MAX_INPUT_COLUMNS = 256;
/** Outputs wider than this per row (embeddings, large score vectors) are not watched. */
export const MAX_OUTPUT_COLUMNS = 32;

const NUMERIC: ReadonlySet<DataType> = new Set(['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP32', 'FP64']);
const INTEGER: ReadonlySet<DataType> = new Set(['UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64']);

export interface WatchedTensor {
  tensor: string;
  /** Columns per row in the tensor. */
  width: number;
  /** Columns watched (<= width). */
  columns: number;
  /** Index of its first column among all watched columns. */
  offset: number;
  /** Integer outputs of one column are predicted classes. */
  categorical: boolean;
}

export interface ColumnLayout {
  tensors: WatchedTensor[];
  columns: number;
  names: string[];
}

/**
 * Values per row, where every dim of a row is fixed. `freeRows`: an input of a model that does not
 * batch (max_batch_size 0) whose first dim is free has its rows along that dim, as a batching
 * model's inputs along the batch (outputs of such a model may count something else there).
 */
function widthOf(spec: TensorSpec, freeRows: boolean): number | undefined {
  const dims = freeRows && spec.dims.length > 1 && spec.dims[0] === -1 ? spec.dims.slice(1) : spec.dims;
  if (dims.some((d) => d < 0)) return undefined;
  return dims.reduce((a, b) => a * b, 1);
}

/** Numeric tensors with fixed per-row shapes; FP16 and BYTES are not watched. */
export function columnLayout(signature: ModelSignature, side: 'inputs' | 'outputs'): ColumnLayout {
  const tensors: WatchedTensor[] = [];
  const names: string[] = [];
  let offset = 0;
  const limit = side === 'inputs' ? MAX_INPUT_COLUMNS : Infinity;
  for (const spec of signature[side]) {
    const width = widthOf(spec, side === 'inputs' && signature.maxBatchSize === 0);
    if (width === undefined || width === 0 || !NUMERIC.has(spec.datatype)) continue;
    if (side === 'outputs' && width > MAX_OUTPUT_COLUMNS) continue;
    const columns = Math.min(width, limit - offset);
    if (columns <= 0) break;
    tensors.push({ tensor: spec.name, width, columns, offset, categorical: side === 'outputs' && width === 1 && INTEGER.has(spec.datatype) });
    for (let c = 0; c < columns; c++) names.push(width === 1 ? spec.name : `${spec.name}[${c}]`);
    offset += columns;
  }
  return { tensors, columns: offset, names };
}

/** Calls `visit(column, value)` for every watched column of row `row`. */
export type RowVisitor = (row: number, column: number, value: number) => void;

/** Rows in a tensor list (the batch dimension of the first watched tensor); 0 if none is present. */
export function visitRows(layout: ColumnLayout, tensors: readonly Tensor[], visit: RowVisitor): number {
  let rows = 0;
  for (const w of layout.tensors) {
    const t = findTensor(tensors, w.tensor);
    if (!t || Array.isArray(t.data)) continue;
    const data = t.data as ArrayLike<number | bigint>;
    const n = Math.floor(data.length / w.width);
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
