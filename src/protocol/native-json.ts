// The addon's JSON helpers (native/src/json), resolved once per thread: the request-body scanner
// (request-json.ts) and the output number formatter (response.ts). Without the addon, or with
// UMBRA_NATIVE_JSON=0, both callers use V8's JSON and nothing else changes.
import { native } from '../native/addon.js';

export interface NativeJson {
  scanInferJson(bytes: Uint8Array, end: number, numbers: Float64Array, start: number, meta: Int32Array): string | undefined;
  formatNumbersJson(values: Float32Array | Float64Array): string;
  /** Row r's `prefix + "[...]" + suffix`; absent in an addon built before it (the caller formats in JavaScript). */
  formatRowsJson?(values: Float32Array | Float64Array, perRow: number, prefix: string, suffix: string): string[];
}

let resolved: NativeJson | null | undefined;

function resolve(): NativeJson | null {
  try {
    const binding = native();
    if (typeof binding.scanInferJson !== 'function' || typeof binding.formatNumbersJson !== 'function') return null;
    const helpers: NativeJson = { scanInferJson: binding.scanInferJson.bind(binding), formatNumbersJson: binding.formatNumbersJson.bind(binding) };
    if (typeof binding.formatRowsJson === 'function') helpers.formatRowsJson = binding.formatRowsJson.bind(binding);
    return helpers;
  } catch {
    return null; // no addon: V8's JSON serves (the addon's own load error surfaces where it is required)
  }
}

/** The helpers, or null when this thread uses V8's JSON alone. */
export function nativeJson(): NativeJson | null {
  if (resolved === undefined) resolved = process.env.UMBRA_NATIVE_JSON === '0' ? null : resolve();
  return resolved;
}

/** Whether request bodies and output numbers go through the addon in this thread. */
export function nativeJsonActive(): boolean {
  return nativeJson() !== null;
}

/**
 * Turns the addon's JSON helpers off (false) or back on where the addon has them (true) in this
 * thread, whatever UMBRA_NATIVE_JSON said at start; returns whether they were on. For comparisons
 * and tests.
 */
export function useNativeJson(on: boolean): boolean {
  const was = nativeJsonActive();
  resolved = on ? resolve() : null;
  return was;
}
