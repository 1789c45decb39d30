// Starting and ending a batch job's reader and writer threads.
import { Worker } from 'node:worker_threads';
import { UmbraError } from '../errors.js';
import { threadOptions } from '../core/threads.js';

/**
 * A thread running `entry` (a module next to this one). Messages go to `onMessage`; a crash, or an
 * exit the job did not ask for (`ended()` false), to `onFailure` as an error naming `what`.
 */
export function startThread<T>(entry: URL, workerData: unknown, what: string, onMessage: (message: T) => void, onFailure: (err: Error) => void, ended: () => boolean): Worker {
  const worker = new Worker(entry, threadOptions({ workerData }));
  worker.on('message', onMessage);
  worker.on('error', (err) => onFailure(new UmbraError('INTERNAL', `${what} failed: ${err.message}`, { cause: err })));
  worker.on('exit', (code) => {
    if (code !== 0 && !ended()) onFailure(new UmbraError('INTERNAL', `${what} exited with code ${code}`));
  });
  return worker;
}

/** How long a thread asked to stop may take to reach a call boundary before it is terminated. */
export const STOP_GRACE_MS = 10_000;

/**
 * Ends a reader or writer thread: it is asked to stop (`{ kind: 'stop' }`) and exits itself
 * between two calls (stopOnRequest). Terminating it from outside instead could land inside a call
 * into a native module (parsing, formatting, SQLite), where a failed Node-API call can escape as a
 * C++ exception and abort the whole process. Only a thread that has not stopped within `graceMs`
 * (stuck in one call) is terminated.
 */
export async function endThread(worker: Worker, graceMs = STOP_GRACE_MS): Promise<void> {
  if (worker.threadId < 0) return;
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.postMessage({ kind: 'stop' });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), graceMs); });
  try {
    if (await Promise.race([exited, late]) === 'late') await worker.terminate();
  } finally {
    clearTimeout(timer);
  }
}

/**
 * In a reader or writer thread: exits the thread when the job sends `{ kind: 'stop' }`. Message
 * handlers run between calls, never inside one, so the thread ends at a call boundary; what it
 * had not yet sent or stored is the job's to redo (a commit is whole with its checkpoint or absent).
 */
export function stopOnRequest<M extends { kind: string }>(message: M): message is Extract<M, { kind: 'stop' }> {
  if (message.kind !== 'stop') return false;
  process.exit(0);
}
