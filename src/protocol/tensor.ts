// Tensor arithmetic the batcher needs: counting, merging requests along the batch dim and
// splitting the merged result back into per-request pieces.

import { UmbraError } from '../errors.js';
import { uninitializedTypedArrayFor } from './datatype.js';
import type { Tensor, TensorData } from './types.js';

/** Product of the dims; 1 for a scalar (rank 0). The shape is assumed already validated. */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const dim of shape) n *= dim;
  return n;
}

/** True when two tensors can be stacked along dim 0: same datatype, rank and non-batch dims. */
export function sameRowShape(a: Tensor, b: Tensor): boolean {
  if (a.datatype !== b.datatype || a.shape.length !== b.shape.length || a.shape.length === 0) return false;
  for (let i = 1; i < a.shape.length; i++) if (a.shape[i] !== b.shape[i]) return false;
  return true;
}

/**
 * Stack tensors along dim 0 into one new tensor (name and parameters from the first). A single
 * tensor is returned as is, without copying.
 */
export function concatTensors(tensors: readonly Tensor[]): Tensor {
  const first = tensors[0];
  if (first === undefined) throw new UmbraError('INTERNAL', 'concatTensors needs at least one tensor');
  if (tensors.length === 1) return first;
  let rows = 0;
  let total = 0;
  for (const t of tensors) {
    if (!sameRowShape(first, t)) {
      throw new UmbraError('INTERNAL', `cannot concatenate ${t.datatype} [${t.shape.join(', ')}] onto ${first.datatype} [${first.shape.join(', ')}] for tensor "${first.name}"`);
    }
    rows += t.shape[0]!;
    total += t.data.length;
  }
  let data: TensorData;
  if (first.datatype === 'BYTES') {
    data = ([] as string[]).concat(...tensors.map((t) => t.data as string[]));
  } else {
    // Every element is written below: no need to clear the storage first.
    const out = uninitializedTypedArrayFor(first.datatype, total);
    let offset = 0;
    for (const t of tensors) {
      // Same datatype, so the same storage class; the cast only quiets the union.
      (out as Uint8Array).set(t.data as Uint8Array, offset);
      offset += t.data.length;
    }
    data = out;
  }
  const merged: Tensor = { name: first.name, datatype: first.datatype, shape: [rows, ...first.shape.slice(1)], data };
  if (first.parameters !== undefined) merged.parameters = first.parameters;
  return merged;
}

/**
 * Cut a tensor along dim 0 into pieces of `rowCounts` rows. Pieces are views (typed arrays share
 * the source's memory), which is what answering each request from one batch result needs.
 */
export function splitTensor(tensor: Tensor, rowCounts: readonly number[]): Tensor[] {
  const rows = tensor.shape[0];
  if (rows === undefined) throw new UmbraError('INTERNAL', `cannot split the scalar tensor "${tensor.name}"`);
  let sum = 0;
  for (const n of rowCounts) {
    if (!Number.isSafeInteger(n) || n < 0) throw new UmbraError('INTERNAL', `invalid row count ${n} splitting tensor "${tensor.name}"`);
    sum += n;
  }
  if (sum !== rows) throw new UmbraError('INTERNAL', `row counts add up to ${sum} but tensor "${tensor.name}" has ${rows} rows`);
  const rowSize = elementCount(tensor.shape.slice(1));
  const rest = tensor.shape.slice(1);
  const pieces: Tensor[] = [];
  let start = 0;
  for (const n of rowCounts) {
    const end = start + n * rowSize;
    const data = Array.isArray(tensor.data) ? tensor.data.slice(start, end) : tensor.data.subarray(start, end);
    const piece: Tensor = { name: tensor.name, datatype: tensor.datatype, shape: [n, ...rest], data };
    if (tensor.parameters !== undefined) piece.parameters = tensor.parameters;
    pieces.push(piece);
    start = end;
  }
  return pieces;
}
