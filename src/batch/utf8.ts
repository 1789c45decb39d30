// Text input is UTF-8. Decoding other bytes would replace each with U+FFFD, and keys that differ
// only there (Latin-1's "José" and "Josè") would be stored as one: a line (or a Parquet string)
// that is not UTF-8 is a reject instead. Readers check each read at once (buffer.isUtf8, native and fast) and look at its
// lines one by one only when that fails, so valid input costs one pass per read, not per line.
import { isUtf8 } from 'node:buffer';

export { isUtf8 };

/**
 * Why the line `bytes[start, end)` (line `line` of the file) is not UTF-8, or undefined when it
 * is. Names the first byte that breaks it, counted from 1.
 */
export function notUtf8(bytes: Uint8Array, start: number, end: number, line: number): string | undefined {
  if (isUtf8(bytes.subarray(start, end))) return undefined;
  return `line ${line} is not UTF-8 text (${where(bytes, start, end, 'line')}); input is read as UTF-8: convert the file, e.g. iconv -f latin1 -t utf-8 for Latin-1`;
}

/** Why the string value `bytes` (of `column`, in row `row` of a Parquet file) is not UTF-8 text, or undefined when it is. */
export function valueNotUtf8(bytes: Uint8Array, column: string, row: number): string | undefined {
  if (isUtf8(bytes)) return undefined;
  return `column '${column}' of row ${row} is not UTF-8 text (${where(bytes, 0, bytes.length, 'value')}); `
    + 'a string column is read as UTF-8: write text as UTF-8, and binary values as hex or base64';
}

/** The first byte of `bytes[start, end)` that breaks its UTF-8, counted from 1, with its value. */
function where(bytes: Uint8Array, start: number, end: number, what: string): string {
  const at = firstInvalidUtf8(bytes, start, end);
  return `byte ${at - start + 1} of the ${what}, 0x${bytes[at]!.toString(16).toUpperCase().padStart(2, '0')}, starts no UTF-8 character`;
}

/** The first byte of `bytes[start, end)` where its UTF-8 breaks (end when it does not). */
export function firstInvalidUtf8(bytes: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i += 1;
      continue;
    }
    // The length of the sequence a lead byte starts, and the range of its second byte: the ranges
    // refuse overlong forms (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and past U+10FFFF (F4 90..).
    let more: number;
    let low = 0x80;
    let high = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) more = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      more = 2;
      if (b === 0xe0) low = 0xa0;
      else if (b === 0xed) high = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      more = 3;
      if (b === 0xf0) low = 0x90;
      else if (b === 0xf4) high = 0x8f;
    } else {
      return i;
    }
    const second = i + 1 < end ? bytes[i + 1]! : -1;
    if (second < low || second > high) return i;
    for (let k = 2; k <= more; k++) {
      const c = i + k < end ? bytes[i + k]! : -1;
      if (c < 0x80 || c > 0xbf) return i;
    }
    i += more + 1;
  }
  return end;
}
