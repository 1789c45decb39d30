// One assertion for a property checked over many items (rows, random steps, datatypes). An
// assertion per loop item made the suite's count mostly loop iterations (thousands) and hid which
// properties it checks; here each item that breaks the property is collected and the property
// is asserted once, with the number of items checked and the first failures in its message.
import { isDeepStrictEqual, inspect } from 'node:util';

interface Asserts {
  strictSame(found: unknown, wanted: unknown, message?: string, extra?: { stack?: string }): boolean;
}

const SHOWN = 5;

export interface Property {
  /** Records one item; `detail` describes it and is only called when `ok` is false. */
  check(ok: boolean, detail: () => string): void;
  /** Records one item that holds when `actual` deep-equals `expected` (strictly). */
  same(actual: unknown, expected: unknown, detail: () => string): void;
  /** The one assertion: no item broke the property (at least one item was checked). */
  assert(t: Asserts): boolean;
}

export function property(name: string): Property {
  const failures: string[] = [];
  let checked = 0;
  const check = (ok: boolean, detail: () => string) => {
    checked += 1;
    if (!ok) failures.push(detail());
  };
  function assert(t: Asserts): boolean {
    const summary = failures.length === 0 ? `${checked} checked` : `${failures.length} of ${checked} failed`;
    // A failure points at the test that asserted, not at this helper.
    const caller: { stack?: string } = {};
    Error.captureStackTrace(caller, assert);
    const stack = caller.stack?.split('\n').slice(1).join('\n');
    // The first failures are the assertion's diff; an empty loop is a failure of its own.
    return t.strictSame(checked === 0 ? ['nothing was checked'] : failures.slice(0, SHOWN), [], `${name} (${summary})`, { stack });
  }
  return {
    check,
    same: (actual, expected, detail) => check(isDeepStrictEqual(actual, expected),
      () => `${detail()}: ${inspect(actual, { depth: 3, breakLength: Infinity })} instead of ${inspect(expected, { depth: 3, breakLength: Infinity })}`),
    assert,
  };
}
