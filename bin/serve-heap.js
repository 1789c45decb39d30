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
import { spawn } from 'node:child_process';

export const SERVE_HEAP_FLAG = '--initial-old-space-size=64';
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
    env: { ...proc.env, [CHILD_MARK]: 'child' },
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
