// Traffic logic without a server: sticky canary draws, output comparison, analysis verdicts and
// the rollout state machine on a fake clock, plus validation of every admin input.
import t from 'tap';
import {
  takesCanary, stickyPoint, parsePolicy, compareOutputs, compareModeOf, tensorForLog, analyse, Evidence, DEFAULT_RULES,
  Rollout, parseRolloutSpec, parseRules, type RolloutSpec, type Comparison,
} from '../dist/traffic/index.js';
import { rulesFromQuery } from '../dist/traffic/analysis.js';
import { medianBounds, proportionBounds, shiftBounds } from '../dist/traffic/estimators.js';
import { parseRecord } from '../dist/traffic/rollout.js';
import { seededRandom as seeded } from '../dist/random.js';
import { float32ToHalf } from '../dist/protocol/half.js';

t.test('sticky canary: same key same version; raising the weight only moves keys to the canary', async (t) => {
  const keys = Array.from({ length: 5000 }, (_, i) => `user-${i}`);
  const at = (w: number) => keys.map((k) => takesCanary('digits', w, k));
  const w5 = at(0.05);
  t.same(at(0.05), w5, 'deterministic per key');
  const w25 = at(0.25);
  t.ok(w5.every((c, i) => !c || w25[i]), 'every key on the canary at 5% stays there at 25%');
  const share = (xs: boolean[]) => xs.filter(Boolean).length / xs.length;
  // Binomial sd at n=5000: sqrt(p(1-p)/n) ~ 0.0031 for 5%, 0.0061 for 25%; allow 4 sd.
  t.ok(Math.abs(share(w5) - 0.05) < 4 * 0.0031, `5% share ${share(w5)}`);
  t.ok(Math.abs(share(w25) - 0.25) < 4 * 0.0061, `25% share ${share(w25)}`);
  const moved = w25.filter((c, i) => c && !w5[i]).length / keys.length;
  t.ok(Math.abs(moved - 0.2) < 4 * 0.0057, `about 20% of keys moved (${moved})`);
  const again = at(0.25);
  t.ok(at(0.1).every((c, i) => !c || again[i]), 'lowering the weight only moves keys back to the primary');
  t.notSame(keys.map((k) => stickyPoint('a', k) < 0.5), keys.map((k) => stickyPoint('b', k) < 0.5), 'models draw independently');
  t.equal(takesCanary('m', 0, 'k'), false);
  t.equal(takesCanary('m', 1, 'k'), true);
});

t.test('random canary share within statistical bounds', async (t) => {
  const random = seeded(7);
  const n = 20000;
  let hits = 0;
  for (let i = 0; i < n; i++) if (takesCanary('m', 0.1, undefined, random)) hits += 1;
  const sd = Math.sqrt(0.1 * 0.9 / n);
  t.ok(Math.abs(hits / n - 0.1) < 4 * sd, `share ${hits / n}`);
});

const f32 = (name: string, shape: number[], values: number[]) => ({ name, datatype: 'FP32' as const, shape, data: Float32Array.from(values) });
const i64 = (name: string, values: number[]) => ({ name, datatype: 'INT64' as const, shape: [values.length, 1], data: BigInt64Array.from(values.map(BigInt)) });

