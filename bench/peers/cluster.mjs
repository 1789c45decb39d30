// How a Node team runs a model server on every core: node:cluster, one worker process per core,
// each with its own onnxruntime-node session, all accepting on one port (the primary hands out
// connections round-robin, Node's default on Linux). GET /v2/health/ready answers 503 until every
// worker listens, so a benchmark never measures a half-started cluster.

import cluster from 'node:cluster';

/** `--workers N` from argv (1 when absent: one process, no cluster). */
export function workersFromArgs(argv) {
  const at = argv.indexOf('--workers');
  const workers = at < 0 ? 1 : Number(argv[at + 1]);
  if (!Number.isInteger(workers) || workers < 1) {
    process.stderr.write(`expected a positive integer for --workers but received ${argv[at + 1]}\n`);
    process.exit(2);
  }
  return workers;
}

/**
 * Runs `startWorker(isReady)` in `workers` processes (in this one when workers is 1). It must
 * listen and resolve once listening; `isReady()` says whether every worker is listening.
 */
export async function serveOnEveryWorker(workers, startWorker) {
  if (workers === 1) {
    await startWorker(() => true);
    return;
  }
  if (cluster.isPrimary) {
    let listening = 0;
    let stopping = false;
    cluster.on('message', (_worker, message) => {
      if (message !== 'listening' || ++listening < workers) return;
      for (const w of Object.values(cluster.workers ?? {})) w?.send('all-listening');
    });
    cluster.on('exit', (worker, code, signal) => {
      if (stopping) return;
      process.stderr.write(`cluster worker ${worker.process.pid} exited (${code ?? signal}); stopping\n`);
      process.exit(1);
    });
    process.on('SIGTERM', () => {
      stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      process.exit(0);
    });
    for (let i = 0; i < workers; i++) cluster.fork();
    return;
  }
  let ready = false;
  process.on('message', (message) => {
    if (message === 'all-listening') ready = true;
  });
  await startWorker(() => ready);
  process.send?.('listening');
}
