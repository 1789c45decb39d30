// Row keys: a JSON Lines number key as the text it was written as, decided as each row is parsed:
// a key rounded by a double would collide silently with another key, so one that a double cannot
// hold exactly is a reject with its reason instead.
import { parse as losslessParse } from 'lossless-json';

const INTEGER_LITERAL = /^-?\d+$/;

/**
 * The key of a JSON Lines record whose key column holds a number that is not a safe integer
 * (`value`, as JSON.parse read the line `text`), or why it has none. An integer is its digits as
 * written, past 2^53 too, as a Parquet INT64 or a CSV field would be; another number is
 * JSON.parse's text for it where that text tells it from every other written number (at most 15
 * significant digits); otherwise two different numbers could be stored as one key.
 */
export function jsonNumberKey(value: number, text: string, column: string): { key: string } | { problem: string } {
  let literal: string | undefined;
  try {
    const parsed = losslessParse(text, null, (token) => ({ token })) as Record<string, { token?: string } | undefined>;
    literal = parsed[column]?.token;
  } catch {
    // A key given twice with two values, which JSON.parse takes and this parser does not.
  }
  if (literal !== undefined && INTEGER_LITERAL.test(literal)) return { key: literal };
  if (literal !== undefined && Number.isFinite(value) && significantDigits(literal) <= 15) return { key: String(value) };
  const written = literal ?? String(value);
  return { problem: `the key ${written} is a number a double does not hold exactly (JSON reads it as ${String(value)}), so it could be stored as another row's key; write it as a string ("${written}") to key the row by its text` };
}

/** Significant digits of a number's text (`-0.00120e5`: 2). */
function significantDigits(literal: string): number {
  const mantissa = literal.replace(/[eE].*$/, '').replace(/[-+.]/g, '');
  return mantissa.replace(/^0+/, '').replace(/0+$/, '').length;
}
