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
  /** Each live thread's CPU seconds when last read. */
  private readonly lastSeen = new Map<number, number>();
  /** CPU seconds of threads that have ended, by kind, so a kind's total never goes back. */
  private readonly retired = new Map<ThreadKind, number>();
  private otherSeen = 0;
  /** Threads that ended while the server ran and were replaced, by kind (umbra_threads_replaced_total). */
  private readonly replacedByKind = new Map<ThreadKind, number>();

  add(kind: ThreadKind, tid: number): void {
    if (tid > 0) this.byTid.set(tid, kind);
  }

  remove(tid: number): void {
    const kind = this.byTid.get(tid);
    if (kind === undefined) return;
    // Its thread may already be gone: count what it had used when last read (or can be read now).
    this.retire(tid, kind, threadCpuSeconds(tid) ?? this.lastSeen.get(tid) ?? 0);
  }

  private retire(tid: number, kind: ThreadKind, seconds: number): void {
    this.retired.set(kind, (this.retired.get(kind) ?? 0) + seconds);
    this.byTid.delete(tid);
    this.lastSeen.delete(tid);
  }

  /** A thread of this kind ended unexpectedly (a crash, a fatal error) and another is taking its place. */
  replaced(kind: ThreadKind): void {
    this.replacedByKind.set(kind, (this.replacedByKind.get(kind) ?? 0) + 1);
  }

  /** How many threads of each kind were replaced since the start (kinds never replaced are absent). */
  replacements(): ReadonlyMap<ThreadKind, number> {
    return this.replacedByKind;
  }

  /** Every registered thread still alive, with its CPU seconds so far. */
  cpu(): { kind: ThreadKind; tid: number; seconds: number }[] {
    const out: { kind: ThreadKind; tid: number; seconds: number }[] = [];
    for (const [tid, kind] of this.byTid) {
      const seconds = threadCpuSeconds(tid);
      if (seconds === undefined) this.retire(tid, kind, this.lastSeen.get(tid) ?? 0);
      else {
        this.lastSeen.set(tid, seconds);
        out.push({ kind, tid, seconds });
      }
    }
    return out;
  }

  /**
   * CPU seconds by kind since the process started, ended threads included, and 'other': what the
   * process used on threads of no kind (the runtime's garbage-collection helpers, the libuv pool),
   * the process's total less the kinds'. Each total only grows; an empty map without /proc.
   */
  totals(): Map<ThreadKind | 'other', number> {
    // Read the live threads first: one found ended here joins `retired` before it is copied.
    const live = this.cpu();
    const sums = new Map<ThreadKind | 'other', number>(this.retired);
    if (live.length === 0 && this.retired.size === 0) return sums;
    for (const t of live) sums.set(t.kind, (sums.get(t.kind) ?? 0) + t.seconds);
    const usage = process.cpuUsage();
    let known = 0;
    for (const seconds of sums.values()) known += seconds;
    // Threads' figures are in clock ticks, the process's in microseconds: the difference can
    // dip by a tick per thread between reads, and a counter must not go back.
    this.otherSeen = Math.max(this.otherSeen, (usage.user + usage.system) / 1e6 - known);
    sums.set('other', this.otherSeen);
    return sums;
  }
}

// The flags Umbra's own threads (workers, I/O threads, the log writer, batch stages, load
// generators) start with. They run Umbra's compiled modules, so when the parent runs with module
// hooks (--import, --loader, --require: a test runner's TypeScript loader, say, which would make
// every thread start take a second or more of CPU and slow every module it loads) they start
// without any of the parent's flags; otherwise they inherit them, as threads do (Node refuses some
// flags, such as V8's, when they are passed to a thread explicitly).
const HOOK_FLAGS = /^--(import|loader|experimental-loader|require)\b/;

/** `execArgv` for a thread of Umbra's own, or undefined to inherit the parent's flags. */
export const threadExecArgv: string[] | undefined = process.execArgv.some((flag) => HOOK_FLAGS.test(flag)) ? [] : undefined;

/** Worker options with `threadExecArgv` applied. */
export function threadOptions<T extends object>(options: T): T & { execArgv?: string[] } {
  return threadExecArgv ? { ...options, execArgv: threadExecArgv } : options;
}