t.test('comparison: classifiers by top-1, regressors within tolerance, mean abs/rel diff', async (t) => {
  const random = seeded(3);
  const rows = 50;
  const probs = Array.from({ length: rows * 4 }, () => random());
  const shifted = probs.map((v) => v + 0.001);
  const agreeing = compareOutputs([f32('probabilities', [rows, 4], probs)], [f32('probabilities', [rows, 4], shifted)], true, { mode: 'classification', rtol: 1e-3, atol: 1e-5 });
  t.equal(agreeing.agreeingRows, rows, 'same argmax on every row');
  t.ok(Math.abs(agreeing.absDiffSum / agreeing.elements - 0.001) < 1e-5, 'mean abs diff 0.001');
  // Swap the argmax of the first 10 rows.
  const swapped = probs.slice();
  for (let r = 0; r < 10; r++) {
    const row = swapped.slice(r * 4, r * 4 + 4);
    const top = row.indexOf(Math.max(...row));
    swapped[r * 4 + ((top + 1) % 4)] = 2;
  }
  const differing = compareOutputs([f32('probabilities', [rows, 4], probs)], [f32('probabilities', [rows, 4], swapped)], true, { mode: 'classification', rtol: 1e-3, atol: 1e-5 });
  t.equal(differing.agreeingRows, rows - 10, '10 rows disagree');
  const labels = compareOutputs([i64('label', [1, 2, 3, 4])], [i64('label', [1, 2, 0, 4])], true, { mode: 'classification', rtol: 0, atol: 0 });
  t.equal(labels.agreeingRows, 3, 'integer labels compared exactly');
  const reg = compareOutputs([f32('y', [2, 2], [1, 2, 3, 4])], [f32('y', [2, 2], [1, 2.0000001, 3, 5])], true, { mode: 'regression', rtol: 1e-3, atol: 1e-5 });
  t.equal(reg.agreeingRows, 1, 'second row is off by 1');
  t.ok(Math.abs(reg.absDiffSum / reg.absPrimarySum - 0.1) < 1e-6, 'relative L1 difference 1/10');
  const missing = compareOutputs([f32('y', [1, 2], [1, 2])], [f32('z', [1, 2], [1, 2])], true, { mode: 'regression', rtol: 1e-3, atol: 1e-5 });
  t.equal(missing.agreeingRows, 0);
  t.same(missing.mismatched, ['y', 'z']);
  // Half precision: compared by the values the bits hold. Two versions' scores are rarely equal
  // bit for bit; negative values' bits order backwards.
  const f16 = (name: string, shape: number[], values: number[]) => ({ name, datatype: 'FP16' as const, shape, data: Uint16Array.from(values, (v) => float32ToHalf(v)) });
  const halfPrimary = [-2, -1, -3, 0.5, 0.25, 0.125];
  const halfShadow = [-2.5, -1.5, -3.5, 0.25, 0.5, 0.125];
  const halves = compareOutputs([f16('logits', [2, 3], halfPrimary)], [f16('logits', [2, 3], halfShadow)], true, { mode: 'classification', rtol: 1e-3, atol: 1e-5 });
  t.equal(halves.agreeingRows, 1, 'FP16 logits: row 1 agrees by top-1 (-1 over -2 and -3), row 2 does not (its 0.5 moved to another column)');
  t.equal(halves.absDiffSum, 2, 'FP16 differences in values, not bits');
  t.same(tensorForLog(f16('logits', [2, 3], halfPrimary)).data, halfPrimary, 'and logged as values');
  t.equal(compareModeOf({}, [{ name: 'label', datatype: 'INT64' }]), 'classification');
  t.equal(compareModeOf({}, [{ name: 'y', datatype: 'FP32' }]), 'regression');
  t.equal(compareModeOf({ task: 'classification' }, [{ name: 'y', datatype: 'FP32' }]), 'classification');
});

function comparison(rows: number, agreeing: number): Comparison {
  return { rows, agreeingRows: agreeing, absDiffSum: 0, absPrimarySum: rows, elements: rows, mismatched: [] };
}

