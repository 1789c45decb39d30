// A batch job over a model whose input has a free dimension past the batch one (token ids of any
// length, a PyTorch export): rows of every length are stored, each with the answer the model
// gives its own ids (PyTorch's, for the rows PyTorch ran); rows of one length run together. Before,
// the job took the first row's length and rejected every row of another.
import t from 'tap';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStore, runBatchJob } from '../dist/batch/index.js';
import { batchFixture } from './helpers/batch.js';
import { gruModel, sequenceModel } from './helpers/repo.js';

const FIXTURES = new URL('./fixtures/pytorch/', import.meta.url).pathname;
const fixture = JSON.parse(readFileSync(join(FIXTURES, 'text.json'), 'utf8')) as {
  inputs: { ids: { shape: [number, number]; data: number[] } };
  outputs: { logits: { shape: [number, number]; data: number[] } };
};
const [rows, length] = fixture.inputs.ids.shape;
const idsOf = (r: number) => fixture.inputs.ids.data.slice(r * length, (r + 1) * length);
const logitsOf = (r: number) => fixture.outputs.logits.data.slice(r * 3, (r + 1) * 3);

const { umbra, path } = await batchFixture('umbra-batch-variable-', (repo) => {
  mkdirSync(join(repo.dir, 'text', '1'), { recursive: true });
  copyFileSync(join(FIXTURES, 'text.onnx'), join(repo.dir, 'text', '1', 'model.onnx'));
  repo.addVersion('seq', 1, sequenceModel(2));
  repo.addVersion('gru', 1, gruModel());
});

async function job(t: Tap.Test, name: string, text: string, parseWorkers: number) {
  const input = path(name);
  writeFileSync(input, text);
  const rejectsPath = path('rejects.jsonl');
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  let plan = '';
  const summary = await runBatchJob({ umbra, model: 'text', input, keyColumn: 'id', store, rejectsPath, batchSize: 2, parseWorkers, onStart: (s) => { plan = s.plan; } });
  const rejects = existsSync(rejectsPath) ? readFileSync(rejectsPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { line: number; key: string; reason: string }) : [];
  return { summary, store, rejects, plan };
}

async function checkStored(t: Tap.Test, store: Awaited<ReturnType<typeof openStore>>) {
  let worst = 0;
  const shapes = new Set<string>();
  for (let r = 0; r < rows; r++) {
    const p = await store.get('text', '1', `k${r}`);
    const y = p?.outputs[0];
    shapes.add(y ? `${y.name} ${y.shape.join('x')}` : 'missing');
    const want = logitsOf(r);
    for (let i = 0; i < 3; i++) worst = Math.max(worst, Math.abs(Number((y?.data as number[] | undefined)?.[i] ?? NaN) - want[i]!));
  }
  t.same([...shapes], ['logits 1x3'], 'every row stored, one row of logits each');
  t.ok(worst < 1e-5, `every stored row is PyTorch's answer for its own ids (max |diff| ${worst})`);
}

/** The model's answer for `ids` run alone, through the same Umbra. */
async function alone(ids: number[]): Promise<number[]> {
  const { response } = await umbra.infer('text', '1', { parameters: {}, inputs: [{ name: 'ids', datatype: 'INT64', shape: [1, ids.length], data: BigInt64Array.from(ids.map(BigInt)) }] });
  return Array.from(response.outputs[0]!.data as Float32Array);
}

for (const parseWorkers of [1, 2]) {
  t.test(`JSON Lines, ${parseWorkers} reader thread(s): rows of every length are stored, each with its own answer`, async (t) => {
    // Every fixture row, and after each a copy cut to another length (1 up to length - 1).
    const lines = [];
    const cut: { key: string; ids: number[] }[] = [];
    for (let r = 0; r < rows; r++) {
      lines.push(JSON.stringify({ id: `k${r}`, ids: idsOf(r) }));
      const ids = idsOf(r).slice(0, 1 + (r % (length - 1)));
      cut.push({ key: `cut${r}`, ids });
      lines.push(JSON.stringify({ id: `cut${r}`, ids }));
    }
    const { summary, store, rejects, plan } = await job(t, 'in.jsonl', lines.join('\n') + '\n', parseWorkers);
    t.match(plan, 'ids <- ids (arrays of any length: rows of one length run together)', 'the plan says rows may differ in length');
    t.same([summary.rowsStored, summary.rejected, rejects], [2 * rows, 0, []]);
    await checkStored(t, store);
    let worst = 0;
    const shapes = new Set<string>();
    for (const { key, ids } of cut) {
      const y = (await store.get('text', '1', key))?.outputs[0];
      shapes.add(y ? y.shape.join('x') : 'missing');
      const want = await alone(ids);
      want.forEach((w, i) => { worst = Math.max(worst, Math.abs(Number((y?.data as number[] | undefined)?.[i] ?? NaN) - w)); });
    }
    t.same([...shapes], ['1x3']);
    t.ok(worst < 1e-5, `every shorter row is the model's answer for its own ids run alone (max |diff| ${worst})`);
  });
}

t.test('an empty array is a reject saying why, wherever it lies; the rows around it are stored', async (t) => {
  const lines = [JSON.stringify({ id: 'empty', ids: [] }), ...[0, 1].map((r) => JSON.stringify({ id: `k${r}`, ids: idsOf(r) })), JSON.stringify({ id: 'empty2', ids: [] })];
  const { summary, rejects } = await job(t, 'empty-first.jsonl', lines.join('\n') + '\n', 1);
  t.same([summary.rowsStored, summary.rejected], [2, 2]);
  t.same(rejects.map((r) => [r.line, r.key]), [[1, 'empty'], [4, 'empty2']]);
  t.match(rejects[0]?.reason, "expected a non-empty array for column 'ids' (input 'ids', dims [-1]) but received one of 0");
});

