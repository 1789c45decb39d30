// Batching on compute-bound models: `wide` (bundled, 256-512-512-10: light enough that per-request
// cost still shows) and `heavy` (512-4096-4096-10, 19 M multiply-adds per row, generated here,
// 76 MB: one row costs far more than its HTTP request, the case the batching target is about).
// Clients send one row per request; Umbra may batch them. The compute limit is onnxruntime-node
// in-process with whole batches, at its best over batch sizes, thread counts and parallel
// sessions; the target compares Umbra's best configuration with it, in paired rounds.
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomPayloads } from '../../dist/perf/index.js';
import { REPO, at, log, measure, oneLine, removeDir, repoWith, runChild, withServer } from '../harness.mjs';
import { runWrk } from '../wrk.mjs';
import { CORES, PEERS, umbra } from '../contenders.mjs';
import { WRK } from './paired.mjs';

const HEAVY_LAYERS = [512, 4096, 4096, 10];
const HEAVY_META = { name: 'heavy', inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, HEAVY_LAYERS[0]] }], outputs: [] };
const WIDE_META = { name: 'wide', inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 256] }], outputs: [] };
export const HEAVY_CONFIG = {
  name: 'heavy', backend: 'onnxruntime', max_batch_size: 64,
  input: [{ name: 'features', data_type: 'TYPE_FP32', dims: [HEAVY_LAYERS[0]] }],
  output: [{ name: 'scores', data_type: 'TYPE_FP32', dims: [HEAVY_LAYERS[HEAVY_LAYERS.length - 1]] }],
  // A compute-bound model wants full batches: wait up to 2 ms for 64 rows (Triton's usual advice).
  dynamic_batching: { max_queue_delay_microseconds: 2000, preferred_batch_size: [64], default_queue_policy: { max_queue_size: 4096 } },
};
/** Worker threads that leave a core to the event loop and one to the generator; 0 on small hosts. */
export const SPARE_THREADS = CORES > 4 ? CORES - 2 : 0;

/** Umbra's configurations on one batching model, by name; `batched` ones compete for the target. */
export function batchingContenders(model) {
  const oneWorker = ['--workers', '1', '--intra-op-threads', String(CORES)];
  const quiet = ['--monitoring', 'off'];
  const list = [
    { key: 'batched', label: 'Umbra, dynamic batching (defaults: a worker per core)', args: [], protocol: 'http' },
    // The default layout with binary tensors and no monitoring, as the in-process side.
    { key: 'batchedBinaryQuiet', label: 'Umbra, dynamic batching (a worker per core), binary tensors, monitoring off', args: quiet, protocol: 'http-binary' },
    { key: 'batchedOne', label: `Umbra, dynamic batching, 1 worker x ${CORES} intra-op threads`, args: oneWorker, protocol: 'http' },
    ...(SPARE_THREADS > 0 ? [{ key: 'batchedSpareBinary', label: `Umbra, dynamic batching, 1 worker x ${SPARE_THREADS} intra-op threads, binary tensors`, args: ['--workers', '1', '--intra-op-threads', String(SPARE_THREADS)], protocol: 'http-binary' }] : []),
    { key: 'batchedOneBinary', label: `Umbra, dynamic batching, 1 worker x ${CORES} intra-op threads, binary tensors`, args: oneWorker, protocol: 'http-binary' },
    // What a compute-bound deployment that wants every core for the model would run: no
    // monitoring work on the event loop (the in-process baseline monitors nothing either).
    { key: 'batchedOneBinaryQuiet', label: `Umbra, dynamic batching, 1 worker x ${CORES} intra-op threads, binary tensors, monitoring off`, args: [...oneWorker, ...quiet], protocol: 'http-binary' },
  ].map((c) => ({ ...umbra({ ...c, configuration: `\`umbra serve ${c.args.join(' ')}\`${c.protocol === 'http-binary' ? ', binary tensor requests' : ', JSON requests'}` }), batched: true }));
  list.push(umbra({ key: 'unbatched', label: 'Umbra, batching off', repo: 'unbatched', protocol: 'http', configuration: '`"dynamic_batching": false` in config.json, JSON requests' }));
  return list;
}

/** The configurations of one model to measure, with their repositories. */
function models() {
  const wideFile = join(REPO, 'wide', '1', 'model.onnx');
  return [
    { key: 'wide', file: wideFile, features: 256, payloads: randomPayloads(WIDE_META, 1, 16, 8), repos: () => ({ shipped: REPO, unbatched: repoWith('wide', { dynamic_batching: false }) }) },
    { key: 'heavy', features: HEAVY_LAYERS[0], payloads: randomPayloads(HEAVY_META, 1, 16, 9) },
  ];
}

async function makeHeavy() {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-bench-heavy-'));
  const file = join(dir, 'heavy', '1', 'model.onnx');
  const made = await runChild('node', ['bench/make-mlp.mjs', file, HEAVY_LAYERS.join(',')], 120_000);
  if (made.code !== 0) return { dir, skipped: `could not build the heavy model: ${oneLine(made.stderr)}` };
  writeFileSync(join(dir, 'heavy', 'config.json'), JSON.stringify(HEAVY_CONFIG));
  const unbatched = mkdtempSync(join(tmpdir(), 'umbra-bench-'));
  cpSync(join(dir, 'heavy'), join(unbatched, 'heavy'), { recursive: true });
  writeFileSync(join(unbatched, 'heavy', 'config.json'), JSON.stringify({ ...HEAVY_CONFIG, dynamic_batching: false }));
  return { dir, file, repos: () => ({ shipped: dir, unbatched }) };
}

