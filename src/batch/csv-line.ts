// Reading numbers straight out of a quote-free CSV line, without cutting it into one string per
// field first: wide numeric rows spend most of their time there otherwise.

/** Field boundaries of `text`: field i spans [bounds[i], bounds[i + 1] - 1). Returns the field count. */
export function fieldBounds(text: string, delimiter: string, bounds: Int32Array): { count: number; bounds: Int32Array } {
  let count = 0;
  let at = 0;
  let out = bounds;
  for (;;) {
    if (count + 2 > out.length) {
      const grown = new Int32Array(out.length * 2);
      grown.set(out);
      out = grown;
    }
    out[count] = at;
    count += 1;
    const next = text.indexOf(delimiter, at);
    if (next < 0) break;
    at = next + 1;
  }
  out[count] = text.length + 1;
  return { count, bounds: out };
}

const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);

/**
 * The number in text[start, end) when it is a plain decimal ([+-]digits[.digits], at most 15
 * significant digits): an exact integer divided by an exact power of ten, which is correctly
 * rounded and so equals Number(). Anything else (exponents, blanks, more digits) returns
 * undefined for the caller to hand to Number().
 */
export function parsePlainDecimal(text: string, start: number, end: number): number | undefined {
  let i = start;
  let negative = false;
  let c = text.charCodeAt(i);
  if (c === 45) {
    negative = true;
    i += 1;
  } else if (c === 43) {
    i += 1;
  }
  let mantissa = 0;
  let digits = 0;
  let scale = 0;
  let seenDot = false;
  let any = false;
  for (; i < end; i++) {
    c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      any = true;
      if (mantissa === 0 && c === 48) {
        if (seenDot) scale += 1;
        continue;
      }
      if (++digits > 15) return undefined;
      mantissa = mantissa * 10 + (c - 48);
      if (seenDot) scale += 1;
    } else if (c === 46 && !seenDot) {
      seenDot = true;
    } else {
      return undefined;
    }
  }
  if (!any || scale > 22) return undefined;
  const value = scale === 0 ? mantissa : mantissa / POW10[scale]!;
  return negative ? -value : value;
}
