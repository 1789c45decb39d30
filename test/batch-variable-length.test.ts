// A batch job over a model whose input has a free dimension past the batch one (token ids of any
// length, a PyTorch export): the job takes the length of the input's first array, stores PyTorch's
// answers for every row of that length, and rejects a row of another length saying why and what
// to do. Before, such an input took one value per row and every longer row was rejected.
import t from 'tap';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStore, runBatchJob } from '../dist/batch/index.js';
import { batchFixture } from './helpers/batch.js';

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

for (const parseWorkers of [1, 2]) {
  t.test(`JSON Lines, ${parseWorkers} reader thread(s): rows of the first row's length are stored, another length is rejected with the reason`, async (t) => {
    const lines = [];
    for (let r = 0; r < rows; r++) {
      lines.push(JSON.stringify({ id: `k${r}`, ids: idsOf(r) }));
      if (r === 1) lines.push(JSON.stringify({ id: 'short', ids: idsOf(r).slice(0, length - 2) }));
    }
    const { summary, store, rejects, plan } = await job(t, 'in.jsonl', lines.join('\n') + '\n', parseWorkers);
    t.match(plan, `ids <- ids (array of ${length}, the first row's length)`, 'the plan says where the length came from');
    t.equal(summary.rowsStored, rows);
    t.equal(summary.rejected, 1);
    t.same(rejects.map((r) => [r.line, r.key]), [[3, 'short']]);
    t.match(rejects[0]?.reason, new RegExp(`expected an array of ${length} values for column 'ids' but received one of ${length - 2}: input 'ids' has a free dimension.*pad the rows to one length, or run one job per length`));
    await checkStored(t, store);
  });
}

t.test('a first row with an empty array: the plan and each rejection say the length is not the first row\'s', async (t) => {
  const lines = [JSON.stringify({ id: 'empty', ids: [] }), ...[0, 1].map((r) => JSON.stringify({ id: `k${r}`, ids: idsOf(r) }))];
  const { summary, rejects, plan } = await job(t, 'empty-first.jsonl', lines.join('\n') + '\n', 1);
  t.match(plan, "ids <- ids (array of 1: the first row's array was empty or did not fit, so its free dimension is 1)");
  t.same([summary.rowsStored, summary.rejected], [0, 3], 'nothing is run at a length no row has');
  t.same(rejects.map((r) => r.key), ['empty', 'k0', 'k1']);
  t.match(rejects[1]?.reason, new RegExp(`expected an array of 1 values for column 'ids' but received one of ${length}: .*length of the first row's array \\(it had none that fits, so 1\\); pad the rows`));
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
