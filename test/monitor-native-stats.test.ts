// The log's tensor summary and feedback's argmax over FP32 answers run in the addon on the serving
// thread; without it (or with UMBRA_NATIVE_STATS=0) JavaScript loops run instead. Both give the
// same summary bit for bit (the mean's sum is defined in eight lanes for both) and the same
// predicted classes, and both match the plain rules.
import t from 'tap';
import { summarizeTensor } from '../dist/monitor/tensor-summary.js';
import { predictedValues } from '../dist/monitor/feedback.js';
import { monitorStats, useMonitorStats } from '../dist/native/monitor-stats.js';
import { seededRandom } from '../dist/random.js';
import { property } from './helpers/property.js';

const random = seededRandom(2801);

/** Both paths: the addon's, then JavaScript's. */
function bothWays<T>(run: () => T): { native: T; js: T } {
  useMonitorStats(true);
  const native = run();
  useMonitorStats(false);
  const js = run();
  useMonitorStats(true);
  return { native, js };
}

function withHoles(n: number, holes: boolean): Float32Array {
  const v = Float32Array.from({ length: n }, () => (random() - 0.5) * 1e4);
  if (holes && n > 3) {
    v[1] = NaN;
    v[Math.floor(n / 2)] = Infinity;
    v[n - 1] = -Infinity;
  }
  return v;
}

t.test('the addon computes the monitoring statistics in this build', async (t) => {
  t.ok(monitorStats(), 'the addon has tensorStatsF32 and argmaxRowsF32');
});

t.test('FP32 summaries: the addon and JavaScript agree bit for bit, and with the plain rules', async (t) => {
  for (const n of [0, 1, 7, 8, 9, 1000, 64 * 4096 + 3]) {
    for (const holes of [false, true]) {
      const v = withHoles(n, holes);
      const { native, js } = bothWays(() => summarizeTensor('FP32', v));
      const what = `${n} values${holes ? ' with NaN and infinities' : ''}`;
      t.ok(Object.is(native.mean, js.mean) && Object.is(native.min, js.min) && Object.is(native.max, js.max), `${what}: the same bits (${native.mean} / ${js.mean})`);
      t.same(native, js, `${what}: the same summary`);
      const finite = Array.from(v).filter(Number.isFinite);
      const plain = finite.reduce((a, b) => a + b, 0) / finite.length;
      const min = finite.length ? finite.reduce((a, b) => Math.min(a, b)) : null;
      const max = finite.length ? finite.reduce((a, b) => Math.max(a, b)) : null;
      t.same({ values: native.values, non_finite: native.non_finite, min: native.min, max: native.max },
        { values: n, non_finite: n - finite.length, min, max }, `${what}: counts, min and max`);
      if (finite.length) t.ok(Math.abs(native.mean! - plain) <= 1e-9 * Math.max(1, Math.abs(plain)), `${what}: the mean of the finite values (${native.mean} vs ${plain} summed in order)`);
      else t.equal(native.mean, null, `${what}: no mean without finite values`);
    }
  }
});

t.test('a zero of either sign is reported as 0', async (t) => {
  const { native, js } = bothWays(() => summarizeTensor('FP32', Float32Array.of(-0, 0, -0)));
  for (const s of [native, js]) t.ok(Object.is(s.min, 0) && Object.is(s.max, 0) && s.mean === 0, JSON.stringify(s));
});

t.test('argmax of FP32 scores: the addon and JavaScript pick the first largest column, NaN never winning', async (t) => {
  for (const width of [1, 5, 8, 13, 33, 100, 2048, 4096]) {
    const rows = 6;
    const data = Float32Array.from({ length: rows * width }, () => random() * 10 - 5);
    data[0] = NaN; // a row that starts with NaN keeps column 0
    if (width > 2) data[width + 1] = NaN;
    if (width > 3) {
      data[2 * width + 1] = 9;
      data[2 * width + width - 1] = 9; // a tie keeps the first
    }
    for (let c = 0; c < width; c++) data[3 * width + c] = c % 2 ? 0 : -0;
    const reader = { task: 'classification' as const, output: 'y', argmax: true, width };
    const response = { model_name: 'm', outputs: [{ name: 'y', datatype: 'FP32' as const, shape: [rows, width], data }] };
    const { native, js } = bothWays(() => Array.from(predictedValues(reader, response)!));
    const plain = Array.from({ length: rows }, (_, r) => {
      let best = 0;
      for (let c = 1; c < width; c++) if (data[r * width + c]! > data[r * width + best]!) best = c;
      return best;
    });
    t.same(native, plain, `width ${width}: the addon`);
    t.same(js, plain, `width ${width}: JavaScript`);
  }
});

t.test('the addon\'s finiteness check finds a NaN or an infinity wherever it is, and nothing else', async (t) => {
  const stats = monitorStats()!;
  const verdicts = property('allFiniteF32 agrees with Number.isFinite on every value');
  for (const n of [0, 1, 15, 255, 256, 257, 4099, 100_003]) {
    // Finite edge cases: the largest values, the smallest normal and subnormal ones, zeros.
    const clean = Float32Array.from({ length: n }, (_, i) => [3.4028234663852886e38, -3.4028234663852886e38, 1.1754943508222875e-38, 1e-45, -0, 0, (random() - 0.5) * 1e4][i % 7]!);
    verdicts.check(stats.allFiniteF32(clean), () => `${n} finite values refused`);
    for (const at of new Set([0, 1, Math.floor(n / 2), n - 2, n - 1].filter((i) => i >= 0 && i < n))) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const v = clean.slice();
        v[at] = bad;
        verdicts.check(!stats.allFiniteF32(v), () => `${bad} at ${at} of ${n} passed`);
      }
    }
  }
  verdicts.assert(t);
});

t.test('UMBRA_NATIVE_STATS=0 and a missing addon fall back to JavaScript', async (t) => {
  t.equal(useMonitorStats(false), true, 'was on');
  t.equal(monitorStats(), null);
  t.equal(useMonitorStats(true), false, 'was off');
  t.ok(monitorStats());
});

t.test('FP16 scores are read as the values their bits hold: classes by argmax, regressions by value', async (t) => {
  const { float32ToHalf } = await import('../dist/protocol/half.js');
  const half = (values: number[]) => Uint16Array.from(values, (v) => float32ToHalf(v));
  const classes = { task: 'classification' as const, output: 'y', argmax: true, width: 3 };
  const scores = { model_name: 'm', outputs: [{ name: 'y', datatype: 'FP16' as const, shape: [2, 3], data: half([-2, -1, -3, 0.25, 0.75, 0.5]) }] };
  t.same(Array.from(predictedValues(classes, scores)!), [1, 1], 'negative scores too (their bits order backwards)');
  const value = { task: 'regression' as const, output: 'y', argmax: false, width: 1 };
  const values = { model_name: 'm', outputs: [{ name: 'y', datatype: 'FP16' as const, shape: [2, 1], data: half([1.5, -0.25]) }] };
  t.same(Array.from(predictedValues(value, values)!), [1.5, -0.25]);
});
