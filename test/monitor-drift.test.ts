// Drift on the digits data: a held-out split of the same distribution does not drift; shifted,
// scaled or class-removed data does; small windows are inconclusive; memory stays fixed.
import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { parseExposition, total } from './helpers/prometheus.js';
import { VersionDrift } from '../dist/monitor/drift.js';
import { binOf, profileColumn, readProfile } from '../dist/monitor/profile.js';
import { seededRandom } from '../dist/random.js';
import { property } from './helpers/property.js';
import { kolmogorovSmirnov, chiSquare, psi, jensenShannon } from '../dist/monitor/statistics.js';

const ROOT = new URL('..', import.meta.url).pathname;

interface Row { x: number[]; y: number; split: string }
const ROWS: Row[] = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').trim().split(/\r?\n/).slice(1).map((l) => {
  const c = l.split(',');
  return { x: c.slice(0, 64).map(Number), y: Number(c[64]), split: c[65]! };
});
const TEST = ROWS.filter((r) => r.split === 'test');

/** A temp copy of the digits model with a profile built by the CLI from the train split. */
/** A copy of the digits model with a train-split profile in its own state directory. */
function profiledRepo(t: { teardown(fn: () => void): void }): { dir: string; state: string } {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-drift-'));
  const state = `${dir}.state`;
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
  });
  cpSync(join(ROOT, 'models/repository/digits'), join(dir, 'digits'), { recursive: true });
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'profile', '--repo', dir, '--state-dir', state, '--model', 'digits', '--data', join(ROOT, 'models/digits.csv'), '--where', 'split=train'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`umbra profile failed: ${r.stderr}`);
  return { dir, state };
}

const SIGNATURE = { name: 'digits', maxBatchSize: 32, inputs: [{ name: 'pixels', datatype: 'FP32' as const, dims: [64] }], outputs: [] };

function feed(d: InstanceType<typeof VersionDrift>, rows: number[][]): void {
  for (let i = 0; i < rows.length; i += 8) {
    const chunk = rows.slice(i, i + 8);
    d.observe({ parameters: {}, inputs: [{ name: 'pixels', datatype: 'FP32', shape: [chunk.length, 64], data: Float32Array.from(chunk.flat()) }] }, undefined);
  }
}

t.test('statistics match known values', async (t) => {
  // Identical histograms: no distance, p = 1.
  t.equal(psi([10, 20, 30], [10, 20, 30]).score, 0);
  t.equal(jensenShannon([5, 5], [5, 5]).score, 0);
  t.equal(kolmogorovSmirnov([50, 50], [50, 50]).score, 1);
  // Chi-square 3.0 with 2 degrees of freedom: p = exp(-1.5).
  const c = chiSquare([1, 1, 1], [40, 25, 25]);
  t.ok(Math.abs(c.statistic - 5) < 1e-12);
  t.ok(Math.abs(c.score - Math.exp(-2.5)) < 1e-9, `chi2 p ${c.score}`);
  // KS D = 0.5 with n = m = 100: p is tiny.
  const k = kolmogorovSmirnov([100, 0], [50, 50]);
  t.equal(k.statistic, 0.5);
  t.ok(k.score < 1e-8);
  // Disjoint supports: JS distance is sqrt(ln 2) at most.
  t.ok(Math.abs(jensenShannon([1, 0], [0, 1]).score - Math.sqrt(Math.log(2))) < 1e-3);
});

t.test('live rows are counted into the same bins the profile counted its rows into', async (t) => {
  // The reference's own rows counted live must reproduce the reference counts exactly: no
  // distance on any feature. Quantile edges are values of the data, so many rows sit exactly on
  // an edge; one row is out of range and one is NaN. Values are float32 like the live tensors.
  const random = seededRandom(5);
  const rows = Array.from({ length: 2000 }, (_, r) => Array.from({ length: 64 }, (_, c) => {
    if (r === 9) return Number.NaN;
    if (c % 3 === 0) return Math.round(random() * 3);
    if (c % 3 === 1) return Math.round(random() * 12);
    return Math.fround(random() * 10 - 5 + (r === 7 ? 100 : 0));
  }));
  const profile = Array.from({ length: 64 }, (_, c) => profileColumn(`pixels[${c}]`, Float64Array.from(rows, (row) => row[c]!)));
  t.same(new Set(profile.map((p) => `${p.kind} ${p.kind === 'numeric' && p.edges!.length > 15 ? 'quantiles' : 'per value'}`)), new Set(['categorical per value', 'numeric per value', 'numeric quantiles']));
  const d = new VersionDrift('digits', '1', SIGNATURE, { source: 'x', rows: rows.length, inputs: profile }, { windowRows: rows.length * 2, numericTest: 'psi', categoricalTest: 'js' });
  feed(d, rows);
  const report = d.evaluate();
  t.equal(report.window, rows.length);
  t.same(report.features.filter((f) => f.score !== 0).map((f) => [f.name, f.score]), [], 'no distance on any feature');
});

