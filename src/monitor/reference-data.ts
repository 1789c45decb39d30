// Building a reference profile from reference data (e.g. the training set): read CSV, JSONL or Parquet,
// profile every input column, and run each loaded version over the rows to profile its outputs.
import { readFileSync } from 'node:fs';
import { isParquetFile, readParquetObjects } from '../batch/parquet.js';
import { basename } from 'node:path';
import { parse } from 'csv-parse/sync';
import type { Umbra } from '../core/umbra.js';
import { typedArrayFor } from '../protocol/datatype.js';
import type { InferRequest, Tensor } from '../protocol/types.js';
import { concatTensors } from '../protocol/tensor.js';
import { float32ToHalf } from '../protocol/half.js';
import type { ModelVersion } from '../repository/model-version.js';
import { columnLayout, visitRows } from './features.js';
import { newProfile, profileColumn, type ReferenceProfile } from './profile.js';

export interface ReferenceData {
  names: string[];
  /** Row-major, rows x names.length. */
  values: Float64Array;
  rows: number;
  /**
   * The kept records as read (arrays unflattened), by field: what a model whose inputs vary in
   * shape per row (token ids) is profiled from, one row's arrays at a time.
   */
  records: Record<string, unknown>[];
  /**
   * Set where the rows' arrays differ in length, so `values` cannot hold them as columns (only a
   * model whose inputs vary in shape can be profiled from such data): why, for the others.
   */
  ragged?: string;
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
  if (isParquetFile(path)) return fromRecords(path, await readParquetObjects(path), options);
  const text = readFileSync(path, 'utf8');
  const records: Record<string, unknown>[] = /\.jsonl?$/i.test(path)
    ? text.split(/\r?\n/).filter((l) => l.trim() !== '').map((l, i) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch (err) {
        throw new Error(`${path}:${i + 1}: not a JSON object: ${(err as Error).message}`);
      }
    })
    : (parse(text, { columns: true, skip_empty_lines: true, trim: true }) as Record<string, unknown>[]);
  return fromRecords(path, records, options);
}

