// The serving sweep: every contender on the digits model, one at a time, at the run's levels, with
// the same generator and the same 16 seeded random requests. Umbra as shipped also over binary
// HTTP and WebSocket; then the in-process compute limit. Results keyed by contender.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomPayloads } from '../../dist/perf/index.js';
import { DIGITS_FILE, log, measure, oneLine, removeDir, repoWith, runChild, withServer } from '../harness.mjs';
import { PEERS, UMBRA_DIGITS } from '../contenders.mjs';

const DIGITS_META = { name: 'digits', inputs: [{ name: 'pixels', datatype: 'FP32', shape: [-1, 64] }], outputs: [] };
export const DIGITS_PAYLOADS = randomPayloads(DIGITS_META, 1, 16, 7);

/** The example repository, and the copies the digits contenders serve: { shipped, ort, unbatched }. */
export function digitsRepos(shipped) {
  return { shipped, ort: repoWith('digits', { backend: 'onnxruntime' }), unbatched: repoWith('digits', { dynamic_batching: false }) };
}

/** Order of the sweep: the references first, then Umbra, then the peers. */
export const SWEEP = [
  PEERS.uws, UMBRA_DIGITS.umbra, UMBRA_DIGITS.umbraQuiet, UMBRA_DIGITS.umbraOrt, UMBRA_DIGITS.umbraNoBatch,
  PEERS.nodeHttp, PEERS.nodeHttpCluster, PEERS.fastify, PEERS.fastifyCluster,
];

export async function servingSuite(run, context) {
  const serving = {};
  const sweep = (url) => measure(run, url, 'digits', DIGITS_PAYLOADS, run.levels);
  serving.ceiling = await withServer(PEERS.ceiling, context, async (url) => ({ results: await measure(run, url, 'digits', DIGITS_PAYLOADS, [64]) }));
  for (const contender of SWEEP) {
    serving[contender.key] = await withServer(contender, context, async (url) => {
      const out = { results: await sweep(url) };
      if (contender.key !== 'umbra') return out;
      out.binary = await measure(run, url, 'digits', DIGITS_PAYLOADS, run.levels, 'http-binary');
      try {
        out.ws = await measure(run, url, 'digits', DIGITS_PAYLOADS, run.levels, 'ws');
      } catch (err) {
        out.wsSkipped = oneLine(err.message);
      }
      return out;
    });
  }
  serving.python = await pythonPeer(run, context);
  log('in-process onnxruntime-node (digits)');
  const inproc = await runChild('node', ['bench/inprocess-ort.mjs', DIGITS_FILE, 'pixels', '64', run.full ? '3' : '1', '1'], 60_000);
  serving.inprocess = inproc.code === 0 ? JSON.parse(inproc.stdout) : { skipped: oneLine(inproc.stderr) };
  return serving;
}

/** FastAPI + PyTorch when Debian's packages are installed; otherwise why not. */
async function pythonPeer(run, context) {
  const check = await runChild('/usr/bin/python3', ['-c', 'import fastapi, uvicorn, torch'], 20_000);
  if (check.code !== 0) {
    const missing = (/No module named '([^']+)'/.exec(check.stderr) ?? [])[1] ?? 'python3';
    return { skipped: `Python peer skipped: module ${missing} is not installed (apt-get install python3-fastapi python3-uvicorn python3-torch)` };
  }
  const pythonWeights = join(mkdtempSync(join(tmpdir(), 'umbra-bench-')), 'digits.json');
  try {
    const exported = await runChild('node', ['bench/peers/export-digits.mjs', DIGITS_FILE, pythonWeights], 30_000);
    if (exported.code !== 0) return { skipped: `could not export the digits weights: ${oneLine(exported.stderr)}` };
    return await withServer(PEERS.python, { ...context, pythonWeights }, async (url) => ({ results: await measure(run, url, 'digits', DIGITS_PAYLOADS, run.levels) }));
  } finally {
    removeDir(dirname(pythonWeights));
  }
}