t.test('analysis: too little evidence is inconclusive, never pass or fail', async (t) => {
  const e = new Evidence(0);
  for (let i = 0; i < 5; i++) {
    e.observeCandidate('shadow', false, 100);
    e.observePrimary(true, 1);
    e.observeComparison(comparison(1, 0));
  }
  const input = { step: e, rollout: e, shadowStep: true };
  const r = analyse(input, DEFAULT_RULES);
  t.equal(r.verdict, 'inconclusive', 'five failing samples are not enough to judge');
  t.ok(r.rules.every((x) => x.verdict === 'inconclusive'));
  for (let i = 0; i < 30; i++) {
    e.observeCandidate('shadow', true, 10, 1);
    e.observePrimary(true, 1);
    e.observeComparison(comparison(1, 0));
  }
  const r2 = analyse(input, DEFAULT_RULES);
  t.equal(r2.verdict, 'fail');
  t.same(r2.rules.filter((x) => x.verdict === 'fail').map((x) => x.rule).sort(), ['agreement', 'error_rate', 'latency'], '5 errors in 35 answers: above 2.5% at 99.9%');
  const one = new Evidence(0);
  one.observeCandidate('shadow', false);
  for (let i = 0; i < 100; i++) one.observeCandidate('shadow', true, 1, 1);
  const errors = analyse({ step: one, rollout: one, shadowStep: true }, DEFAULT_RULES).rules.find((x) => x.rule === 'error_rate')!;
  t.equal(errors.verdict, 'inconclusive', '1 error in 101 answers: neither surely above 1% nor surely below');
  t.match(errors.reason, /without errors that takes 459 answers/);
});

t.test('confidence bounds: exact at small counts, nonparametric latency shifts', async (t) => {
  // Clopper-Pearson: 0 of 459 bounds the rate under 1% at 99% (0.99^459 < 0.01); 0 of 458 does not.
  t.ok(proportionBounds(0, 459, 0.99).upper <= 0.01);
  t.ok(proportionBounds(0, 458, 0.99).upper > 0.01);
  // 2 of 20: the exact lower bound at 99% is 0.77% (P(X >= 2 | 20, 0.0077) = 0.01).
  const b = proportionBounds(2, 20, 0.99);
  t.ok(Math.abs(b.lower - 0.0077) < 0.0003, `lower ${b.lower}`);
  // Large counts: Wilson stands in and agrees with the exact bounds to the third digit.
  const big = proportionBounds(4850, 5000, 0.99);
  t.ok(big.lower > 0.96 && big.lower < 0.967 && big.upper > 0.973 && big.upper < 0.98, JSON.stringify(big));
  // Shift of log samples: y shifted by log 2 is found at log 2, its bounds on either side.
  const random = seeded(12);
  const y = Float64Array.from({ length: 400 }, () => Math.log(0.3) + 0.4 * (random() + random() + random() - 1.5)).sort();
  const x = Float64Array.from({ length: 300 }, () => Math.log(0.6) + 0.4 * (random() + random() + random() - 1.5)).sort();
  const s = shiftBounds(x, y, 0.99);
  t.ok(Math.abs(Math.exp(s.estimate) - 2) < 0.1, `ratio ${Math.exp(s.estimate)}`);
  t.ok(Math.exp(s.lower) < 2 && Math.exp(s.upper) > 2 && Math.exp(s.lower) > 1.8 && Math.exp(s.upper) < 2.2, `bounds ${Math.exp(s.lower)}..${Math.exp(s.upper)}`);
  // One stall of 100x among 300 pairs moves the paired median by one rank at most.
  const d = Float64Array.from({ length: 300 }, () => 0.2 * (random() - 0.5));
  const calm = medianBounds(Float64Array.from(d).sort(), 0.99);
  d[0] = Math.log(100);
  const stalled = medianBounds(Float64Array.from(d).sort(), 0.99);
  t.ok(Math.abs(stalled.estimate - calm.estimate) < 0.01, 'one stall barely moves the estimate');
  t.ok(Math.exp(stalled.upper) < 1.1, 'nor the bound');
});

t.test('earlier rule names are still accepted', async (t) => {
  const r = parseRules({ max_p99_ratio: 2, p99_slack_ms: 0.5 });
  t.equal(r.max_latency_ratio, 2);
  t.equal(r.latency_slack_ms, 0.5);
  t.throws(() => parseRules({ max_p99_ratio: 2, max_latency_ratio: 2 }), /earlier name/);
  t.equal(rulesFromQuery('max_p99_ratio=3').max_latency_ratio, 3);
  t.equal(parseRules({}).drift, undefined, 'drift unset: decided when a rollout starts');
});

