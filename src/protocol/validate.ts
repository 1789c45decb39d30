// Field checks shared by the JSON and binary paths. Every failure is an INVALID_INPUT (400) worded
// "expected X for Y but received Z", naming the request field so a client can find its mistake.

import { UmbraError, invalid } from '../errors.js';
import { monitorStats } from '../native/monitor-stats.js';
import type { DataType, TensorData, TensorSpec } from './types.js';

/** Default cap on elements per input tensor: 64 Mi (256 MiB of FP32). */
export const DEFAULT_MAX_ELEMENTS = 64 * 1024 * 1024;

export function badInput(message: string): UmbraError {
  return new UmbraError('INVALID_INPUT', message);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function readString(value: unknown, what: string): string {
  if (typeof value !== 'string') throw invalid('INVALID_INPUT', 'a string', what, value);
  return value;
}

export function readOptionalBoolean(value: unknown, what: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw invalid('INVALID_INPUT', 'a boolean', what, value);
  return value;
}

export function readParameters(value: unknown, what: string): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) throw invalid('INVALID_INPUT', 'an object', what, value);
  return value;
}

export function readShape(value: unknown, what: string): number[] {
  if (!Array.isArray(value)) throw invalid('INVALID_INPUT', 'an array of non-negative integers', what, value);
  for (let i = 0; i < value.length; i++) {
    const dim: unknown = value[i];
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0) {
      // An integer past 2^53 - 1 (a gRPC int64, or JSON digits) is not a number that reads exactly: say it is too large.
      if (typeof dim === 'number' && Number.isInteger(dim) && dim > 0) {
        throw new UmbraError('INVALID_INPUT', `expected a dimension of at most ${Number.MAX_SAFE_INTEGER} for ${what}[${i}] but received one of about ${dim.toExponential(3)}: no tensor is that large`);
      }
      throw invalid('INVALID_INPUT', 'a non-negative integer', `${what}[${i}]`, dim);
    }
  }
  return value as number[];
}

/**
 * Element count of an already validated shape, refusing counts over `maxElements` before anything
 * is allocated. A zero dim anywhere makes the tensor empty however large the others are.
 */
export function countElements(shape: readonly number[], what: string, maxElements: number): number {
  if (shape.includes(0)) return 0;
  let count = 1;
  for (const dim of shape) {
    count *= dim;
    if (count > maxElements) {
      throw badInput(`expected at most ${maxElements} elements for ${what} but received shape [${shape.join(', ')}]`);
    }
  }
  return count;
}

/** Match a request shape against the model's dims; a batching model adds a leading 1..maxBatchSize dim. */
export function checkShapeAgainstSpec(shape: readonly number[], spec: TensorSpec, maxBatchSize: number, what: string): void {
  const batched = maxBatchSize > 0;
  // Built only on failure: this runs for every input of every request.
  const mismatch = (): UmbraError => {
    const expected = batched ? ['batch', ...spec.dims.map(formatDim)] : spec.dims.map(formatDim);
    return badInput(`expected shape [${expected.join(', ')}] for ${what} but received [${shape.join(', ')}]`);
  };
  if (shape.length !== spec.dims.length + (batched ? 1 : 0)) throw mismatch();
  let offset = 0;
  if (batched) {
    const batch = shape[0]!;
    if (batch < 1 || batch > maxBatchSize) {
      throw badInput(`expected a batch size between 1 and ${maxBatchSize} for ${what} but received ${batch} (shape [${shape.join(', ')}])`);
    }
    offset = 1;
  }
  for (let i = 0; i < spec.dims.length; i++) {
    const want = spec.dims[i]!;
    const got = shape[i + offset]!;
    if (want >= 0) {
      if (got !== want) throw mismatch();
    } else if (got === 0) {
      throw emptyAlongFreeDim(shape, i + offset, what);
    }
  }
}

/**
 * A free (-1) dimension given as 0: the tensor holds nothing to infer on, and some runtimes stop
 * the whole process on one rather than fail the run (onnxruntime aborts in GRU and LSTM and
 * divides by zero in attention given a zero-length sequence), so it never reaches a model.
 */
function emptyAlongFreeDim(shape: readonly number[], dim: number, what: string): UmbraError {
  return badInput(`expected at least 1 along dimension ${dim} of ${what} (a free dimension of the model) but received 0 (shape [${shape.join(', ')}]): an empty tensor has nothing to infer on`);
}

