// A version unloaded (or reloaded) releases its sessions in every model worker, idle ones
// included: workers block between tasks (piscina's Atomics.wait), so the session channel's
// messages reach them only through a task; every reload of a model used to leave its sessions in
// every worker, and the server's memory grew by them.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkerPool } from '../dist/workers/pool.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { affineModel } from './helpers/repo.js';

const dir = mkdtempSync(join(tmpdir(), 'umbra-evict-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelPath = join(dir, 'model.onnx');
writeModel(affineModel(2, 1), modelPath);
const spec = (key: string) => ({ key, modelPath, backend: 'onnxruntime' as const, executionProviders: [], intraOpThreads: 1 });
const input = () => [{ name: 'x', datatype: 'FP32' as const, shape: [1, 4], data: new Float32Array([1, 2, 3, 4]) }];

t.test('an evicted load is released on every worker; a parked one is reopened by its next task', async (t) => {
  const pool = new WorkerPool({ workers: 2 });
  t.teardown(() => pool.close());
  await pool.warm(spec('gone'));
  await pool.warm(spec('parked'));
  pool.evict('gone');
  pool.park('parked');
  // Two at once: one on each worker.
  const runs = await Promise.allSettled([pool.run(spec('gone'), input(), []), pool.run(spec('gone'), input(), [])]);
  t.same(runs.map((r) => r.status), ['rejected', 'rejected'], 'both workers refuse the evicted load');
  t.match((runs[0] as PromiseRejectedResult).reason.message, /model load gone was unloaded/);
  const parked = await Promise.all([pool.run(spec('parked'), input(), []), pool.run(spec('parked'), input(), [])]);
  t.same(parked.map((r) => Array.from(r.outputs[0]!.data as Float32Array)), [[3, 5, 7, 9], [3, 5, 7, 9]], 'a parked load runs again, reopened');
});

t.test('a worker started in place of a lost one applies the evictions posted after it', async (t) => {
  process.env.UMBRA_FAULT_INJECTION = '1';
  t.teardown(() => { delete process.env.UMBRA_FAULT_INJECTION; });
  const pool = new WorkerPool({ workers: 2 });
  t.teardown(() => pool.close());
  await pool.warm(spec('before'));
  pool.evict('before');
  // A worker lost (the run's own request fails), and one started in its place.
  await t.rejects(pool.run(spec('crash'), input(), [], { fault: 'crash' }));
  await pool.warm(spec('after'));
  pool.evict('after');
  const runs = await Promise.allSettled([pool.run(spec('after'), input(), []), pool.run(spec('after'), input(), [])]);
  t.same(runs.map((r) => r.status), ['rejected', 'rejected'], 'both workers, the new one included, refuse the load evicted after it started');
  const fresh = await Promise.all([pool.run(spec('fresh'), input(), []), pool.run(spec('fresh'), input(), [])]);
  t.equal(fresh.length, 2, 'and both run other loads');
});
