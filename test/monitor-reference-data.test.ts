// `umbra profile --data`: data that holds no features is named as such, with what it takes.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readReferenceData } from '../dist/monitor/reference-data.js';

t.test('reference data with no numeric column is named as such', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-refdata-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'request.json');
  // An inference request saved as a file: one object, no feature columns.
  writeFileSync(file, JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }));
  await t.rejects(readReferenceData(file), { message: `${file}: its first row has no numeric column (columns: inputs[0]); give rows of features: CSV with a header, JSON Lines of flat objects (arrays are flattened), or Parquet` });
});

t.test('a model whose inputs vary in shape is profiled from rows of any length, as live drift reads them', async (t) => {
  const { Umbra } = await import('../dist/core/umbra.js');
  const { buildReferenceProfile } = await import('../dist/monitor/reference-data.js');
  const { VersionDrift } = await import('../dist/monitor/drift.js');
  const { gruModel, tempRepo } = await import('./helpers/repo.js');
  const repo = tempRepo();
  repo.addVersion('gru', 1, gruModel());
  const dir = mkdtempSync(join(tmpdir(), 'umbra-refdata-seq-'));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(async () => {
    await umbra.close();
    repo.remove();
    rmSync(dir, { recursive: true, force: true });
  });
  // Steps of two features, 1 to 6 steps a row, as a training set in JSON Lines would hold them.
  const rowsOf = (count: number, steps: (i: number) => number) => Array.from({ length: count }, (_, i) => ({
    id: `r${i}`, label: i % 3, x: Array.from({ length: steps(i) }, (_, k) => [((i * 7 + k) % 11) / 10, ((i + k) % 5) / 4]),
  }));
  const train = rowsOf(300, (i) => 1 + (i % 6));
  const file = join(dir, 'train.jsonl');
  writeFileSync(file, train.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const profile = await buildReferenceProfile(umbra, 'gru', await readReferenceData(file), file);
  t.same([profile.rows, profile.inputs.map((p) => p.name), profile.outputs['1']!.map((p) => p.name)],
    [300, ['x.length', 'x.mean[0]', 'x.mean[1]'], ['h[0]', 'h[1]', 'h[2]']], 'each row by its length and step means; the outputs the model gives each row');

  // The same rows served live count into exactly the reference's bins: nothing moved.
  const mv = umbra.manager.get('gru', '1');
  const drift = new VersionDrift('gru', '1', mv.signature, { source: profile.source, rows: profile.rows, inputs: profile.inputs, outputs: profile.outputs['1']! }, { windowRows: 300, minSamples: 100 });
  const observe = async (rows: typeof train) => {
    for (const r of rows) {
      const request = { parameters: {}, inputs: [{ name: 'x', datatype: 'FP32' as const, shape: [1, r.x.length, 2], data: Float32Array.from(r.x.flat()) }] };
      drift.observe(request, (await umbra.infer('gru', '1', request)).response);
    }
  };
  await observe(train);
  const same = drift.evaluate();
  t.same([same.verdict, [...same.features, ...same.outputs].map((f) => f.shift)], ['no_drift', [0, 0, 0, 0, 0, 0]], 'the training rows themselves: every shift 0');
  await observe(rowsOf(300, (i) => 7 + (i % 6)));
  t.equal(drift.evaluate().features.find((f) => f.name === 'x.length')?.verdict, 'drift', 'longer sequences drift by their length');

  // Data that does not fit says why.
  const missing = join(dir, 'missing.jsonl');
  writeFileSync(missing, `${JSON.stringify({ id: 'a', steps: [[1, 2]] })}\n`);
  await t.rejects(buildReferenceProfile(umbra, 'gru', await readReferenceData(missing), missing), { message: `${missing}: row 1: expected a field 'x' (the model's input, read by name) but received undefined` });
  const odd = join(dir, 'odd.jsonl');
  writeFileSync(odd, `${JSON.stringify({ x: [[1, 2], [3, 4]] })}\n${JSON.stringify({ x: [1, 2, 3] })}\n`);
  await t.rejects(buildReferenceProfile(umbra, 'gru', await readReferenceData(odd), odd), { message: `${odd}: row 2: expected a non-empty array of a multiple of 2 values for 'x' but received [1,2,3]` });
});

t.test('a blank cell is a missing value, refused with its row and column, not read as 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-refdata-blank-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'blank.csv');
  writeFileSync(file, 'a,b,split\n1,2,train\n3, ,train\n5,6,test\n');
  await t.rejects(readReferenceData(file), { message: `${file}: row 2: expected a number for column 'b' but received ""` });
  const test = join(dir, 'test-only.csv');
  // Blank in the first row kept: the column is still a feature, its missing value named.
  writeFileSync(test, 'a,b,split\n1,2,train\n3,,test\n4,5,test\n');
  await t.rejects(readReferenceData(test, { where: { column: 'split', value: 'test' } }), { message: `${test}: row 1 of those where split=test: expected a number for column 'b' but received ""` });
});

