// The generator's latency histogram: HDR percentiles against exact ones, and no percentile above
// the largest latency. Deterministic; the statistics measured against live servers (percentiles
// within 5% of what a server did, open vs closed loop under stalls) depend on the host's timing
// and run in `npm run test:perf` (test/timing/perf-statistics.test.ts).
import t from 'tap';
import { LatencyHistogram } from '../dist/perf/index.js';
import { exactPercentile, seeded } from './helpers/perf-servers.js';

t.test('the HDR histogram matches exact percentiles of a seeded heavy-tailed sample within 0.5%', async (t) => {
  const random = seeded(7);
  const values: number[] = [];
  const h = new LatencyHistogram();
  for (let i = 0; i < 20000; i++) {
    // Log-normal-ish: exp of a sum of uniforms, from 0.05 ms to several seconds.
    const v = Math.exp(-3 + 6 * (random() + random() + random()) / 3 + 2 * random() ** 8);
    values.push(v);
    h.recordMs(v);
  }
  for (const p of [50, 90, 95, 99, 99.9]) {
    const truth = exactPercentile(values, p);
    t.ok(Math.abs(h.percentileMs(p) - truth) / truth < 0.005, `p${p}: ${h.percentileMs(p)} vs ${truth}`);
  }
  t.ok(Math.abs(h.maxMs - Math.max(...values)) / Math.max(...values) < 0.005, 'max');
  const round = LatencyHistogram.decode(h.encode());
  t.equal(round.count, 20000, 'encode/decode keeps every sample');
  t.equal(round.percentileMs(99), h.percentileMs(99));
});

t.test('no percentile lies above the largest recorded latency', async (t) => {
  // 2048 us falls in a bucket two microseconds wide: HDR's value at a percentile is the bucket's top.
  for (const values of [[2.048], [1, 1, 2.048], [0.5, 7.777, 7.777, 12.345]]) {
    const h = new LatencyHistogram();
    for (const v of values) h.recordMs(v);
    const s = h.summary();
    t.ok(s.p50_ms <= s.p90_ms && s.p90_ms <= s.p95_ms && s.p95_ms <= s.p99_ms && s.p99_ms <= s.max_ms, `${JSON.stringify(values)}: ${JSON.stringify(s)}`);
    t.equal(s.max_ms, Math.max(...values));
  }
});
