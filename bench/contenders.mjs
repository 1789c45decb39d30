// Every server the benchmarks measure, by name, with the configuration the results state for it.
// A contender is { key, label, family, configuration, start(port, context) -> { command, args },
// protocol? }; `context` says which model it serves: { modelFile, repos: { name: dir }, logDir }.
// Suites pick contenders by key; the report prints their configuration beside the figures.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './harness.mjs';

/** Cores Node sees: the cluster peers run one worker per core, as Umbra runs one model worker per core. */
export const CORES = availableParallelism();

function versionOf(pkg) {
  try {
    return JSON.parse(readFileSync(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  } catch {
    return 'not installed';
  }
}

export const VERSIONS = {
  node: process.version,
  onnxruntime: versionOf('onnxruntime-node'),
  fastify: versionOf('fastify'),
  uws: versionOf('uWebSockets.js'),
};

/** The session each Node peer process opens (bench/peers/ort-handler.mjs). */
const session = (workers) => `onnxruntime-node ${VERSIONS.onnxruntime}, one InferenceSession per process (${workers === 1
  ? "onnxruntime's default options: its intra-op pool on every core"
  : '1 intra-op, 1 inter-op thread: one process per core'}), \`session.run\` per request; JSON bodies parsed with JSON.parse`;

/** `umbra serve` on `repos[repo]` of the context, its prediction log in a fresh SQLite file per server. */
export function umbra({ key, label, configuration, repo = 'shipped', args = [], protocol }) {
  return {
    key, label, family: 'umbra', configuration, protocol,
    start: (port, context) => ({
      command: 'node',
      args: ['bin/umbra.js', 'serve', '--grpc-port', '0', '--repo', context.repos[repo], '--port', String(port),
        '--log-db', `sqlite:${join(context.logDir, `${port}.sqlite`)}`, ...args],
    }),
  };
}

function nodePeer(key, label, script, framework, workers) {
  const layout = workers === 1
    ? 'one process'
    : `node:cluster, ${workers} worker processes (one per core) behind one port, round-robin (Node's default)`;
  return {
    key, label, family: 'node', workers,
    configuration: `${framework}; ${layout}; ${session(workers)}; keep-alive 60 s`,
    start: (port, context) => ({ command: 'node', args: [script, String(port), context.modelFile, '--workers', String(workers)] }),
  };
}

export const PEERS = {
  ceiling: {
    key: 'ceiling', label: 'generator ceiling (uWS, fixed answer)', family: 'reference',
    configuration: `uWebSockets.js ${VERSIONS.uws}, one process, answers fixed bytes without reading the request: the most the generator can measure here`,
    start: (port) => ({ command: 'node', args: ['bench/peers/uws-bare.mjs', String(port), '--static'] }),
  },
  uws: {
    key: 'uws', label: 'bare uWS', family: 'reference',
    configuration: `uWebSockets.js ${VERSIONS.uws}, one process, parses the request JSON and answers a digits-shaped response without a model: the front end's limit`,
    start: (port) => ({ command: 'node', args: ['bench/peers/uws-bare.mjs', String(port)] }),
  },
  nodeHttp: nodePeer('nodeHttp', 'node:http + onnxruntime-node, one process', 'bench/peers/node-http-ort.mjs', 'node:http', 1),
  nodeHttpCluster: nodePeer('nodeHttpCluster', `node:http + onnxruntime-node, cluster of ${CORES}`, 'bench/peers/node-http-ort.mjs', 'node:http', CORES),
  fastify: nodePeer('fastify', 'Fastify + onnxruntime-node, one process', 'bench/peers/fastify-ort.mjs', `Fastify ${VERSIONS.fastify}`, 1),
  fastifyCluster: nodePeer('fastifyCluster', `Fastify + onnxruntime-node, cluster of ${CORES}`, 'bench/peers/fastify-ort.mjs', `Fastify ${VERSIONS.fastify}`, CORES),
  python: {
    key: 'python', label: `FastAPI + PyTorch (Python), ${CORES} uvicorn workers`, family: 'python',
    configuration: `FastAPI + uvicorn + PyTorch from Debian packages, ${CORES} uvicorn worker processes (one per core, FastAPI's advice) with one torch thread each, the digits MLP rebuilt in torch from the ONNX weights`,
    start: (port, context) => ({ command: '/usr/bin/python3', args: ['bench/peers/fastapi_torch.py', String(port), context.pythonWeights, '--workers', String(CORES)] }),
  },
};

/** The Node peers a user would deploy; "best Node peer" is the best of these in each round. */
export const NODE_PEERS = ['nodeHttp', 'nodeHttpCluster', 'fastify', 'fastifyCluster'];

const SHIPPED = `\`umbra serve\` defaults (one model worker per core, ${CORES} here; dynamic batching; monitoring on: metrics, drift, feedback joins and a SQLite prediction log of every request)`;

/** Umbra on the example digits model, and the configurations the serving targets compare. */
export const UMBRA_DIGITS = {
  umbra: umbra({ key: 'umbra', label: 'Umbra as shipped', configuration: `${SHIPPED}; digits has \`"backend": "auto"\` and runs on Umbra's own kernels` }),
  umbraQuiet: umbra({ key: 'umbraQuiet', label: 'Umbra, monitoring off', args: ['--monitoring', 'off'], configuration: `as shipped with \`--monitoring off\` (the peers monitor nothing either)` }),
  umbraOrt: umbra({ key: 'umbraOrt', label: 'Umbra, onnxruntime backend', repo: 'ort', configuration: `${SHIPPED}; digits with \`"backend": "onnxruntime"\`: onnxruntime-node ${VERSIONS.onnxruntime} runs the model, as in the peers` }),
  // The headline's configuration with the core's thread reading every request itself: on a host of
  // few cores the I/O threads compete with the model workers for them.
  umbraOrtOneIo: umbra({ key: 'umbraOrtOneIo', label: 'Umbra, onnxruntime backend, one I/O thread', repo: 'ort', args: ['--io-threads', '1'], configuration: 'the onnxruntime backend as above with `--io-threads 1` (the core\'s thread reads and answers every request; the default is 2 here)' }),
  umbraNoBatch: umbra({ key: 'umbraNoBatch', label: 'Umbra, batching off', repo: 'unbatched', configuration: 'as shipped with `"dynamic_batching": false` in config.json' }),
};