function formatDim(dim: number): string {
  return dim < 0 ? '-1' : String(dim);
}

export function checkDatatype(datatype: unknown, spec: TensorSpec, what: string): DataType {
  if (datatype !== spec.datatype) throw invalid('INVALID_INPUT', `datatype ${spec.datatype}`, what, datatype);
  return spec.datatype;
}

const NON_FINITE_HINT = '; set parameters.allow_nan to true to send NaN or infinity';

/**
 * The one NaN/infinity gate for float inputs, applied after conversion on both the JSON and binary
 * paths, so the rule and its message are the same however the tensor arrived.
 */
/**
 * Why a BYTES element, as text, cannot reach a model as it was sent; undefined when it can.
 * onnxruntime-node hands strings to the runtime as NUL-terminated UTF-8: a NUL ends the string
 * there ("cat\u0000x" reached a LabelEncoder as "cat" and was answered as "cat"), and an unpaired
 * surrogate is written as U+FFFD. Refused instead of answered for input the model never saw.
 */
export function textElementProblem(s: string): string | undefined {
  const nul = s.indexOf('\u0000');
  if (nul >= 0) return `a NUL character at character ${nul} (onnxruntime's strings end at the first NUL, so the model would see a shortened string)`;
  if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    const at = s.search(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
    return `an unpaired surrogate (\\u${s.charCodeAt(at).toString(16)}) at character ${at}, which is not text (onnxruntime would be given U+FFFD instead)`;
  }
  return undefined;
}

export function checkFinite(data: TensorData, datatype: DataType, what: string, allowNan: boolean): void {
  if (allowNan) return;
  if (datatype === 'FP32' || datatype === 'FP64') {
    const values = data as Float32Array | Float64Array;
    if (allFinite(values)) return;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      // v - v is NaN exactly when v is NaN or +-Infinity.
      if (v - v !== 0) throw badInput(`expected a finite number for ${what} element ${i} but received ${v}${NON_FINITE_HINT}`);
    }
  } else if (datatype === 'FP16') {
    const bits = data as Uint16Array;
    for (let i = 0; i < bits.length; i++) {
      const b = bits[i]!;
      if ((b & 0x7c00) === 0x7c00) {
        const received = (b & 0x3ff) !== 0 ? 'NaN' : b & 0x8000 ? '-Infinity' : 'Infinity';
        throw badInput(`expected a finite number for ${what} element ${i} but received ${received}${NON_FINITE_HINT}`);
      }
    }
  }
}

/** FP32 inputs from this many values are checked by the addon's vector loop (one call costs about a microsecond). */
const NATIVE_FINITE_MIN = 4096;

/**
 * Whether every value is finite. Large FP32 tensors go through the addon's check of each value's
 * exponent bits (native/src/cpu/tensor_stats.cc): a 1 MiB input in about 0.02 ms of the serving
 * thread, against 0.06 for the full statistics pass it used before and 0.27 for the loop below
 * (bench/drift-count.mjs, bench/RESULTS-monitoring.md).
 *
 * The loop: v * 0 is 0 for a finite v and NaN for NaN or an infinity, so the sums stay 0 exactly
 * when every value is finite. Without a branch per value and with four independent sums this runs
 * at about twice the speed of the per-value test, which then only runs to find the first bad
 * element for the message.
 */
export function allFinite(values: Float32Array | Float64Array): boolean {
  if (values.length >= NATIVE_FINITE_MIN && values instanceof Float32Array) {
    const stats = monitorStats();
    if (stats) return stats.allFiniteF32(values);
  }
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  const whole = values.length & ~3;
  let i = 0;
  for (; i < whole; i += 4) {
    a += values[i]! * 0;
    b += values[i + 1]! * 0;
    c += values[i + 2]! * 0;
    d += values[i + 3]! * 0;
  }
  for (; i < values.length; i++) a += values[i]! * 0;
  return a + b + c + d === 0;
}

/** `parameters.allow_nan` on the input wins over the request-level one; both must be booleans. */
export function allowNanFor(inputParameters: Record<string, unknown> | undefined, requestAllowNan: boolean, what: string): boolean {
  const own = readOptionalBoolean(inputParameters?.['allow_nan'], `${what} parameters.allow_nan`);
  return own ?? requestAllowNan;
}
