// The model worker pool: piscina threads that each hold sessions for the loaded models.
// Large inputs are sharded across workers by rows and reassembled in order.
import { BroadcastChannel } from 'node:worker_threads';
import { threadOptions } from '../core/threads.js';
import { usableCores } from '../cores.js';
import { randomBytes } from 'node:crypto';
import { Piscina, type PiscinaTask } from 'piscina';
import { trimMemory } from '../native/trim.js';
import { concatTensors, splitTensor } from '../protocol/index.js';
import {
  SESSION_CHANNEL, TaskProgress, ownedTensor, renamed, tensorBuffers,
  type EvictMessage, type FlushTask, type HelloMessage, type PoolWorkerData, type RunResult, type RunTask, type SessionSpec, type WarmResult, type WarmTask, type WireTensor, type WorkerTask,
} from './messages.js';
import { TransferBuffers } from './transfer-buffers.js';
import { ModelRunError } from '../errors.js';

export interface PoolOptions {
  /** Worker threads; default one per core. */
  workers?: number;
  /** Path of the worker entry; default the compiled worker next to this file. */
  filename?: string;
  /** Told each worker's OS thread id as it starts (replacements included). */
  onWorkerThread?: (tid: number) => void;
  /** Told when a worker ends before the pool closes (a crash): piscina starts another in its place. */
  onWorkerEnded?: () => void;
}

/** What `run` may be told about a task besides its tensors. */
export interface RunOptions {
  fault?: RunTask['fault'];
  /**
   * Queue the task behind a running one on a busy worker when none is idle, so it starts the
   * moment that worker is free instead of after a round trip through the main thread. (A plain
   * task waits in the pool's queue for an idle worker, and goes to whichever frees first.)
   */
  staged?: boolean;
  /**
   * The inputs stay the caller's (observers read the request after it is answered): they are
   * copied into buffers the worker hands back for later runs, instead of transferred.
   */
  borrowed?: boolean;
}

/**
 * Thrown by `run` for a task lost with its worker that may be sent again: the worker ended before
 * the task began (nothing of it ran: it was staged behind the task that killed the worker), or
 * after the task answered (the worker's 'exit' reached the pool before the answer it had posted,
 * and piscina fails what it has not heard back from). Its inputs were transferred away with it:
 * the caller sends its own again. A task the worker died running is not this: it failed.
 */
