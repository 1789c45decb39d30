// Turns one batch's output tensors into per-row JSON text: each row's `outputs` array exactly as
// a one-row inference response would carry it (shape with a leading 1, Int64 as numbers).
import { elementCount, halfArrayToFloat32 } from '../protocol/index.js';
import type { Tensor, TensorData } from '../protocol/types.js';

/** JSON text of each row's outputs, in row order. */
export function outputsPerRow(outputs: Tensor[], rows: number): string[] {
  const parts = outputs.map((o) => {
    const perRow = rows === 0 ? 0 : elementCount(o.shape) / rows;
    const head = `{"name":${JSON.stringify(o.name)},"datatype":"${o.datatype}","shape":${JSON.stringify([1, ...o.shape.slice(1)])},"data":`;
    return { head, perRow, data: o.datatype === 'FP16' ? halfArrayToFloat32(o.data as Uint16Array) : o.data, bool: o.datatype === 'BOOL' };
  });
  const out = new Array<string>(rows);
  for (let r = 0; r < rows; r++) {
    let text = '[';
    for (let j = 0; j < parts.length; j++) {
      const p = parts[j]!;
      if (j > 0) text += ',';
      text += p.head + sliceJson(p.data, r * p.perRow, p.perRow, p.bool) + '}';
    }
    out[r] = text + ']';
  }
  return out;
}

function sliceJson(data: TensorData, start: number, count: number, bool: boolean): string {
  if (Array.isArray(data)) return JSON.stringify(data.slice(start, start + count));
  const view = data.subarray(start, start + count);
  if (view instanceof BigInt64Array || view instanceof BigUint64Array) return JSON.stringify(Array.from(view, Number));
  if (bool) return JSON.stringify(Array.from(view as Uint8Array, (v) => v !== 0));
  return JSON.stringify(Array.from(view as Float32Array));
}
