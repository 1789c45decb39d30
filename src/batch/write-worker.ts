// The writer thread: formats each computed batch's rows and stores them with their checkpoint, in
// the order they arrive (input order), on its own connection to the store, so storing runs beside
// reading and computing instead of taking turns with them on the job's thread. It starts with
// the job but opens nothing (store, reject file) until the job has checked its input and model.
import { parentPort, workerData } from 'node:worker_threads';
import { BatchCommitter, rowsOf } from './committer.js';
import type { FromWriter, ToWriter } from './messages.js';
import { RejectFile } from './rejects.js';
import { openStore, type PredictionRow, type PredictionStore } from './store.js';
import { threadCpuMicros } from '../thread-cpu.js';
import { stopOnRequest } from './thread.js';

const storeUrl = workerData as string;
const port = parentPort!;
const send = (message: FromWriter) => port.postMessage(message);

let writer: { rejects: RejectFile; store: PredictionStore; committer: BatchCommitter } | undefined;
let queue: Promise<void> = Promise.resolve();
let failed = false;

async function handle(message: ToWriter): Promise<void> {
  if (message.kind === 'open') {
    const { model, version, rejectsPath, checkpoint } = message.setup;
    const rejects = new RejectFile(rejectsPath, checkpoint.rejectBytes);
    const store = await openStore(storeUrl);
    writer = { rejects, store, committer: new BatchCommitter(store, model, version, rejects, { ...checkpoint }) };
  } else if (message.kind === 'batch') {
    const checkpoint = await writer!.committer.commit(message.batch, formed.get(message.batch.seq));
    formed.delete(message.batch.seq);
    send({ kind: 'committed', seq: message.batch.seq, checkpoint });
  } else {
    writer?.rejects.close();
    await writer?.store.close();
    send({ kind: 'closed', cpuMicros: threadCpuMicros() });
  }
}

/**
 * Rows formed as their batch arrived, while the store committed earlier ones: an asynchronous
 * store (PostgreSQL) executes a batch on its server meanwhile, so formatting no longer adds to the
 * time of each commit. A synchronous one (SQLite) holds this thread until it is done, so there
 * nothing changes.
 */
const formed = new Map<number, PredictionRow[]>();

port.on('message', (message: ToWriter) => {
  if (stopOnRequest(message)) return;
  if (message.kind === 'batch' && !failed) formed.set(message.batch.seq, rowsOf(message.batch));
  queue = queue.then(() => (failed ? undefined : handle(message))).catch((err: unknown) => {
    failed = true;
    send({ kind: 'error', message: err instanceof Error ? err.message : String(err) });
  });
});
