// Turns one batch's output tensors into per-row JSON text: each row's `outputs` array exactly as
// a one-row inference response would carry it (shape with a leading 1, Int64 as numbers).
// From the files behind the protocol index: this runs on the writer thread, which needs none of
// the request and response code the index loads (only the addon's number formatter).
import { stringifyExact } from '../protocol/json-bigint.js';
import { halfArrayToFloat32 } from '../protocol/half.js';
import { nativeJson } from '../protocol/native-json.js';
import { elementCount } from '../protocol/tensor.js';
import type { Tensor, TensorData } from '../protocol/types.js';

/** JSON text of each row's outputs, in row order. */
export function outputsPerRow(outputs: Tensor[], rows: number): string[] {
  const parts = outputs.map((o) => {
    const perRow = rows === 0 ? 0 : elementCount(o.shape) / rows;
    // One row's run keeps the shape it has: a model that does not batch may answer a row with
    // any first dim (the hits it found, a reduction's values).
    const head = `{"name":${JSON.stringify(o.name)},"datatype":"${o.datatype}","shape":${JSON.stringify(rows === 1 ? o.shape : [1, ...o.shape.slice(1)])},"data":`;
    const data = o.datatype === 'FP16' ? halfArrayToFloat32(o.data as Uint16Array) : o.data;
    return { head, data, perRow, bool: o.datatype === 'BOOL' };
  });
  // The usual case, one floating-point output: each row's whole text made at once, in the addon.
  const only = parts.length === 1 ? parts[0]! : undefined;
  if (only && rows > 0) {
    const text = floatRowsJson(only.data, only.perRow, `[${only.head}`, '}]');
    if (text) return text;
  }
  const texts = parts.map((p) => floatRowsJson(p.data, p.perRow, p.head, '}') ?? rowsJson(p.data, rows, p.perRow, p.head, p.bool));
  const out = new Array<string>(rows);
  for (let r = 0; r < rows; r++) {
    let text = '[';
    for (let j = 0; j < texts.length; j++) {
      if (j > 0) text += ',';
      text += texts[j]![r]!;
    }
    out[r] = text + ']';
  }
  return out;
}

/**
 * Each row's `prefix + values + suffix` from the addon (the server's number formatter, row by
 * row), or undefined where that does not apply (not floating point, no addon, an empty row).
 */
function floatRowsJson(data: TensorData, perRow: number, prefix: string, suffix: string): string[] | undefined {
  if (!(data instanceof Float32Array || data instanceof Float64Array) || perRow === 0) return undefined;
  const native = nativeJson();
  return native?.formatRowsJson ? native.formatRowsJson(data, perRow, prefix, suffix) : undefined;
}

/**
 * The whole batch's floats as one JSON array, as the server writes them: shortest round-trip
 * decimals, and NaN and the infinities as the strings "NaN", "Infinity", "-Infinity". The addon's
 * formatter (the server's) when it is there, about three times V8's speed.
 */
function floatsJson(values: Float32Array | Float64Array): string {
  const native = nativeJson();
  if (native) return native.formatNumbersJson(values);
  return JSON.stringify(Array.from(values, (v) => (v - v === 0 ? v : String(v))));
}

/**
 * Each row's `head + values + '}'`. Numbers and booleans are formatted once for the whole batch
 * (one call instead of one per row) and cut at the commas; strings may hold commas, so they are
 * formatted row by row.
 */
function rowsJson(data: TensorData, rows: number, perRow: number, head: string, bool: boolean): string[] {
  const out = new Array<string>(rows);
  if (Array.isArray(data)) {
    for (let r = 0; r < rows; r++) out[r] = `${head}${JSON.stringify(data.slice(r * perRow, (r + 1) * perRow))}}`;
    return out;
  }
  if (perRow === 0) return out.fill(`${head}[]}`);
  let all: string;
  if (data instanceof Float32Array || data instanceof Float64Array) {
    all = floatsJson(data);
  } else {
    // 64-bit integers as their digits: as Numbers, those past 2^53 would be stored rounded.
    all = data instanceof BigInt64Array || data instanceof BigUint64Array
      ? stringifyExact(Array.from(data as BigInt64Array))
      : JSON.stringify(bool ? Array.from(data as Uint8Array, (v) => v !== 0) : Array.from(data as Uint8Array));
  }
  let start = 1;
  for (let r = 0; r < rows; r++) {
    let end = start;
    for (let k = 1; k < perRow; k++) end = all.indexOf(',', end) + 1;
    end = r === rows - 1 ? all.length - 1 : all.indexOf(',', end);
    out[r] = `${head}[${all.slice(start, end)}]}`;
    start = end + 1;
  }
  return out;
}
