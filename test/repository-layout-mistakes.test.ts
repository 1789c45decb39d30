// A repository laid out not quite right: every mistake a first user makes is named with its fix,
// never skipped in silence. Folders whose names cannot name a model and model files at the top of
// the repository are reported (at start, and when a poll finds one); a model folder with no usable
// version says what it holds instead.
import t from 'tap';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Umbra } from '../dist/core/umbra.js';
import { looseModelFileNote, looseModelFiles, misnamedFolders, misnamedFolderNote, noVersionReason } from '../dist/repository/layout.js';
import { tempRepo, affineModel } from './helpers/repo.js';

t.test('each mistake in a model folder is named, with its fix', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('good', 1, affineModel(2, 1));
  const good = join(repo.dir, 'good', '1', 'model.onnx');
  const place = (path: string) => {
    mkdirSync(join(repo.dir, path, '..'), { recursive: true });
    copyFileSync(good, join(repo.dir, path));
  };
  place('loose/model.onnx');
  place('zeropad/01/model.onnx');
  place('named/v2/model.onnx');
  place('renamed/1/classifier.onnx');
  place('huge/99999999999999999/model.onnx');
  mkdirSync(join(repo.dir, 'empty', '1'), { recursive: true });
  mkdirSync(join(repo.dir, 'bare'), { recursive: true });
  writeFileSync(join(repo.dir, 'bare', 'README'), 'nothing here yet');

  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const reasons = Object.fromEntries((await umbra.manager.index()).filter((e) => e.state !== 'READY').map((e) => [e.name, e.reason]));
  const head = (m: string) => `model '${m}' has no numeric version directory with a model.onnx: `;
  t.same(reasons, {
    loose: `${head('loose')}model.onnx is in the model folder itself: a model file goes in a numbered version folder, e.g. loose/1/model.onnx`,
    zeropad: `${head('zeropad')}folder 01 is not a version: a version folder is a positive integer without leading zeros (1, 2, ...)`,
    named: `${head('named')}folder v2 is not a version: a version folder is a positive integer without leading zeros (1, 2, ...)`,
    renamed: `${head('renamed')}1/ holds classifier.onnx, not model.onnx: rename it, or set "default_model_filename": "classifier.onnx" in renamed/config.json`,
    empty: `${head('empty')}1/ holds no model.onnx`,
    // It was told it is no positive integer without leading zeros, which it is.
    huge: `${head('huge')}folder 99999999999999999 is past the largest version, 9007199254740991: number versions 1, 2, ...`,
    bare: `${head('bare')}put the model at bare/1/model.onnx`,
  }, 'every model folder that cannot load says what it holds instead and what to do');
  t.equal(noVersionReason('gone', join(repo.dir, 'gone'), 'model.onnx'), "model 'gone' has no numeric version directory with a model.onnx", 'an unreadable folder: the plain reason');
});

t.test('folders whose names cannot name a model, and model files outside a model folder, are reported at start and when a poll finds one', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('good', 1, affineModel(2, 1));
  mkdirSync(join(repo.dir, 'fraud model', '1'), { recursive: true });
  mkdirSync(join(repo.dir, 'résumé', '1'), { recursive: true });
  mkdirSync(join(repo.dir, '.hidden', '1'), { recursive: true });
  const model = join(repo.dir, 'good', '1', 'model.onnx');
  copyFileSync(model, join(repo.dir, 'churn.onnx'));
  copyFileSync(model, join(repo.dir, 'my model.ONNX'));
  copyFileSync(model, join(repo.dir, '.draft.onnx'));
  writeFileSync(join(repo.dir, 'notes.txt'), 'not a model');
  t.same(misnamedFolders(repo.dir), ['fraud model', 'résumé'], 'hidden folders are not models and not mistakes');
  t.match(misnamedFolderNote('fraud model'), /^folder "fraud model" of the repository is not served: a model name is .*; rename the folder$/);
  t.match(misnamedFolderNote('v1..2'), /with no "\.\."; rename the folder$/, 'a name refused only for its ".." is told that rule');
  t.same(looseModelFiles(repo.dir), ['churn.onnx', 'my model.ONNX'], 'model files at the top, hidden ones and other files aside');
  t.equal(looseModelFileNote('churn.onnx'), 'file "churn.onnx" at the top of the repository is not served: each model has its own folder with numbered versions; move it to churn/1/model.onnx');
  t.match(looseModelFileNote('my model.ONNX'), /move it to <model>\/1\/model\.onnx$/, 'a file whose name cannot name a model gets a placeholder, not a bad name');

  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  t.same(umbra.manager.unserved(), [
    misnamedFolderNote('fraud model'), misnamedFolderNote('résumé'), looseModelFileNote('churn.onnx'), looseModelFileNote('my model.ONNX'),
  ], 'found when the repository was first read');
  t.same((await umbra.manager.index()).map((e) => e.name), ['good'], 'and not in the index');
  const told: string[] = [];
  umbra.manager.on('unserved', (note: string) => told.push(note));
  mkdirSync(join(repo.dir, 'late one'), { recursive: true });
  copyFileSync(model, join(repo.dir, 'late.onnx'));
  await umbra.manager.pollOnce();
  await umbra.manager.pollOnce();
  t.same(told, [misnamedFolderNote('late one'), looseModelFileNote('late.onnx')], 'a new one is told once, the ones already known are not told again');
});
