// Paired rounds: the servers the serving targets compare, started together (idle while another is
// measured) and measured in turn, round after round, each round starting with the next server, so
// a host that slows down for a minute slows every server of a round alike. A target is a ratio
// within one round; the report takes the median round. Each server is also measured with wrk (a
// second generator, C, about two thirds of umbra perf's CPU per request) where it is installed:
// on shared cores a generator's CPU is taken from the server it loads, so a target that holds with
// one generator and not the other is as much about the generator as about the server.
import { loadavg } from 'node:os';
import { log, measure, oneLine, startProcess, freePort } from '../harness.mjs';
import { findWrk, runWrk } from '../wrk.mjs';
import { PEERS, UMBRA_DIGITS } from '../contenders.mjs';
import { DIGITS_PAYLOADS } from './serving.mjs';

export const PAIRED = [
  PEERS.uws, UMBRA_DIGITS.umbra, UMBRA_DIGITS.umbraQuiet, UMBRA_DIGITS.umbraOrt, UMBRA_DIGITS.umbraOrtOneIo,
  PEERS.nodeHttp, PEERS.nodeHttpCluster, PEERS.fastify, PEERS.fastifyCluster,
];
export const WRK = findWrk();

/** wrk at c64 and c1 against one server, as umbra perf results ([] without wrk). */
export async function measureWrk(run, url, model, request) {
  if (!WRK) return [];
  const out = [];
  for (const connections of [64, 1]) {
    out.push(await runWrk(WRK, { url, path: `/v2/models/${model}/infer`, request, connections, seconds: run.wrkSeconds }));
  }
  return out;
}

/** { rounds: [{ load, [key]: results, [`${key}:wrk`]: results }], skipped? }; load: the 1-minute load average as the round began. */
export async function pairedSuite(run, context) {
  const paired = { rounds: [] };
  const running = [];
  try {
    for (const contender of PAIRED) {
      const port = await freePort();
      const { command, args } = contender.start(port, context);
      log(`paired: start ${contender.label}`);
      running.push({ contender, server: await startProcess(contender.label, command, args, port) });
    }
    for (let round = 0; round < run.rounds; round++) {
      const results = { load: loadavg()[0] };
      for (let i = 0; i < running.length; i++) {
        const { contender, server } = running[(round + i) % running.length];
        log(`paired round ${round + 1}/${run.rounds}: ${contender.label}`);
        results[contender.key] = await measure(run, server.url, 'digits', DIGITS_PAYLOADS, [1, 64]);
        if (!WRK) continue;
        log(`paired round ${round + 1}/${run.rounds}: ${contender.label} (wrk)`);
        results[`${contender.key}:wrk`] = await measureWrk(run, server.url, 'digits', { body: DIGITS_PAYLOADS[0].json });
      }
      paired.rounds.push(results);
    }
  } catch (err) {
    log(`paired rounds failed: ${err.message}`);
    paired.skipped = oneLine(err.message);
  } finally {
    await Promise.all(running.map((r) => r.server.stop()));
  }
  return paired;
}
