import t from 'tap';
import {
  applyMask, pruneMagnitude, pruneNM, pruneOutputs, selectThreshold, selectThresholdAsync, type PruneLayer,
} from '../dist/native/prune.js';
import { seededRandom as rng } from '../dist/random.js';

/** Layers with many exact ties (a third of the values are quantised to 1/8 steps). */
function makeLayers(seed: number, sizes = [1, 17, 1000, 3000, 33]): PruneLayer[] {
  const next = rng(seed);
  return sizes.map((size, l) => {
    const weights = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      const v = (next() * 4 - 2) || 0.25;
      weights[i] = i % 3 === 0 ? Math.sign(v) * (Math.round(Math.abs(v) * 8) / 8 + 0.125) : v;
    }
    return { name: `layer${l}`, weights };
  });
}

const zeros = (a: Float32Array) => a.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);

/** Reference: stable sort of |w| over (layer, index); the first `count` are pruned. */
function referenceMask(layers: PruneLayer[], count: number): boolean[][] {
  const items: { mag: number; l: number; i: number }[] = [];
  layers.forEach((layer, l) => layer.weights.forEach((v, i) => items.push({ mag: Math.abs(v), l, i })));
  items.sort((a, b) => a.mag - b.mag || a.l - b.l || a.i - b.i);
  const mask = layers.map((layer) => new Array<boolean>(layer.weights.length).fill(false));
  for (let j = 0; j < count; j++) mask[items[j]!.l]![items[j]!.i] = true;
  return mask;
}

t.test('global magnitude pruning is exact and matches a sorted JS reference, ties by index order', async (t) => {
  for (const sparsity of [0, 0.25, 0.5, 0.9, 1]) {
    const layers = makeLayers(1);
    const total = layers.reduce((n, l) => n + l.weights.length, 0);
    const expected = Math.floor(sparsity * total + 0.5);
    const mask = referenceMask(layers, expected);
    const cuts = await pruneMagnitude(layers, { sparsity, threads: 2 });
    t.equal(cuts.reduce((n, c) => n + c.pruned, 0), expected, `reported count at ${sparsity}`);
    t.equal(layers.reduce((n, l) => n + zeros(l.weights), 0), expected, `zero count at ${sparsity}`);
    const agree = layers.every((layer, l) => layer.weights.every((v, i) => (v === 0) === mask[l]![i]));
    t.ok(agree, `the pruned set equals the reference at ${sparsity}`);
    t.ok(cuts.every((c) => c.sparsity === (c.size === 0 ? 0 : c.pruned / c.size)));
  }
});

t.test('per-layer pruning hits the exact count in every layer', async (t) => {
  const layers = makeLayers(2);
  const cuts = selectThreshold(layers, { sparsity: 0.7, perLayer: true });
  applyMask(layers, cuts);
  for (const layer of layers) t.equal(zeros(layer.weights), Math.floor(0.7 * layer.weights.length + 0.5), layer.name);
});

t.test('per-layer clamps bound each layer while the total stays exact', async (t) => {
  const layers = makeLayers(3);
  const total = layers.reduce((n, l) => n + l.weights.length, 0);
  const cuts = await selectThresholdAsync(layers, { sparsity: 0.6, minSparsity: { layer4: 0.9 }, maxSparsity: { layer2: 0.2 } });
  applyMask(layers, cuts);
  t.equal(layers.reduce((n, l) => n + zeros(l.weights), 0), Math.floor(0.6 * total + 0.5));
  t.ok(zeros(layers[4]!.weights) >= Math.floor(0.9 * 33 + 0.5), 'min clamp holds');
  t.ok(zeros(layers[2]!.weights) <= 200, 'max clamp holds');
  t.rejects(selectThresholdAsync(layers, { sparsity: 0.1, minSparsity: { layer3: 0.9 } }), /clamps allow/);
});

t.test('a NaN weight is rejected with the layer and index; nothing is pruned', async (t) => {
  const layers = makeLayers(4);
  layers[3]!.weights[1234] = NaN;
  const before = layers.map((l) => zeros(l.weights));
  t.throws(() => selectThreshold(layers, { sparsity: 0.5 }), { code: 'INVALID_ARGUMENT', message: /"layer3" has NaN at index 1234/ });
  await t.rejects(pruneMagnitude(layers, { sparsity: 0.5 }), /"layer3" has NaN at index 1234/);
  t.same(layers.map((l) => zeros(l.weights)), before);
  const w = new Float32Array([1, NaN, 2, 3]);
  t.throws(() => pruneNM(w, { name: 'fc1', rows: 1, cols: 4, layout: 'nxk' }, 2, 4), /"fc1" has NaN at index 1/);
});

