// Thousands of rollouts on a fake clock, with the shipped default steps and rules, over generated
// heavy-tailed latencies with cold stalls and over latencies recorded from `umbra serve`: an A/A
// rollout (the candidate is the primary's twin) is promoted in >= 99% of runs, and a candidate
// 2x slower at the median, or failing 5% of answers, or agreeing on < 90% of rows, is rolled back
// in >= 99% of runs. Seeded: the same figures every run. The traffic each decision took is
// printed (docs/traffic.md quotes it).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { Rollout, parseRolloutSpec, takesCanary, type RolloutSpec, type Comparison } from '../dist/traffic/index.js';
import { seededRandom } from '../dist/random.js';

/**
 * Rollouts per case. A good candidate takes the whole default rollout (about 16,000 requests, the
 * 1% step alone 10,000), a bad one a few hundred, so good cases run 300 times and bad ones 1000:
 * 300 of 300 promoted bounds the promotion rate above 99.0% (one-sided 95%). With
 * UMBRA_SIMULATION_RUNS=1000 every case runs 1000 times (a few minutes).
 */
const RUNS = process.env.UMBRA_SIMULATION_RUNS ? Number(process.env.UMBRA_SIMULATION_RUNS) : undefined;
// About 15 million simulated requests: some 40 s of one core, minutes on a busy shared host.
t.setTimeout(RUNS ? 3_600_000 : 600_000);

type Draw = (random: () => number) => number;

