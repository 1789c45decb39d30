// The process's threads by kind (the core's event loop, I/O threads, model workers, the
// prediction log's writer), so their CPU time can be told apart: /metrics exports it per kind,
// and the benchmarks divide it by requests. Linux only; elsewhere every id reads as 0 and the
// registry stays empty.
import { readFileSync } from 'node:fs';

export type ThreadKind = 'core' | 'io' | 'model' | 'log';

/** The calling thread's OS id (its /proc/self/task entry), or 0 where there is no /proc. */
export function osThreadId(): number {
  try {
    return Number(readFileSync('/proc/thread-self/stat', 'latin1').split(' ', 1)[0]) || 0;
  } catch {
    return 0;
  }
}

const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) a thread of this process has used; undefined once it has ended. */
export function threadCpuSeconds(tid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'latin1');
    // Fields after the command name (which may hold spaces, inside parentheses): utime is the 14th field, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

export class ThreadRegistry {
  private readonly byTid = new Map<number, ThreadKind>();

  add(kind: ThreadKind, tid: number): void {
    if (tid > 0) this.byTid.set(tid, kind);
  }

  remove(tid: number): void {
    this.byTid.delete(tid);
  }

  /** Every registered thread still alive, with its CPU seconds so far. */
  cpu(): { kind: ThreadKind; tid: number; seconds: number }[] {
    const out: { kind: ThreadKind; tid: number; seconds: number }[] = [];
    for (const [tid, kind] of this.byTid) {
      const seconds = threadCpuSeconds(tid);
      if (seconds === undefined) this.byTid.delete(tid);
      else out.push({ kind, tid, seconds });
    }
    return out;
  }
}
