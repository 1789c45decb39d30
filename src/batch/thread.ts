// Starting a batch job's reader and writer threads. They run Umbra's own compiled modules, so
// when the parent runs with module hooks (--import, --loader, --require: a test runner's
// TypeScript loader would otherwise make every thread start take seconds) they start without
// any of its flags; otherwise they inherit them, as threads do (Node refuses some flags, such as
// V8's, when they are passed to a thread explicitly).
import { Worker } from 'node:worker_threads';
import { UmbraError } from '../errors.js';

const HOOK_FLAGS = /^--(import|loader|experimental-loader|require)\b/;
const threadFlags: string[] | undefined = process.execArgv.some((flag) => HOOK_FLAGS.test(flag)) ? [] : undefined;

/**
 * A thread running `entry` (a module next to this one). Messages go to `onMessage`; a crash, or an
 * exit the job did not ask for (`ended()` false), to `onFailure` as an error naming `what`.
 */
export function startThread<T>(entry: URL, workerData: unknown, what: string, onMessage: (message: T) => void, onFailure: (err: Error) => void, ended: () => boolean): Worker {
  const worker = new Worker(entry, threadFlags ? { workerData, execArgv: threadFlags } : { workerData });
  worker.on('message', onMessage);
  worker.on('error', (err) => onFailure(new UmbraError('INTERNAL', `${what} failed: ${err.message}`, { cause: err })));
  worker.on('exit', (code) => {
    if (code !== 0 && !ended()) onFailure(new UmbraError('INTERNAL', `${what} exited with code ${code}`));
  });
  return worker;
}