t.test('CSV with the ids as a quoted JSON array in one column', async (t) => {
  const lines = ['id,ids'];
  for (let r = 0; r < rows; r++) lines.push(`k${r},"${JSON.stringify(idsOf(r))}"`);
  const { summary, store, rejects } = await job(t, 'in.csv', lines.join('\n') + '\n', 1);
  t.equal(summary.rowsStored, rows);
  t.same(rejects, []);
  await checkStored(t, store);
});

t.test('a row the model refuses (an id past the embedding table) is a reject; its batch is stored without it', async (t) => {
  // Six rows in batches of 4: the bad row (line 3) shares its batch with three good ones.
  const lines = [0, 1, 'bad', 2, 3, 0].map((r, i) => JSON.stringify({ id: r === 'bad' ? 'bad' : `k${r}x${i}`, ids: r === 'bad' ? [...idsOf(0).slice(0, length - 1), 100] : idsOf(r as number) }));
  const input = path('refused.jsonl');
  writeFileSync(input, lines.join('\n') + '\n');
  const rejectsPath = path('rejects.jsonl');
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const summary = await runBatchJob({ umbra, model: 'text', input, keyColumn: 'id', store, rejectsPath, batchSize: 4 });
  t.same([summary.rowsStored, summary.rejected], [5, 1]);
  const rejects = readFileSync(rejectsPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { line: number; key: string; reason: string });
  t.same(rejects.map((r) => [r.line, r.key]), [[3, 'bad']]);
  t.match(rejects[0]!.reason, /^the model could not run on this row: .*Gather.*idx=100 must be within the inclusive range \[-100,99\]/);
  let worst = 0;
  for (const [key, r] of [['k0x0', 0], ['k1x1', 1], ['k2x3', 2], ['k3x4', 3], ['k0x5', 0]] as const) {
    const data = (await store.get('text', '1', key))?.outputs[0]?.data as number[] | undefined;
    logitsOf(r).forEach((w, i) => { worst = Math.max(worst, Math.abs(Number(data?.[i] ?? NaN) - w)); });
  }
  t.ok(worst < 1e-5, `every stored row is PyTorch's answer for its own ids, in order around the refused one (max |diff| ${worst})`);
  t.equal(await store.get('text', '1', 'bad'), undefined);
});

t.test('outputs as long as their rows, and steps of several values: each row stored whole, in its own shape', async (t) => {
  // seq: y = 2x over [B, T]; gru: the last hidden state over [B, T, 2], so a row holds pairs.
  const seqRows = [3, 1, 3, 5, 1, 2].map((n, i) => ({ id: `s${i}`, x: Array.from({ length: n }, (_, k) => i + k / 10) }));
  const input = path('seq.jsonl');
  writeFileSync(input, seqRows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const store = await openStore(`sqlite:${path('seq.db')}`);
  t.teardown(() => store.close());
  const summary = await runBatchJob({ umbra, model: 'seq', input, keyColumn: 'id', store, rejectsPath: path('seq.rejects'), batchSize: 4 });
  t.equal(summary.rowsStored, seqRows.length);
  const stored = await Promise.all(seqRows.map(async (r) => (await store.get('seq', '1', r.id))?.outputs[0]));
  t.same(stored.map((y) => y?.shape), seqRows.map((r) => [1, r.x.length]), 'each row\'s output has its own length');
  t.same(stored.map((y) => Array.from(y?.data as number[], (v) => Math.round(v * 1000) / 1000)), seqRows.map((r) => r.x.map((v) => Math.round(Math.fround(2 * v) * 1000) / 1000)), 'y = 2x, row by row');

  const gruRows = [4, 2, 6, 4, 5, 2].map((n, i) => ({ id: `g${i}`, x: Array.from({ length: n }, (_, k) => ((i + k) % 5) / 4) }));
  const gruInput = path('gru.jsonl');
  writeFileSync(gruInput, gruRows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const gruStore = await openStore(`sqlite:${path('gru.db')}`);
  t.teardown(() => gruStore.close());
  const rejectsPath = path('gru.rejects');
  const gru = await runBatchJob({ umbra, model: 'gru', input: gruInput, keyColumn: 'id', store: gruStore, rejectsPath, batchSize: 3 });
  t.same([gru.rowsStored, gru.rejected], [5, 1], 'the row of 5 values is not whole steps of 2');
  t.match(readFileSync(rejectsPath, 'utf8'), /"key":"g4".*expected a non-empty array of a multiple of 2 values for column 'x' \(input 'x', dims \[-1, 2\]\) but received one of 5/);
  let worst = 0;
  for (const r of gruRows.filter((g) => g.id !== 'g4')) {
    const { response } = await umbra.infer('gru', '1', { parameters: {}, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, r.x.length / 2, 2], data: Float32Array.from(r.x) }] });
    const want = response.outputs[0]!.data as Float32Array;
    const got = (await gruStore.get('gru', '1', r.id))?.outputs[0]?.data as number[] | undefined;
    want.forEach((w, i) => { worst = Math.max(worst, Math.abs(Number(got?.[i] ?? NaN) - w)); });
  }
  t.ok(worst < 1e-6, `each stored hidden state is the model's for its own steps run alone (max |diff| ${worst})`);
});