export class TaskLostError extends Error {
  constructor(readonly answered: boolean, cause: unknown) {
    super(`the worker ended ${answered ? 'after the task answered, before its answer arrived' : 'before the task began'}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'TaskLostError';
  }
}

/** How many times in all a task lost with its worker (TaskLostError) is sent (see resendingLost). */
export const LOST_TASK_ATTEMPTS = 3;

/**
 * Runs `send` again while its task is lost with its worker, at most LOST_TASK_ATTEMPTS times in
 * all. `send` gives the task fresh inputs each time (the lost ones were transferred away).
 */
export async function resendingLost<T>(send: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send(attempt);
    } catch (err) {
      if (!(err instanceof TaskLostError) || attempt >= LOST_TASK_ATTEMPTS) throw err;
    }
  }
}

/** Name of the worker export that runs a staged task (the same handler as the default). */
const STAGED = 'staged';
/** Progress-flag slots; a task finding none free runs without one (and is never resent). */
const PROGRESS_SLOTS = 1024;

/** What piscina's balancer sees of a worker. */
interface BalancedWorker {
  readonly id: number;
  readonly currentUsage: number;
  readonly isRunningAbortableTask: boolean;
  readonly terminating: boolean;
}

export class WorkerPool {
  readonly size: number;
  private readonly piscina: Piscina<WorkerTask, RunResult | WarmResult>;
  private readonly channel = new BroadcastChannel(SESSION_CHANNEL);
  private readonly id = randomBytes(6).toString('hex');
  private closed = false;
  /** Run tasks handed to piscina and not yet settled (queued ones included). */
  private running = 0;
  /** One Int32 per slot: a run task's TaskProgress, as its worker raises it. */
  private readonly progress = new Int32Array(new SharedArrayBuffer(PROGRESS_SLOTS * 4));
  /** Evict and park messages posted (PoolWorkerData.evictions). */
  private readonly evictions = new Int32Array(new SharedArrayBuffer(4));
  /** The last burst's flush tasks, settled (never rejects); close waits for them. */
  private flushing: Promise<void> = Promise.resolve();
  private flushScheduled = false;
  private readonly freeSlots = Array.from({ length: PROGRESS_SLOTS }, (_, i) => PROGRESS_SLOTS - 1 - i);
  /** When each worker (by thread id) began its running task, as near as the main thread can tell. */
  private readonly busySince = new Map<number, number>();
  /** Input buffers the workers handed back, for the next borrowed run's copies. */
  readonly buffers = new TransferBuffers();

  constructor(options: PoolOptions = {}) {
    this.size = Math.max(1, options.workers ?? usableCores());
    this.piscina = new Piscina(threadOptions({
      filename: options.filename ?? new URL('./worker.js', import.meta.url).href,
      minThreads: this.size,
      maxThreads: this.size,
      // Sessions live in the workers: an idle worker must not be recycled and lose them.
      idleTimeout: Number.POSITIVE_INFINITY,
      // At most one task waits behind a running one, and only a staged one (see stagingBalancer).
      concurrentTasksPerWorker: 2,
      loadBalancer: ((task: PiscinaTask, workers: BalancedWorker[]) => this.balance(task, workers)) as never,
      workerData: { pool: this.id, progress: this.progress.buffer as SharedArrayBuffer, evictions: this.evictions.buffer as SharedArrayBuffer } satisfies PoolWorkerData,
      // Backpressure is the batcher's job; the pool queue only holds what the batcher dispatched.
      maxQueue: Number.POSITIVE_INFINITY as unknown as number,
    }));
    // Once closed, what a worker still says (an answer racing the destroy, which piscina emits as
    // an 'error' for a task it no longer knows) concerns no one; before, an error is thrown as it
    // would be with no listener.
    this.piscina.on('error', (err: unknown) => {
      if (!this.closed) throw err;
    });
    this.channel.unref();
    const onWorkerEnded = options.onWorkerEnded;
    if (onWorkerEnded) this.piscina.on('workerDestroy', () => {
      if (!this.closed) onWorkerEnded();
    });
    const onWorkerThread = options.onWorkerThread;
    if (onWorkerThread) {
      this.channel.onmessage = (event: unknown) => {
        const msg = (event as { data: HelloMessage | EvictMessage }).data;
        if (msg?.kind === 'hello' && msg.pool === this.id) onWorkerThread(msg.tid);
      };
    }
  }

  /**
   * Piscina's balancer: an idle worker for any task; for a staged one, failing that, the worker
   * with only its running task that began it first (the likeliest to finish first).
   */
  private balance(task: PiscinaTask, workers: BalancedWorker[]): BalancedWorker | null {
    let candidate: BalancedWorker | null = null;
    let since = Number.POSITIVE_INFINITY;
    for (const worker of workers) {
      if (worker.terminating || worker.isRunningAbortableTask) continue;
      if (worker.currentUsage === 0) {
        if (this.busySince.size > 4 * this.size) this.busySince.clear(); // ids of replaced workers
        this.busySince.set(worker.id, performance.now());
        return worker;
      }
      if (task.name !== STAGED || worker.currentUsage !== 1) continue;
      const at = this.busySince.get(worker.id) ?? 0;
      if (at < since) {
        since = at;
        candidate = worker;
      }
    }
    return candidate;
  }

  /**
   * Opens the session on every worker and runs one warm-up inference there. Resolves with the
   * session's own description of its inputs and outputs.
   */
  async warm(session: SessionSpec, probeRows?: number): Promise<WarmResult> {
    const task = (spec: SessionSpec, probe: boolean): Promise<WarmResult> => {
      const warm: WarmTask = { kind: 'warm', session: spec };
      if (probe && probeRows) warm.probeRows = probeRows;
      return this.piscina.run(warm) as Promise<WarmResult>;
    };
    // A session that tunes itself at open (SessionSpec.batchSizes) opens on one worker first, and
    // the others open with what it measured: every worker then runs the same plan, and the timing
    // is not disturbed by the other workers' opens. That worker also times the probe batch.
    if (session.batchSizes && !session.tuned) {
      const first = await task(session, true);
      const spec = first.tuned ? { ...session, tuned: first.tuned } : session;
      // One task per worker, as below: idle workers each take one (the first finds its session open).
      await Promise.all(Array.from({ length: this.size }, () => task(spec, false)));
      return first;
    }
    const results = await Promise.all(Array.from({ length: this.size }, (_, i) => task(session, i === 0)));
    return results.find((r) => r.probeMicros !== undefined) ?? results[0]!;
  }

  /** Workers that no run task of this pool occupies or waits for right now. */
  get idle(): number {
    return Math.max(0, this.size - this.running);
  }

  /**
   * Runs one batch on one worker. Input buffers are transferred (the caller must not reuse them).
   * A task lost with its worker before it began or after it answered rejects with TaskLostError.
   */
  async run(session: SessionSpec, inputs: WireTensor[], outputs: string[], options: RunOptions = {}): Promise<RunResult> {
    const owned = options.borrowed ? inputs.map((t) => this.buffers.copy(t)) : inputs.map(ownedTensor);
    const task: RunTask = { kind: 'run', session, inputs: owned, outputs };
    if (options.fault) task.fault = options.fault;
    const slot = this.freeSlots.pop();
    if (slot !== undefined) {
      Atomics.store(this.progress, slot, TaskProgress.posted);
      task.progressSlot = slot;
    }
    this.running += 1;
    try {
      const run = { transferList: tensorBuffers(owned), name: options.staged ? STAGED : 'default' };
      const result = (await this.piscina.run(task, run)) as RunResult;
      if (result.runError !== undefined) throw new ModelRunError(result.runError);
      if (result.spent) {
        this.buffers.recycle(result.spent);
        delete result.spent;
      }
      // The worker goes on to the task staged behind this one, if any, about now.
      if (result.threadId !== undefined) this.busySince.set(result.threadId, performance.now());
      return result;
    } catch (err) {
      const progress = slot === undefined ? TaskProgress.begun : Atomics.load(this.progress, slot);
      if (progress !== TaskProgress.begun && !(err instanceof ModelRunError) && !this.closed) throw new TaskLostError(progress === TaskProgress.answered, err);
      throw err;
    } finally {
      this.running -= 1;
      if (slot !== undefined) this.freeSlots.push(slot);
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
    this.release({ kind: 'evict', key, pool: this.id });
  }

  /** Tells every worker to release its session of a load that runs elsewhere; a later task reopens it. */
  park(key: string): void {
    this.release({ kind: 'park', key, pool: this.id });
  }

  /**
   * Posts an eviction, counts it, and (once per burst) sends every worker a task that does nothing
   * but let it in: a worker that idles until its next task would otherwise keep the sessions.
   */
  private release(msg: EvictMessage): void {
    if (this.closed) return;
    this.channel.postMessage(msg);
    Atomics.add(this.evictions, 0, 1);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.closed) return;
      const flushes = Array.from({ length: this.size }, () => this.piscina.run({ kind: 'flush' } satisfies FlushTask));
      // The released sessions' memory sits free in the workers' allocator arenas, each for its
      // own thread alone: handed back to the OS (glibc's malloc_trim covers every arena) once
      // they have released them. From this thread, which has the addon loaded already.
      this.flushing = Promise.all(flushes).then(() => {
        if (!this.closed) trimMemory();
      }, () => undefined);
    });
  }

  get queueSize(): number {
    return this.piscina.queueSize;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.channel.close();
    // A flush still on its way: destroyed under it, piscina takes the worker's answer for a task
    // it no longer knows and emits it as an 'error' nothing listens for (an uncaught exception).
    // Flushes do no work, so this waits only for a worker to finish what it runs now.
    await this.flushing;
    await this.piscina.destroy();
  }
}