interface Sim {
  rollout: Rollout;
  clock: { now: number };
}

const STEPS = [{ shadow: true, min_requests: 40 }, { weight: 0.05, min_requests: 30 }, { weight: 0.25, min_requests: 30 }, { weight: 0.5, min_requests: 30 }, { weight: 1, min_requests: 30 }];

function start(spec: Record<string, unknown> = {}): Sim {
  const clock = { now: 1_700_000_000_000 };
  const parsed = parseRolloutSpec({ candidate: '2', steps: STEPS, analysis: { min_samples: 20, max_error_rate: 0.05 }, ...spec }) as RolloutSpec;
  return { rollout: Rollout.start(parsed, '1', () => clock.now), clock };
}

/**
 * One request through the traffic a rollout's current policy implies: the canary draw, the primary
 * answer, the shadow copy. `candidate` says how the candidate behaves.
 */
function drive(sim: Sim, n: number, random: () => number, candidate: { ok?: () => boolean; latency?: () => number; agrees?: () => boolean } = {}): void {
  const ok = candidate.ok ?? (() => true);
  const latency = candidate.latency ?? (() => 1 + random());
  const agrees = candidate.agrees ?? (() => true);
  for (let i = 0; i < n && sim.rollout.state === 'running'; i++) {
    const policy = sim.rollout.applyTo({ primary: '1', canary: null, shadows: [] });
    sim.clock.now += 10;
    if (policy.canary && takesCanary('m', policy.canary.weight, `k${i}-${random()}`)) {
      const good = ok();
      sim.rollout.observeCanary(good, good ? latency() : undefined);
    } else {
      const primary = 1 + random();
      sim.rollout.observePrimary(true, primary);
      if (policy.shadows.some((s) => s.version === '2')) {
        const good = ok();
        sim.rollout.observeShadow(good, good ? latency() : undefined, primary, good ? comparison(1, agrees() ? 1 : 0) : undefined);
      }
    }
    sim.rollout.tick();
  }
}

t.test('a good candidate is promoted through every step', async (t) => {
  const sim = start();
  drive(sim, 20000, seeded(11));
  t.equal(sim.rollout.state, 'promoted');
  const actions = sim.rollout.record.history.map((d) => d.action);
  t.same(actions, ['start', 'advance', 'advance', 'advance', 'advance', 'promote'], 'one advance per step, then promote');
  t.same(sim.rollout.applyTo({ primary: '1', canary: null, shadows: [{ version: '2', sample: 1 }, { version: '3', sample: 0.5 }] }),
    { primary: '2', canary: null, shadows: [{ version: '3', sample: 0.5 }] }, 'promoted: candidate is primary, its shadow is gone');
});

for (const [name, candidate, rule] of [
  ['wrong answers', { agrees: () => false }, 'agreement'],
  ['errors', { ok: () => false }, 'error_rate'],
  ['slow', { latency: () => 25 }, 'latency'],
] as const) {
  t.test(`a bad candidate (${name}) is rolled back within one step`, async (t) => {
    const sim = start();
    drive(sim, 20000, seeded(5), candidate);
    t.equal(sim.rollout.state, 'rolled_back');
    const last = sim.rollout.record.history.at(-1)!;
    t.equal(last.action, 'rollback');
    t.equal(last.step, 0, 'failed in the shadow step, before any user saw it');
    t.match(last.reason, rule);
    t.same(sim.rollout.applyTo({ primary: '1', canary: null, shadows: [] }), { primary: '1', canary: null, shadows: [] }, 'weight 0, no shadow');
  });
}

