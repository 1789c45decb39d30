// The storing stage of a batch job, seen from the job: batches go to the writer thread in input
// order and come back as commits. The thread starts with the job (so its start-up overlaps
// reading the header) and opens the store only when told. A store that only its own object can
// reach (no URL) is written from the job's thread instead, with the same committer.
import type { Worker } from 'node:worker_threads';
import { UmbraError } from '../errors.js';
import { tensorBuffers } from '../workers/messages.js';
import { BatchCommitter } from './committer.js';
import type { BatchToStore, FromWriter, ToWriter, WriterSetup } from './messages.js';
import { RejectFile } from './rejects.js';
import type { Checkpoint, PredictionStore } from './store.js';
import { endThread, startThread } from './thread.js';

export class WriteStage {
  private submitted = 0;
  private committed = 0;
  private failure: Error | undefined;
  private readonly worker: Worker | undefined;
  private inline: { committer: BatchCommitter; rejects: RejectFile } | undefined;
  private queue: Promise<void> = Promise.resolve();
  /** Set once the job ends the thread itself (its exit is then no failure). */
  private ending = false;
  private closed: { resolve: (cpuMicros: number | undefined) => void; reject: (err: Error) => void } | undefined;

  /**
   * `storeUrl`: the store the writer thread opens; undefined to store from this thread into the
   * store given to `open`. `changed` runs after every commit and on failure.
   */
  constructor(storeUrl: string | undefined, private readonly onCommit: (checkpoint: Checkpoint) => void, private readonly changed: () => void) {
    if (storeUrl === undefined) return;
    this.worker = startThread(new URL('./write-worker.js', import.meta.url), storeUrl, 'the writer thread',
      (message: FromWriter) => this.receive(message), (err) => this.fail(err), () => this.ending);
  }

  /** Whether storing runs on a thread of its own (else on the job's thread, counted with it). */
  get threaded(): boolean {
    return this.worker !== undefined;
  }

  get error(): Error | undefined {
    return this.failure;
  }

  /** Batches handed over and not yet stored. */
  get backlog(): number {
    return this.submitted - this.committed;
  }

  /** Opens the store (the thread's own connection, or `store` here) and the reject file. */
  open(setup: WriterSetup, store: PredictionStore): void {
    if (this.worker) {
      this.post({ kind: 'open', setup });
      return;
    }
    const rejects = new RejectFile(setup.rejectsPath, setup.checkpoint.rejectBytes);
    this.inline = { rejects, committer: new BatchCommitter(store, setup.model, setup.version, rejects, { ...setup.checkpoint }) };
  }

  /** Hands over the next batch in input order (its output buffers move to the writer). */
  submit(batch: BatchToStore): void {
    this.submitted += 1;
    if (this.worker) {
      this.post({ kind: 'batch', batch }, tensorBuffers(batch.rowOutputs ? batch.rowOutputs.flat() : batch.outputs));
      return;
    }
    const inline = this.inline!;
    this.queue = this.queue
      .then(() => (this.failure ? undefined : inline.committer.commit(batch)))
      .then((checkpoint) => {
        if (checkpoint) this.receive({ kind: 'committed', seq: batch.seq, checkpoint });
      }, (err: unknown) => this.fail(err as Error));
  }

  /** After every batch is stored: closes the writer; resolves with its thread's CPU time. */
  async close(): Promise<number | undefined> {
    if (!this.worker) {
      await this.queue;
      this.inline?.rejects.close();
      if (this.failure) throw this.failure;
      return undefined;
    }
    if (this.failure) throw this.failure;
    const done = new Promise<number | undefined>((resolve, reject) => { this.closed = { resolve, reject }; });
    this.post({ kind: 'close' });
    const cpu = await done;
    this.ending = true;
    await endThread(this.worker);
    return cpu;
  }

  /**
   * Stops after the store call under way (on a failure elsewhere or an interrupt); what is stored
   * stays stored, and a resume goes on from there.
   */
  async stop(): Promise<void> {
    this.ending = true;
    if (this.worker) await endThread(this.worker);
    else this.inline?.rejects.close();
  }

  /** Stops the job's waits with `err` (an interrupt); the thread ends with stop(). */
  abort(err: Error): void {
    this.fail(err);
  }

  private post(message: ToWriter, transfer: ArrayBuffer[] = []): void {
    this.worker!.postMessage(message, transfer);
  }

  private receive(message: FromWriter): void {
    if (message.kind === 'committed') {
      this.committed += 1;
      this.onCommit(message.checkpoint);
    } else if (message.kind === 'closed') {
      this.closed?.resolve(message.cpuMicros);
    } else {
      this.fail(new UmbraError('INTERNAL', message.message));
    }
    this.changed();
  }

  private fail(err: Error): void {
    this.failure ??= err instanceof UmbraError ? err : new UmbraError('INTERNAL', err.message, { cause: err });
    this.closed?.reject(this.failure);
    this.changed();
  }
}
