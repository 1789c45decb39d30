// `umbra serve` runs with a floor under V8's old-generation allocation limit. Without it V8 sizes
// that limit from the live heap, about 38 MB for a server whose live heap is 15 MB, and a wide
// model's traffic (a megabyte of tensor memory or more per request, counted by V8 as external)
// keeps the serving thread in a mark-compact about every 100 ms: on a 64 x 4096 FP32 model that
// was about 2 ms of CPU per request in V8's marking threads and 0.4 ms more on the serving
// thread, a tenth of all the CPU a request cost (bench/RESULTS-sparse.md). V8 reads the floor only when it
// creates a heap, and NODE_OPTIONS refuses the flag, so `serve` starts itself again with it: this
// process relays signals to that child and ends as it ends. The floor is a threshold, not memory
// taken: the heap grows only with what is really allocated.
//
// Not done when the flag is already given (`node --initial-old-space-size=N bin/umbra.js serve`:
// one process), under an inspector (two processes would want its port), or with
// UMBRA_SERVE_HEAP=as-is (V8's own sizing, one process).
//
// The child also gets glibc's malloc tuned for tensors (below), which only the environment a
// process starts with can set.
import { spawn } from 'node:child_process';

export const SERVE_HEAP_FLAG = '--initial-old-space-size=64';

/**
 * glibc's malloc hands out buffers of 128 KiB and more as fresh mappings, and gives freed memory
 * back to the OS once 2x that is free at the top of a heap; its own adjustments raise both only
 * partly. So a server taking a large tensor per request (a 602 KB image in the body, or read from
 * shared memory; its batch; its slab to the core's thread) paid each one's page faults afresh:
 * 238 µs for a 602 KB read into a new buffer against 24 µs into a kept one on the two-core host
 * (`node bench/fresh-buffers.mjs`). Up to 32 MiB from the heaps, and 32 MiB of free top kept
 * before trimming: 62 µs. Served, a 602 KB image model at 8 connections ran at 1.13x the rate with
 * 0.77x the server CPU per request, beside an untuned server in the same run
 * (bench/RESULTS-shared-memory.md), for 10-16 MB more RSS in bench/memory.mjs. Tensors of
 * several MB gain little (8 MB: 7.3 ms against 8.3). The pool still hands memory back explicitly
 * (malloc_trim) when it releases sessions. A user's own MALLOC_* settings win.
 */
export const MALLOC_TUNING = { MALLOC_MMAP_THRESHOLD_: String(32 * 1024 * 1024), MALLOC_TRIM_THRESHOLD_: String(32 * 1024 * 1024) };

/** The tuning, unless the environment already sets any of malloc's variables. */
export function mallocEnv(env) {
  return Object.keys(env).some((k) => k.startsWith('MALLOC_')) ? {} : MALLOC_TUNING;
}
/** Set in the child's environment: it serves, and watches this process. */
const CHILD_MARK = 'UMBRA_SERVE_HEAP';
const RELAYED = ['SIGTERM', 'SIGINT', 'SIGHUP'];

/**
 * Starts `serve` again in a child with the heap floor and returns true (this process then only
 * relays), or returns false where this process should serve itself.
 */
export function startWithServeHeap(proc) {
  if (proc.env[CHILD_MARK] === 'child' || proc.env[CHILD_MARK] === 'as-is') return false;
  if (proc.execArgv.some((a) => a.startsWith('--initial-old-space-size') || a.startsWith('--inspect'))) return false;
  const child = spawn(proc.execPath, [SERVE_HEAP_FLAG, ...proc.execArgv, ...proc.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...proc.env, ...mallocEnv(proc.env), [CHILD_MARK]: 'child' },
  });
  // A terminal's Ctrl-C reaches both processes; the server takes a second signal as the first.
  for (const signal of RELAYED) proc.on(signal, () => child.kill(signal));
  child.once('error', (err) => {
    proc.stderr.write(`umbra: could not start the server process: ${err.message}\n`);
    proc.exit(1);
  });
  child.once('exit', (code, signal) => {
    if (signal) {
      // Ended by a signal: so does this process, so whoever started it sees the same.
      for (const s of RELAYED) proc.removeAllListeners(s);
      proc.kill(proc.pid, signal);
      return;
    }
    proc.exit(code ?? 1);
  });
  return true;
}

export const serveHeapFlag = {
  /**
   * In the child: if the relaying process goes without a word (SIGKILL, a crash), the server goes
   * at once too, as it would have had it been one process; nothing is left holding the port.
   */
  guardParent(proc) {
    if (proc.env[CHILD_MARK] !== 'child') return;
    delete proc.env[CHILD_MARK];
    if (!proc.channel) return;
    proc.channel.unref();
    proc.once('disconnect', () => proc.kill(proc.pid, 'SIGKILL'));
  },
};
