// Worker thread that owns the prediction log's database connection, so inserts, encoding of
// tensors and retention pruning never run on the thread that serves requests.
import { parentPort, workerData } from 'node:worker_threads';
import { openLogStore, type LabelRecord, type LoggedPrediction, type LogStore } from './log-store.js';
import { packedColumns, type PackedPredictions } from './log-packing.js';
import { osThreadId } from '../core/threads.js';

export interface WriterData {
  url: string;
  /** Rows older than this many milliseconds are pruned (checked once a minute). */
  retentionMs: number;
  /** Most predictions kept (0 = no cap), enforced with the same check. */
  maxRows: number;
}

export type ToWriter =
  | { type: 'batch'; seq: number; predictions: PackedPredictions; labels: LabelRecord[] }
  | { type: 'lookup'; seq: number; model: string; ids: string[] }
  | { type: 'close' };

export type FromWriter =
  | { type: 'ready'; tid: number }
  | { type: 'open-failed'; message: string }
  | { type: 'done'; seq: number; written: number; error?: string }
  | { type: 'found'; seq: number; rows: LoggedPrediction[]; error?: string }
  | { type: 'closed' };

const PRUNE_EVERY_MS = 60_000;

async function main(): Promise<void> {
  const port = parentPort!;
  const data = workerData as WriterData;
  const send = (m: FromWriter) => port.postMessage(m);
  let store: LogStore;
  try {
    store = await openLogStore(data.url);
  } catch (err) {
    send({ type: 'open-failed', message: (err as Error).message });
    return;
  }
  send({ type: 'ready', tid: osThreadId() });
  let lastPrune = 0;
  // Messages are handled one at a time so batches land in order.
  let chain = Promise.resolve();
  port.on('message', (m: ToWriter) => {
    chain = chain.then(async () => {
      if (m.type === 'close') {
        await store.close();
        send({ type: 'closed' });
        return;
      }
      if (m.type === 'lookup') {
        try {
          send({ type: 'found', seq: m.seq, rows: await store.lookup(m.model, m.ids) });
        } catch (err) {
          send({ type: 'found', seq: m.seq, rows: [], error: (err as Error).message });
        }
        return;
      }
      try {
        await store.insert(packedColumns(m.predictions), m.labels);
        const now = Date.now();
        if ((data.retentionMs > 0 || data.maxRows > 0) && now - lastPrune > PRUNE_EVERY_MS) {
          lastPrune = now;
          await store.prune(data.retentionMs > 0 ? now - data.retentionMs : 0, data.maxRows);
        }
        send({ type: 'done', seq: m.seq, written: m.predictions.rows });
      } catch (err) {
        send({ type: 'done', seq: m.seq, written: m.predictions.rows, error: (err as Error).message });
      }
    });
  });
}

void main();
