// Models given in load requests live under STATE/models. A load or unload swaps a model's folder in
// two steps (the old one set aside as .previous-*, then let go); a process that ends between them
// left the hidden folder there for good, and the model it held was gone from the next start.
import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { Umbra } from '../dist/index.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { encodeModel, writeModel } from '../dist/onnx/model-io.js';

function givenFolder(dir: string, name: string, scale: number): void {
  mkdirSync(join(dir, '1'), { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ name }));
  writeModel(affineModel(scale, 0), join(dir, '1', 'model.onnx'));
}

async function scaleOf(umbra: Umbra, model: string): Promise<number> {
  const r = await umbra.predict(model, { x: { data: [1, 1, 1, 1], shape: [1, 4] } });
  return (r.outputs[0]!.data as Float32Array)[0]!;
}

t.test('a start puts right what an earlier run cut short in the folder of given models', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(1, 0));
  const state = mkdtempSync(join(tmpdir(), 'umbra-state-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const models = join(state, 'models');
  // Set aside by an unload or a load that never finished, with nothing put in its place.
  givenFolder(join(models, '.previous-given-0123abcd'), 'given', 2);
  // Set aside by a load whose new folder was in place when the process ended: the swap is undone.
  givenFolder(join(models, 'swapped'), 'swapped', 5);
  givenFolder(join(models, '.previous-swapped-aaaaaaaa'), 'swapped', 3);
  // A load's files half written, and a folder let go whose removal failed.
  givenFolder(join(models, '.staging-other-deadbeef'), 'other', 7);
  givenFolder(join(models, '.retired-gone-11111111'), 'gone', 9);

  const umbra = await Umbra.open({ repository: repo.dir, workers: 1, stateDir: state });
  t.teardown(() => umbra.close());
  t.same(readdirSync(models).sort(), ['given', 'swapped'], 'only model folders are left');
  t.equal(await scaleOf(umbra, 'given'), 2, 'the model set aside with nothing in its place serves again');
  t.equal(await scaleOf(umbra, 'swapped'), 3, 'an unfinished swap is undone: the folder from before it serves');
  t.same(umbra.manager.names().slice().sort(), ['affine', 'given', 'swapped'], 'no hidden folder is served as a model');
  t.equal(umbra.manager.recovered.length, 4, 'one note for each folder put right');
  t.match(umbra.manager.recovered.join('\n'), /put back the model "given"[\s\S]*put back the model "swapped"/, 'the notes name the models put back');
});

t.test('a finished load and unload of a given model leave no hidden folder behind', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(1, 0));
  const state = mkdtempSync(join(tmpdir(), 'umbra-state-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1, stateDir: state });
  t.teardown(() => umbra.close());
  const file = (scale: number) => ({ path: '1/model.onnx', content: Buffer.from(encodeModel(affineModel(scale, 0))) });
  await umbra.manager.load('given', { config: {}, files: [file(2)] });
  await umbra.manager.load('given', { config: {}, files: [file(4)] });
  t.equal(await scaleOf(umbra, 'given'), 4, 'the second load serves');
  t.same(readdirSync(join(state, 'models')), ['given'], 'a reload leaves only the model folder');
  await umbra.manager.unload('given');
  t.same(readdirSync(join(state, 'models')), [], 'an unload leaves nothing');
  t.same(umbra.manager.recovered, [], 'a clean start has nothing to put right');
});

/** Whether this host can make a folder undeletable (root, and a file system with the immutable flag). */
function canPin(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(join(tmpdir(), 'umbra-pin-'));
  try {
    return spawnSync('chattr', ['+i', probe]).status === 0 && spawnSync('chattr', ['-i', probe]).status === 0;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

t.test('a folder let go that cannot be removed is reported at once, never served, and removed by the next start', { skip: canPin() ? false : 'needs root and chattr to make a folder undeletable' }, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(1, 0));
  const state = mkdtempSync(join(tmpdir(), 'umbra-state-'));
  const models = join(state, 'models');
  const unpin = () => {
    for (const entry of readdirSync(models)) spawnSync('chattr', ['-i', join(models, entry, '1')]);
  };
  t.teardown(() => {
    unpin();
    rmSync(state, { recursive: true, force: true });
  });
  let umbra = await Umbra.open({ repository: repo.dir, workers: 1, stateDir: state });
  await umbra.manager.load('given', { config: {}, files: [{ path: '1/model.onnx', content: Buffer.from(encodeModel(affineModel(2, 0))) }] });
  t.equal(spawnSync('chattr', ['+i', join(models, 'given', '1')]).status, 0);
  const warned = once(process, 'warning');
  await umbra.manager.unload('given');
  t.match((await warned)[0].message, /cannot remove .*\.retired-given-[0-9a-f]{8}, .*the next start removes it/, 'the failure is reported, naming the folder');
  t.same(umbra.manager.names(), ['affine'], 'the unload stands');
  await umbra.close();
  unpin();
  umbra = await Umbra.open({ repository: repo.dir, workers: 1, stateDir: state });
  t.teardown(() => umbra.close());
  t.same([readdirSync(models), umbra.manager.names()], [[], ['affine']], 'the next start removes it and serves no model from it');
});