export async function batchingSuite(run, logDir) {
  const batching = {};
  const heavy = await makeHeavy();
  for (const model of models()) {
    if (model.key === 'heavy') {
      if (heavy.skipped) {
        batching.heavy = { skipped: heavy.skipped };
        continue;
      }
      Object.assign(model, { file: heavy.file, repos: heavy.repos });
    }
    const entry = {};
    batching[model.key] = entry;
    const context = { modelFile: model.file, repos: model.repos(), logDir };
    log(`in-process onnxruntime-node (${model.key}, batch sizes x intra-op threads)`);
    // The best the library can do on this host: whole batches, 1 thread and one thread per core,
    // and one single-thread session per core running at once (Umbra's default layout).
    const threads = [...new Set([1, CORES])].join(',');
    const inproc = await runChild('node', ['bench/inprocess-ort.mjs', model.file, 'features', String(model.features), run.full ? '3' : '1', '1,8,16,32,64', threads, String(CORES)], 300_000);
    entry.inprocess = inproc.code === 0 ? JSON.parse(inproc.stdout) : { skipped: oneLine(inproc.stderr) };
    // A compute-bound model batches 64 rows at a time: with exactly 64 requests in flight the
    // model idles while a finished batch's answers go out and the next 64 requests come in. At
    // 128 in flight one batch fills while the other runs, the load a busy server actually sees.
    // With a worker per core, each worker wants one batch running and one filling: on two cores
    // that is 256 in flight (128 left a worker idle: 256 did 11-13% more rows/s in A/B runs).
    const batchedLevels = model.key === 'heavy' ? [64, 128, 256] : [64];
    const contenders = batchingContenders(model);
    for (const contender of contenders) {
      entry[contender.key] = { label: contender.label, batched: Boolean(contender.batched), ...await withServer(contender, context,
        async (url) => ({ results: await measure(run, url, model.key, model.payloads, contender.batched ? batchedLevels : [64], contender.protocol) })) };
    }
    if (model.key === 'heavy' && entry.inprocess?.best) entry.paired = await pairedBatching(run, model, context, entry, contenders, batchedLevels);
    for (const peer of [PEERS.nodeHttp, PEERS.nodeHttpCluster]) {
      entry[peer.key] = { label: peer.label, ...await withServer(peer, context, async (url) => ({ results: await measure(run, url, model.key, model.payloads, [64]) })) };
    }
    if (context.repos.unbatched !== REPO) removeDir(context.repos.unbatched);
  }
  removeDir(heavy.dir);
  return batching;
}

/**
 * The batching target, paired: Umbra's best contender of the sweep at its best level and the best
 * in-process configuration, measured in turn (each round starting with the other), so a host that
 * slows down between the sweep's in-process points and Umbra's rows moves both sides alike.
 */
async function pairedBatching(run, model, context, entry, contenders, levels) {
  let best;
  for (const contender of contenders.filter((c) => c.batched)) {
    for (const r of entry[contender.key]?.results ?? []) {
      if (!best || r.inferences_per_s > best.rowsPerS) best = { contender, level: r.concurrency, rowsPerS: r.inferences_per_s };
    }
  }
  const inprocessBest = entry.inprocess.best;
  if (!best || !levels.includes(best.level)) return { skipped: 'no Umbra batched result to pair' };
  const inprocessArgs = ['bench/inprocess-ort.mjs', model.file, 'features', String(model.features), '2', String(inprocessBest.batch),
    ...((inprocessBest.sessions ?? 1) > 1 ? ['-', String(inprocessBest.sessions)] : [String(inprocessBest.threads ?? 1), '1'])];
  return withServer({ ...best.contender, label: `paired: ${best.contender.label} (${model.key})` }, context, async (url) => {
    const rounds = [];
    for (let round = 0; round < run.rounds; round++) {
      const result = {};
      const steps = [
        async () => {
          log(`paired batching round ${round + 1}/${run.rounds}: in-process`);
          const r = await runChild('node', inprocessArgs, 120_000);
          result.inprocess = r.code === 0 ? JSON.parse(r.stdout).best.rows_per_s : undefined;
        },
        async () => {
          log(`paired batching round ${round + 1}/${run.rounds}: Umbra`);
          result.umbra = at(await measure(run, url, model.key, model.payloads, [best.level], best.contender.protocol), best.level)?.inferences_per_s;
          if (!WRK) return;
          log(`paired batching round ${round + 1}/${run.rounds}: Umbra (wrk)`);
          const p = model.payloads[0];
          const request = best.contender.protocol === 'http-binary' ? { body: p.binary.body, headerLength: p.binary.headerLength } : { body: p.json };
          // One row per request, so requests/s is rows/s.
          result.umbraWrk = (await runWrk(WRK, { url, path: `/v2/models/${model.key}/infer`, request, connections: best.level, seconds: run.wrkSeconds + 1 })).throughput;
        },
      ];
      for (const step of round % 2 === 0 ? steps : steps.reverse()) await step();
      rounds.push(result);
    }
    return {
      contender: best.contender.key, contenderLabel: best.contender.label, level: best.level,
      inprocess: { batch: inprocessBest.batch, threads: inprocessBest.threads ?? 1, sessions: inprocessBest.sessions ?? 1 }, rounds,
    };
  });
}
