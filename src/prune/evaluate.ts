// Accuracy (classifiers) or RMSE (regressors) of an ONNX model on a labelled CSV or Parquet file, through
// onnxruntime-node (or the native backend, on the CPU or on a GPU at a precision), so a pruned
// model can be compared with the dense one on the same rows.
import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import * as ort from 'onnxruntime-node';
import { FlagError, UmbraError } from '../errors.js';
import { isParquetFile, readParquetObjects } from '../batch/parquet.js';
import { modelSignature, type ModelProto } from '../onnx/model-io.js';
import { openNative } from '../workers/backends/native.js';
import type { GpuPrecision } from '../repository/config.js';

export interface EvalData {
  /** Feature columns in file order: every column but the label, the filter column and non-numeric ones. */
  columns: string[];
  /** Row-major rows x columns.length. */
  features: Float32Array;
  labels: Float64Array;
  rows: number;
}

export interface EvalDataOptions {
  label: string;
  /** Keep only rows where column = value (e.g. split=test). */
  filter?: { column: string; value: string };
}

const isNumber = (s: string) => s.trim() !== '' && Number.isFinite(Number(s));

/** A Parquet file's rows as CSV's records would be: a header, then each row's values as text (a list column is not a feature). */
async function parquetRecords(path: string): Promise<string[][]> {
  const objects = await readParquetObjects(path);
  const header = objects.length > 0 ? Object.keys(objects[0]!) : [];
  return [header, ...objects.map((o) => header.map((c) => (typeof o[c] === 'number' || typeof o[c] === 'string' ? String(o[c]) : '')))];
}

