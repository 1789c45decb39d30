// runInHalves: the refused items of a failed batch are found by halving, in order, in about
// 2k·log2(n) runs; any error other than the model's refusal stops it.
import t from 'tap';
import { runInHalves } from '../dist/execution/halving.js';
import { ModelRunError } from '../dist/errors.js';

/** A model that refuses any part holding a bad item, and answers each item doubled. */
function model(bad: Set<number>) {
  const runs: number[][] = [];
  const run = async (part: number[]) => {
    runs.push(part);
    const refused = part.find((x) => bad.has(x));
    if (refused !== undefined) throw new ModelRunError(`refused ${refused}`);
    return part.map((x) => x * 2);
  };
  return { runs, run };
}

t.test('one bad item in 64: 12 runs, every other item answered in order', async (t) => {
  const items = Array.from({ length: 64 }, (_, i) => i);
  const { runs, run } = model(new Set([37]));
  const done = await runInHalves(items, run);
  t.equal(runs.length, 12, 'two runs per level, six levels');
  t.same(done.map((d) => (d instanceof ModelRunError ? d.message : d)), items.map((x) => (x === 37 ? 'refused 37' : x * 2)));
});

t.test('several bad items, and all bad', async (t) => {
  const { run } = model(new Set([0, 5, 6]));
  const done = await runInHalves([0, 1, 2, 3, 4, 5, 6, 7], run);
  t.same(done.map((d) => (d instanceof ModelRunError ? 'x' : d)), ['x', 2, 4, 6, 8, 'x', 'x', 14]);
  const all = await runInHalves([1, 2, 3], model(new Set([1, 2, 3])).run);
  t.same(all.map((d) => (d as Error).message), ['refused 1', 'refused 2', 'refused 3']);
});

t.test('an error that is not the model refusing the part rejects', async (t) => {
  await t.rejects(runInHalves([1, 2, 3, 4], async (part) => {
    if (part.length < 4) throw new Error('worker lost');
    throw new ModelRunError('refused');
  }), /worker lost/);
});