t.test('every way of finding a bin counts as the profile does: grid, halving for bunched edges, categories', async (t) => {
  // Heavy-tailed columns bunch their quantile edges near zero and leave one far out, so no grid
  // of bounded size keeps the walks short there and those columns halve; even columns get a
  // grid. Values sit on edges, between them, past both ends, at +-Infinity, -0 and NaN.
  const random = seededRandom(9);
  const special = [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, Number.NaN];
  const rows = Array.from({ length: 3000 }, (_, r) => Array.from({ length: 64 }, (_, c) => {
    if (r < special.length * 16 && c % 16 === r % 16) return special[Math.floor(r / 16)]!;
    const u = random();
    if (c % 4 === 0) return Math.fround(Math.exp(30 * u * u * u * u));
    if (c % 4 === 1) return Math.fround(u * 100 - 50);
    if (c % 4 === 2) return Math.round(u * 9);
    return Math.round(u * 2);
  }));
  const profile = Array.from({ length: 64 }, (_, c) => profileColumn(`pixels[${c}]`, Float64Array.from(rows, (row) => row[c]!)));
  const d = new VersionDrift('digits', '1', SIGNATURE, { source: 'x', rows: rows.length, inputs: profile }, { windowRows: rows.length * 2, numericTest: 'psi', categoricalTest: 'js' });
  const modes = (d as unknown as { watched: { in: { mode: Uint8Array } } }).watched.in.mode;
  t.same(new Set(modes), new Set([0, 1, 2]), 'categories, grids and halving all in use');
  t.equal(modes[0], 2, 'the heavy-tailed column halves');
  t.equal(modes[1], 1, 'the even column has a grid');
  feed(d, rows);
  const report = d.evaluate();
  t.equal(report.window, rows.length);
  t.same(report.features.filter((f) => f.score !== 0).map((f) => [f.name, f.score]), [], 'no distance on any feature');
  // And each value counted alone lands in binOf's bin, column by column.
  const ownBin = property('a value counted alone lands in binOf\'s bin in every column');
  for (const x of [-1e30, -50, -49.99999, -0, 0.5, 1, 3, 7.5, 49.99999, 50, 1e5, 1e30, Number.NaN]) {
    const one = new VersionDrift('digits', '1', SIGNATURE, { source: 'x', rows: 1, inputs: profile });
    feed(one, [Array.from({ length: 64 }, () => x)]);
    const inside = one as unknown as { watched: { in: { binOffset: Int32Array }; window: { total(): Uint32Array } } };
    const total = inside.watched.window.total();
    const wrong = profile.flatMap((p, c) => {
      const at = inside.watched.in.binOffset[c]!;
      const live = Array.from(total.subarray(at, at + p.counts.length));
      const want = live.map((_, b) => (b === binOf(p, x) ? 1 : 0));
      return live.join() === want.join() ? [] : [`${p.name}: ${live.join()} want ${want.join()}`];
    });
    ownBin.check(wrong.length === 0, () => `x = ${x}: ${wrong.slice(0, 3).join('; ')}`);
  }
  ownBin.assert(t);
});

