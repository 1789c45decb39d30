// Reading numbers straight out of a quote-free CSV line in one pass, without cutting it into one
// string per field first: wide numeric rows spend most of their time there otherwise.

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

/** After readFloatLine: the first column that was not a finite number (-1 when all were). */
export let firstBadColumn = -1;

/**
 * Reads every number of one quote-free line in a single pass, without cutting it into fields:
 * column c's value goes to `targets[layout.input[c]][bases[layout.input[c]] + layout.offset[c]]`.
 * A plain decimal ([+-]digits[.digits], at most 15 digits) is an exact integer divided
 * by an exact power of ten, which is correctly rounded and so equal to Number(); any other field
 * goes through Number(), and one that is blank or not a finite number is written as NaN and noted
 * in firstBadColumn. Columns past the layout's width are counted, not written. Returns the column count.
 */
export function readFloatLine(text: string, delimiter: number, layout: LineLayout, targets: readonly (Float32Array | Float64Array)[], bases: Int32Array): number {
  const inputOf = layout.input;
  const offsetOf = layout.offset;
  const width = inputOf.length;
  const length = text.length;
  firstBadColumn = -1;
  let column = 0;
  let i = 0;
  for (;;) {
    const start = i;
    const sign = i < length ? text.charCodeAt(i) : delimiter;
    const negative = sign === 45;
    if (negative || sign === 43) i += 1;
    // Every digit counts, leading zeros too: at most 15 keep the mantissa an exact integer.
    let mantissa = 0;
    let digits = 0;
    let digitsBeforeDot = -1;
    let plain = true;
    for (; i < length; i++) {
      const c = text.charCodeAt(i);
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
      let n: number;
      if (plain && digits > 0 && digits <= 15) {
        n = digitsBeforeDot < 0 ? mantissa : mantissa / POW10[digits - digitsBeforeDot]!;
        if (negative) n = -n;
      } else {
        const field = text.slice(start, i);
        n = +field;
        if (n - n !== 0 || (n === 0 && field.trim() === '')) {
          if (firstBadColumn < 0) firstBadColumn = column;
          n = Number.NaN;
        }
      }
      targets[target]![bases[target]! + offsetOf[column]!] = n;
    }
    column += 1;
    if (i >= length) return column;
    i += 1;
  }
}

/** The text of field `position` of a quote-free line, or undefined when the line has fewer fields. */
export function fieldAt(text: string, delimiter: string, position: number): string | undefined {
  let start = 0;
  for (let f = 0; f < position; f++) {
    const next = text.indexOf(delimiter, start);
    if (next < 0) return undefined;
    start = next + 1;
  }
  const end = text.indexOf(delimiter, start);
  return end < 0 ? text.slice(start) : text.slice(start, end);
}
