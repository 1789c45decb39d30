// Parse workers: reading numbers out of text costs more than running a small model, so a job
// parses chunks on these threads while the main thread reads, batches and stores.
import { Worker } from 'node:worker_threads';
import { UmbraError } from '../errors.js';
import type { InputRecord } from './reader.js';
import type { ParsedChunk, ParseSetup } from './parse.js';

export interface ParseRequest {
  id: number;
  records: InputRecord[];
}

export interface ParseReply {
  id: number;
  chunk?: ParsedChunk;
  error?: string;
}

export class ParsePool {
  private readonly workers: Worker[];
  private readonly waiting = new Map<number, { resolve: (c: ParsedChunk) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failure: Error | undefined;

  constructor(setup: ParseSetup, threads: number) {
    this.workers = Array.from({ length: threads }, () => {
      const worker = new Worker(new URL('./parse-worker.js', import.meta.url), { workerData: setup });
      worker.on('message', (reply: ParseReply) => this.answer(reply));
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`a parse worker exited with code ${code}`));
      });
      return worker;
    });
  }

  /** Parses one chunk on the next worker (round robin). */
  parse(records: InputRecord[]): Promise<ParsedChunk> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const worker = this.workers[id % this.workers.length]!;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      const request: ParseRequest = { id, records };
      worker.postMessage(request);
    });
  }

  private answer(reply: ParseReply): void {
    const waiter = this.waiting.get(reply.id);
    if (!waiter) return;
    this.waiting.delete(reply.id);
    if (reply.chunk) waiter.resolve(reply.chunk);
    else waiter.reject(new UmbraError('INTERNAL', `parsing input failed: ${reply.error ?? 'no answer'}`));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
