// JSON text that spells bigints as their digits. JSON.stringify cannot write a bigint, and as a
// Number one past 2^53 would be rounded (9007199254740993n would read 9007199254740992). Each is
// written as a marked string first and then unquoted, so the text spells the integer itself.
// Reading goes the other way: text that spells such an integer is parsed again keeping it a bigint.
// No Node modules: the client (browsers too) uses it.
import { parse as losslessParse } from 'lossless-json';

const MARK = '\u0000bigint:';
const MARKED = /"\\u0000bigint:(-?\d+)"/g;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** JSON.stringify's replacer step for a bigint: a Number where that is exact, else its marked digits. */
export function bigintForJson(value: bigint): number | string {
  return value >= -SAFE && value <= SAFE ? Number(value) : MARK + value.toString();
}

/** The marked bigints of `text` (JSON.stringify's output) unquoted into their digits. */
export function unmarkBigints(text: string): string {
  return text.includes('bigint:') ? text.replace(MARKED, '$1') : text;
}

/** JSON.stringify, with every bigint written as its exact digits. */
export function stringifyExact(value: unknown): string {
  return unmarkBigints(JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? bigintForJson(v) : v)));
}

const INTEGER_LITERAL = /^-?\d{16,}$/;

/** Whether an integer literal reads, as a double, as a number other than the one it spells (and is not the shortest spelling of that double). */
function readsAsAnother(literal: string): boolean {
  const digits = literal.startsWith('-') ? literal.slice(1) : literal;
  if (digits.length > 20 || BigInt(digits) >= 2n ** 64n) return false;
  const read = Number(digits);
  return BigInt(read) !== BigInt(digits) && String(read) !== digits;
}

/**
 * Whether `text` spells an integer of 16 or more digits that reads as another number: one a
 * double does not hold and that is not the shortest spelling of a double either (JSON.stringify
 * of 2**62 writes 4611686018427388000, which means 2**62). The scanner's test, for text it did
 * not scan; digits inside strings may count too, which can only refuse, never alter.
 */
export function hasInexactInteger(text: string): boolean {
  for (const [, digits] of text.matchAll(/(?<![\d.eE+-])-?(\d{16,})(?![\d.eE])/g) as IterableIterator<[string, string]>) {
    if (readsAsAnother(digits)) return true;
  }
  return false;
}

/**
 * `text` parsed with every integer literal of 16 or more digits kept as a bigint, as spelled (past
 * 64 bits too): for wording a refusal with the digits a client sent. Throws where
 * parseKeepingIntegers does.
 */
export function parseSpellingIntegers(text: string): unknown {
  return losslessParse(text, null, (literal) => (INTEGER_LITERAL.test(literal) ? BigInt(literal) : Number(literal)));
}

/**
 * `text` parsed with every integer that a double would not hold as spelled kept as a bigint
 * (lossless-json's parser); every other number is what JSON.parse gives. Several times
 * JSON.parse's cost: for text hasInexactInteger picked out. Throws where lossless-json does (a
 * key given twice with two values, which JSON.parse takes).
 */
export function parseKeepingIntegers(text: string): unknown {
  return losslessParse(text, null, (literal) => (INTEGER_LITERAL.test(literal) && readsAsAnother(literal) ? BigInt(literal) : Number(literal)));
}
