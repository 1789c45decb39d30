// Argument checks shared by the native adapters (kernels.ts, prune.ts): every message reads
// "expected X for Y but received Z", and native errors come back as UmbraError.
import { invalid, UmbraError } from '../errors.js';

export const MAX_DIMENSION = 2 ** 31 - 1;

export function checkDimension(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_DIMENSION) {
    throw invalid('INVALID_ARGUMENT', 'an integer in [0, 2^31)', what, value);
  }
  return value;
}

export function checkThreads(value: unknown, what = 'threads'): number {
  if (value === undefined) return 1;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 256) {
    throw invalid('INVALID_ARGUMENT', 'an integer in [1, 256]', what, value);
  }
  return value;
}

export function checkFraction(value: unknown, what: string): number {
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) throw invalid('INVALID_ARGUMENT', 'a number in [0, 1]', what, value);
  return value;
}

export function checkFloat32(value: unknown, length: number, what: string, exact = false): Float32Array {
  if (!(value instanceof Float32Array)) throw invalid('INVALID_ARGUMENT', 'a Float32Array', what, value);
  if (exact ? value.length !== length : value.length < length) {
    throw new UmbraError('INVALID_ARGUMENT',
      `expected a Float32Array of ${exact ? '' : 'at least '}${length} elements for ${what} but received one of ${value.length}`);
  }
  return value;
}

export function checkInt32(value: unknown, length: number, what: string): Int32Array {
  if (!(value instanceof Int32Array)) throw invalid('INVALID_ARGUMENT', 'an Int32Array', what, value);
  if (value.length < length) {
    throw new UmbraError('INVALID_ARGUMENT', `expected an Int32Array of at least ${length} elements for ${what} but received one of ${value.length}`);
  }
  return value;
}

export function checkUint16(value: unknown, length: number, what: string): Uint16Array {
  if (!(value instanceof Uint16Array)) throw invalid('INVALID_ARGUMENT', 'a Uint16Array', what, value);
  if (value.length < length) {
    throw new UmbraError('INVALID_ARGUMENT', `expected a Uint16Array of at least ${length} elements for ${what} but received one of ${value.length}`);
  }
  return value;
}

export function checkOneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw invalid('INVALID_ARGUMENT', `one of ${allowed.join(', ')}`, what, value);
  }
  return value as T;
}

/** Runs a native call, turning its TypeError/RangeError/Error into an UmbraError with the same message. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw toUmbraError(err);
  }
}

export async function callNativeAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toUmbraError(err);
  }
}

/** A native TypeError/RangeError/Error as an UmbraError with the same message. */
export function toUmbraError(err: unknown): unknown {
  if (err instanceof UmbraError) return err;
  if (err instanceof Error) return new UmbraError('INVALID_ARGUMENT', err.message, { cause: err });
  return err;
}
