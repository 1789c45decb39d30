// Starting a batch job's reader and writer threads.
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
