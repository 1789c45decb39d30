// `max_staleness` from a model's config.json parameters: how old a stored prediction may be
// and still answer a lookup. Seconds as a number, or a duration such as "86400s", "90m", "24h", "7d".
import { UmbraError } from '../errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds, or undefined when the parameter is absent (stored predictions never go stale). */
export function parseStaleness(value: string | number | undefined, model: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const text = String(value).trim();
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(text);
  if (!m) {
    throw new UmbraError('INVALID_ARGUMENT', `expected seconds or a duration like "86400s", "30m", "24h", "7d" for parameters.max_staleness of model '${model}' but received "${text}"`);
  }
  return Number(m[1]) * UNIT_MS[m[2] ?? 's']!;
}
