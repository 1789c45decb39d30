// Starting a batch job's reader and writer threads. They run Umbra's own compiled modules, so
// they leave out the parent's module hooks (--import, --loader, --require: a test runner's
// TypeScript loader would otherwise make every thread start take seconds) and keep its other flags.
import { Worker } from 'node:worker_threads';
import { UmbraError } from '../errors.js';

const HOOK_FLAGS = /^--(import|loader|experimental-loader|require)\b/;

function threadFlags(): string[] {
  const flags: string[] = [];
  for (let i = 0; i < process.execArgv.length; i++) {
    const flag = process.execArgv[i]!;
    // `--import x` takes the next argument; `--import=x` does not.
    if (HOOK_FLAGS.test(flag)) {
      if (!flag.includes('=')) i += 1;
      continue;
    }
    flags.push(flag);
  }
  return flags;
}

/**
 * A thread running `entry` (a module next to this one). Messages go to `onMessage`; a crash, or an
 * exit the job did not ask for (`ended()` false), to `onFailure` as an error naming `what`.
 */
export function startThread<T>(entry: URL, workerData: unknown, what: string, onMessage: (message: T) => void, onFailure: (err: Error) => void, ended: () => boolean): Worker {
  const worker = new Worker(entry, { workerData, execArgv: threadFlags() });
  worker.on('message', onMessage);
  worker.on('error', (err) => onFailure(new UmbraError('INTERNAL', `${what} failed: ${err.message}`, { cause: err })));
  worker.on('exit', (code) => {
    if (code !== 0 && !ended()) onFailure(new UmbraError('INTERNAL', `${what} exited with code ${code}`));
  });
  return worker;
}
