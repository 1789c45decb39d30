// umbra_thread_cpu_seconds_total{kind}: the process's CPU by kind of thread, 'other' for threads
// of no kind (the runtime's garbage-collection helpers), totals that never go back, ended threads
// included. Linux only (/proc); elsewhere the registry reports nothing and the test says so.
import t from 'tap';
import { Worker } from 'node:worker_threads';
import { ThreadRegistry, osThreadId } from '../dist/core/threads.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { startTestServer } from './helpers/server.js';

const linux = osThreadId() > 0;

/**
 * A worker thread that spends `ms` of CPU, says its OS thread id, and waits to be told to end. It
 * spins until its own CPU clock (/proc/thread-self/schedstat) has moved `ms`, not the wall clock:
 * on a host busy with other tests a wall-clock spin gets only part of a core.
 */
function busyThread(ms: number): Promise<{ tid: number; end: () => Promise<void> }> {
  const source = `
    const { parentPort } = require('node:worker_threads');
    const { readFileSync } = require('node:fs');
    const cpuMs = () => {
      try {
        return Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ', 1)[0]) / 1e6;
      } catch {
        return Date.now(); // no schedstat: the wall clock
      }
    };
    const until = cpuMs() + ${ms};
    while (cpuMs() < until) {}
    parentPort.postMessage(Number(readFileSync('/proc/thread-self/stat', 'latin1').split(' ', 1)[0]));
    parentPort.once('message', () => process.exit(0));
  `;
  const worker = new Worker(source, { eval: true });
  return new Promise((resolve) => worker.once('message', (tid: number) => resolve({
    tid,
    end: () => new Promise<void>((done) => {
      worker.once('exit', () => done());
      worker.postMessage('end');
    }),
  })));
}

t.test('a kind keeps the CPU of its threads that ended; the rest of the process is "other"', { skip: linux ? false : 'no /proc on this platform' }, async (t) => {
  const threads = new ThreadRegistry();
  t.same([...threads.totals()], [], 'nothing registered, nothing reported');
  threads.add('core', osThreadId());
  const busy = await busyThread(80);
  threads.add('model', busy.tid);
  const during = threads.totals();
  t.ok((during.get('model') ?? 0) >= 0.05, `the busy thread's 80 ms are its kind's (${during.get('model')} s)`);
  t.ok(during.has('core') && during.has('other'), 'the registering thread and the rest are reported');
  await busy.end();
  const afterExit = threads.totals();
  t.ok(afterExit.get('model')! >= during.get('model')!, 'the ended thread still counts (read before it ended)');
  threads.remove(busy.tid);
  const afterRemove = threads.totals();
  t.ok(afterRemove.get('model')! >= during.get('model')!, 'and after it is removed');
  const usage = process.cpuUsage();
  let sum = 0;
  for (const v of afterRemove.values()) sum += v;
  t.ok(sum <= (usage.user + usage.system) / 1e6 + 0.05, 'the kinds together are the process\'s CPU, no more');
  t.ok(afterRemove.get('other')! >= afterExit.get('other')!, '"other" never goes back');
});

t.test('the server exports every kind it ran, "other" included, and no total goes back between scrapes', { skip: linux ? false : 'no /proc on this platform' }, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(4, 2));
  const s = await startTestServer(t, { repository: repo.dir, workers: 1 });
  const scrape = async () => {
    const text = (await s.request('GET', '/metrics')).text;
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^umbra_thread_cpu_seconds_total\{kind="(\w+)"\} ([\d.e+-]+)$/gm)) out[m[1]!] = Number(m[2]);
    return out;
  };
  const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
  for (let i = 0; i < 20; i++) t.equal((await s.request('POST', '/v2/models/affine/infer', body, { 'content-type': 'application/json' })).status, 200);
  const first = await scrape();
  t.ok('core' in first && 'other' in first, `kinds exported: ${Object.keys(first).sort().join(', ')}`);
  for (let i = 0; i < 20; i++) await s.request('POST', '/v2/models/affine/infer', body, { 'content-type': 'application/json' });
  const second = await scrape();
  t.same(Object.entries(first).filter(([kind, v]) => !(second[kind]! >= v)), [], 'every kind\'s total is the same or larger at the next scrape');
});
