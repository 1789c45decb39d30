// CPU time of the calling thread: a batch job says with it what each of its stages costs per row,
// and the native backend times a layer's formats with it (time off the CPU is not the kernel's).
import { readFileSync } from 'node:fs';
import { native } from './native/addon.js';

let clock: (() => number) | null | undefined;

/**
 * The calling thread's CPU time in microseconds, current to the call (the addon's
 * CLOCK_THREAD_CPUTIME_ID), or undefined where there is no such clock (no addon, an older addon,
 * another platform).
 */
export function threadCpuMicrosNow(): number | undefined {
  if (clock === undefined) {
    clock = null;
    try {
      const binding = native();
      if (typeof binding.threadCpuNanos === 'function' && binding.threadCpuNanos() >= 0) clock = () => binding.threadCpuNanos!() / 1000;
    } catch {
      // No addon: no clock.
    }
  }
  return clock === null ? undefined : clock();
}

/**
 * Microseconds of CPU this thread has used, or undefined: the clock above, else Linux's
 * /proc/thread-self/schedstat (nanoseconds on a CPU, but as of the thread's last scheduler tick,
 * so good for spans of seconds only).
 */
export function threadCpuMicros(): number | undefined {
  const now = threadCpuMicrosNow();
  if (now !== undefined) return now;
  try {
    const runNanos = Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ', 1)[0]);
    return Number.isFinite(runNanos) ? runNanos / 1000 : undefined;
  } catch {
    return undefined;
  }
}
