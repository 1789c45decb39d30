// How a batch job ends its reader and writer threads (src/batch/thread.ts): asked to stop, a thread
// exits itself between two calls, never terminated inside a call into a native module; only one
// that does not stop within the grace period is terminated.
import t from 'tap';
import { Worker } from 'node:worker_threads';
import { endThread } from '../dist/batch/thread.js';

const threadUrl = new URL('../dist/batch/thread.js', import.meta.url).href;

/** A thread that answers 'ready' once it listens, as the readers and writers do. */
function thread(body: string): Promise<Worker> {
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads');
    import(${JSON.stringify(threadUrl)}).then(({ stopOnRequest }) => { ${body} });`, { eval: true });
  return new Promise((resolve, reject) => {
    worker.once('message', () => resolve(worker));
    worker.once('error', reject);
  });
}

const exitCode = (worker: Worker) => new Promise<number>((resolve) => worker.once('exit', resolve));

t.test('a thread that listens for stop exits itself with code 0', async (t) => {
  const worker = await thread(`
    parentPort.on('message', (m) => { if (stopOnRequest(m)) return; });
    parentPort.postMessage('ready');`);
  const code = exitCode(worker);
  await endThread(worker, 60_000);
  t.equal(await code, 0, 'exited by itself, not terminated (terminate gives exit code 1)');
});

t.test('a thread that never reaches a call boundary is terminated after the grace period', async (t) => {
  const worker = await thread(`
    parentPort.on('message', (m) => { if (stopOnRequest(m)) return; });
    parentPort.postMessage('ready');
    for (;;) {}`);
  const code = exitCode(worker);
  await endThread(worker, 50);
  t.equal(await code, 1, 'terminated');
});

t.test('ending a thread that has already exited resolves at once', async (t) => {
  const worker = await thread(`parentPort.postMessage('ready');`);
  await exitCode(worker);
  await endThread(worker, 60_000);
  t.pass('resolved');
});
