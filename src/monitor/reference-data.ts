// Building a reference profile from reference data (e.g. the training set): read CSV, JSONL or Parquet,
// profile every input column, and run each loaded version over the rows to profile its outputs.
import { readFileSync } from 'node:fs';
import { isParquetFile, readParquetObjects } from '../batch/parquet.js';
import { basename } from 'node:path';
import { parse } from 'csv-parse/sync';
import type { Umbra } from '../core/umbra.js';
import { typedArrayFor } from '../protocol/datatype.js';
import type { InferRequest, Tensor } from '../protocol/types.js';
import { columnLayout, visitRows } from './features.js';
import { newProfile, profileColumn, type ReferenceProfile } from './profile.js';

export interface ReferenceData {
  names: string[];
  /** Row-major, rows x names.length. */
  values: Float64Array;
  rows: number;
}

export interface ReadOptions {
  /** Column left out as the label (default "label" when present). */
  label?: string;
  /** Keep only rows where column = value, e.g. split=train. */
  where?: { column: string; value: string };
  /** Columns to use, in model input order; default every numeric column except the label. */
  columns?: string[];
}

/**
 * Reads CSV (header row), JSONL (one object per line) or Parquet (told by its first bytes); list
 * values (JSONL arrays, Parquet lists) are flattened in order, as `name[i]` columns.
 */
export async function readReferenceData(path: string, options: ReadOptions = {}): Promise<ReferenceData> {
  if (isParquetFile(path)) return fromRecords(path, (await readParquetObjects(path)).map(flatten), options);
  const text = readFileSync(path, 'utf8');
  const records: Record<string, unknown>[] = /\.jsonl?$/i.test(path)
    ? text.split(/\r?\n/).filter((l) => l.trim() !== '').map((l, i) => {
      try {
        return flatten(JSON.parse(l) as Record<string, unknown>);
      } catch (err) {
        throw new Error(`${path}:${i + 1}: not a JSON object: ${(err as Error).message}`);
      }
    })
    : (parse(text, { columns: true, skip_empty_lines: true, trim: true }) as Record<string, unknown>[]);
  return fromRecords(path, records, options);
}

function fromRecords(path: string, records: Record<string, unknown>[], options: ReadOptions): ReferenceData {
  const where = options.where;
  const kept = where ? records.filter((r) => String(r[where.column]) === where.value) : records;
  if (kept.length === 0) throw new Error(`${path}: no rows${where ? ` where ${where.column}=${where.value}` : ''}`);
  const first = kept[0]!;
  const label = options.label ?? ('label' in first ? 'label' : undefined);
  const names = options.columns ?? Object.keys(first).filter((k) => k !== label && k !== where?.column && isNumeric(first[k]));
  for (const n of names) if (!(n in first)) throw new Error(`${path}: no column '${n}' (columns: ${Object.keys(first).join(', ')})`);
  if (names.length === 0) {
    const seen = Object.keys(first);
    throw new Error(`${path}: its first row has no numeric column${seen.length ? ` (columns: ${seen.slice(0, 8).join(', ')}${seen.length > 8 ? ', ...' : ''})` : ''}; give rows of features: CSV with a header, JSON Lines of flat objects (arrays are flattened), or Parquet`);
  }
  const values = new Float64Array(kept.length * names.length);
  kept.forEach((r, i) => {
    names.forEach((n, j) => {
      const v = Number(r[n]);
      if (!Number.isFinite(v)) throw new Error(`${path}: row ${i + 1}: expected a number for column '${n}' but received ${JSON.stringify(r[n])}`);
      values[i * names.length + j] = v;
    });
  });
  return { names, values, rows: kept.length };
}

function isNumeric(v: unknown): boolean {
  return typeof v === 'number' || (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)));
}

function flatten(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (Array.isArray(v)) v.flat(Infinity).forEach((x, i) => (out[`${k}[${i}]`] = x));
    else out[k] = v;
  }
  return out;
}