t.test('wide FP32 requests are counted by the addon into exactly the bins JavaScript and binOf give', async (t) => {
  const { useMonitorStats } = await import('../dist/native/monitor-stats.js');
  t.teardown(() => { useMonitorStats(true); });
  // The columns of the test above (grids, halving, categories; values on edges, past both ends,
  // +-Infinity, -0, NaN), sent 64 rows a request: 4,096 values, which the addon counts.
  const random = seededRandom(11);
  const special = [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, Number.NaN];
  const rows = Array.from({ length: 2048 }, (_, r) => Array.from({ length: 64 }, (_, c) => {
    if (r % 7 === 0 && c % 5 === r % 5) return special[(r + c) % special.length]!;
    const u = random();
    if (c % 4 === 0) return Math.fround(Math.exp(30 * u * u * u * u));
    if (c % 4 === 1) return Math.fround(u * 100 - 50);
    if (c % 4 === 2) return Math.round(u * 9);
    return Math.round(u * 2);
  }));
  const profile = Array.from({ length: 64 }, (_, c) => profileColumn(`pixels[${c}]`, Float64Array.from(rows.slice(0, 1024), (row) => row[c]!)));
  // Live rows off the profile's own values too: between and beyond its edges.
  const live = rows.map((row, r) => row.map((x, c) => (r % 3 === 0 && Number.isFinite(x) ? Math.fround(x * 1.37 + (c % 4 === 1 ? 0.5 : 0)) : x)));
  const wide = { ...SIGNATURE, maxBatchSize: 64 };
  const counts = (native: boolean, maxValuesPerRequest: number) => {
    useMonitorStats(native);
    const d = new VersionDrift('digits', '1', wide, { source: 'x', rows: 1024, inputs: profile }, { windowRows: 1 << 20, maxValuesPerRequest });
    for (let i = 0; i < live.length; i += 64) {
      const chunk = live.slice(i, i + 64);
      d.observe({ parameters: {}, inputs: [{ name: 'pixels', datatype: 'FP32', shape: [chunk.length, 64], data: Float32Array.from(chunk.flat()) }] }, undefined);
    }
    const inside = d as unknown as { watched: { in: { mode: Uint8Array; binOffset: Int32Array }; window: { total(): Uint32Array; rows: number } } };
    return { modes: new Set(inside.watched.in.mode), binOffset: inside.watched.in.binOffset, rows: inside.watched.window.rows, total: Array.from(inside.watched.window.total()) };
  };
  const native = counts(true, 8192);
  const js = counts(false, 8192);
  t.same(native.modes, new Set([0, 1, 2]), 'categories, grids and halving all in use');
  t.equal(native.rows, live.length, 'every row counted');
  t.same(native.total, js.total, 'the addon and JavaScript count the same');
  const want = new Array<number>(native.total.length).fill(0);
  for (const row of live) row.forEach((x, c) => { want[native.binOffset[c]! + binOf(profile[c]!, Math.fround(x))]! += 1; });
  t.same(native.total, want, 'and every value is in binOf\'s bin');
  // Sampled: every k-th row from a rotating offset, the same rows both ways.
  const sampledNative = counts(true, 1500);
  const sampledJs = counts(false, 1500);
  t.ok(sampledNative.rows < live.length && sampledNative.rows > 0, `sampled ${sampledNative.rows} of ${live.length} rows`);
  t.same(sampledNative, sampledJs, 'sampled rows: the same counts both ways');
});

t.test('the addon refuses a drift table that points outside its arrays, and counts nothing', async (t) => {
  const { native } = await import('../dist/native/addon.js');
  const addon = native();
  const data = new Float32Array(8).fill(1);
  const points = Float64Array.of(0, 1, 2);
  const cells = Int32Array.of(0, 1, 2, 3);
  const segment = new Uint32Array(4);
  // One column: a grid over points 0..2 (3 edges, 4 bins) at binOffset 0.
  const table = (over: Partial<Record<number, number>>) => {
    const r = Float64Array.of(0, 2, 1.5, 0, 4, 0, 3, 0);
    for (const [k, v] of Object.entries(over)) r[Number(k)] = v!;
    return r;
  };
  const count = (tab: Float64Array, seg = segment) => () => addon.driftCountF32(data, 8, 1, 0, 1, 0, 1, tab, cells, points, seg);
  t.doesNotThrow(count(table({})), 'a sound table');
  t.same(Array.from(segment), [0, 8, 0, 0], 'eight ones in the bin of edge 1');
  segment.fill(0);
  for (const [what, over, message] of [
    ['points past the end', { 5: 1 }, /points past the points/],
    ['bins past the segment', { 7: 1 }, /bins past the segment/],
    ['a grid past the cells', { 4: 5 }, /grid past the cells/],
    ['a grid with no edges', { 6: 0 }, /grid past the cells/],
    ['an unknown kind', { 3: -3 }, /no known kind/],
  ] as const) {
    t.throws(count(table(over)), message, what);
  }
  t.throws(() => addon.driftCountF32(data, 8, 1, 0, 2, 0, 1, table({}), cells, points, segment), /columns must not exceed width/, 'more columns than the rows are wide');
  t.throws(() => addon.driftCountF32(data, 9, 1, 0, 1, 0, 1, table({}), cells, points, segment), /data has 8 elements but needs 9/, 'more rows than the data holds');
  t.same(Array.from(segment), [0, 0, 0, 0], 'nothing counted by a refused call');
});

