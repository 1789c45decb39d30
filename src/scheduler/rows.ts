// Row arithmetic shared by whoever concatenates requests into one batch and splits the answer
// back (workers), and by whoever cuts a large job into pieces (batch prediction).

import { invalid } from '../errors.js';

/**
 * Split `total` rows into `parts` contiguous pieces whose sizes differ by at most one, larger
 * pieces first: splitRows(10, 3) -> [4, 3, 3]. Pieces may be 0 when parts > total.
 */
export function splitRows(total: number, parts: number): number[] {
  if (!Number.isInteger(total) || total < 0) throw invalid('INVALID_ARGUMENT', 'a non-negative integer', 'total rows', total);
  if (!Number.isInteger(parts) || parts < 1) throw invalid('INVALID_ARGUMENT', 'a positive integer', 'the number of parts', parts);
  const base = Math.floor(total / parts);
  const extra = total % parts;
  return Array.from({ length: parts }, (_, i) => base + (i < extra ? 1 : 0));
}

/**
 * Start row of each piece when pieces of `rows` are laid end to end, plus the total as a last
 * entry: rowOffsets([2, 1, 3]) -> [0, 2, 3, 6]. Piece i spans [offsets[i], offsets[i + 1]).
 */
export function rowOffsets(rows: readonly number[]): number[] {
  const offsets = new Array<number>(rows.length + 1);
  offsets[0] = 0;
  for (let i = 0; i < rows.length; i++) {
    const n = rows[i]!;
    if (!Number.isInteger(n) || n < 0) throw invalid('INVALID_ARGUMENT', 'a non-negative integer', `row count ${i}`, n);
    offsets[i + 1] = offsets[i]! + n;
  }
  return offsets;
}
