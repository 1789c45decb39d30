// What the figures are judged against: the headline (Umbra serving the model through onnxruntime,
// as the peers do, against the best Node peer of each round) and the foundation's targets, as
// data. Each entry is evaluated here into { name, measured, wanted, met }; the report only prints.
// `measured` is a paired figure { median, min, max, n } (median round of the paired rounds) or a
// plain number (one sweep); `wanted` is { atLeast } or { atMost }, or null where no target was set.
import { CORES, NODE_PEERS, PEERS } from './contenders.mjs';
import { at, ratio, spread } from './harness.mjs';

/** Throughput (c64) or p50 latency (c1) of `key` in one round's results. */
const throughput = (round, key) => at(round[key], 64)?.throughput;
const p50 = (round, key) => at(round[key], 1)?.p50_ms;

/** The best Node peer of one round: the highest c64 throughput, or the lowest c1 p50. */
export function bestNodePeer(round, measure, suffix = '') {
  let best;
  for (const key of NODE_PEERS) {
    const value = measure === 'throughput' ? throughput(round, key + suffix) : p50(round, key + suffix);
    if (value === undefined) continue;
    if (!best || (measure === 'throughput' ? value > best.value : value < best.value)) best = { key, value };
  }
  return best;
}

export function evaluateTargets({ serving = {}, paired = { rounds: [] }, batching = {} }, wrk) {
  const rounds = paired.rounds ?? [];
  const overRounds = (value) => spread(rounds.map(value));
  const pairedThroughput = (a, b) => overRounds((r) => ratio(throughput(r, a), throughput(r, b)));
  const pairedP50 = (a, b) => overRounds((r) => ratio(p50(r, a), p50(r, b)));
  const sweepThroughput = (a, b) => ratio(at(serving[a]?.results, 64)?.throughput, at(serving[b]?.results, 64)?.throughput);
  const sweepP50 = (a, b) => ratio(at(serving[a]?.results, 1)?.p50_ms, at(serving[b]?.results, 1)?.p50_ms);
  const vsBestPeer = (key, suffix = '') => overRounds((r) => ratio(throughput(r, key + suffix), bestNodePeer(r, 'throughput', suffix)?.value));
  const p50VsBestPeer = (key, suffix = '') => overRounds((r) => ratio(p50(r, key + suffix), bestNodePeer(r, 'p50', suffix)?.value));
  // Umbra's best batching configuration against onnxruntime's best, as the in-process side is its best too.
  const batchedShare = (model) => {
    const entry = batching[model];
    const best = Math.max(0, ...Object.values(entry ?? {}).filter((e) => e?.batched).flatMap((e) => (e.results ?? []).map((r) => r.inferences_per_s ?? 0)));
    return ratio(best || undefined, entry?.inprocess?.best?.rows_per_s);
  };
  const pairedBatching = (key) => spread((batching.heavy?.paired?.rounds ?? []).map((r) => ratio(r[key], r.inprocess)));

  const noTarget = null;
  const headline = [
    { name: 'Umbra, onnxruntime backend / best Node peer, throughput at concurrency 64', measured: vsBestPeer('umbraOrt'), wanted: noTarget },
    { name: 'Umbra, onnxruntime backend / best Node peer, p50 at concurrency 1 (lower is better)', measured: p50VsBestPeer('umbraOrt'), wanted: noTarget },
    { name: `Umbra, onnxruntime backend / node:http cluster of ${CORES}, throughput at concurrency 64`, measured: pairedThroughput('umbraOrt', 'nodeHttpCluster') ?? sweepThroughput('umbraOrt', 'nodeHttpCluster'), wanted: noTarget },
    { name: `Umbra, onnxruntime backend / Fastify cluster of ${CORES}, throughput at concurrency 64`, measured: pairedThroughput('umbraOrt', 'fastifyCluster') ?? sweepThroughput('umbraOrt', 'fastifyCluster'), wanted: noTarget },
    { name: 'Umbra as shipped (its own kernels) / best Node peer, throughput at concurrency 64', measured: vsBestPeer('umbra'), wanted: noTarget },
    { name: 'Umbra, onnxruntime backend, one I/O thread / best Node peer, throughput at concurrency 64', measured: vsBestPeer('umbraOrtOneIo'), wanted: noTarget },
    { name: 'Umbra, onnxruntime backend, one I/O thread / best Node peer, p50 at concurrency 1 (lower is better)', measured: p50VsBestPeer('umbraOrtOneIo'), wanted: noTarget },
    ...(wrk ? [
      { name: 'wrk: Umbra, onnxruntime backend / best Node peer, throughput at concurrency 64', measured: vsBestPeer('umbraOrt', ':wrk'), wanted: noTarget },
      { name: 'wrk: Umbra, onnxruntime backend / best Node peer, p50 at concurrency 1 (lower is better)', measured: p50VsBestPeer('umbraOrt', ':wrk'), wanted: noTarget },
    ] : []),
  ];

  const single = PEERS.nodeHttp.label;
  const foundation = [
    // The rows that compare Umbra with bare uWS and a peer come from the paired rounds (median
    // round; the range beside it) when they ran, else from the sweep.
    { name: 'Umbra / bare uWS throughput, concurrency 64', measured: pairedThroughput('umbra', 'uws') ?? sweepThroughput('umbra', 'uws'), wanted: { atLeast: 0.6 } },
    { name: `Umbra / ${single} throughput, concurrency 64`, measured: pairedThroughput('umbra', 'nodeHttp') ?? sweepThroughput('umbra', 'nodeHttp'), wanted: { atLeast: 2 } },
    { name: 'Umbra p50 / bare uWS p50, concurrency 1 (digits as shipped: dynamic batching, no queue delay)', measured: pairedP50('umbra', 'uws') ?? sweepP50('umbra', 'uws'), wanted: { atMost: 1.5 } },
    { name: 'Umbra, monitoring off / bare uWS throughput, concurrency 64', measured: pairedThroughput('umbraQuiet', 'uws') ?? sweepThroughput('umbraQuiet', 'uws'), wanted: { atLeast: 0.6 } },
    { name: `Umbra, monitoring off / ${single} throughput, concurrency 64`, measured: pairedThroughput('umbraQuiet', 'nodeHttp') ?? sweepThroughput('umbraQuiet', 'nodeHttp'), wanted: { atLeast: 2 } },
    { name: 'Umbra, monitoring off: p50 / bare uWS p50, concurrency 1', measured: pairedP50('umbraQuiet', 'uws') ?? sweepP50('umbraQuiet', 'uws'), wanted: { atMost: 1.5 } },
    { name: 'Umbra p50 / bare uWS p50, concurrency 1 (digits, batching off)', measured: sweepP50('umbraNoBatch', 'uws'), wanted: { atMost: 1.5 } },
    { name: 'Umbra p50 / bare uWS p50, concurrency 1 (digits on the onnxruntime backend)', measured: pairedP50('umbraOrt', 'uws') ?? sweepP50('umbraOrt', 'uws'), wanted: { atMost: 1.5 } },
    { name: 'Umbra (digits on the onnxruntime backend) / bare uWS throughput, concurrency 64', measured: pairedThroughput('umbraOrt', 'uws') ?? sweepThroughput('umbraOrt', 'uws'), wanted: { atLeast: 0.6 } },
    { name: `Umbra (digits on the onnxruntime backend) / ${single} throughput, concurrency 64`, measured: pairedThroughput('umbraOrt', 'nodeHttp') ?? sweepThroughput('umbraOrt', 'nodeHttp'), wanted: { atLeast: 2 } },
    { name: 'Umbra batched, best configuration (heavy, compute-bound) / best in-process onnxruntime rows/s', measured: pairedBatching('umbra') ?? batchedShare('heavy'), wanted: { atLeast: 0.8 } },
    // The same targets with the second generator, where it ran.
    ...(wrk ? [
      { name: 'wrk: Umbra / bare uWS throughput, concurrency 64', measured: pairedThroughput('umbra:wrk', 'uws:wrk'), wanted: { atLeast: 0.6 } },
      { name: `wrk: Umbra / ${single} throughput, concurrency 64`, measured: pairedThroughput('umbra:wrk', 'nodeHttp:wrk'), wanted: { atLeast: 2 } },
      { name: 'wrk: Umbra p50 / bare uWS p50, concurrency 1', measured: pairedP50('umbra:wrk', 'uws:wrk'), wanted: { atMost: 1.5 } },
      { name: 'wrk: Umbra, monitoring off / bare uWS throughput, concurrency 64', measured: pairedThroughput('umbraQuiet:wrk', 'uws:wrk'), wanted: { atLeast: 0.6 } },
      { name: `wrk: Umbra, monitoring off / ${single} throughput, concurrency 64`, measured: pairedThroughput('umbraQuiet:wrk', 'nodeHttp:wrk'), wanted: { atLeast: 2 } },
      { name: 'wrk: Umbra, monitoring off: p50 / bare uWS p50, concurrency 1', measured: pairedP50('umbraQuiet:wrk', 'uws:wrk'), wanted: { atMost: 1.5 } },
      { name: 'wrk: Umbra batched, best configuration (heavy) / best in-process onnxruntime rows/s', measured: pairedBatching('umbraWrk'), wanted: { atLeast: 0.8 } },
    ] : []),
    { name: 'Umbra batched, best configuration (wide: per-request cost still shows) / best in-process onnxruntime rows/s', measured: batchedShare('wide'), wanted: noTarget },
  ];
  const judge = (target) => {
    const value = typeof target.measured === 'object' ? target.measured?.median : target.measured;
    const met = value === undefined || !target.wanted ? undefined
      : 'atLeast' in target.wanted ? value >= target.wanted.atLeast : value <= target.wanted.atMost;
    return { ...target, value, met };
  };
  return { headline: headline.map(judge), foundation: foundation.map(judge) };
}