t.test('a candidate that goes bad at a canary step rolls back at once from that step', async (t) => {
  const sim = start();
  const random = seeded(8);
  drive(sim, 20000, random, {});
  t.equal(sim.rollout.state, 'promoted');
  const bad = start();
  let badNow = false;
  drive(bad, 200, random);
  t.equal(bad.rollout.record.step, 1, 'reached the 5% step');
  badNow = true;
  drive(bad, 20000, random, { ok: () => !badNow });
  t.equal(bad.rollout.state, 'rolled_back');
  t.equal(bad.rollout.record.history.at(-1)!.step, 1);
});

t.test('low traffic: inconclusive after max_seconds, twice in a row pauses; resume by hand', async (t) => {
  const sim = start({ steps: [{ shadow: true, min_requests: 100, max_seconds: 60 }, { weight: 1, min_requests: 10 }] });
  const random = seeded(9);
  drive(sim, 10, random);
  t.equal(sim.rollout.tick(), undefined, 'nothing decided while the step is young');
  sim.clock.now += 61_000;
  const d1 = sim.rollout.tick()!;
  t.equal(d1.action, 'retry');
  t.equal(d1.verdict, 'inconclusive');
  t.equal(sim.rollout.state, 'running');
  sim.clock.now += 61_000;
  const d2 = sim.rollout.tick()!;
  t.equal(d2.action, 'pause');
  t.equal(sim.rollout.state, 'paused');
  t.same(sim.rollout.applyTo({ primary: '1', canary: null, shadows: [] }).shadows, [{ version: '2', sample: 1 }], 'paused holds the step');
  t.equal(sim.rollout.tick(), undefined, 'a paused rollout decides nothing');
  sim.rollout.resume();
  t.equal(sim.rollout.state, 'running');
  t.throws(() => sim.rollout.resume(), /paused/);
});

t.test('min_seconds holds a step on an injected clock', async (t) => {
  const sim = start({ steps: [{ shadow: true, min_requests: 20, min_seconds: 30 }, { weight: 1, min_requests: 20 }] });
  drive(sim, 100, seeded(2));
  t.equal(sim.rollout.record.step, 0, 'enough requests but not enough time');
  sim.clock.now += 30_000;
  sim.rollout.tick();
  t.equal(sim.rollout.record.step, 1);
});

t.test('resume after restart: same step, never 100%', async (t) => {
  const sim = start();
  drive(sim, 300, seeded(4));
  const step = sim.rollout.record.step;
  t.ok(step >= 1 && step < STEPS.length - 1, `mid-rollout at step ${step}`);
  const saved = JSON.parse(JSON.stringify(sim.rollout.record));
  const restored = Rollout.resume(parseRecord(saved, 'state'), () => sim.clock.now);
  t.equal(restored.record.step, step);
  t.equal(restored.state, 'running');
  t.equal(restored.record.history.at(-1)!.action, 'restart');
  const policy = restored.applyTo({ primary: '1', canary: null, shadows: [] });
  t.equal(policy.canary?.weight, STEPS[step]!.weight, 'same weight as before the restart');
  t.equal(restored.stepRequests(), 0, 'evidence is gathered again');
});

t.test('promote and abort by hand', async (t) => {
  const a = start();
  a.rollout.promote();
  t.equal(a.rollout.state, 'promoted');
  t.throws(() => a.rollout.abort(), /already promoted/);
  const b = start();
  b.rollout.abort();
  t.equal(b.rollout.state, 'rolled_back');
  t.match(b.rollout.record.history.at(-1)!.reason, /by hand/);
});