t.test('2:4 keeps exactly the 2 largest in every group along K, for both layouts', async (t) => {
  const next = rng(5);
  for (const layout of ['nxk', 'kxn'] as const) {
    const [rows, cols] = [8, 16];
    const w = Float32Array.from({ length: rows * cols }, () => (next() * 2 - 1) || 0.5);
    const original = Float32Array.from(w);
    const zeroed = pruneNM(w, { name: 'fc', rows, cols, layout }, 2, 4);
    t.equal(zeroed, rows * cols / 2);
    const lines = layout === 'nxk' ? rows : cols;
    const length = layout === 'nxk' ? cols : rows;
    let allGood = true;
    for (let line = 0; line < lines; line++) {
      for (let g = 0; g < length; g += 4) {
        const at = (i: number) => (layout === 'nxk' ? line * cols + g + i : (g + i) * cols + line);
        const kept = [0, 1, 2, 3].filter((i) => w[at(i)] !== 0);
        const dropped = [0, 1, 2, 3].filter((i) => w[at(i)] === 0);
        const minKept = Math.min(...kept.map((i) => Math.abs(original[at(i)]!)));
        const maxDropped = Math.max(...dropped.map((i) => Math.abs(original[at(i)]!)));
        allGood &&= kept.length === 2 && maxDropped <= minKept;
      }
    }
    t.ok(allGood, `every group of 4 keeps its 2 largest (${layout})`);
  }
  t.throws(() => pruneNM(new Float32Array(4), { name: 'fc', rows: 1, cols: 4, layout: 'nxk' }, 5, 4), /expected an integer n in \[0, 4\]/);
});

t.test('structured pruning removes whole outputs by norm', async (t) => {
  const next = rng(6);
  for (const layout of ['nxk', 'kxn'] as const) {
    for (const norm of ['l1', 'l2'] as const) {
      const [rows, cols] = [10, 7];
      const w = Float32Array.from({ length: rows * cols }, () => (next() * 2 - 1) || 0.5);
      const outputs = layout === 'nxk' ? rows : cols;
      const inner = layout === 'nxk' ? cols : rows;
      const at = (o: number, i: number) => (layout === 'nxk' ? o * cols + i : i * cols + o);
      const score = Array.from({ length: outputs }, (_, o) => {
        let s = 0;
        for (let i = 0; i < inner; i++) s += norm === 'l1' ? Math.abs(w[at(o, i)]!) : w[at(o, i)]! ** 2;
        return s;
      });
      const expected = score.map((s, o) => ({ s, o })).sort((a, b) => a.s - b.s || a.o - b.o)
        .slice(0, Math.floor(0.3 * outputs + 0.5)).map((e) => e.o).sort((a, b) => a - b);
      const pruned = pruneOutputs(w, { name: 'fc', rows, cols, layout }, 0.3, norm);
      t.same(Array.from(pruned), expected, `${layout} ${norm}: the weakest outputs`);
      let whole = true;
      for (let o = 0; o < outputs; o++) {
        for (let i = 0; i < inner; i++) whole &&= (w[at(o, i)] === 0) === expected.includes(o);
      }
      t.ok(whole, `${layout} ${norm}: pruned outputs are entirely zero, others untouched`);
    }
  }
});

t.test('bad arguments are refused with clear errors', async (t) => {
  const layers = makeLayers(7, [10]);
  t.throws(() => selectThreshold(layers, { sparsity: 1.5 }), /expected a number in \[0, 1\] for sparsity but received number 1.5/);
  t.throws(() => selectThreshold([{ name: 'a', weights: [1, 2] as unknown as Float32Array }], { sparsity: 0.5 }), /expected a Float32Array for layers\[0\].weights/);
  t.throws(() => selectThreshold(layers, { sparsity: 0.5, minSparsity: { nope: 0.1 } }), /names of layers being pruned/);
  t.throws(() => selectThreshold([...layers, ...layers], { sparsity: 0.5 }), /unique layer names/);
  t.throws(() => applyMask(layers, []), /cuts from selectThreshold/);
  t.throws(() => pruneOutputs(new Float32Array(6), { name: 'fc', rows: 2, cols: 3, layout: 'nxk' }, 0.5, 'l3' as 'l1'), /expected one of l1, l2 for norm/);
});
