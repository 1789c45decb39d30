// Polling the repository loads each change once: a pass that finds a model mid-load (at start, or
// behind an admin load) leaves it to the next pass instead of loading it a second time.
import t from 'tap';
import { utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Umbra } from '../dist/core/umbra.js';
import { tempRepo, affineModel } from './helpers/repo.js';

t.test('a model mid-load is not loaded again by a poll; a changed file is loaded once', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1, loadAll: false });
  t.teardown(() => umbra.close());
  const loads: string[] = [];
  umbra.manager.on('loaded', (name: string) => loads.push(name));
  const first = umbra.manager.load('affine');
  await umbra.manager.pollOnce();
  await first;
  t.same(loads, ['affine'], 'the poll during the first load left it alone');
  await umbra.manager.pollOnce();
  t.same(loads, ['affine'], 'nothing changed: nothing loaded');
  const file = join(repo.dir, 'affine', '1', 'model.onnx');
  utimesSync(file, new Date(), new Date(Date.now() + 10_000));
  await umbra.manager.pollOnce();
  await umbra.manager.pollOnce();
  t.same(loads, ['affine', 'affine'], 'a changed file: loaded once');
});

t.test('a model that fails to load is not loaded again by every poll, only once its files change', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.writeConfig('affine', { max_batch_size: 'lots' });
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const failures: string[] = [];
  const loads: string[] = [];
  umbra.manager.on('load-failed', (name: string) => failures.push(name));
  umbra.manager.on('loaded', (name: string) => loads.push(name));
  await umbra.manager.pollOnce();
  const afterFirstPass = failures.length;
  await umbra.manager.pollOnce();
  await umbra.manager.pollOnce();
  t.equal(failures.length, afterFirstPass, 'the same broken files: no further load, no further failure');
  repo.writeConfig('affine', { max_batch_size: 8 });
  await umbra.manager.pollOnce();
  t.same(loads, ['affine'], 'the fixed config is loaded at the next pass');
});

t.test('closing the repository waits for a load under way, and starts no other', async (t) => {
  const { ModelManager } = await import('../dist/repository/manager.js');
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  let opened!: () => void;
  const gate = new Promise<void>((resolve) => { opened = resolve; });
  const execution = { drain: async () => undefined, release: async () => undefined };
  const manager = new ModelManager({ repository: repo.dir, overridesDir: `${repo.dir}.given`, open: async () => { await gate; return execution as never; } });
  const order: string[] = [];
  const loading = manager.load('affine').then(() => order.push('loaded'));
  // Umbra.close() stops the worker pool once this resolves: under a worker still opening a
  // session, onnxruntime-node aborted the process.
  const drained = manager.drainAll().then(() => order.push('drained'));
  await new Promise(setImmediate);
  opened();
  await Promise.all([loading, drained]);
  t.same(order, ['loaded', 'drained'], 'the drain ended after the load under way');
  await t.rejects(manager.load('affine'), { code: 'NOT_READY' }, 'no load starts once closing');
});

t.test('a changed label file is a changed model: the next poll reloads it', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const labels = join(repo.dir, 'affine', 'labels.txt');
  writeFileSync(labels, 'a\nb\nc\nd\n');
  repo.writeConfig('affine', { max_batch_size: 8, output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [4], label_filename: 'labels.txt' }] });
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  // Read with the config at load, but not watched: the old names stayed until something else changed.
  writeFileSync(labels, 'north\neast\nsouth\nwest\n');
  await umbra.manager.pollOnce();
  t.same(umbra.manager.get('affine').signature.outputs[0]!.labels, ['north', 'east', 'south', 'west']);
});
