// Row keys: a JSON Lines number key as the text it was written as, and the keys a store cannot
// hold. Both are decided as each row is parsed, so such a row is a reject with its reason: a key
// rounded by a double collides silently with another, and a key a store refuses would fail its
// whole batch, on every resume.
import { parse as losslessParse } from 'lossless-json';

/**
 * What a store cannot hold in a key: more than `maxBytes`, and (as text in a database) a NUL
 * character or an unpaired surrogate.
 */
export interface KeyRules {
  /** The store's name, for reasons. */
  store: string;
  /** The longest key, in UTF-8 bytes. */
  maxBytes: number;
}

/**
 * PostgreSQL's rules. Text cannot hold U+0000, and a key whose UTF-16 has an unpaired surrogate
 * (a JSON `\ud800` escape) would be written as U+FFFD, so two such keys would be one. A btree
 * index entry holds at most 2704 bytes (8 KiB pages), and the unique index's entry holds the
 * model (at most 128 bytes), the key and the version (at most 16 digits) with 24 bytes of headers
 * and padding: with the longest model and version a key of 2536 bytes fills it (PostgreSQL 15,
 * keys that do not compress), so keys up to 2048 bytes leave room to spare.
 */
export const POSTGRES_KEY_RULES: KeyRules = { store: 'PostgreSQL', maxBytes: 2048 };

/** Why a store with these rules cannot hold `key`, or undefined when it can. */
export function keyProblem(key: string, rules: KeyRules): string | undefined {
  if (key.includes('\u0000')) return `the key holds a NUL character (U+0000), which ${rules.store} text cannot hold`;
  // A UTF-16 unit is at most 3 bytes of UTF-8, so most keys need no count.
  if (key.length * 3 > rules.maxBytes) {
    const bytes = Buffer.byteLength(key);
    if (bytes > rules.maxBytes) return `the key is ${bytes} bytes long (UTF-8), and a ${rules.store} store indexes keys of at most ${rules.maxBytes} bytes`;
  }
  if (!(key as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    return `the key holds an unpaired UTF-16 surrogate (a \\ud800-style JSON escape), which is not Unicode text: ${rules.store} would store it as U+FFFD, the same key as others`;
  }
  return undefined;
}

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
