// `umbra serve`: serve a model repository (or one model directory, as KServe passes it) over
// HTTP until SIGTERM/SIGINT, then drain.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { startServer } from '../../server/server.js';
import { describeHttpGuard } from '../../server/http-guard.js';
import { inspectModelDir, linkModelDir, type ModelDirRepository } from '../../repository/single-model.js';
import { VERSION } from '../../version.js';
import { describeQueueBound } from '../../scheduler/options.js';
import { probeRowsOf } from '../../execution/placement.js';
import { existingRepository, resolveServeSettings, UsageError, type ServeSettings } from '../settings.js';
import { defaultLogDb, legacyLogPath } from '../../monitor/settings.js';
import { layerSummary } from '../../graph/layer-formats.js';
import { cudaStatus, describeGpuBlas } from '../../native/cuda.js';

export function registerServe(program: Command): void {
  program.command('serve')
    .description('serve a model repository over HTTP and gRPC (Open Inference Protocol v2)')
    .option('--repo <dir>', 'model repository: REPO/<model>/<version>/model.onnx [env UMBRA_REPO]')
    .option('--model-dir <dir>', 'instead of --repo, one model\'s folder: DIR/model.onnx, DIR/<version>/model.onnx or DIR/<model>/<version>/model.onnx; read only [env UMBRA_MODEL_DIR]')
    .option('--model-name <name>', 'the name --model-dir is served under [env UMBRA_MODEL_NAME]')
    .option('--host <host>', 'address to listen on (default 127.0.0.1) [env UMBRA_HOST]')
    .option('--port <n>', 'HTTP port to listen on, 0 = any free port (default 8000) [env UMBRA_PORT]')
    .option('--http-port <n>', 'the same as --port [env UMBRA_HTTP_PORT]')
    .option('--grpc-port <n>', 'port of the gRPC service (Open Inference Protocol, grpc.health.v1), 0 = off (default 8001) [env UMBRA_GRPC_PORT]')
    .option('--workers <n>', 'model worker threads (default: one per core; in a container with a CPU limit, one per CPU of the limit) [env UMBRA_WORKERS]')
    .option('--admin-token <token>', 'bearer token required by admin endpoints; visible in the process list, prefer --admin-token-file [env UMBRA_ADMIN_TOKEN]')
    .option('--admin-token-file <file>', 'read the admin token from FILE; without a token, admin endpoints answer only to loopback clients [env UMBRA_ADMIN_TOKEN_FILE]')
    .option('--poll-seconds <s>', 'reload models whose files changed every S seconds (default off) [env UMBRA_POLL_SECONDS]')
    .option('--drain-seconds <s>', 'longest graceful drain on SIGTERM/SIGINT (default 30) [env UMBRA_DRAIN_SECONDS]')
    .option('--max-body-bytes <n>', 'largest request body (default 67108864) [env UMBRA_MAX_BODY_BYTES]')
    .option('--response-compression <on|off>', 'gzip or deflate answers of 1 KiB or more for clients whose Accept-Encoding asks; compressed request bodies are taken either way (default off) [env UMBRA_RESPONSE_COMPRESSION]')
    .option('--shared-memory <on|off>', "Triton's system shared-memory extension: clients on this host register /dev/shm regions (an admin call) and send inputs and take outputs through them (default off) [env UMBRA_SHARED_MEMORY]")
    .option('--http-guard <on|off>', "Umbra's reading of what clients send ahead of the HTTP library: request lines cut across TCP segments handed on whole, malformed requests answered 400, valid forms the library mishandles rewritten, 1007 for WebSocket text frames that are not UTF-8, JSON for the library's own error pages (default on) [env UMBRA_HTTP_GUARD]")
    .option('--ws-max-payload-bytes <n>', 'largest WebSocket frame; bigger closes with 1009 (default 16777216) [env UMBRA_WS_MAX_PAYLOAD_BYTES]')
    .option('--ws-idle-seconds <s>', 'close WebSocket connections silent this long, 0 = never, else at least 8 (default 50; pings every half of it) [env UMBRA_WS_IDLE_SECONDS]')
    .option('--ws-max-in-flight <n>', 'most requests outstanding per WebSocket connection (default 256) [env UMBRA_WS_MAX_IN_FLIGHT]')
    .option('--ws-backpressure-bytes <n>', 'unread answer bytes at which a WebSocket connection stops taking new requests (default 1048576) [env UMBRA_WS_BACKPRESSURE_BYTES]')
    .option('--ws-origins <list>', "browser origins besides the server's own whose pages may open WebSocket streams, comma-separated, or * for any; an upgrade with another Origin gets 403 (default none) [env UMBRA_WS_ORIGINS]")
    .option('--io-threads <n>', 'threads that read, parse and answer HTTP/WebSocket requests; 1 = the core thread itself (default: 1 on one core, 2 on two, half the cores up to 8 on more) [env UMBRA_IO_THREADS]')
    .option('--core-reads <on|off|auto>', 'whether the core thread is one of the --io-threads, reading a share of the connections itself (auto: on when the host has fewer cores than --io-threads + 1) [env UMBRA_CORE_READS]')
    .option('--intra-op-threads <n>', 'threads one model run may use (default 1) [env UMBRA_INTRA_OP_THREADS]')
    .option('--store <url>', 'answer lookups and GET /v2/models/M/predictions/KEY from a prediction store: sqlite:PATH or postgres://... [env UMBRA_STORE]')
    .option('--monitoring <on|off>', 'metrics, drift, feedback and the prediction log (default on) [env UMBRA_MONITORING]')
    .option('--log-db <url>', 'prediction log: sqlite:PATH, postgres://..., or off (default sqlite:STATE_DIR/predictions.sqlite) [env UMBRA_LOG_DB]')
    .option('--log-sample <p>', 'fraction of predictions logged, 0..1 (default 1) [env UMBRA_LOG_SAMPLE]')
    .option('--log-inputs <on|off>', 'log input tensors with the outputs, sampled by --log-inputs-sample (default on) [env UMBRA_LOG_INPUTS]')
    .option('--log-inputs-sample <p>', 'fraction of logged predictions whose inputs are logged too, 0..1 (default 0.1) [env UMBRA_LOG_INPUTS_SAMPLE]')
    .option('--log-retention-days <d>', 'days prediction log rows are kept, 0 = forever (default 30) [env UMBRA_LOG_RETENTION_DAYS]')
    .option('--log-max-rows <n>', 'most predictions kept in the log, oldest deleted first, 0 = no cap (default 10000000) [env UMBRA_LOG_MAX_ROWS]')
    .option('--log-tensor-max-values <n>', 'a tensor with more values is logged as its type, shape, min, max and mean only; 0 = log every value (default 65536) [env UMBRA_LOG_TENSOR_MAX_VALUES]')
    .option('--metrics-buckets <s,...>', 'latency histogram bounds in seconds (default 0.0001..5) [env UMBRA_METRICS_BUCKETS]')
    .option('--drift-window <rows>', 'rows in the live drift window (default 1000) [env UMBRA_DRIFT_WINDOW]')
    .option('--drift-window-seconds <s>', 'drift window by time as well, 0 = rows only (default 0) [env UMBRA_DRIFT_WINDOW_SECONDS]')
    .option('--drift-thresholds <t=v,...>', 'drift thresholds, e.g. ks=0.01,psi=0.2 (defaults ks=0.05 chi2=0.05 p-values, psi=0.1 js=0.1) [env UMBRA_DRIFT_THRESHOLDS]')
    .option('--drift-min-samples <rows>', 'fewer rows than this give an inconclusive drift verdict (default 100) [env UMBRA_DRIFT_MIN_SAMPLES]')
    .option('--webhook <url>', 'POST a JSON event here when drift or live accuracy crosses its threshold [env UMBRA_WEBHOOK]')
    .option('--accuracy-threshold <a>', 'alert when live accuracy falls below this, 0..1 [env UMBRA_ACCURACY_THRESHOLD]')
    .option('--feedback-token-file <file>', 'labels (POST /v2/models/M/feedback) need Authorization: Bearer with the token in FILE; without it any client that can infer may label [env UMBRA_FEEDBACK_TOKEN_FILE]')
    .option('--error-threshold <e>', 'alert when a regression model\'s live mean absolute error rises above this, > 0 [env UMBRA_ERROR_THRESHOLD]')
    .option('--ui <on|off>', 'the ops page at /ui and the time series behind it (GET /v2/ops/*) (default on) [env UMBRA_UI]')
    .option('--state-dir <dir>', 'where umbra writes: the prediction log, traffic policies and rollouts, reference profiles; never inside --repo (default ./.umbra-state) [env UMBRA_STATE_DIR]')
    .option('--config <file>', 'JSON settings file; keys are the flag names in camelCase [env UMBRA_CONFIG]')
    .action(async (flags: Record<string, unknown>) => serve(flags));

}