/** Standard normal by Box-Muller. */
function gaussian(random: () => number): number {
  const u = Math.max(random(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/**
 * A small model on a busy two-core host: lognormal around 0.3 ms, a Pareto tail on 2% of answers
 * (GC, a neighbour's compile), and a cold stall of 20-40 ms on 0.5% (the 29 ms against 0.3 ms seen
 * in the field).
 */
const generated: Draw = (random) => {
  let ms = 0.3 * Math.exp(0.35 * gaussian(random));
  const u = random();
  if (u < 0.005) ms += 20 + 20 * random();
  else if (u < 0.025) ms *= 1 + 1 / Math.pow(Math.max(random(), 1e-6), 1 / 1.5) - 1;
  return ms;
};

/** Queue + compute of the bundled digits model under `umbra serve` at four clients (see the fixture's note). */
const recordedValues: number[] = JSON.parse(readFileSync(new URL('./fixtures/rollout-latency-digits.json', import.meta.url), 'utf8')).latency_ms;
const recorded: Draw = (random) => recordedValues[Math.floor(random() * recordedValues.length)]!;

interface Candidate {
  /** Latency relative to the primary's draw. */
  slowdown: number;
  errorRate: number;
  agreement: number;
}

interface Outcome {
  state: string;
  requests: number;
  candidateAnswers: number;
  step: number;
  reason: string;
}

const AGREE: Comparison = { rows: 1, agreeingRows: 1, absDiffSum: 0, absPrimarySum: 1, elements: 1, mismatched: [] };
const DISAGREE: Comparison = { rows: 1, agreeingRows: 0, absDiffSum: 1, absPrimarySum: 1, elements: 1, mismatched: [] };

/**
 * One rollout with the default spec, as the traffic controller feeds it: every request is drawn
 * for the canary; a primary answer is copied to the candidate's shadow lane (default
 * shadow_sample 1); the first `warmup` answers of the candidate carry no latency, and its first
 * answers are cold (30x). A shared load factor per request makes a shadow run and the primary
 * answer it copies slow together, as on a host that other work slows now and then (the same draws
 * stand for canary latency and for the compute a shadow run is paired on).
 */
function simulate(seed: number, draw: Draw, c: Candidate, baseErrorRate = 0.001): Outcome {
  const random = seededRandom(seed);
  const clock = { now: 1_700_000_000_000 };
  const spec = parseRolloutSpec({ candidate: '2' }) as RolloutSpec;
  spec.analysis.drift = false;
  const rollout = Rollout.start(spec, '1', () => clock.now);
  const warmup = spec.analysis.warmup;
  let candidateAnswers = 0;
  let requests = 0;
  const candidateAnswer = (load: number): { ok: boolean; latency: number | undefined } => {
    candidateAnswers += 1;
    const ok = random() >= c.errorRate;
    const cold = candidateAnswers <= 20 ? 30 : 1;
    const latency = load * draw(random) * c.slowdown * cold;
    return { ok, latency: ok && candidateAnswers > warmup ? latency : undefined };
  };
  let policyStep = -1;
  let policy = rollout.applyTo({ primary: '1', canary: null, shadows: [] });
  let shadowed = false;
  while (rollout.state === 'running' && requests < 2_000_000) {
    requests += 1;
    clock.now += 1;
    const load = Math.exp(0.3 * gaussian(random));
    if (rollout.record.step !== policyStep) {
      policyStep = rollout.record.step;
      policy = rollout.applyTo({ primary: '1', canary: null, shadows: [] });
      shadowed = policy.shadows.some((s) => s.version === '2');
    }
    if (policy.canary && takesCanary('m', policy.canary.weight, undefined, random)) {
      const a = candidateAnswer(load);
      rollout.observeCanary(a.ok, a.latency);
    } else {
      const ok = random() >= baseErrorRate;
      const primaryLatency = load * draw(random);
      rollout.observePrimary(ok, ok ? primaryLatency : undefined);
      if (ok && shadowed) {
        const a = candidateAnswer(load);
        rollout.observeShadow(a.ok, a.latency, primaryLatency, a.ok ? (random() < c.agreement ? AGREE : DISAGREE) : undefined);
      }
    }
    rollout.tick();
  }
  const last = rollout.record.history.at(-1)!;
  return { state: rollout.state, requests, candidateAnswers, step: last.step, reason: last.reason };
}

function percentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const GOOD: Candidate = { slowdown: 1, errorRate: 0.001, agreement: 1 };

const SCENARIOS: { name: string; draw: Draw; candidate: Candidate; expect: 'promoted' | 'rolled_back'; rule?: RegExp }[] = [
  { name: 'A/A, generated latencies', draw: generated, candidate: GOOD, expect: 'promoted' },
  { name: 'A/A, recorded latencies', draw: recorded, candidate: GOOD, expect: 'promoted' },
  { name: 'another good model agreeing on 97% of rows', draw: generated, candidate: { ...GOOD, agreement: 0.97 }, expect: 'promoted' },
  { name: '2x slower at the median, generated', draw: generated, candidate: { ...GOOD, slowdown: 2 }, expect: 'rolled_back', rule: /latency/ },
  { name: '2x slower at the median, recorded', draw: recorded, candidate: { ...GOOD, slowdown: 2 }, expect: 'rolled_back', rule: /latency/ },
  { name: '5% errors', draw: generated, candidate: { ...GOOD, errorRate: 0.05 }, expect: 'rolled_back', rule: /error_rate/ },
  { name: 'agreeing on 89% of rows', draw: generated, candidate: { ...GOOD, agreement: 0.89 }, expect: 'rolled_back', rule: /agreement/ },
];

for (const s of SCENARIOS) {
  const runs = RUNS ?? (s.expect === 'promoted' ? 300 : 1000);
  t.test(`${runs} rollouts: ${s.name} -> ${s.expect} in >= 99%`, async (t) => {
    const outcomes = Array.from({ length: runs }, (_, i) => simulate(1000 + i, s.draw, s.candidate));
    const hits = outcomes.filter((o) => o.state === s.expect);
    const share = hits.length / runs;
    const wrong = outcomes.find((o) => o.state !== s.expect);
    t.ok(share >= 0.99, `${(share * 100).toFixed(1)}% ${s.expect}${wrong ? `; e.g. ${wrong.state} at step ${wrong.step}: ${wrong.reason}` : ''}`);
    if (s.rule) {
      t.ok(hits.every((o) => s.rule!.test(o.reason)), `every rollback names ${s.rule}`);
      t.ok(hits.every((o) => o.step === 0), 'every rollback in the shadow step, before the candidate answered a user');
    }
    const answers = hits.map((o) => o.candidateAnswers);
    const requests = hits.map((o) => o.requests);
    t.comment(`${s.name}: ${s.expect} ${(share * 100).toFixed(1)}%; candidate answers to decide p50 ${percentile(answers, 0.5)} p99 ${percentile(answers, 0.99)}; requests p50 ${percentile(requests, 0.5)} p99 ${percentile(requests, 0.99)}`);
  });
}