/** The labelled rows of a CSV file (header first) or a Parquet file (told by its first bytes). */
export async function readEvalData(path: string, options: EvalDataOptions): Promise<EvalData> {
  let records: string[][];
  try {
    records = isParquetFile(path) ? await parquetRecords(path) : parse(readFileSync(path, 'utf8'), { skip_empty_lines: true, trim: true, bom: true }) as string[][];
  } catch (err) {
    if (err instanceof UmbraError) throw err;
    throw new UmbraError('INVALID_ARGUMENT', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const header = records[0] ?? [];
  const labelAt = header.indexOf(options.label);
  if (labelAt < 0) throw new UmbraError('INVALID_ARGUMENT', `expected a label column named ${JSON.stringify(options.label)} in ${path} but its columns are ${header.join(', ')}`);
  const filter = options.filter;
  const filterAt = filter ? header.indexOf(filter.column) : -1;
  if (filter && filterAt < 0) throw new UmbraError('INVALID_ARGUMENT', `expected a column named ${JSON.stringify(filter.column)} to filter on in ${path} but its columns are ${header.join(', ')}`);
  const rows = records.slice(1).filter((r) => !filter || r[filterAt] === filter.value);
  if (rows.length === 0) throw new UmbraError('INVALID_ARGUMENT', `${path} has no rows${filter ? ` where ${filter.column}=${filter.value}` : ''}`);
  // A feature is a column whose first value that is there is a number. A blank or NaN cell in
  // one is a missing value, refused with its row: dropping the column instead fed the model the
  // other columns in its place (or failed with a misleading width).
  const featureAt = header
    .map((_, j) => j)
    .filter((j) => {
      if (j === labelAt || j === filterAt) return false;
      const present = rows.find((r) => (r[j] ?? '').trim() !== '');
      // A column with no value at all (a Parquet list column reads as blanks) is not a feature.
      return present !== undefined && (isNumber(present[j]!) || /^[+-]?(nan|inf(inity)?)$/i.test(present[j]!.trim()));
    });
  const width = featureAt.length;
  const features = new Float32Array(rows.length * width);
  const labels = new Float64Array(rows.length);
  const rowName = (i: number) => `row ${i + 1}${filter ? ` of those where ${filter.column}=${filter.value}` : ''}`;
  rows.forEach((r, i) => {
    const label = r[labelAt] ?? '';
    if (!isNumber(label)) throw new UmbraError('INVALID_ARGUMENT', `${path}: ${rowName(i)} has label ${JSON.stringify(label)}, expected a number`);
    labels[i] = Number(label);
    featureAt.forEach((j, k) => {
      const cell = r[j] ?? '';
      if (!isNumber(cell)) throw new UmbraError('INVALID_ARGUMENT', `${path}: ${rowName(i)}: expected a number for column ${JSON.stringify(header[j])} but received ${JSON.stringify(cell)} (a missing value; drop or fill the row)`);
      features[i * width + k] = Number(cell);
    });
  });
  return { columns: featureAt.map((j) => header[j]!), features, labels, rows: rows.length };
}

export interface EvalResult {
  metric: 'accuracy' | 'rmse';
  value: number;
  /** True for accuracy: used to orient reports and plots. */
  higherIsBetter: boolean;
  output: string;
  rows: number;
}

/** The single input's name and type, and the output to score (`output`, else an integer one, else the first). */
export function evalPlan(model: ModelProto, data: EvalData, output?: string): { input: string; fp64: boolean; output: string; rowDims: number[] } {
  const sig = modelSignature(model);
  if (sig.inputs.length !== 1) throw new UmbraError('INVALID_ARGUMENT', `expected a model with one input for --eval but it has ${sig.inputs.length} (${sig.inputs.map((i) => i.name).join(', ')})`);
  const input = sig.inputs[0]!;
  if (input.datatype !== 'FP32' && input.datatype !== 'FP64') throw new UmbraError('INVALID_ARGUMENT', `expected an FP32 or FP64 input for --eval but "${input.name}" is ${input.datatype}`);
  // Each row's columns fill the input's dims past the batch one in order: 64 pixel columns are a
  // [64] input or a CNN's [1, 8, 8]; one free dimension takes what the others leave.
  const rowDims = input.dims.slice(1);
  const fixed = rowDims.filter((d) => d >= 0).reduce((a, b) => a * b, 1);
  const free = rowDims.filter((d) => d < 0).length;
  const fits = free === 0 ? fixed === data.columns.length : free === 1 && fixed > 0 && data.columns.length % fixed === 0;
  if (input.dims.length < 2 || !fits) {
    // Which columns were taken: an id or row-number column counts as a feature, and only the
    // names show it.
    const names = data.columns.length <= 8 ? data.columns.join(', ') : `${data.columns.slice(0, 3).join(', ')}, ..., ${data.columns.slice(-3).join(', ')}`;
    throw new UmbraError('INVALID_ARGUMENT', `expected input "${input.name}" to take the ${data.columns.length} feature columns per row ([batch, ${data.columns.length}], or dims past the batch one whose product is ${data.columns.length}) but it is [${input.dims.join(', ')}]; the features are every numeric column but --label and --eval-filter's (${names}): drop the others from the data`);
  }
  let chosen = output;
  if (chosen !== undefined && !sig.outputs.some((o) => o.name === chosen)) {
    throw new FlagError(`--eval-output: expected one of the model's outputs (${sig.outputs.map((o) => o.name).join(', ')}) but received ${JSON.stringify(chosen)}`);
  }
  chosen ??= (sig.outputs.find((o) => o.datatype === 'INT64' || o.datatype === 'INT32') ?? sig.outputs[0])?.name;
  if (chosen === undefined) throw new UmbraError('INVALID_ARGUMENT', 'expected a model with an output for --eval');
  return { input: input.name, fp64: input.datatype === 'FP64', output: chosen, rowDims: rowDims.map((d) => (d < 0 ? data.columns.length / fixed : d)) };
}

const BATCH_ROWS = 4096;

/** One batch of rows through a model: the scored output's values and dims. */
type BatchRunner = (rows: number, features: Float32Array) => Promise<{ values: ArrayLike<number | bigint>; dims: readonly number[]; integer: boolean }>;

/** Scores `run`'s answers on `data` batch by batch: accuracy for classifiers, RMSE for regressors. */
async function score(run: BatchRunner, plan: ReturnType<typeof evalPlan>, data: EvalData): Promise<EvalResult> {
  const width = data.columns.length;
  let correct = 0;
  let squared = 0;
  let classifier: boolean | undefined;
  for (let start = 0; start < data.rows; start += BATCH_ROWS) {
    const rows = Math.min(BATCH_ROWS, data.rows - start);
    const out = await run(rows, data.features.subarray(start * width, (start + rows) * width));
    const perRow = out.dims.length <= 1 ? 1 : out.dims.slice(1).reduce((a, b) => a * b, 1);
    classifier ??= out.integer || perRow > 1;
    const values = out.values;
    for (let r = 0; r < rows; r++) {
      const label = data.labels[start + r]!;
      // A label no answer can equal (a regression target, a 1-based class) would only lower the
      // accuracy, before and after alike, and the report would not say why.
      if (classifier && (!Number.isInteger(label) || (perRow > 1 && (label < 0 || label >= perRow)))) {
        const classes = perRow > 1 ? `one of its ${perRow} classes (an integer from 0 to ${perRow - 1}: output "${plan.output}" gives ${perRow} scores per row, the argmax is the class)` : `a class of integer output "${plan.output}"`;
        throw new UmbraError('INVALID_ARGUMENT', `expected each label to name ${classes} but scored row ${start + r + 1} has label ${label}; check --label, or name a single-value output with --eval-output to score a regression target by RMSE`);
      }
      if (!classifier) {
        const d = Number(values[r * perRow]) - label;
        squared += d * d;
      } else if (perRow === 1) {
        if (Number(values[r]) === label) correct++;
      } else {
        let best = 0;
        for (let c = 1; c < perRow; c++) if (Number(values[r * perRow + c]) > Number(values[r * perRow + best])) best = c;
        if (best === label) correct++;
      }
    }
  }
  return classifier
    ? { metric: 'accuracy', value: correct / data.rows, higherIsBetter: true, output: plan.output, rows: data.rows }
    : { metric: 'rmse', value: Math.sqrt(squared / data.rows), higherIsBetter: false, output: plan.output, rows: data.rows };
}

/** Scores the model file at `path` (loaded by path, so external data resolves) on `data`, through onnxruntime. */
export async function evaluateModel(path: string, plan: ReturnType<typeof evalPlan>, data: EvalData, threads = 1): Promise<EvalResult> {
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: threads, interOpNumThreads: 1 });
  const width = data.columns.length;
  try {
    return await score(async (rows, slice) => {
      const feed = plan.fp64 ? new ort.Tensor('float64', Float64Array.from(slice), [rows, ...plan.rowDims]) : new ort.Tensor('float32', slice, [rows, ...plan.rowDims]);
      const out = (await session.run({ [plan.input]: feed }, [plan.output]))[plan.output]!;
      return { values: out.data as ArrayLike<number | bigint>, dims: out.dims, integer: out.type === 'int64' || out.type === 'int32' };
    }, plan, data);
  } finally {
    await session.release();
  }
}