function fromRecords(path: string, raw: Record<string, unknown>[], options: ReadOptions): ReferenceData {
  const where = options.where;
  // A column a flag names that the data lacks is a typo, not a filter that matches nothing.
  const header = raw[0] ? Object.keys(raw[0]) : [];
  const missing = (flag: string, column: string) => new Error(`${path}: no column '${column}' for ${flag} (columns: ${header.join(', ')})`);
  const label = options.label;
  if (where && raw.length > 0 && !raw.some((r) => where.column in r)) throw missing('--where', where.column);
  if (label !== undefined && raw.length > 0 && !raw.some((r) => label in r)) throw missing('--label', label);
  const records = where ? raw.filter((r) => String(r[where.column]) === where.value) : raw;
  if (records.length === 0) throw new Error(`${path}: no rows${where ? ` where ${where.column}=${where.value}` : ''}`);
  const kept = records.map(flatten);
  const first = kept[0]!;
  const labelColumn = label ?? ('label' in first ? 'label' : undefined);
  // A column is a feature when its first value that is there is a number: a blank in the first
  // row is a missing value of that column, refused below with its row, not a reason to drop it.
  const blank = (v: unknown) => v === undefined || v === null || (typeof v === 'string' && v.trim() === '');
  const numericColumn = (k: string) => {
    const present = kept.find((r) => !blank(r[k]));
    return present === undefined || isNumeric(present[k]);
  };
  const names = options.columns ?? Object.keys(first).filter((k) => k !== labelColumn && k !== where?.column && numericColumn(k));
  for (const n of names) if (!(n in first)) throw new Error(`${path}: no column '${n}' (columns: ${Object.keys(first).join(', ')})`);
  if (names.length === 0) {
    const seen = Object.keys(first);
    throw new Error(`${path}: its first row has no numeric column${seen.length ? ` (columns: ${seen.slice(0, 8).join(', ')}${seen.length > 8 ? ', ...' : ''})` : ''}; give rows of features: CSV with a header, JSON Lines of flat objects (arrays are flattened), or Parquet`);
  }
  const values = new Float64Array(kept.length * names.length);
  const arrays = Object.keys(records[0]!).filter((k) => Array.isArray(records[0]![k]));
  for (let i = 0; i < kept.length; i++) {
    const r = kept[i]!;
    for (let j = 0; j < names.length; j++) {
      const n = names[j]!;
      const cell = r[n];
      // A blank cell is a missing value, not 0 (which Number('') would make it); so are null and booleans.
      const v = cell === null || typeof cell === 'boolean' || (typeof cell === 'string' && cell.trim() === '') ? NaN : Number(cell);
      if (Number.isFinite(v)) {
        values[i * names.length + j] = v;
        continue;
      }
      const why = `${path}: row ${i + 1}${where ? ` of those where ${where.column}=${where.value}` : ''}: expected a number for column '${n}' but received ${JSON.stringify(cell)}`;
      // Arrays of another length than the first row's (token ids): no columns, but a model whose
      // inputs vary in shape per row reads them whole (buildReferenceProfile).
      const ragged = arrays.find((a) => n.startsWith(`${a}[`) || (Array.isArray(records[i]![a]) && (records[i]![a] as unknown[]).flat(Infinity).length !== (records[0]![a] as unknown[]).flat(Infinity).length));
      if (!ragged || options.columns) throw new Error(why);
      return { names, values: new Float64Array(0), rows: kept.length, records, ragged: `${why} (its '${ragged}' array has another length than the first row's)` };
    }
  }
  return { names, values, rows: kept.length, records };
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

/** Every input a row of reference data feeds, in order, with its full width and offset in the row (watched or not). */
function fedColumns(signature: ModelVersion['signature']): { tensors: { tensor: string; width: number; offset: number }[]; columns: number } {
  const tensors: { tensor: string; width: number; offset: number }[] = [];
  let offset = 0;
  for (const spec of signature.inputs) {
    if (spec.datatype === 'BYTES') continue;
    const dims = signature.maxBatchSize === 0 && spec.dims.length > 1 && spec.dims[0] === -1 ? spec.dims.slice(1) : spec.dims;
    if (dims.some((d) => d < 0)) continue;
    const width = dims.reduce((a, b) => a * b, 1);
    tensors.push({ tensor: spec.name, width, offset });
    offset += width;
  }
  return { tensors, columns: offset };
}

/**
 * Profiles the inputs and, per loaded version, the outputs the model gives on the same rows. Where
 * versions take different inputs (a retrained model with more features), the versions the data
 * fits are profiled and `skipped` hears of each other one (its drift starts from live rows).
 */
export async function buildReferenceProfile(umbra: Umbra, model: string, data: ReferenceData, source: string, skipped?: (version: string, why: string) => void, note?: (line: string) => void): Promise<ReferenceProfile> {
  const loaded = umbra.manager.versionsOf(model);
  if (loaded.length === 0) throw new Error(`model '${model}' has no loaded version`);
  const width = data.names.length;
  // The data holds every input value of a row (the model runs on them); drift watches a prefix.
  const columnsOf = (mv: (typeof loaded)[number]) => fedColumns(mv.signature).columns;
  const fitting = loaded.filter((mv) => columnsOf(mv) === width);
  const versions = fitting.length > 0 ? fitting : loaded;
  if (fitting.length > 0) for (const mv of loaded) if (!fitting.includes(mv)) skipped?.(mv.version, `it takes ${columnsOf(mv)} input columns, not the data's ${width}`);
  const signature = versions[0]!.signature;
  const inputs = columnLayout(signature, 'inputs');
  // Past the columns drift watches, a row's values still feed the model but are not profiled, as
  // live drift does not count them; any other input drift cannot watch has no profile to hold.
  const beyondWatch = (u: { reason: string }) => /^(only its first \d+ of \d+ columns are watched|past the first \d+ input columns)/.test(u.reason);
  const cannot = inputs.unwatched.filter((u) => !beyondWatch(u));
  if (cannot.length > 0) {
    throw new Error(`model '${model}' has inputs a profile cannot hold (${cannot.map((u) => `${u.name}: ${u.reason}`).join('; ')}); without a profile, drift takes its reference from the first live rows`);
  }
  if (inputs.tensors.some((w) => w.positions)) return sequenceProfile(umbra, model, data, source, loaded, skipped);
  if (data.ragged) throw new Error(data.ragged);
  const fed = fedColumns(signature);
  if (fed.columns !== width) throw new Error(`model '${model}' takes ${[...new Set(loaded.map(columnsOf))].join(' or ')} input columns but the data has ${width} (${data.names.slice(0, 5).join(', ')}${width > 5 ? ', ...' : ''}); choose them with --columns`);
  for (const u of inputs.unwatched) note?.(`input ${u.name}: ${u.reason}; the profile holds the ${inputs.columns} watched columns`);
  const column = (c: number) => {
    const out = new Float64Array(data.rows);
    for (let r = 0; r < data.rows; r++) out[r] = data.values[r * width + c]!;
    return out;
  };
  const inputProfiles = inputs.names.map((n, c) => profileColumn(data.names[c] ?? n, column(c)));
  const outputs: Record<string, ReturnType<typeof profileColumn>[]> = {};
  for (const mv of versions) {
    const layout = columnLayout(mv.signature, 'outputs');
    const collected = new Float64Array(data.rows * layout.columns);
    const batch = Math.max(1, mv.signature.maxBatchSize || 1);
    for (let start = 0; start < data.rows; start += batch) {
      const n = Math.min(batch, data.rows - start);
      const tensors: Tensor[] = fed.tensors.map((w) => {
        const spec = mv.signature.inputs.find((s) => s.name === w.tensor)!;
        const arr = typedArrayFor(spec.datatype, n * w.width) as unknown as { [i: number]: number | bigint };
        const big = spec.datatype === 'INT64' || spec.datatype === 'UINT64';
        for (let r = 0; r < n; r++) {
          for (let c = 0; c < w.width; c++) {
            const v = data.values[(start + r) * width + w.offset + c]!;
            arr[r * w.width + c] = big ? BigInt(Math.round(v)) : spec.datatype === 'FP16' ? float32ToHalf(v) : v;
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

/**
 * A model some of whose inputs vary in shape per row (token ids [B, T]): each record's arrays are
 * that row's inputs at its own length, read by field name, and profiled as live drift reads them
 * (its length and channel means, features.ts); each version is run over the rows in groups of one
 * shape to profile its outputs.
 */
async function sequenceProfile(umbra: Umbra, model: string, data: ReferenceData, source: string, loaded: ModelVersion[], skipped?: (version: string, why: string) => void): Promise<ReferenceProfile> {
  const records = data.records;
  const signature = loaded[0]!.signature;
  const fits = (mv: ModelVersion) => JSON.stringify(mv.signature.inputs.map((i) => [i.name, i.datatype, i.dims])) === JSON.stringify(signature.inputs.map((i) => [i.name, i.datatype, i.dims]));
  const versions = loaded.filter(fits);
  for (const mv of loaded) if (!fits(mv)) skipped?.(mv.version, 'its inputs differ from the first loaded version\'s');
  const rowsOf = (i: number): Tensor[] => signature.inputs.map((spec) => {
    const value = records[i]![spec.name];
    const flat = (Array.isArray(value) ? value.flat(Infinity) : [value]) as unknown[];
    const fixed = spec.dims.filter((d) => d >= 0).reduce((a, b) => a * b, 1);
    if (value === undefined || flat.length === 0 || flat.length % fixed !== 0) {
      throw new Error(`${source}: row ${i + 1}: expected ${value === undefined ? `a field '${spec.name}' (the model's input, read by name)` : `a non-empty array of a multiple of ${fixed} values for '${spec.name}'`} but received ${JSON.stringify(value)?.slice(0, 80)}`);
    }
    const free = flat.length / fixed;
    const dims = spec.dims.map((d) => (d < 0 ? free : d));
    const data = typedArrayFor(spec.datatype, flat.length) as unknown as { [k: number]: number | bigint };
    const big = spec.datatype === 'INT64' || spec.datatype === 'UINT64';
    flat.forEach((v, k) => {
      const n = Number(v);
      if (!Number.isFinite(n)) throw new Error(`${source}: row ${i + 1}: expected numbers in '${spec.name}' but received ${JSON.stringify(v)}`);
      data[k] = big ? BigInt(Math.round(n)) : spec.datatype === 'FP16' ? float32ToHalf(n) : n;
    });
    return { name: spec.name, datatype: spec.datatype, shape: signature.maxBatchSize > 0 ? [1, ...dims] : dims, data: data as unknown as Tensor['data'] };
  });
  const rows = records.map((_, i) => rowsOf(i));
  const inputs = columnLayout(signature, 'inputs');
  const inputValues = new Float64Array(rows.length * inputs.columns);
  rows.forEach((tensors, r) => visitRows(inputs, tensors, (_row, c, v) => { inputValues[r * inputs.columns + c] = v; }));
  const column = (values: Float64Array, width: number, c: number) => Float64Array.from({ length: rows.length }, (_, r) => values[r * width + c]!);
  const inputProfiles = inputs.names.map((n, c) => profileColumn(n, column(inputValues, inputs.columns, c)));
  // Rows of one shape run together, as many as the model batches.
  const groups = new Map<string, number[]>();
  rows.forEach((tensors, r) => {
    const key = tensors.map((t) => t.shape.join('x')).join(',');
    groups.set(key, [...(groups.get(key) ?? []), r]);
  });
  const outputs: Record<string, ReturnType<typeof profileColumn>[]> = {};
  for (const mv of versions) {
    const layout = columnLayout(mv.signature, 'outputs');
    const collected = new Float64Array(rows.length * layout.columns);
    const batch = mv.signature.maxBatchSize > 0 ? mv.signature.maxBatchSize : 1;
    for (const members of groups.values()) {
      for (let start = 0; start < members.length; start += batch) {
        const part = members.slice(start, start + batch);
        const tensors = signature.inputs.map((_, j) => part.length === 1 ? rows[part[0]!]![j]! : concatTensors(part.map((r) => rows[r]![j]!)));
        const { response } = await umbra.infer(model, mv.version, { parameters: {}, inputs: tensors });
        visitRows(layout, response.outputs, (r, c, v) => { if (r < part.length) collected[part[r]! * layout.columns + c] = v; });
      }
    }
    const categorical = (c: number) => layout.tensors.some((t) => t.categorical && c >= t.offset && c < t.offset + t.columns);
    outputs[mv.version] = layout.names.map((name, c) => profileColumn(name, column(collected, layout.columns, c), categorical(c)));
  }
  return newProfile(model, basename(source), rows.length, inputProfiles, outputs);
}