t.test('a --where or --label column the data does not have is named, not read as a filter that matches nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-refdata-columns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'data.csv');
  writeFileSync(file, 'a,b,y,split\n1,2,0,train\n3,4,1,test\n');
  await t.rejects(readReferenceData(file, { where: { column: 'spilt', value: 'train' } }), { message: `${file}: no column 'spilt' for --where (columns: a, b, y, split)` });
  await t.rejects(readReferenceData(file, { label: 'target' }), { message: `${file}: no column 'target' for --label (columns: a, b, y, split)` });
  t.same((await readReferenceData(file, { label: 'y', where: { column: 'split', value: 'train' } })).names, ['a', 'b'], 'columns that are there still work');
});

t.test('rows whose arrays differ in length are refused for a model of fixed-shape inputs, naming the row', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-refdata-ragged-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'ragged.jsonl');
  writeFileSync(file, `${JSON.stringify({ x: [1, 2, 3] })}\n${JSON.stringify({ x: [1, 2] })}\n`);
  const data = await readReferenceData(file);
  t.equal(data.ragged, `${file}: row 2: expected a number for column 'x[2]' but received undefined (its 'x' array has another length than the first row's)`);
});

t.test('a model with more input columns than drift watches is profiled on the watched ones, and runs on all of them', async (t) => {
  const { Umbra } = await import('../dist/core/umbra.js');
  const { buildReferenceProfile } = await import('../dist/monitor/reference-data.js');
  const { MAX_INPUT_COLUMNS } = await import('../dist/monitor/features.js');
  const { buildModel } = await import('../dist/onnx/builder.js');
  const { tempRepo } = await import('./helpers/repo.js');
  const width = 300;
  const repo = tempRepo();
  // s = the sum of a row's 300 values: an answer that needs every column, watched or not.
  repo.addVersion('wide', 1, buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', width] }],
    outputs: [{ name: 's', datatype: 'FP32', dims: ['batch', 1] }],
    nodes: [{ op: 'ReduceSum', inputs: ['x', 'axes'], outputs: ['s'], attributes: { keepdims: 1 } }],
    initializers: [{ name: 'axes', datatype: 'INT64', dims: [1], values: [1] }],
  }));
  const dir = mkdtempSync(join(tmpdir(), 'umbra-refdata-wide-'));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(async () => {
    await umbra.close();
    repo.remove();
    rmSync(dir, { recursive: true, force: true });
  });
  const file = join(dir, 'wide.csv');
  const header = Array.from({ length: width }, (_, c) => `f${c}`).join(',');
  writeFileSync(file, `${header}\n${Array.from({ length: 60 }, (_, r) => Array(width).fill(r % 3).join(',')).join('\n')}\n`);
  const notes: string[] = [];
  const profile = await buildReferenceProfile(umbra, 'wide', await readReferenceData(file), file, undefined, (line) => notes.push(line));
  t.equal(profile.inputs.length, MAX_INPUT_COLUMNS, 'the columns live drift watches');
  t.same([profile.inputs[0]!.name, profile.inputs.at(-1)!.name], ['f0', `f${MAX_INPUT_COLUMNS - 1}`]);
  t.same(profile.outputs['1']!.map((p) => [p.name, p.values]), [['s', [0, 300, 600]]], 'the model ran on whole rows: sums of 300 values');
  t.same(notes, [`input x: only its first ${MAX_INPUT_COLUMNS} of ${width} columns are watched (${MAX_INPUT_COLUMNS} input columns in all); the profile holds the ${MAX_INPUT_COLUMNS} watched columns`]);
});
