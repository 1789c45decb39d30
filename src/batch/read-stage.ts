// The reading stage of a batch job, seen from the job: reader threads that read and parse the
// input, their segments handed over strictly in input order, and the bounded queue between
// reading and computing (a reader parses a segment only once the job allows it).
import type { Worker } from 'node:worker_threads';
import { UmbraError } from '../errors.js';
import type { FromReader, PlanSummary, ReaderSetup, SegmentMessage, ToReader } from './messages.js';
import { Signal } from './signal.js';
import { endThread, startThread } from './thread.js';

export class ReadStage {
  private readonly threads: Worker[] = [];
  private readonly arrived = new Map<number, SegmentMessage>();
  private nextIndex = 0;
  private resumeAfter = 0;
  private segmentRecords = 1;
  /** Records in the input, once a thread has reached its end. */
  private records: number | undefined;
  private ends = 0;
  private cpu: number | undefined = 0;
  private failure: Error | undefined;
  private planned: { resolve: (plan: { plan: PlanSummary | undefined; empty: boolean; totalBytes: number }) => void; reject: (err: Error) => void } | undefined;
  private readonly changed = new Signal();
  /** Set once the job ends the threads itself (their exits are then no failure). */
  private ending = false;
  bytesRead = 0;
  totalBytes = 0;
  /** Known once planned: the input holds no record at all. */
  empty = false;

  /** `ahead`: segments a reader may parse beyond the one the job is consuming. */
  constructor(private readonly setup: Omit<ReaderSetup, 'thread' | 'threads'>, private readonly threadCount: number, private readonly ahead: number) {}

  /**
   * Starts the readers and resolves once they have mapped the columns (or rejects with why they
   * cannot); the first reports the plan for all.
   */
  async plan(): Promise<PlanSummary | undefined> {
    const first = new Promise<{ plan: PlanSummary | undefined; empty: boolean; totalBytes: number }>((resolve, reject) => { this.planned = { resolve, reject }; });
    for (let t = 0; t < this.threadCount; t++) this.spawn(t);
    const planned = await first;
    this.totalBytes = planned.totalBytes;
    this.empty = planned.empty;
    return planned.plan;
  }

  /** Every reader begins after record `resumeAfter`, in segments of `segmentRecords` records. */
  start(resumeAfter: number, segmentRecords: number): void {
    this.resumeAfter = resumeAfter;
    this.segmentRecords = segmentRecords;
    this.post({ kind: 'start', resumeAfter, segmentRecords });
    this.post({ kind: 'allow', upTo: this.ahead });
  }

  /** The next segment in input order, or undefined after the last. */
  async next(): Promise<SegmentMessage | undefined> {
    const finished = () => this.records !== undefined && this.nextIndex >= this.segmentCount(this.records);
    await this.changed.until(() => this.arrived.has(this.nextIndex) || finished(), () => this.failure);
    const segment = this.arrived.get(this.nextIndex);
    if (!segment) return undefined;
    this.arrived.delete(this.nextIndex);
    this.nextIndex += 1;
    return segment;
  }

  /** The job is done with segment `index`: the readers may go that much further. */
  release(index: number): void {
    this.post({ kind: 'allow', upTo: index + 1 + this.ahead });
  }

  /** Records in the input (known once the last segment has been handed over). */
  get recordCount(): number {
    return this.records ?? 0;
  }

  /** The readers' CPU time once they have all ended (undefined where it cannot be measured). */
  async cpuMicros(): Promise<number | undefined> {
    await this.changed.until(() => this.ends === this.threads.length, () => this.failure);
    return this.cpu;
  }

  async close(): Promise<void> {
    this.ending = true;
    await Promise.all(this.threads.map((t) => endThread(t)));
  }

  private segmentCount(records: number): number {
    return Math.ceil(Math.max(0, records - this.resumeAfter) / this.segmentRecords);
  }

  private spawn(thread: number): void {
    const setup: ReaderSetup = { ...this.setup, thread, threads: this.threadCount };
    this.threads.push(startThread(new URL('./read-worker.js', import.meta.url), setup, 'a reader thread',
      (message: FromReader) => this.receive(message), (err) => this.fail(err), () => this.ending));
  }

  private receive(message: FromReader): void {
    switch (message.kind) {
      case 'plan':
        this.planned?.resolve({ plan: message.plan, empty: message.empty, totalBytes: message.totalBytes });
        break;
      case 'segment':
        this.arrived.set(message.segment.index, message.segment);
        this.bytesRead = Math.max(this.bytesRead, message.segment.bytesRead);
        break;
      case 'end':
        this.records = message.records;
        this.ends += 1;
        this.cpu = this.cpu === undefined || message.cpuMicros === undefined ? undefined : this.cpu + message.cpuMicros;
        this.bytesRead = this.totalBytes;
        break;
      case 'error':
        this.fail(new UmbraError(message.invalid ? 'INVALID_ARGUMENT' : 'INTERNAL', message.message));
        break;
    }
    this.changed.notify();
  }

  /** Stops the job's waits with `err` (an interrupt); the threads end with close(). */
  abort(err: Error): void {
    this.fail(err);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.planned?.reject(this.failure);
    this.changed.notify();
  }

  private post(message: ToReader): void {
    for (const t of this.threads) t.postMessage(message);
  }
}
