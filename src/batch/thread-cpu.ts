// CPU time of the calling thread, so a job can say what each of its stages costs per row.
// Linux only (/proc/thread-self); elsewhere undefined, and the job reports the process total.
import { readFileSync } from 'node:fs';

/** Microseconds of CPU this thread has used (schedstat: nanoseconds on a CPU), or undefined. */
export function threadCpuMicros(): number | undefined {
  try {
    const runNanos = Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ', 1)[0]);
    return Number.isFinite(runNanos) ? runNanos / 1000 : undefined;
  } catch {
    return undefined;
  }
}