t.test('verdicts against the train-split profile: held out, shifted, scaled, inconclusive', async (t) => {
  const { dir, state } = profiledRepo(t);
  const profile = readProfile(dir, 'digits', state)!;
  t.equal(profile.rows, 1437);
  t.equal(profile.inputs.length, 64);
  t.same(profile.inputs.slice(0, 2).map((f: { name: string }) => f.name), ['f0', 'f1']);
  const reference = { source: profile.source, rows: profile.rows, inputs: profile.inputs };
  const run = (rows: number[][]) => {
    const d = new VersionDrift('digits', '1', SIGNATURE, reference);
    feed(d, rows);
    return d.evaluate();
  };
  const held = run(TEST.map((r) => r.x));
  t.equal(held.verdict, 'no_drift', `held-out split: drifted share ${held.driftedShare}`);
  t.equal(held.window, 360);
  const tests = (r: typeof held, kind: string) => new Set(r.features.filter((f: { kind: string }) => f.kind === kind).map((f: { test: string }) => f.test));
  t.same([...tests(held, 'numeric')], ['ks'], 'KS for numeric features under 1000 rows');
  t.same([...tests(held, 'categorical')], ['chi2'], 'chi-square for few-valued ones (f0 is always 0)');
  const shifted = run(TEST.map((r) => r.x.map((v) => Math.min(16, v + 3))));
  t.equal(shifted.verdict, 'drift');
  t.ok(shifted.driftedShare > 0.5);
  const scaled = run(TEST.map((r) => r.x.map((v) => Math.round(v * 0.6))));
  t.equal(scaled.verdict, 'drift');
  const few = run(TEST.slice(0, 60).map((r) => r.x.map((v) => Math.min(16, v + 3))));
  t.equal(few.verdict, 'inconclusive', 'below the minimum sample even clear drift is inconclusive');
  t.ok(few.features.every((f: { verdict: string }) => f.verdict === 'inconclusive'));
  // Above 1000 rows the distances take over (as Evidently does).
  const big = run([...TEST, ...TEST, ...TEST, ...TEST].map((r) => r.x));
  t.ok(big.window <= 1024 && big.window >= 875, `window holds the newest segments only (${big.window})`);
  t.same([...tests(big, 'numeric')], ['ks'], 'KS while the window holds 1000 rows at most');
  const psiRun = new VersionDrift('digits', '1', SIGNATURE, reference, { windowRows: 4000, numericTest: 'psi' });
  feed(psiRun, TEST.map((r) => r.x));
  t.equal(psiRun.evaluate().verdict, 'no_drift', 'PSI on the held-out split');
  t.same([...tests(psiRun.evaluate(), 'numeric')], ['psi']);
});

t.test('a reference of fewer rows than the minimum sample judges nothing: inconclusive, and umbra profile says so', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'umbra-drift-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const dir = join(work, 'repo');
  const state = join(work, 'state');
  cpSync(join(ROOT, 'models/repository/digits'), join(dir, 'digits'), { recursive: true });
  const lines = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').split(/\r?\n/);
  const data = join(work, 'few.csv');
  writeFileSync(data, `${lines.slice(0, 31).join('\n')}\n`);
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'profile', '--repo', dir, '--state-dir', state, '--model', 'digits', '--data', data], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /only 30 reference rows; drift verdicts stay inconclusive below --drift-min-samples/);
  const profile = readProfile(dir, 'digits', state)!;
  const d = new VersionDrift('digits', '1', SIGNATURE, { source: profile.source, rows: profile.rows, inputs: profile.inputs });
  feed(d, TEST.map((row) => row.x.map((v) => Math.min(16, v + 3))));
  t.equal(d.evaluate().verdict, 'inconclusive', '360 shifted live rows against 30 reference rows raise no alarm');
});

t.test('prediction drift without a class output: the first output, by the share of its columns that drift', async (t) => {
  // A softmax classifier exported without a label output (as PyTorch exports them), and a
  // regression: their inputs hold still while what they predict moves.
  const random = seededRandom(11);
  const inputRows = (n: number) => Array.from({ length: n }, () => Array.from({ length: 4 }, () => random() * 2 - 1));
  const softmax = (z: number[]) => { const e = z.map(Math.exp); const s = e.reduce((a, b) => a + b, 0); return e.map((v) => v / s); };
  const probs = (n: number, favour: number) => Array.from({ length: n }, () => softmax([random() + favour, random(), random()]));
  const profileOf = (rows: number[][], name: string) => rows[0]!.map((_, c) => profileColumn(rows[0]!.length === 1 ? name : `${name}[${c}]`, Float64Array.from(rows, (r) => r[c]!)));
  const x = inputRows(1000);
  const check = (output: { name: string; dims: number[] }, reference: number[][], live: number[][]) => {
    const signature = { name: 'm', maxBatchSize: 32, inputs: [{ name: 'x', datatype: 'FP32' as const, dims: [4] }], outputs: [{ name: output.name, datatype: 'FP32' as const, dims: output.dims }] };
    const d = new VersionDrift('m', '1', signature, { source: 'ref', rows: 1000, inputs: profileOf(x, 'x'), outputs: profileOf(reference, output.name) });
    const liveX = inputRows(live.length);
    for (let i = 0; i < live.length; i += 8) {
      const n = Math.min(8, live.length - i);
      d.observe({ parameters: {}, inputs: [{ name: 'x', datatype: 'FP32', shape: [n, 4], data: Float32Array.from(liveX.slice(i, i + n).flat()) }] },
        { model_name: 'm', outputs: [{ name: output.name, datatype: 'FP32', shape: [n, ...output.dims], data: Float32Array.from(live.slice(i, i + n).flat()) }] });
    }
    return d.evaluate();
  };
  const same = check({ name: 'probs', dims: [3] }, probs(1000, 0), probs(400, 0));
  const moved = check({ name: 'probs', dims: [3] }, probs(1000, 0), probs(400, 1.5));
  t.same([same.verdict, same.predictionDrift, same.driftedShare], ['no_drift', false, 0], 'the same distribution: nothing');
  t.same([moved.verdict, moved.predictionDrift, moved.driftedShare], ['drift', true, 0], 'class 0 favoured: the probabilities drift, the inputs do not');
  const value = (n: number, offset: number) => Array.from({ length: n }, () => [random() + offset]);
  const regression = check({ name: 'value', dims: [1] }, value(1000, 0), value(400, 0.3));
  t.same([regression.verdict, regression.predictionDrift], ['drift', true], 'a regression whose values moved');
  t.same([check({ name: 'value', dims: [1] }, value(1000, 0), value(400, 0)).predictionDrift], [false]);
});