/** Builds the repository of links that serves `--model-dir`; bad layouts are usage errors naming the flag. */
function openModelDir(single: NonNullable<ServeSettings['modelDir']>, repository: string): ModelDirRepository {
  try {
    return linkModelDir(inspectModelDir(single.name, single.dir), repository);
  } catch (err) {
    throw new UsageError(`--model-dir: ${(err as Error).message}`);
  }
}

async function serve(flags: Record<string, unknown>): Promise<void> {
  const { modelDir: single, ...options } = resolveServeSettings(flags);
  const log = (msg: string) => process.stdout.write(`${new Date().toISOString()} ${msg}\n`);
  let modelDir: ModelDirRepository | undefined;
  if (single) {
    modelDir = openModelDir(single, options.repository);
    log(`serving ${modelDir.plan.dir} (${modelDir.plan.layout === 'file' ? `model file ${modelDir.plan.file!.path} as version 1` : modelDir.plan.layout === 'versions' ? 'versions in Triton\'s layout' : `model folder ${modelDir.plan.source}`}) as model ${single.name} through links in ${options.repository}`);
  }
  const repo = existingRepository(options.repository);
  const server = await startServer(options);
  // Before anything is logged: the listen line tells a supervisor (or a test) it may signal, and a
  // SIGTERM that arrived before Node had a handler would end the process at once, undrained.
  let signalled = false;
  const onSignal = (signal: string) => {
    if (signalled) return;
    signalled = true;
    log(`${signal}: draining (at most ${options.drainSeconds ?? 30}s)`);
    server.stop().then(() => {
      log('drained, exiting');
      process.exit(0);
    }, (err: unknown) => {
      log(`drain failed: ${String(err)}`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  log(`state directory: ${options.stateDir}`);
  const legacyLog = legacyLogPath(repo);
  if (!single && options.monitoring && options.monitoring.log?.url === defaultLogDb(options.stateDir!) && existsSync(legacyLog)) {
    log(`an earlier prediction log is at ${legacyLog}; new predictions go to the state directory (export the old one with \`umbra export-log --log-db sqlite:${legacyLog}\`)`);
  }
  // Versions added to the model directory later reach the repository of links before the next poll.
  if (modelDir && options.pollSeconds && options.pollSeconds > 0) {
    const links = modelDir;
    setInterval(() => {
      try {
        links.refresh();
      } catch (err) {
        log(`--model-dir: ${(err as Error).message}`);
      }
    }, options.pollSeconds * 1000).unref();
  }
  server.umbra.manager.on('load-failed', (name: string, reason: string) => {
    // A failed reload leaves the versions that were serving in place; the log says which.
    const serving = server.umbra.manager.versionsOf(name).map((mv) => mv.version);
    log(serving.length > 0
      ? `model ${name} failed to reload, version${serving.length === 1 ? '' : 's'} ${serving.join(', ')} ${serving.length === 1 ? 'keeps' : 'keep'} serving: ${reason}`
      : `model ${name} failed to load: ${reason}`);
  });
  server.umbra.manager.on('unloaded', (name: string) => log(`model ${name} unloaded`));
  // A folder whose name cannot name a model, or a model file outside a model folder, is skipped;
  // its owner hears why and where it goes (at start, and when polling finds one).
  for (const note of server.umbra.manager.recovered) log(note);
  for (const note of server.umbra.manager.unserved()) log(note);
  server.umbra.manager.on('unserved', (note: string) => log(note));
  // Each version's queue bound with the measurement behind it, so an operator sees what is shed and why.
  const logQueue = (name: string, version: string) => {
    try {
      const mv = server.umbra.manager.get(name, version);
      // Where its batches run: with every core reading, moderately costly models run inline too.
      // A model that does not batch was timed on one request.
      const rows = probeRowsOf(mv.signature.maxBatchSize);
      const length = mv.placementLength !== undefined ? ` of length ${mv.placementLength}` : '';
      const cost = mv.placementCostUs !== undefined ? ` (${rows === 1 ? 'one request' : `a ${rows}-row batch`}${length} in ${Math.round(mv.placementCostUs)} µs)` : '';
      const why = mv.placementReason ? `: ${mv.placementReason}` : '';
      if (mv.config.configNote) log(`model ${name} v${version}: ${mv.config.configNote}`);
      for (const note of mv.config.outputNotes) log(`model ${name} v${version}: ${note}`);
      if (mv.providerNote) log(`model ${name} v${version}: ${mv.providerNote}`);
      if (mv.backendNote) log(`model ${name} v${version}: ${mv.backendNote}`);
      const shared = mv.sharedWeights;
      if (mv.sharedWeightsError) log(`model ${name} v${version}: its weights are not shared among its sessions, each reads the model's own file: the shared copy could not be written (${mv.sharedWeightsError})`);
      if (shared) log(`model ${name} v${version}: ${(shared.bytes / 2 ** 20).toFixed(1)} MiB of weights read by every session from one memory-mapped copy, ${shared.written ? 'written' : 'kept from an earlier load'} at ${shared.path} (parameters.share_weights: "false" keeps a copy per session)`);
      if (mv.config.batchingReason) log(`model ${name} v${version}: requests run one at a time, not batched: ${mv.config.batchingReason}`);
      log(`model ${name} v${version}: batches run ${mv.placement === 'inline' ? 'inline, on the thread that reads their requests' : 'in the model workers'}${cost}${why}`);
      log(`model ${name} v${version}: ${describeQueueBound(mv.queueBound)}`);
    } catch {
      // Unloaded again meanwhile: nothing to describe.
    }
  };
  // The native backend's per-layer choice (sparse or dense) and its evidence, once per load.
  const logLayers = (name: string, version: string) => {
    const layers = server.umbra.manager.get(name, version).layers;
    if (layers && layers.length > 0) log(`model ${name} v${version} layer formats: ${layerSummary(layers)}`);
  };
  server.umbra.manager.on('loaded', (name: string, versions: string[]) => {
    log(`model ${name} ready (versions ${versions.join(', ')})`);
    for (const version of versions) {
      logQueue(name, version);
      logLayers(name, version);
    }
  });
  const index = await server.umbra.manager.index();
  if (index.length === 0) {
    const later = options.pollSeconds && options.pollSeconds > 0 ? `the next poll (every ${options.pollSeconds} s) loads one put there` : 'restart with one there, load one with POST /v2/repository/models/<model>/load, or poll for new ones with --poll-seconds';
    log(`the repository ${repo} holds no model: each model goes in its own folder, <model>/<version>/model.onnx; the server is not ready until one loads (${later})`);
  }
  for (const e of index) {
    log(`model ${e.name}${e.version ? ` v${e.version}` : ''}: ${e.state}${e.reason ? ` (${e.reason})` : ''}`);
    if (e.state === 'READY' && e.version) {
      logQueue(e.name, e.version);
      logLayers(e.name, e.version);
    }
  }
  log(server.api.adminGate.describe());
  if (options.monitoring !== false) {
    log(options.monitoring?.feedbackToken
      ? 'feedback labels need the feedback token (Authorization: Bearer <token>)'
      : 'feedback labels are taken from any client that can infer (give --feedback-token-file FILE where clients are not the ones who know the truth)');
  }
  log(describeHttpGuard(server.httpGuard));
  if (flags.adminToken !== undefined) log('warning: --admin-token shows the token to every user of this host in the process list; use --admin-token-file FILE');
  const cuda = cudaStatus();
  if (cuda.available) log(`CUDA: ${cuda.deviceCount} device${cuda.deviceCount === 1 ? '' : 's'} (runtime ${cuda.runtimeVersion}, driver ${cuda.driverVersion}); dense layers on ${describeGpuBlas(cuda)}`);
  if (server.grpcPort) log(`gRPC on ${options.host ?? '127.0.0.1'}:${server.grpcPort}`);
  log(`umbra ${VERSION} listening on ${server.url} with ${server.ioThreads} I/O thread${server.ioThreads === 1 ? '' : 's'}${server.ioThreads > 1 && server.coreReads ? ' (the core thread among them)' : ''} and ${server.umbra.pool.size} model worker${server.umbra.pool.size === 1 ? '' : 's'} (ready: ${server.umbra.isReady()})`);
  if (server.ops) log(`ops page: ${server.url}/ui`);
  const predictionLog = server.monitor?.log;
  predictionLog?.whenReady().then(() => log(`prediction log: ${options.monitoring ? options.monitoring.log?.url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@') : ''} (${predictionLog.describeKept()})`), (err: Error) => log(`prediction log unavailable, predictions are not logged: ${err.message}`));
}

