// Loads and unloads of one model apply in the order they were asked, and the model ends as the
// last one left it: a load asked right behind an unload used to load into the entry the unload had
// already taken off the model list, so the model ended loaded but neither listed nor served.
import t from 'tap';
import { Umbra } from '../dist/core/umbra.js';
import { tempRepo, affineModel } from './helpers/repo.js';

t.test('unload then load (asked together): the model ends loaded, listed and served', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const events: string[] = [];
  umbra.manager.on('loaded', () => events.push('loaded'));
  umbra.manager.on('unloaded', () => events.push('unloaded'));
  const unload = umbra.manager.unload('affine');
  const load = umbra.manager.load('affine');
  await Promise.all([unload, load]);
  t.same(events, ['unloaded', 'loaded'], 'applied in the order asked');
  t.same(umbra.manager.states().map((s) => [s.name, s.state]), [['affine', 'READY']], 'listed as ready');
  t.ok(umbra.manager.isModelReady('affine'), 'served');
  t.same((await umbra.manager.index()).map((e) => e.state), ['READY'], 'the index says ready');
});

t.test('load then unload (asked together): the model ends unloaded', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const load = umbra.manager.load('affine');
  const unload = umbra.manager.unload('affine');
  await Promise.all([load, unload]);
  t.same(umbra.manager.states(), [], 'not listed');
  t.notOk(umbra.manager.isModelReady('affine'), 'not served');
  t.same(await umbra.manager.index(), [{ name: 'affine', state: 'UNAVAILABLE', reason: 'unloaded' }], 'the index says unloaded');
});

t.test('unload, load, unload (asked together): the model ends unloaded', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  await Promise.all([umbra.manager.unload('affine'), umbra.manager.load('affine'), umbra.manager.unload('affine')]);
  t.same(umbra.manager.states(), [], 'not listed');
  t.notOk(umbra.manager.isModelReady('affine'), 'not served');
});