t.test('memory stays fixed under a long stream', async (t) => {
  const d = new VersionDrift('digits', '1', SIGNATURE, undefined, { windowRows: 500, captureRows: 300 });
  feed(d, TEST.slice(0, 300).map((r) => r.x));
  const bytes = d.windowBytes;
  t.ok(bytes > 0 && bytes <= 64 * 21 * 9 * 4, `${bytes} bytes for 64 features`);
  t.equal(d.evaluate().reference.source, 'live', 'captured from the first live rows');
  const seed = { s: 11 };
  const rand = () => ((seed.s = (seed.s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 5000; i++) {
    const r = TEST[Math.floor(rand() * TEST.length)]!;
    feed(d, [r.x]);
  }
  t.equal(d.windowBytes, bytes, 'same arrays after 5000 more requests');
  const report = d.evaluate();
  t.ok(report.window <= 500 && report.window > 400, `window ${report.window}`);
  t.equal(report.verdict, 'no_drift');
});

t.test('a time window forgets old rows', async (t) => {
  const { dir, state } = profiledRepo(t);
  const profile = readProfile(dir, 'digits', state)!;
  let now = 1_000_000;
  const d = new VersionDrift('digits', '1', SIGNATURE, { source: 'x', rows: profile.rows, inputs: profile.inputs }, { windowRows: 100_000, windowSeconds: 8, clock: () => now });
  feed(d, TEST.slice(0, 200).map((r) => r.x));
  now += 4000;
  feed(d, TEST.slice(200, 360).map((r) => r.x));
  t.equal(d.evaluate().window, 360);
  now += 4500; // the first 200 rows are now more than 8 s old
  t.equal(d.evaluate().window, 160);
  now += 60_000;
  const idle = d.evaluate();
  t.equal(idle.window, 0, 'an idle minute empties an 8 s window');
  t.equal(idle.verdict, 'inconclusive');
});

t.test('server: profile from the state directory, /drift per version, gauges, class removed', async (t) => {
  const { dir, state } = profiledRepo(t);
  const s = await startTestServer(t, { repository: dir, stateDir: state });
  const before = await s.get('/v2/models/digits/drift');
  t.equal(before.status, 200);
  t.equal(before.json.verdict, 'inconclusive');
  t.equal(before.json.window, 0);

  const send = async (version: string, rows: Row[]) => {
    const answered = property(`every request of 8 rows to version ${version} is answered 200`);
    for (let i = 0; i < rows.length; i += 8) {
      const chunk = rows.slice(i, i + 8);
      const r = await s.post(`/v2/models/digits/versions/${version}/infer`, { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [chunk.length, 64], data: chunk.flatMap((c) => c.x) }] });
      answered.check(r.status === 200, () => `rows ${i}-${i + chunk.length - 1}: ${r.status} ${r.text}`);
    }
    answered.assert(t);
  };
  // Version 1 sees the held-out split; version 2 the same split without the digit 3.
  await send('1', TEST);
  await send('2', TEST.filter((r) => r.y !== 3));
  const v1 = (await s.get('/v2/models/digits/versions/1/drift')).json;
  t.equal(v1.verdict, 'no_drift');
  t.equal(v1.window, 360);
  t.equal(v1.features.length, 64);
  t.match(v1.features[10], { name: 'f10', kind: 'numeric', test: 'ks', threshold: 0.05, verdict: 'no_drift' });
  t.match(v1.features[0], { name: 'f0', kind: 'categorical', test: 'chi2' });
  t.equal(v1.predictionDrift, false);
  t.same(v1.reference, { source: 'digits.csv', rows: 1437 });
  const v2 = (await s.get('/v2/models/digits/drift')).json; // newest version
  t.equal(v2.version, '2');
  t.equal(v2.verdict, 'drift', 'a vanished class drifts the predicted label');
  t.equal(v2.predictionDrift, true);
  const label = v2.outputs.find((o: { name: string }) => o.name === 'label');
  t.match(label, { test: 'chi2', verdict: 'drift' });

  const m = parseExposition((await s.get('/metrics')).text);
  t.equal(total(m, 'umbra_drift_detected', { model: 'digits', version: '1' }), 0);
  t.equal(total(m, 'umbra_drift_detected', { model: 'digits', version: '2' }), 1);
  t.equal(total(m, 'umbra_drift_window_rows', { model: 'digits', version: '1' }), 360);
  t.ok(m.some((x) => x.name === 'umbra_drift_score' && x.labels.feature === 'f10' && x.labels.test === 'ks' && x.labels.version === '1'));
});

