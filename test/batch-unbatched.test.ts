// Batch jobs over models that do not batch: a batch-of-one export, a model whose answers count
// something of their own or reduce over the rows, and one that batches at load but whose answers
// lose their row-per-row shape on some data. Every row is stored with what the model gives it
// alone, as an online request of that row would be answered.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { runBatchJob, openStore } from '../dist/batch/index.js';
import { buildModel } from '../dist/onnx/builder.js';
import { batchFixture } from './helpers/batch.js';
import { hitsModel, totalModel, blankRowsModel } from './helpers/repo.js';

/** y = 2x over x of [1, 3]: a model exported with a batch of one and no dynamic axes. */
function batchOfOneModel() {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: [1, 3] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: [1, 3] }],
    nodes: [{ op: 'Mul', inputs: ['x', 'two'], outputs: ['y'] }],
    initializers: [{ name: 'two', datatype: 'FP32', dims: [], values: [2] }],
  });
}

const { umbra, path } = await batchFixture('umbra-batch-unbatched-', (repo) => {
  repo.addVersion('hits', 1, hitsModel());
  repo.addVersion('total', 1, totalModel());
  repo.addVersion('blank', 1, blankRowsModel());
  repo.addVersion('one', 1, batchOfOneModel());
});

/** A CSV of `rows` under columns `id, x_0 .. x_{n-1}`, keyed k0, k1, ... */
function csv(rows: number[][]): string {
  const file = path('in.csv');
  writeFileSync(file, [['id', ...rows[0]!.map((_, i) => `x_${i}`)].join(','), ...rows.map((r, i) => [`k${i}`, ...r].join(','))].join('\n') + '\n');
  return file;
}

async function stored(model: string, file: string, batchSize = 4) {
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  let rowRuns: string | undefined;
  const summary = await runBatchJob({ umbra, model, input: file, keyColumn: 'id', store, batchSize, rejectsPath: path('r.jsonl'), onStart: (info) => { rowRuns = info.rowRuns; } });
  const outputs = [];
  for (let i = 0; i < summary.rowsStored; i++) outputs.push((await store.get(model, '1', `k${i}`))?.outputs);
  return { summary, outputs, rowRuns };
}

const rows = Array.from({ length: 10 }, (_, r) => Array.from({ length: 4 }, (_, c) => ((r * 5 + c * 3) % 10) / 10));

t.test('a model whose output counts its own hits: each row stored with its own', async (t) => {
  const { summary, outputs, rowRuns } = await stored('hits', csv(rows));
  t.equal(rowRuns, 'its output "hits" has 0 rows for a 1-row batch (its first dim is not the batch)', 'the job says why rows run one at a time');
  t.same([summary.rowsStored, summary.rejected], [10, 0]);
  const hits = rows.map((r) => r.flatMap((v, c) => (v > 0.5 ? [0, c] : [])));
  t.same(outputs.map((o) => o?.find((x) => x.name === 'hits')), hits.map((h) => ({ name: 'hits', datatype: 'INT64', shape: [h.length / 2, 2], data: h })),
    'each row\'s hits, with as many rows as it has hits');
});

t.test('a model that reduces over its rows: each row is its own run', async (t) => {
  const { outputs, rowRuns } = await stored('total', csv(rows));
  t.equal(rowRuns, 'the ONNX output "total" has no dynamic first (batch) dim');
  t.same(outputs.map((o) => o?.[0]), rows.map((r) => ({ name: 'total', datatype: 'FP32', shape: [4], data: r.map((v) => Math.fround(v)) })), 'each row\'s sums are the row itself');
});

t.test('a batch-of-one export runs a row at a time', async (t) => {
  const three = rows.map((r) => r.slice(0, 3));
  const { summary, outputs, rowRuns } = await stored('one', csv(three));
  t.equal(rowRuns, 'the ONNX input "x" has no dynamic first (batch) dim');
  t.equal(summary.rowsStored, 10);
  t.same(outputs.map((o) => o?.[0]), three.map((r) => ({ name: 'y', datatype: 'FP32', shape: [1, 3], data: r.map((v) => Math.fround(2 * v)) })));
});

t.test('a batch whose answers have no row per input row runs again row by row', async (t) => {
  // Rows summing to 0 are "blank": the warm-up's zeros are all blank, so the model batches; these
  // batches of four mix blank rows with others.
  const mixed = Array.from({ length: 10 }, (_, r) => (r % 3 === 0 ? [0, 0, 0] : [r, 0, 1]));
  const { summary, outputs, rowRuns } = await stored('blank', csv(mixed));
  t.equal(rowRuns, undefined, 'a model that batches runs in batches');
  t.same([summary.rowsStored, summary.rejected], [10, 0]);
  t.same(outputs.map((o) => o?.[0]?.shape), mixed.map((r) => (r[0] === 0 ? [1, 1] : [0, 1])), 'each row\'s own answer: one blank row, or none');
});
