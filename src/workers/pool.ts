// The model worker pool: piscina threads that each hold sessions for the loaded models.
// Large inputs are sharded across workers by rows and reassembled in order.
import { BroadcastChannel } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { concatTensors, splitTensor } from '../protocol/index.js';
import {
  SESSION_CHANNEL, ownedTensor, renamed, tensorBuffers,
  type EvictMessage, type RunResult, type RunTask, type SessionSpec, type WarmResult, type WarmTask, type WireTensor, type WorkerTask,
} from './messages.js';

export interface PoolOptions {
  /** Worker threads; default one per core. */
  workers?: number;
  /** Path of the worker entry; default the compiled worker next to this file. */
  filename?: string;
}

export class WorkerPool {
  readonly size: number;
  private readonly piscina: Piscina<WorkerTask, RunResult | WarmResult>;
  private readonly channel = new BroadcastChannel(SESSION_CHANNEL);
  private closed = false;
  /** Run tasks handed to piscina and not yet settled (queued ones included). */
  private running = 0;

  constructor(options: PoolOptions = {}) {
    this.size = Math.max(1, options.workers ?? availableParallelism());
    this.piscina = new Piscina({
      filename: options.filename ?? new URL('./worker.js', import.meta.url).href,
      minThreads: this.size,
      maxThreads: this.size,
      // Sessions live in the workers: an idle worker must not be recycled and lose them.
      idleTimeout: Number.POSITIVE_INFINITY,
      concurrentTasksPerWorker: 1,
      // Backpressure is the batcher's job; the pool queue only holds what the batcher dispatched.
      maxQueue: Number.POSITIVE_INFINITY as unknown as number,
    });
    this.channel.unref();
  }

  /**
   * Opens the session on every worker and runs one warm-up inference there. Resolves with the
   * session's own description of its inputs and outputs.
   */
  async warm(session: SessionSpec, probeRows?: number): Promise<WarmResult> {
    const tasks = Array.from({ length: this.size }, (_, i) => {
      const task: WarmTask = { kind: 'warm', session };
      // One worker times a probe batch; the others only warm up.
      if (probeRows && i === 0) task.probeRows = probeRows;
      return this.piscina.run(task);
    });
    const results = (await Promise.all(tasks)) as WarmResult[];
    return results.find((r) => r.probeMicros !== undefined) ?? results[0]!;
  }

  /** Workers that no run task of this pool occupies or waits for right now. */
  get idle(): number {
    return Math.max(0, this.size - this.running);
  }

  /** Runs one batch on one worker. Input buffers are transferred (the caller must not reuse them). */
  async run(session: SessionSpec, inputs: WireTensor[], outputs: string[], fault?: RunTask['fault']): Promise<RunResult> {
    const owned = inputs.map(ownedTensor);
    const task: RunTask = { kind: 'run', session, inputs: owned, outputs };
    if (fault) task.fault = fault;
    this.running += 1;
    try {
      return (await this.piscina.run(task, { transferList: tensorBuffers(owned) })) as RunResult;
    } finally {
      this.running -= 1;
    }
  }

  /**
   * Runs `inputs` (all sharing a leading batch dimension of `rows`) in shards of at most
   * `maxRowsPerTask` rows across the workers, and reassembles the outputs in order.
   */
  async runSharded(session: SessionSpec, inputs: WireTensor[], outputs: string[], rows: number, maxRowsPerTask: number): Promise<RunResult> {
    if (rows <= maxRowsPerTask || maxRowsPerTask <= 0) return this.run(session, inputs, outputs);
    const parts = Math.ceil(rows / maxRowsPerTask);
    const counts = Array.from({ length: parts }, (_, i) => Math.min(maxRowsPerTask, rows - i * maxRowsPerTask));
    const shardsPerInput = inputs.map((t) => splitTensor(t, counts));
    const results = await Promise.all(counts.map((_, i) => this.run(session, shardsPerInput.map((s) => s[i]!), outputs)));
    const names = results[0]!.outputs.map((o) => o.name);
    const merged = names.map((name, j) => concatTensors(results.map((r) => r.outputs[j]!)));
    return { outputs: merged.map((t, j) => renamed(t, names[j]!)), computeMs: Math.max(...results.map((r) => r.computeMs)) };
  }

  /** Tells every worker to release the sessions of one model load. */
  evict(key: string): void {
    const msg: EvictMessage = { kind: 'evict', key };
    this.channel.postMessage(msg);
  }

  get queueSize(): number {
    return this.piscina.queueSize;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.channel.close();
    await this.piscina.destroy();
  }
}