/**
 * Profiles the inputs and, per loaded version, the outputs the model gives on the same rows. Where
 * versions take different inputs (a retrained model with more features), the versions the data
 * fits are profiled and `skipped` hears of each other one (its drift starts from live rows).
 */
export async function buildReferenceProfile(umbra: Umbra, model: string, data: ReferenceData, source: string, skipped?: (version: string, why: string) => void): Promise<ReferenceProfile> {
  const loaded = umbra.manager.versionsOf(model);
  if (loaded.length === 0) throw new Error(`model '${model}' has no loaded version`);
  const width = data.names.length;
  const columnsOf = (mv: (typeof loaded)[number]) => columnLayout(mv.signature, 'inputs').columns;
  const fitting = loaded.filter((mv) => columnsOf(mv) === width);
  const versions = fitting.length > 0 ? fitting : loaded;
  if (fitting.length > 0) for (const mv of loaded) if (!fitting.includes(mv)) skipped?.(mv.version, `it takes ${columnsOf(mv)} input columns, not the data's ${width}`);
  const signature = versions[0]!.signature;
  const inputs = columnLayout(signature, 'inputs');
  const partial = [...inputs.unwatched.map((u) => `${u.name}: ${u.reason}`), ...inputs.tensors.filter((w) => w.positions).map((w) => `${w.tensor}: its shape per row varies`)];
  if (partial.length > 0) {
    throw new Error(`model '${model}' has inputs a profile cannot hold value by value (${partial.join('; ')}); profiles need fixed-shape numeric inputs. Without one, drift takes its reference from the first live rows (for an input whose shape varies: its length and channel means)`);
  }
  if (inputs.columns !== width) throw new Error(`model '${model}' takes ${[...new Set(loaded.map(columnsOf))].join(' or ')} input columns but the data has ${width} (${data.names.slice(0, 5).join(', ')}${width > 5 ? ', ...' : ''}); choose them with --columns`);
  const column = (c: number) => {
    const out = new Float64Array(data.rows);
    for (let r = 0; r < data.rows; r++) out[r] = data.values[r * width + c]!;
    return out;
  };
  const inputProfiles = data.names.map((n, c) => profileColumn(n, column(c)));
  const outputs: Record<string, ReturnType<typeof profileColumn>[]> = {};
  for (const mv of versions) {
    const layout = columnLayout(mv.signature, 'outputs');
    const collected = new Float64Array(data.rows * layout.columns);
    const batch = Math.max(1, mv.signature.maxBatchSize || 1);
    for (let start = 0; start < data.rows; start += batch) {
      const n = Math.min(batch, data.rows - start);
      const tensors: Tensor[] = inputs.tensors.map((w) => {
        const spec = mv.signature.inputs.find((s) => s.name === w.tensor)!;
        const arr = typedArrayFor(spec.datatype, n * w.width) as unknown as { [i: number]: number | bigint };
        const big = spec.datatype === 'INT64' || spec.datatype === 'UINT64';
        for (let r = 0; r < n; r++) {
          for (let c = 0; c < w.width; c++) {
            const v = data.values[(start + r) * width + w.offset + c]!;
            arr[r * w.width + c] = big ? BigInt(Math.round(v)) : v;
          }
        }
        return { name: w.tensor, datatype: spec.datatype, shape: mv.signature.maxBatchSize > 0 ? [n, ...spec.dims] : spec.dims, data: arr as unknown as Tensor['data'] };
      });
      const request: InferRequest = { parameters: {}, inputs: tensors };
      const { response } = await umbra.infer(model, mv.version, request);
      visitRows(layout, response.outputs, (r, c, v) => {
        collected[(start + r) * layout.columns + c] = v;
      });
    }
    const categorical = (c: number) => layout.tensors.some((t) => t.categorical && c >= t.offset && c < t.offset + t.columns);
    outputs[mv.version] = layout.names.map((name, c) => {
      const col = new Float64Array(data.rows);
      for (let r = 0; r < data.rows; r++) col[r] = collected[r * layout.columns + c]!;
      return profileColumn(name, col, categorical(c));
    });
  }
  return newProfile(model, basename(source), data.rows, inputProfiles, outputs);
}
