// Traffic policy of one model: which version is primary, which one is canary (with a weight) and
// which ones shadow (with a sampling fraction). Validation and the canary draw live here; the
// draw is pure so sticky routing is testable without a server.
import { createHash } from 'node:crypto';
import { UmbraError, describeValue } from '../errors.js';

export interface CanarySpec {
  version: string;
  /** Fraction of unversioned requests, 0..1. */
  weight: number;
}

export interface ShadowSpec {
  version: string;
  /** Fraction of primary requests copied to this shadow, 0..1. */
  sample: number;
}

export interface TrafficPolicy {
  primary: string;
  canary: CanarySpec | null;
  shadows: ShadowSpec[];
}

/** "expected X for Y but received Z", as an admin-input error (400). */
export function badInput(expected: string, what: string, received: unknown): UmbraError {
  return new UmbraError('INVALID_ARGUMENT', `expected ${expected} for ${what} but received ${describeValue(received)}`);
}

const VERSION_RE = /^[1-9]\d{0,17}$/;

export function readVersion(value: unknown, what: string): string {
  // Numbers are accepted too: {"primary": 1} is an easy mistake to forgive.
  const text = typeof value === 'number' && Number.isSafeInteger(value) ? String(value) : value;
  if (typeof text !== 'string' || !VERSION_RE.test(text)) throw badInput('a version number as a string (e.g. "2")', what, value);
  return text;
}

export function readFraction(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) throw badInput('a fraction in 0..1', what, value);
  return value;
}

export function readObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badInput('an object', what, value);
  return value as Record<string, unknown>;
}

export function onlyFields(obj: Record<string, unknown>, what: string, known: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) throw new UmbraError('INVALID_ARGUMENT', `unknown field "${key}" in ${what} (known: ${known.join(', ')})`);
  }
}

/** Validates a policy document (PUT body, model config `traffic`, state file). Loaded-ness is checked elsewhere. */
export function parsePolicy(value: unknown, what = 'the traffic policy'): TrafficPolicy {
  const obj = readObject(value, what);
  onlyFields(obj, what, ['primary', 'canary', 'shadows']);
  const primary = readVersion(obj.primary, `${what}.primary`);
  let canary: CanarySpec | null = null;
  if (obj.canary !== undefined && obj.canary !== null) {
    const c = readObject(obj.canary, `${what}.canary`);
    onlyFields(c, `${what}.canary`, ['version', 'weight']);
    canary = { version: readVersion(c.version, `${what}.canary.version`), weight: readFraction(c.weight, `${what}.canary.weight`) };
    if (canary.version === primary) throw new UmbraError('INVALID_ARGUMENT', `${what}: the canary version ${primary} is the primary; name another version or set "canary": null`);
  }
  const shadows: ShadowSpec[] = [];
  if (obj.shadows !== undefined) {
    if (!Array.isArray(obj.shadows)) throw badInput('an array', `${what}.shadows`, obj.shadows);
    if (obj.shadows.length > 16) throw badInput('at most 16 shadows', `${what}.shadows`, obj.shadows);
    obj.shadows.forEach((entry, i) => {
      const s = readObject(entry, `${what}.shadows[${i}]`);
      onlyFields(s, `${what}.shadows[${i}]`, ['version', 'sample']);
      const version = readVersion(s.version, `${what}.shadows[${i}].version`);
      const sample = s.sample === undefined ? 1 : readFraction(s.sample, `${what}.shadows[${i}].sample`);
      if (version === primary) throw new UmbraError('INVALID_ARGUMENT', `${what}.shadows[${i}]: version ${version} is the primary and cannot shadow itself`);
      if (shadows.some((x) => x.version === version)) throw new UmbraError('INVALID_ARGUMENT', `${what}.shadows[${i}]: version ${version} is listed twice`);
      shadows.push({ version, sample });
    });
  }
  return { primary, canary, shadows };
}

/** Every version a policy names. */
export function policyVersions(policy: TrafficPolicy): string[] {
  const out = [policy.primary, ...policy.shadows.map((s) => s.version)];
  if (policy.canary) out.push(policy.canary.version);
  return out;
}

/**
 * Where a routing key falls in [0, 1): a hash of model and key, so the same key always lands at
 * the same point. A request goes to the canary when its point is below the weight, so raising
 * the weight only moves keys toward the canary and lowering it only moves them back.
 */
export function stickyPoint(model: string, key: string): number {
  const h = createHash('sha256').update(model).update('\0').update(key).digest();
  // 48 bits are exact in a double.
  return h.readUIntBE(0, 6) / 2 ** 48;
}

/** True when this request goes to the canary. Without a key, `random()` draws. */
export function takesCanary(model: string, weight: number, key: string | undefined, random: () => number = Math.random): boolean {
  if (weight <= 0) return false;
  if (weight >= 1) return true;
  const point = key === undefined ? random() : stickyPoint(model, key);
  return point < weight;
}