t.test('every admin input is validated', async (t) => {
  const bad: [unknown, RegExp][] = [
    [null, /an object/],
    [{}, /primary/],
    [{ primary: 'one' }, /version number/],
    [{ primary: '1', extra: 1 }, /unknown field "extra"/],
    [{ primary: '1', canary: { version: '2', weight: 1.5 } }, /fraction in 0..1.*weight/],
    [{ primary: '1', canary: { version: '1', weight: 0.1 } }, /is the primary/],
    [{ primary: '1', canary: { version: '2' } }, /weight/],
    [{ primary: '1', shadows: {} }, /an array/],
    [{ primary: '1', shadows: [{ version: '3', sample: -1 }] }, /sample/],
    [{ primary: '1', shadows: [{ version: '3' }, { version: '3' }] }, /twice/],
    [{ primary: '1', shadows: [{ version: '1' }] }, /cannot shadow itself/],
  ];
  for (const [value, re] of bad) t.throws(() => parsePolicy(value), re, JSON.stringify(value));
  t.same(parsePolicy({ primary: 1, canary: null, shadows: [{ version: '3' }] }), { primary: '1', canary: null, shadows: [{ version: '3', sample: 1 }] });
  const badRollouts: [unknown, RegExp][] = [
    [{}, /candidate/],
    [{ candidate: '2', steps: [] }, /1 to 32 steps/],
    [{ candidate: '2', steps: [{ weight: 0.5, shadow: true }] }, /exactly one/],
    [{ candidate: '2', steps: [{ min_requests: 5 }] }, /exactly one/],
    [{ candidate: '2', steps: [{ weight: 0 }] }, /\(0, 1\]/],
    [{ candidate: '2', steps: [{ weight: 0.5 }, { weight: 0.1 }] }, /must not decrease/],
    [{ candidate: '2', steps: [{ weight: 0.5, min_requests: -1 }] }, /non-negative/],
    [{ candidate: '2', steps: [{ weight: 0.5, min_requests: 1.5 }] }, /expected a whole number of requests for the rollout.steps\[0\].min_requests but received number 1.5/],
    [{ candidate: '2', steps: [{ weight: 0.5, min_seconds: 10, max_seconds: 5 }] }, /max_seconds/],
    [{ candidate: '2', steps: [{ weight: 0.5, speed: 1 }] }, /unknown field "speed"/],
    [{ candidate: '2', analysis: { max_error_rate: 2 } }, /max_error_rate/],
    [{ candidate: '2', analysis: { max_p99_ratio: 0.5 } }, /max_latency_ratio/],
    [{ candidate: '2', analysis: { confidence: 1 } }, /confidence/],
    [{ candidate: '2', analysis: { warmup: -1 } }, /warmup/],
    [{ candidate: '2', analysis: { min_samples: 1.5 } }, /min_samples/],
    [{ candidate: '2', analysis: { nope: 1 } }, /unknown field "nope"/],
    [{ candidate: '2', steps: [{ weight: 1 }], shadow_sample: 0 }, /needs shadow traffic/],
  ];
  for (const [value, re] of badRollouts) t.throws(() => parseRolloutSpec(value), re, JSON.stringify(value));
  const ok = parseRolloutSpec({ candidate: '2' });
  t.equal(ok.steps.length, 6, 'default steps');
  t.equal(ok.steps[0]!.shadow, true);
  t.same(parseRules({ min_agreement: 0.9 }).min_agreement, 0.9);
  t.equal(rulesFromQuery('max_error_rate=0.05&min_agreement=0.9').max_error_rate, 0.05);
  t.throws(() => rulesFromQuery('max_error_rate=abc'), /max_error_rate/);
  t.throws(() => rulesFromQuery('evil=1'), /unknown query parameter/);
});

t.test('a state write that fails keeps the old state and leaves no temporary file', async (t) => {
  const { mkdtempSync, mkdirSync, readdirSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { TrafficStore } = await import('../dist/traffic/store.js');
  const dir = mkdtempSync(join(tmpdir(), 'umbra-traffic-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new TrafficStore(join(dir, 'repo'), join(dir, 'state'));
  // The state file's name taken by a folder: the rename cannot replace it.
  mkdirSync(join(dir, 'state', 'm.traffic.json'), { recursive: true });
  t.throws(() => store.write('m', { policy: null, rollout: null, known_versions: ['1'] }));
  t.same(readdirSync(join(dir, 'state')), ['m.traffic.json'], 'nothing but what was there');
});