t.test('a request wider than maxValuesPerRequest is counted on every k-th row, from a rotating offset', async (t) => {
  // 64 rows x 64 columns = 4096 values; a budget of 512 counts every 8th row, 8 rows a request.
  const train = ROWS.filter((r) => r.split === 'train').map((r) => r.x);
  const profile = Array.from({ length: 64 }, (_, c) => profileColumn(`pixels[${c}]`, Float64Array.from(train, (row) => row[c]!)));
  const reference = { source: 'x', rows: train.length, inputs: profile };
  const options = { windowRows: 100_000, maxValuesPerRequest: 512, minSamples: 30 };
  const send = (d: InstanceType<typeof VersionDrift>, rows: number[][]) => {
    for (let i = 0; i + 64 <= rows.length; i += 64) {
      d.observe({ parameters: {}, inputs: [{ name: 'pixels', datatype: 'FP32', shape: [64, 64], data: Float32Array.from(rows.slice(i, i + 64).flat()) }] }, undefined);
    }
  };
  const held = TEST.map((r) => r.x);
  const same = new VersionDrift('digits', '1', SIGNATURE, reference, options);
  send(same, held);
  const requests = Math.floor(held.length / 64);
  t.equal(same.evaluate().window, requests * 8, 'each request counts 8 of its 64 rows');
  t.equal(same.evaluate().verdict, 'no_drift', 'a sample of the held-out split does not drift');

  const shifted = new VersionDrift('digits', '1', SIGNATURE, reference, options);
  send(shifted, held.map((x) => x.map((v) => v * 0.5 + 4)));
  t.equal(shifted.evaluate().verdict, 'drift', 'a sample of shifted data drifts');

  // The offset rotates: of 3 rows at step 2, one request counts rows 0 and 2, the next row 1.
  const rotating = new VersionDrift('digits', '1', SIGNATURE, reference, { windowRows: 1000, maxValuesPerRequest: 96 });
  const three = { parameters: {}, inputs: [{ name: 'pixels', datatype: 'FP32' as const, shape: [3, 64], data: Float32Array.from(held.slice(0, 3).flat()) }] };
  rotating.observe(three, undefined);
  t.equal(rotating.evaluate().window, 2);
  rotating.observe(three, undefined);
  t.equal(rotating.evaluate().window, 3, 'the second request counts the row the first left out');
});

