// JSON text that spells bigints as their digits. JSON.stringify cannot write a bigint, and as a
// Number one past 2^53 would be rounded (9007199254740993n would read 9007199254740992). Each is
// written as a marked string first and then unquoted, so the text spells the integer itself.
// No Node modules: the client (browsers too) uses it.

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
