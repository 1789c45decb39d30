// Reading numbers straight out of the bytes of a quote-free CSV line in one pass, without decoding
// it or cutting it into one string per field: wide numeric rows spend most of their time there.

const POW10 = Array.from({ length: 16 }, (_, i) => 10 ** i);

/**
 * Where each column of a line goes when every model input is floating point and fed by scalar
 * columns: column c feeds input `input[c]` (-1: none, e.g. the key) at element `offset[c]` of
 * the row. A column feeding two inputs has no layout (the general path handles it).
 */
export interface LineLayout {
  input: Int32Array;
  offset: Int32Array;
}

/** The layout of `width` columns, or undefined when some column feeds more than one element. */
export function lineLayout(width: number, inputs: readonly { positions: readonly number[] }[]): LineLayout | undefined {
  const input = new Int32Array(width).fill(-1);
  const offset = new Int32Array(width);
  for (let j = 0; j < inputs.length; j++) {
    const positions = inputs[j]!.positions;
    for (let i = 0; i < positions.length; i++) {
      const c = positions[i]!;
      if (input[c] !== -1) return undefined;
      input[c] = j;
      offset[c] = i;
    }
  }
  return { input, offset };
}

/**
 * Whether Number() would read `text` as a hexadecimal, binary or octal literal (`0x10`, `0b1`,
 * `0o7`): a CSV number is decimal, and such a field is more likely an identifier or a hash than
 * the number JavaScript makes of it. Number() takes these forms only unsigned, after whitespace.
 */
export function radixLiteral(text: string): boolean {
  const c = text.charCodeAt(0);
  if (c === 48) {
    const next = text.charCodeAt(1) | 0x20;
    return next === 0x78 || next === 0x62 || next === 0x6f;
  }
  // A digit, sign or dot first: decimal (or no number at all).
  if ((c > 48 && c <= 57) || c === 45 || c === 43 || c === 46) return false;
  return RADIX_LITERAL.test(text);
}

const RADIX_LITERAL = /^\s*0[xXbBoO]/;

/**
 * After readFloatLine: the first column that was not a finite decimal number, or whose number the
 * target (FP32) cannot hold (-1 when all were fine).
 */
export let firstBadColumn = -1;

/**
 * Reads every number of one quote-free line, `bytes[start, end)`, in a single pass, without
 * cutting it into fields or decoding it: column c's value goes to
 * `targets[layout.input[c]][bases[layout.input[c]] + layout.offset[c]]`.
 * A plain decimal ([+-]digits[.digits], at most 15 digits) is an exact integer divided by an exact
 * power of ten, which is correctly rounded and so equal to Number() (and within FP32's range); any
 * other field is decoded and goes through Number(), and one that is blank, not a finite decimal
 * number (radixLiteral) or past the target's range (FP32's, where it is written as an infinity)
 * is noted in firstBadColumn. Columns past the layout's width are counted, not written. Returns
 * the column count. `delimiter` is a one-byte character code.
 */
export function readFloatLine(bytes: Uint8Array, start: number, end: number, delimiter: number, layout: LineLayout, targets: readonly (Float32Array | Float64Array)[], bases: Int32Array): number {
  const inputOf = layout.input;
  const offsetOf = layout.offset;
  const width = inputOf.length;
  firstBadColumn = -1;
  let column = 0;
  let i = start;
  for (;;) {
    const fieldStart = i;
    const sign = i < end ? bytes[i]! : delimiter;
    const negative = sign === 45;
    if (negative || sign === 43) i += 1;
    // Every digit counts, leading zeros too: at most 15 keep the mantissa an exact integer.
    let mantissa = 0;
    let digits = 0;
    let digitsBeforeDot = -1;
    let plain = true;
    for (; i < end; i++) {
      const c = bytes[i]!;
      const digit = c - 48;
      if (digit >= 0 && digit <= 9) {
        mantissa = mantissa * 10 + digit;
        digits += 1;
      } else if (c === delimiter) {
        break;
      } else if (c === 46 && digitsBeforeDot < 0) {
        digitsBeforeDot = digits;
      } else {
        plain = false;
      }
    }
    const target = column < width ? inputOf[column]! : -1;
    if (target >= 0) {
      const into = targets[target]!;
      const at = bases[target]! + offsetOf[column]!;
      if (plain && digits > 0 && digits <= 15) {
        let n = digitsBeforeDot < 0 ? mantissa : mantissa / POW10[digits - digitsBeforeDot]!;
        if (negative) n = -n;
        into[at] = n;
      } else {
        const field = decodeUtf8(bytes, fieldStart, i);
        let n = +field;
        if (n - n !== 0 || (n === 0 && field.trim() === '') || radixLiteral(field)) n = Number.NaN;
        into[at] = n;
        // Past FP32's range the stored number is an infinity: only a number read here can be.
        if (into[at]! - into[at]! !== 0 && firstBadColumn < 0) firstBadColumn = column;
      }
    }
    column += 1;
    if (i >= end) return column;
    i += 1;
  }
}

/** Field `position` of the quote-free line `bytes[start, end)`, decoded; undefined when the line has fewer fields. */
export function fieldAt(bytes: Uint8Array, start: number, end: number, delimiter: number, position: number): string | undefined {
  let from = start;
  for (let f = 0; f < position; f++) {
    const next = bytes.indexOf(delimiter, from);
    if (next < 0 || next >= end) return undefined;
    from = next + 1;
  }
  const next = bytes.indexOf(delimiter, from);
  return decodeUtf8(bytes, from, next < 0 || next >= end ? end : next);
}

const utf8 = new TextDecoder();

/** `bytes[start, end)` as text. Records parsed in a worker arrive as plain Uint8Arrays, not Buffers. */
export function decodeUtf8(bytes: Uint8Array, start: number, end: number): string {
  return Buffer.isBuffer(bytes) ? bytes.toString('utf8', start, end) : utf8.decode(bytes.subarray(start, end));
}
