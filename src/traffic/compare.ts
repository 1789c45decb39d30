// Comparing a shadow's answer with the primary's for the same request. Classifiers are judged by
// top-1 agreement per row; other models by closeness within a tolerance. Every numeric output
// also contributes to the mean absolute and relative difference.
import { halfArrayToFloat32 } from '../protocol/half.js';
import type { DataType, Tensor } from '../protocol/types.js';

export type CompareMode = 'classification' | 'regression';

export interface Comparison {
  rows: number;
  agreeingRows: number;
  /** Sum of |primary - shadow| over numeric elements, and their count. */
  absDiffSum: number;
  /** Sum of |primary| over the same elements, for the relative difference. */
  absPrimarySum: number;
  elements: number;
  /** Outputs present in one answer and not in the other, or of another shape. */
  mismatched: string[];
}

export interface CompareOptions {
  mode: CompareMode;
  rtol: number;
  atol: number;
}

export const DEFAULT_TOLERANCE = { rtol: 1e-3, atol: 1e-5 } as const;

const INTEGER_TYPES: ReadonlySet<DataType> = new Set(['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64']);

/**
 * A model is a classifier when its config says so (parameters.task), or when it has an integer
 * output (a label) or an output whose name reads as class scores.
 */
export function compareModeOf(parameters: Record<string, string>, outputs: readonly { name: string; datatype: DataType }[]): CompareMode {
  const task = parameters.task?.toLowerCase();
  if (task === 'classification' || task === 'classifier') return 'classification';
  if (task === 'regression' || task === 'regressor') return 'regression';
  if (outputs.some((o) => INTEGER_TYPES.has(o.datatype))) return 'classification';
  if (outputs.some((o) => /prob|logit|class/i.test(o.name))) return 'classification';
  return 'regression';
}

function numbers(t: Tensor): ArrayLike<number> | undefined {
  const d = t.data;
  if (Array.isArray(d)) return undefined;
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) return Float64Array.from(d, (x) => Number(x));
  // FP16 arrives as raw bits: compared as the values they hold (two versions' halves are rarely
  // equal bit for bit, so bitwise agreement made a half-precision candidate disagree everywhere).
  if (t.datatype === 'FP16') return halfArrayToFloat32(d as Uint16Array);
  return d as ArrayLike<number>;
}

function rowsOf(t: Tensor, batched: boolean): number {
  return batched && t.shape.length > 0 ? t.shape[0]! : 1;
}

/** Index of the largest element of each row. */
function argmaxRows(values: ArrayLike<number>, rows: number): Int32Array {
  const out = new Int32Array(rows);
  const width = rows > 0 ? values.length / rows : 0;
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let bestValue = -Infinity;
    for (let j = 0; j < width; j++) {
      const v = values[r * width + j]!;
      if (v > bestValue) {
        bestValue = v;
        best = j;
      }
    }
    out[r] = best;
  }
  return out;
}

export function compareOutputs(primary: readonly Tensor[], shadow: readonly Tensor[], batched: boolean, options: CompareOptions): Comparison {
  let rows = 0;
  for (const p of primary) rows = Math.max(rows, rowsOf(p, batched));
  const agree = new Uint8Array(rows).fill(1);
  const out: Comparison = { rows, agreeingRows: 0, absDiffSum: 0, absPrimarySum: 0, elements: 0, mismatched: [] };
  for (const p of primary) {
    const s = shadow.find((t) => t.name === p.name);
    if (!s || s.datatype !== p.datatype || s.shape.join('x') !== p.shape.join('x')) {
      out.mismatched.push(p.name);
      agree.fill(0);
      continue;
    }
    const pRows = rowsOf(p, batched);
    const pv = numbers(p);
    const sv = numbers(s);
    if (!pv || !sv) {
      // Strings: exact equality per row.
      const pd = p.data as ArrayLike<unknown>;
      const sd = s.data as ArrayLike<unknown>;
      const width = pRows > 0 ? pd.length / pRows : 0;
      for (let r = 0; r < pRows; r++) {
        for (let j = 0; j < width; j++) if (pd[r * width + j] !== sd[r * width + j]) agree[r] = 0;
      }
      continue;
    }
    const width = pRows > 0 ? pv.length / pRows : 0;
    for (let i = 0; i < pv.length; i++) {
      const d = Math.abs(pv[i]! - sv[i]!);
      out.absDiffSum += Number.isNaN(d) ? 0 : d;
      out.absPrimarySum += Math.abs(pv[i]!);
      out.elements += 1;
    }
    if (options.mode === 'classification') {
      if (INTEGER_TYPES.has(p.datatype)) {
        for (let r = 0; r < pRows; r++) {
          for (let j = 0; j < width; j++) if (pv[r * width + j] !== sv[r * width + j]) agree[r] = 0;
        }
      } else if (width > 1) {
        const pa = argmaxRows(pv, pRows);
        const sa = argmaxRows(sv, pRows);
        for (let r = 0; r < pRows; r++) if (pa[r] !== sa[r]) agree[r] = 0;
      }
    } else {
      for (let r = 0; r < pRows; r++) {
        for (let j = 0; j < width; j++) {
          const a = pv[r * width + j]!;
          const b = sv[r * width + j]!;
          if (!(Math.abs(a - b) <= options.atol + options.rtol * Math.abs(a))) agree[r] = 0;
        }
      }
    }
  }
  for (const name of shadow.map((t) => t.name)) if (!primary.some((p) => p.name === name)) out.mismatched.push(name);
  for (let r = 0; r < rows; r++) out.agreeingRows += agree[r]!;
  return out;
}

/** A tensor as plain JSON for the disagreement log, cut to `limit` elements. */
export function tensorForLog(t: Tensor, limit = 256): { name: string; datatype: DataType; shape: number[]; data: unknown[]; truncated?: boolean } {
  const d = (t.datatype === 'FP16' && t.data instanceof Uint16Array ? halfArrayToFloat32(t.data.subarray(0, limit)) : t.data) as ArrayLike<unknown>;
  const n = Math.min(d.length, limit);
  const data: unknown[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const v = d[i];
    data[i] = typeof v === 'bigint' ? Number(v) : v;
  }
  return d.length > limit ? { name: t.name, datatype: t.datatype, shape: [...t.shape], data, truncated: true } : { name: t.name, datatype: t.datatype, shape: [...t.shape], data };
}
