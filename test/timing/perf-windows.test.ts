// The window runner on live servers: it stops once 3 windows agree on a steady server and runs
// to the limit on a drifting one. In `npm run test:perf`, not `npm test`: whether three 250 ms
// windows on a real socket agree within 30% depends on what else the host runs meanwhile (the rule
// itself, on given windows, is tested in test/perf-behaviour.test.ts).
import t from 'tap';
import { runPerf, type PerfOptions } from '../../dist/perf/index.js';
import { startSynthetic } from '../helpers/perf-servers.js';

const quick: Partial<PerfOptions> = { warmupMs: 100, serverStats: false, model: 'synthetic' };

t.test('the runner stops after 3 windows on a steady server and runs to the limit on a drifting one', async (t) => {
  const steady = await startSynthetic({ delay: { kind: 'uniform', base: 5, spread: 0.5, seed: 1 } });
  t.teardown(() => steady.close());
  const [a] = await runPerf({ ...quick, url: steady.url, concurrency: [4], windowMs: 250, maxWindows: 8, stabilityPct: 30 } as PerfOptions);
  t.equal(a?.stable, true);
  t.ok(a!.windows >= 3 && a!.windows < 8, `stopped early after ${a?.windows} windows`);
  // A server that stalls 400 ms of every 500 ms cannot give three agreeing 150 ms windows at 1%.
  const drifting = await startSynthetic({ delay: { kind: 'stall', period: 500, stall: 400, base: 1 } });
  t.teardown(() => drifting.close());
  const [b] = await runPerf({ ...quick, url: drifting.url, concurrency: [2], windowMs: 150, maxWindows: 5, stabilityPct: 1 } as PerfOptions);
  t.equal(b?.stable, false);
  t.equal(b?.windows, 5, 'ran to --windows');
});
