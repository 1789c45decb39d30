// Load levels from a sweep spec: "8" (one level), "1:64:x2" (geometric), "100:2000:+100" (linear),
// "1,4,16" (a list). perf_analyzer's "start:end:step" form is accepted as linear.
import { invalid } from '../errors.js';

const MAX_LEVELS = 1000;

export function parseSweep(spec: string, what: string, options: { integer: boolean }): number[] {
  const text = spec.trim();
  const number = (s: string): number => {
    const n = Number(s);
    const ok = Number.isFinite(n) && n > 0 && (!options.integer || Number.isSafeInteger(n));
    if (!ok) throw invalid('INVALID_ARGUMENT', options.integer ? 'a positive integer' : 'a positive number', what, s);
    return n;
  };
  if (text.includes(',')) return text.split(',').map((s) => number(s.trim()));
  const parts = text.split(':');
  if (parts.length === 1) return [number(parts[0]!)];
  if (parts.length > 3) throw invalid('INVALID_ARGUMENT', 'START:END[:STEP] with STEP like x2 or +10', what, spec);
  const start = number(parts[0]!);
  const end = number(parts[1]!);
  if (end < start) throw invalid('INVALID_ARGUMENT', `an END of at least START ${start}`, what, spec);
  const step = parts[2] ?? '+1';
  const levels: number[] = [];
  if (step.startsWith('x') || step.startsWith('*')) {
    const factor = Number(step.slice(1));
    if (!(factor > 1)) throw invalid('INVALID_ARGUMENT', 'a factor above 1 after x', `${what} step`, step);
    for (let v = start; v <= end * (1 + 1e-9) && levels.length < MAX_LEVELS; v *= factor) levels.push(round(v, options.integer));
    if (levels[levels.length - 1] !== end) levels.push(end);
  } else {
    const increment = Number(step.startsWith('+') ? step.slice(1) : step);
    if (!(increment > 0)) throw invalid('INVALID_ARGUMENT', 'a positive increment after +', `${what} step`, step);
    for (let v = start; v <= end * (1 + 1e-9) && levels.length < MAX_LEVELS; v += increment) levels.push(round(v, options.integer));
  }
  return [...new Set(levels)];
}

function round(v: number, integer: boolean): number {
  return integer ? Math.round(v) : Math.round(v * 1e6) / 1e6;
}