t.test('a model that does not batch but takes rows along a free first dim has its input rows watched', async (t) => {
  const { columnLayout, visitRows } = await import('../dist/monitor/features.js');
  const signature = {
    name: 'hits', maxBatchSize: 0,
    inputs: [{ name: 'x', datatype: 'FP32' as const, dims: [-1, 3] }, { name: 'seq', datatype: 'FP32' as const, dims: [-1, -1] }],
    outputs: [{ name: 'hits', datatype: 'INT64' as const, dims: [-1, 2] }, { name: 'total', datatype: 'FP32' as const, dims: [3] }],
  };
  const inputs = columnLayout(signature, 'inputs');
  const outputs = columnLayout(signature, 'outputs');
  t.same([inputs.names, outputs.names], [['x[0]', 'x[1]', 'x[2]', 'seq.length', 'seq.mean'], ['total[0]', 'total[1]', 'total[2]']],
    'the input\'s rows along its free first dim (seq\'s rows vary: their length and mean); outputs only where every dim is fixed (hits may count anything there)');
  t.same(outputs.unwatched, [{ name: 'hits', side: 'output', reason: 'its shape per row varies' }], 'the output left out is named, with why');
  const seen: number[][] = [];
  const rows = visitRows(inputs, [{ name: 'x', datatype: 'FP32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) }], (r, c, v) => { (seen[r] ??= [])[c] = v; });
  t.same([rows, seen], [2, [[1, 2, 3], [4, 5, 6]]]);
});

/** A text classifier's signature: token ids of any length in, `classes` scores out. */
const SEQUENCE = {
  name: 'tagger', maxBatchSize: 8,
  inputs: [{ name: 'ids', datatype: 'INT64' as const, dims: [-1] }, { name: 'frames', datatype: 'FP32' as const, dims: [-1, 2] }],
  outputs: [{ name: 'scores', datatype: 'FP32' as const, dims: [3] }, { name: 'tags', datatype: 'INT64' as const, dims: [-1] }],
};

/** One request of `rows` rows of `length` positions: ids, and frames whose two channels are (base + p, -base). */
function sequenceRequest(rows: number, length: number, base: number) {
  const frames = new Float32Array(rows * length * 2);
  for (let r = 0; r < rows; r++) for (let p = 0; p < length; p++) frames.set([base + r + p, -base], (r * length + p) * 2);
  return {
    request: { parameters: {}, inputs: [
      { name: 'ids', datatype: 'INT64' as const, shape: [rows, length], data: BigInt64Array.from({ length: rows * length }, (_, i) => BigInt(i % 50)) },
      { name: 'frames', datatype: 'FP32' as const, shape: [rows, length, 2], data: frames },
    ] },
    response: { model_name: 'tagger', model_version: '1', outputs: [
      { name: 'scores', datatype: 'FP32' as const, shape: [rows, 3], data: Float32Array.from({ length: rows * 3 }, (_, i) => (i % 3) / (length + 1)) },
      { name: 'tags', datatype: 'INT64' as const, shape: [rows, length], data: new BigInt64Array(rows * length) },
    ] },
  };
}

t.test('inputs whose rows vary in shape are watched by their length and channel means', async (t) => {
  const { columnLayout, visitRows } = await import('../dist/monitor/features.js');
  const inputs = columnLayout(SEQUENCE, 'inputs');
  t.same(inputs.names, ['ids.length', 'frames.length', 'frames.mean[0]', 'frames.mean[1]'], 'ids: its length; frames: its length and each channel\'s mean');
  const { request } = sequenceRequest(2, 3, 10);
  const seen: number[][] = [];
  const rows = visitRows(inputs, request.inputs, (r, c, v) => { (seen[r] ??= [])[c] = v; });
  // Row 0's first channel holds 10, 11, 12 (mean 11); row 1's 11, 12, 13 (mean 12); the second -10.
  t.same([rows, seen], [2, [[3, 3, 11, -10], [3, 3, 12, -10]]], 'per row: the lengths, then the channel means');
  const long = new Float32Array(9000 * 2).map((_, i) => (i % 2 ? 5 : -1));
  const longSeen: number[] = [];
  visitRows(inputs, [{ name: 'frames', datatype: 'FP32', shape: [1, 9000, 2], data: long }], (_r, c, v) => { longSeen[c] = v; });
  t.same(longSeen.slice(1), [9000, -1, 5], 'a long sequence: its whole length, its means over evenly spaced positions');
  const image = columnLayout({ name: 'img', maxBatchSize: 4, inputs: [{ name: 'image', datatype: 'FP32' as const, dims: [3, -1, -1] }], outputs: [] }, 'inputs');
  t.same(image.names, ['image.length'], 'channels before the free dims ([C, H, W]): the positions only, no means');
  const pixels: number[] = [];
  visitRows(image, [{ name: 'image', datatype: 'FP32', shape: [1, 3, 4, 5], data: new Float32Array(60) }], (_r, _c, v) => pixels.push(v));
  t.same(pixels, [20], 'a 3 x 4 x 5 image: 20 positions');

  // No profile can hold such an input: the reference is the first live rows, and a change in
  // length drifts where the values alone would not say so.
  const options = { captureRows: 200, windowRows: 200, minSamples: 50 };
  const drift = new VersionDrift('tagger', '1', SEQUENCE, undefined, options);
  for (let i = 0; i < 100; i++) {
    const { request, response } = sequenceRequest(2, 5 + (i % 4), i % 7);
    drift.observe(request, response);
  }
  const same = drift.evaluate();
  t.same([same.reference, same.verdict], [{ source: 'live', rows: 200 }, 'inconclusive'], 'the reference is captured from the first 200 live rows');
  for (let i = 0; i < 100; i++) {
    const { request, response } = sequenceRequest(2, 5 + (i % 4), i % 7);
    drift.observe(request, response);
  }
  t.equal(drift.evaluate().verdict, 'no_drift', 'the same lengths and values do not drift');
  for (let i = 0; i < 100; i++) {
    const { request, response } = sequenceRequest(2, 40 + (i % 4), i % 7);
    drift.observe(request, response);
  }
  const longer = drift.evaluate();
  t.same(longer.features.filter((f) => f.verdict === 'drift').map((f) => f.name).sort(), ['frames.length', 'frames.mean[0]', 'ids.length'],
    'texts eight times as long drift by their length (and frames by their first channel, which grows along them)');
  t.equal(longer.verdict, 'drift');
  t.same(longer.unwatched, [{ name: 'tags', side: 'output', reason: 'its shape per row varies' }], 'the per-position output is named as not watched');
});

t.test('a model none of whose inputs is watched is judged by its outputs, and one with nothing to watch says so', async (t) => {
  const text = { name: 'text', maxBatchSize: 8, inputs: [{ name: 'text', datatype: 'BYTES' as const, dims: [1] }], outputs: [{ name: 'p', datatype: 'FP32' as const, dims: [2] }, { name: 'embedding', datatype: 'FP32' as const, dims: [384] }] };
  const drift = new VersionDrift('text', '1', text, undefined, { captureRows: 100, windowRows: 100, minSamples: 50 });
  const send = (rows: number, p: number) => drift.observe(
    { parameters: {}, inputs: [{ name: 'text', datatype: 'BYTES', shape: [rows, 1], data: Array.from({ length: rows }, () => Buffer.from('hello')) }] },
    { model_name: 'text', model_version: '1', outputs: [{ name: 'p', datatype: 'FP32', shape: [rows, 2], data: Float32Array.from({ length: rows * 2 }, (_, i) => (i % 2 ? 1 - p : p) + (i % 7) * 0.01) }, { name: 'embedding', datatype: 'FP32', shape: [rows, 384], data: new Float32Array(rows * 384) }] },
  );
  for (let i = 0; i < 50; i++) send(4, 0.2);
  const before = drift.evaluate();
  t.same([before.reference, before.window, before.features, before.outputs.map((o) => o.name)], [{ source: 'live', rows: 100 }, 100, [], ['p[0]', 'p[1]']],
    'rows counted by the outputs: the reference captured, the window filled');
  t.same(before.unwatched, [
    { name: 'text', side: 'input', reason: 'BYTES (text) tensors are not watched' },
    { name: 'embedding', side: 'output', reason: '384 columns per row, more than the 32 an output may have to be watched (an embedding, a wide score vector)' },
  ]);
  for (let i = 0; i < 50; i++) send(4, 0.7);
  const after = drift.evaluate();
  t.same([after.verdict, after.predictionDrift], ['drift', true], 'scores that moved drift the prediction');

  const nothing = new VersionDrift('echo', '1', { name: 'echo', maxBatchSize: 8, inputs: [{ name: 'text', datatype: 'BYTES' as const, dims: [1] }], outputs: [{ name: 'vec', datatype: 'FP32' as const, dims: [768] }] }, undefined, {});
  const report = nothing.evaluate();
  t.same([report.verdict, report.reference, report.unwatched?.map((u) => u.name)], ['inconclusive', { source: 'none', rows: 0 }, ['text', 'vec']],
    'no reference is waited for where nothing can be counted, and the report says why');
});

t.test('FP16 tensors are counted by their values, as the same values in FP32 are', async (t) => {
  const { float32ToHalf } = await import('../dist/protocol/half.js');
  const signature = (datatype: 'FP16' | 'FP32') => ({ name: 'half', maxBatchSize: 8, inputs: [{ name: 'x', datatype, dims: [3] }], outputs: [{ name: 'y', datatype, dims: [2] }] });
  const random = seededRandom(11);
  // Values a half holds exactly (multiples of 1/8 below 16), so both models see the same numbers.
  const rows = Array.from({ length: 600 }, (_, r) => [0, 1, 2].map((c) => Math.round(random() * 64 + (r >= 300 && c === 1 ? 32 : 0)) / 8));
  const reports = (['FP32', 'FP16'] as const).map((datatype) => {
    const drift = new VersionDrift('half', '1', signature(datatype), undefined, { captureRows: 200, windowRows: 200, minSamples: 50 });
    const encode = (values: number[]) => (datatype === 'FP16' ? Uint16Array.from(values, (v) => float32ToHalf(v)) : Float32Array.from(values));
    for (let i = 0; i < rows.length; i += 4) {
      const batch = rows.slice(i, i + 4);
      drift.observe(
        { parameters: {}, inputs: [{ name: 'x', datatype, shape: [batch.length, 3], data: encode(batch.flat()) }] },
        { model_name: 'half', model_version: '1', outputs: [{ name: 'y', datatype, shape: [batch.length, 2], data: encode(batch.flatMap((x) => [x[0]! + x[1]!, x[2]!])) }] },
      );
    }
    return drift.evaluate();
  });
  t.same(reports[1]!.unwatched, undefined, 'nothing left out');
  t.same(reports[1]!.features.map((f) => [f.name, f.verdict]), [['x[0]', 'no_drift'], ['x[1]', 'drift'], ['x[2]', 'no_drift']], 'the shifted column drifts, the others do not');
  t.same(reports[1], reports[0], 'the FP16 report is the FP32 one, score for score');
});
