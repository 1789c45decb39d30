// The generator's statistics against servers whose answer times are known: percentiles within
// 5% of the truth (closed loop, open loop, worker threads) and stall accounting where open loop
// must show what a closed loop hides. In `npm run test:perf`, not `npm test`: each compares
// wall-clock latencies with a window (5%, plus the stalls it can see) that a busy host can exceed.
import t from 'tap';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { runPerf, type PerfOptions } from '../../dist/perf/index.js';
import { exactPercentile, startSynthetic } from '../helpers/perf-servers.js';

const quick: Partial<PerfOptions> = { warmupMs: 200, serverStats: false, model: 'synthetic' };

/**
 * Options that align the server's ground truth with the generator's measured interval, and
 * watch the generator's own event loop meanwhile: on a busy shared machine the client can be
 * descheduled, which adds real (client-side) latency that the server never saw. No request can
 * gain more than the longest such stall, so that is the only slack allowed beyond 5%.
 */
function aligned(server: { mark(): void; stop(): void }, loop: IntervalHistogram): Partial<PerfOptions> {
  return {
    ...quick,
    onMeasure: (phase) => {
      if (phase === 'start') {
        server.mark();
        loop.reset();
        loop.enable();
      } else {
        server.stop();
        loop.disable();
      }
    },
  };
}

/**
 * Runs the generator against a synthetic server with the given answer times, aligned with it
 * (above), and reads back what the server did: the time it held each request and its longest stall.
 */
async function measureSynthetic(t: Tap.Test, delay: { base: number; spread: number; seed: number }, perf: Partial<PerfOptions>) {
  const server = await startSynthetic({ delay: { kind: 'uniform', ...delay } });
  t.teardown(() => server.close());
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const [r] = await runPerf({ ...aligned(server, loop), url: server.url, ...perf } as PerfOptions);
  return { r, loop, held: await server.held(), stall: await server.stallMs() };
}

/**
 * 5% of the truth, plus what the machine added that the server's clock cannot see: the longest
 * stall of the generator's event loop, and of the server thread's (a request it read late).
 */
function within(measured: number, truth: number, loop: IntervalHistogram, serverStallMs = 0): boolean {
  return Math.abs(measured - truth) <= 0.05 * truth + loop.max / 1e6 + serverStallMs;
}

t.test('closed loop: percentiles of a jittered server within 5% of what it actually did', async (t) => {
  const { r, loop, held, stall } = await measureSynthetic(t, { base: 40, spread: 20, seed: 11 }, { concurrency: [8], durationS: 1.5 });
  if (!r) return t.fail('no result');
  t.equal(r.errors, 0);
  t.ok(r.completed > 150, `enough samples (${r.completed})`);
  for (const [p, key] of [[50, 'p50_ms'], [90, 'p90_ms'], [95, 'p95_ms'], [99, 'p99_ms']] as const) {
    const truth = exactPercentile(held, p);
    t.ok(within(r[key], truth, loop, stall), `${key} ${r[key]} vs server ${truth.toFixed(3)} (longest stalls: client ${(loop.max / 1e6).toFixed(2)} ms, server ${stall.toFixed(2)} ms)`);
  }
  // And against the nominal median (40 + U[0,20] ms), allowing for a busy machine's late timers.
  t.ok(Math.abs(r.p50_ms - 50) / 50 < 0.15, `p50 ${r.p50_ms} near 50`);
  // Little's law: 8 clients over ~50 ms each.
  const expected = 8 / (held.reduce((a, b) => a + b, 0) / held.length / 1000);
  t.ok(Math.abs(r.throughput - expected) / expected < 0.1, `throughput ${r.throughput} vs ${expected.toFixed(1)}`);
});

t.test('two load threads merge their histograms and still match the truth', async (t) => {
  const { r, loop, held, stall } = await measureSynthetic(t, { base: 30, spread: 10, seed: 12 }, { concurrency: [6], durationS: 1.2, threads: 2 });
  if (!r) return t.fail('no result');
  t.equal(r.errors, 0);
  for (const [p, key] of [[50, 'p50_ms'], [90, 'p90_ms'], [99, 'p99_ms']] as const) {
    const truth = exactPercentile(held, p);
    t.ok(within(r[key], truth, loop, stall), `${key} ${r[key]} vs server ${truth.toFixed(3)} (longest stalls: client ${(loop.max / 1e6).toFixed(2)} ms, server ${stall.toFixed(2)} ms)`);
  }
  const expected = 6 / (held.reduce((a, b) => a + b, 0) / held.length / 1000);
  t.ok(Math.abs(r.throughput - expected) / expected < 0.12, `throughput ${r.throughput} vs ${expected.toFixed(1)} (both threads counted)`);
});

t.test('open loop: percentiles within 5% of the truth at a constant rate below capacity', async (t) => {
  const { r, loop, held, stall } = await measureSynthetic(t, { base: 20, spread: 10, seed: 13 }, { requestRate: [200], durationS: 1.5 });
  if (!r) return t.fail('no result');
  t.equal(r.request_rate, 200);
  t.ok(Math.abs(r.throughput - 200) / 200 < 0.1, `throughput ${r.throughput} follows the rate`);
  for (const [p, key] of [[50, 'p50_ms'], [90, 'p90_ms'], [99, 'p99_ms']] as const) {
    // Open-loop latency includes the generator's own send lag (timer wake-up), which it reports.
    const truth = exactPercentile(held, p);
    const lag = r.send_lag_p99_ms ?? 0;
    t.ok(within(r[key], truth, loop, stall) || Math.abs(r[key] - truth) <= 0.05 * truth + lag + stall, `${key} ${r[key]} vs server ${truth.toFixed(3)} (+ send lag up to ${lag}, server stall ${stall.toFixed(2)} ms)`);
  }
  t.type(r.send_lag_p99_ms, 'number', 'open loop reports its own send lag');
});

t.test('a periodic stall: open loop reports it, closed loop hides it in the percentiles', async (t) => {
  // Every 1000 ms the server stops answering for 250 ms (answers resume at the end of the stall);
  // otherwise it answers in 2 ms. At a constant rate a quarter of the requests arrive in a stall
  // and wait uniformly 0..250 ms: true p90 is about 2 + 250 * (1 - 0.1 / 0.25) = 152 ms.
  const server = await startSynthetic({ delay: { kind: 'stall', period: 1000, stall: 250, base: 2 } });
  t.teardown(() => server.close());
  const [open] = await runPerf({ ...quick, url: server.url, requestRate: [200], durationS: 2 } as PerfOptions);
  const [closed] = await runPerf({ ...quick, url: server.url, concurrency: [1], durationS: 2 } as PerfOptions);
  if (!open || !closed) return t.fail('no result');
  t.ok(open.p90_ms > 120 && open.p90_ms < 185, `open-loop p90 ${open.p90_ms} near the true 152 ms`);
  t.ok(open.p99_ms > 200, `open-loop p99 ${open.p99_ms} shows the stall`);
  t.ok(open.p50_ms < 20, `open-loop p50 ${open.p50_ms} is the normal answer time`);
  // Far under the 250 ms stall, with room for a loaded test machine (43 ms seen with another test
  // file running beside this one): the stalled requests are too few to reach the p99.
  t.ok(closed.p99_ms < 100 && closed.p99_ms < open.p99_ms / 2, `closed-loop p99 ${closed.p99_ms}: one stalled request per second among hundreds`);
  t.ok(closed.max_ms > 150, `closed-loop max ${closed.max_ms} still saw one stall`);
});