/** Where and how the native backend scores a model: the device, and on a GPU the dense layers' precision. */
export interface NativeEvalTarget {
  device: 'cpu' | 'cuda';
  precision: GpuPrecision;
}

/**
 * Scores the model file at `path` on `data` as the native backend serves it: on the CPU, or on a
 * GPU at a precision (tf32 and bf16 run the dense layers on the tensor cores), so a pruned model's
 * accuracy can be read at the precision it will be served at.
 */
export async function evaluateNative(path: string, plan: ReturnType<typeof evalPlan>, data: EvalData, target: NativeEvalTarget, threads = 1): Promise<EvalResult> {
  if (plan.fp64) throw new UmbraError('INVALID_ARGUMENT', `expected an FP32 input for scoring on the native backend but "${plan.input}" is FP64`);
  const session = openNative(path, threads, { device: target.device, ...(target.device === 'cuda' ? { cuda: { precision: target.precision } } : {}) });
  const width = data.columns.length;
  try {
    return await score(async (rows, slice) => {
      const [out] = await session.run([{ name: plan.input, datatype: 'FP32', shape: [rows, ...plan.rowDims], data: slice.slice() }], [plan.output]);
      return { values: out!.data as ArrayLike<number | bigint>, dims: out!.shape, integer: out!.datatype === 'INT64' || out!.datatype === 'INT32' };
    }, plan, data);
  } finally {
    await session.release();
  }
}
