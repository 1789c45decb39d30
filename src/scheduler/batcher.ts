// Dynamic batching with Triton's semantics, free of any transport or model: requests wait in a
// priority queue, and whenever an execution slot is free the batcher forms the candidate batch
// from the head of the queue and decides whether to send it now or wait for it to fill.
//
// Forming a batch: the head request (highest non-empty level, oldest first) fixes the shape key.
// Walking on in dispatch order (which crosses into lower levels), every request with the same
// key joins while it fits in maxBatchSize rows; requests with other keys are skipped and keep
// their place. The walk stops at the first same-key request that does not fit, so requests of one
// key are always dispatched in submit order.
//
// Sending it: at once when it holds maxBatchSize rows; else the longest prefix whose rows equal a
// preferred size; else everything, once its oldest request has waited maxQueueDelayUs (or at once
// while draining, when nothing more will arrive). Nothing is sent while all maxInFlight slots are
// busy, so requests pile up under load and the next batch is fuller.
//
// Requests with more rows than maxBatchSize are refused at submit (INVALID_INPUT). With
// maxBatchSize 0 the model does not batch: each request runs alone as soon as a slot is free.
//
// One timer at a time covers both the batching delay and every queued request's timeout.

import { UmbraError, invalid } from '../errors.js';
import { DeadlineHeap } from './deadline-heap.js';
import { PriorityRequestQueue, isRequestQueue, type QueuedRequest, type RequestQueue } from './queue.js';

/** What `execute` is told about the batch besides its payloads. */
export interface BatchInfo {
  rows: number;
  shapeKey: string;
}

/** Arms a one-shot timer `delayUs` microseconds out; returns a function that cancels it. */
export type SetTimer = (callback: () => void, delayUs: number) => () => void;

export interface BatcherOptions<P, R> {
  /** Rows per execution; 0 = the model does not batch (each request runs alone). */
  maxBatchSize: number;
  /** How long the oldest request of a candidate batch may wait for a fuller batch. */
  maxQueueDelayUs: number;
  /** Send at once when the candidate batch reaches one of these row counts exactly. */
  preferredBatchSizes: number[];
  /** 0 = unbounded; else the most requests (not rows) queued; beyond it submit rejects with QUEUE_FULL. */
  maxQueueSize: number;
  /** 0 = none; a request's own timeout may only be shorter. */
  defaultTimeoutUs: number;
  /** 0 or 1 = a single level; else levels 1..N, 1 the highest. */
  priorityLevels: number;
  /** Level for requests that name none; 0 = the lowest level. */
  defaultPriorityLevel: number;
  /** Concurrent executions (e.g. the number of workers). */
  maxInFlight: number;
  /** Runs one batch; answers one result per payload, in order. */
  execute: (items: P[], batch: BatchInfo) => Promise<R[]>;
  /** Monotonic clock in microseconds (tests inject one). */
  now?: () => number;
  /** Timer to pair with `now` (tests inject one); the default is an unref'd setTimeout. */
  setTimer?: SetTimer;
  /** Another queue policy; must be empty. Checked with `isRequestQueue`. */
  queue?: RequestQueue;
}

export interface SubmitOptions {
  /** Size of the batch dimension of this request (1 for models that do not batch). */
  rows: number;
  /** Requests batch together only when their keys are equal (e.g. the non-batch dims of every input). */
  shapeKey: string;
  /** 1..priorityLevels; absent or 0 = the default level. */
  priority?: number;
  /** Absent or 0 = the default timeout; longer than the default is cut to the default. */
  timeoutUs?: number;
  /** Aborting removes the request while it is queued; once executing it runs to the end. */
  signal?: AbortSignal;
}

export type BatcherState = 'open' | 'draining' | 'closed';

export interface BatcherStats {
  /** Requests accepted into the queue. */
  submitted: number;
  /** Batches handed to execute, whatever their outcome. */
  executions: number;
  /** Rows handed to execute (Triton's inference count). */
  inferences: number;
  /** Requests handed to execute. */
  executedRequests: number;
  /** Requests rejected because their batch's execute failed. */
  failedRequests: number;
  /** Microseconds requests spent queued before dispatch, summed. */
  queueTimeUs: number;
  /** Microseconds spent in execute, summed over batches. */
  executeTimeUs: number;
  rejectedQueueFull: number;
  rejectedNotReady: number;
  rejectedInvalid: number;
  timeouts: number;
  aborted: number;
  /** Requests rejected by close(). */
  closed: number;
  pending: number;
  inFlight: number;
}

interface Pending<P, R> extends QueuedRequest {
  readonly payload: P;
  readonly timeoutUs: number;
  queued: boolean;
  resolve(value: R): void;
  reject(reason: unknown): void;
  detachAbort: (() => void) | null;
}

type Counters = Omit<BatcherStats, 'pending' | 'inFlight'>;

const defaultNow = (): number => performance.now() * 1000;

const defaultSetTimer: SetTimer = (callback, delayUs) => {
  const handle = setTimeout(callback, Math.ceil(delayUs / 1000));
  handle.unref();
  return () => clearTimeout(handle);
};

function checkInteger(value: unknown, min: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw invalid('INVALID_ARGUMENT', min === 0 ? 'a non-negative integer' : `an integer of at least ${min}`, what, value);
  }
  return value;
}

function checkDuration(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw invalid('INVALID_ARGUMENT', 'a non-negative number of microseconds', what, value);
  return value;
}

const formatMs = (us: number): string => `${Number((us / 1000).toFixed(3))} ms`;

export class DynamicBatcher<P, R> {
  readonly #maxBatchSize: number;
  readonly #maxQueueDelayUs: number;
  readonly #preferred: ReadonlySet<number>;
  readonly #maxQueueSize: number;
  readonly #defaultTimeoutUs: number;
  readonly #levels: number;
  readonly #defaultLevel: number;
  readonly #maxInFlight: number;
  readonly #execute: BatcherOptions<P, R>['execute'];
  readonly #now: () => number;
  readonly #setTimer: SetTimer;
  readonly #queue: RequestQueue;
  readonly #deadlines = new DeadlineHeap<Pending<P, R>>();
  readonly #counters: Counters = {
    submitted: 0, executions: 0, inferences: 0, executedRequests: 0, failedRequests: 0, queueTimeUs: 0, executeTimeUs: 0,
    rejectedQueueFull: 0, rejectedNotReady: 0, rejectedInvalid: 0, timeouts: 0, aborted: 0, closed: 0,
  };

  #state: BatcherState = 'open';
  #inFlight = 0;
  #pumping = false;
  #repump = false;
  /** When the candidate batch's delay runs out; Infinity when no slot is free or nothing waits. */
  #delayWakeAt = Infinity;
  #timerAt = Infinity;
  #cancelTimer: (() => void) | null = null;
  #drained: Promise<void> | null = null;
  #resolveDrained: (() => void) | null = null;

  constructor(options: BatcherOptions<P, R>) {
    this.#maxBatchSize = checkInteger(options.maxBatchSize, 0, 'maxBatchSize');
    this.#maxQueueDelayUs = checkDuration(options.maxQueueDelayUs, 'maxQueueDelayUs');
    if (!Array.isArray(options.preferredBatchSizes)) throw invalid('INVALID_ARGUMENT', 'an array', 'preferredBatchSizes', options.preferredBatchSizes);
    for (const size of options.preferredBatchSizes) {
      checkInteger(size, 1, 'a preferred batch size');
      if (this.#maxBatchSize > 0 && size > this.#maxBatchSize) throw invalid('INVALID_ARGUMENT', `at most maxBatchSize (${this.#maxBatchSize})`, 'a preferred batch size', size);
    }
    this.#preferred = new Set(options.preferredBatchSizes);
    this.#maxQueueSize = checkInteger(options.maxQueueSize, 0, 'maxQueueSize');
    this.#defaultTimeoutUs = checkDuration(options.defaultTimeoutUs, 'defaultTimeoutUs');
    this.#levels = Math.max(1, checkInteger(options.priorityLevels, 0, 'priorityLevels'));
    const defaultLevel = checkInteger(options.defaultPriorityLevel, 0, 'defaultPriorityLevel');
    if (this.#levels > 1 && defaultLevel > this.#levels) throw invalid('INVALID_ARGUMENT', `a level in 1..${this.#levels}`, 'defaultPriorityLevel', defaultLevel);
    this.#defaultLevel = this.#levels === 1 ? 1 : defaultLevel === 0 ? this.#levels : defaultLevel;
    this.#maxInFlight = checkInteger(options.maxInFlight, 1, 'maxInFlight');
    if (typeof options.execute !== 'function') throw invalid('INVALID_ARGUMENT', 'a function', 'execute', options.execute);
    this.#execute = options.execute;
    this.#now = options.now ?? defaultNow;
    this.#setTimer = options.setTimer ?? defaultSetTimer;
    if (options.queue !== undefined) {
      if (!isRequestQueue(options.queue)) throw invalid('INVALID_ARGUMENT', 'an object with size, push, remove and an iterator', 'queue', options.queue);
      if (options.queue.size !== 0) throw invalid('INVALID_ARGUMENT', 'an empty queue', 'queue', options.queue.size);
    }
    this.#queue = options.queue ?? new PriorityRequestQueue(this.#levels);
  }

  /** Queue one request; settles with its result, or rejects (QUEUE_FULL, TIMEOUT, NOT_READY, INVALID_INPUT, the execute error). */
  submit(payload: P, options: SubmitOptions): Promise<R> {
    const counters = this.#counters;
    if (this.#state !== 'open') {
      counters.rejectedNotReady++;
      return Promise.reject(new UmbraError('NOT_READY', `the model is ${this.#state === 'draining' ? 'draining' : 'closed'} and takes no new requests`, { retryAfter: 1 }));
    }
    let checked: { rows: number; priority: number; timeoutUs: number };
    try {
      checked = this.#check(options);
    } catch (err) {
      counters.rejectedInvalid++;
      return Promise.reject(err);
    }
    const signal = options.signal;
    if (signal?.aborted) {
      counters.aborted++;
      return Promise.reject(abortReason(signal));
    }
    const now = this.#now();
    this.#expire(now);
    if (this.#maxQueueSize > 0 && this.#queue.size >= this.#maxQueueSize) {
      counters.rejectedQueueFull++;
      return Promise.reject(new UmbraError('QUEUE_FULL', `the queue holds its limit of ${this.#maxQueueSize} requests; retry later`, { retryAfter: 1 }));
    }
    return new Promise<R>((resolve, reject) => {
      const request: Pending<P, R> = {
        payload, rows: checked.rows, shapeKey: options.shapeKey, priority: checked.priority, enqueuedAt: now,
        timeoutUs: checked.timeoutUs, queued: true, resolve, reject, detachAbort: null,
      };
      this.#queue.push(request);
      if (request.timeoutUs > 0) this.#deadlines.push(now + request.timeoutUs, request);
      if (signal) {
        const onAbort = (): void => this.#abort(request, signal);
        signal.addEventListener('abort', onAbort, { once: true });
        request.detachAbort = () => signal.removeEventListener('abort', onAbort);
      }
      counters.submitted++;
      this.#pump();
    });
  }

  /** Requests queued (not rows). */
  get pending(): number {
    return this.#queue.size;
  }

  /** Batches executing. */
  get inFlight(): number {
    return this.#inFlight;
  }

  get state(): BatcherState {
    return this.#state;
  }

  /**
   * Stop accepting (new submits reject with NOT_READY) and send what is queued without waiting
   * for fuller batches; resolves once the queue is empty and nothing is in flight.
   */
  drain(): Promise<void> {
    if (this.#state === 'open') this.#state = 'draining';
    this.#drained ??= new Promise<void>((resolve) => { this.#resolveDrained = resolve; });
    this.#pump();
    this.#checkDrained();
    return this.#drained;
  }

  /** Reject everything queued with `reason` (default NOT_READY) and accept nothing more. Batches in flight finish. */
  close(reason?: unknown): void {
    this.#state = 'closed';
    this.#disarm();
    const error = reason ?? new UmbraError('NOT_READY', 'the model was unloaded before the request ran', { retryAfter: 1 });
    for (const request of [...this.#queue] as Pending<P, R>[]) {
      this.#leave(request);
      this.#counters.closed++;
      request.reject(error);
    }
    this.#deadlines.clear();
    this.#checkDrained();
  }

  stats(): BatcherStats {
    return { ...this.#counters, pending: this.#queue.size, inFlight: this.#inFlight };
  }

  #check(options: SubmitOptions): { rows: number; priority: number; timeoutUs: number } {
    if (typeof options !== 'object' || options === null) throw invalid('INVALID_INPUT', 'an object', 'the submit options', options);
    const { rows, shapeKey, priority, timeoutUs } = options;
    if (typeof rows !== 'number' || !Number.isInteger(rows) || rows < 1) throw invalid('INVALID_INPUT', 'a positive integer', 'the batch size of the request', rows);
    if (this.#maxBatchSize > 0 && rows > this.#maxBatchSize) {
      throw invalid('INVALID_INPUT', `at most ${this.#maxBatchSize} (the model's max batch size)`, 'the batch size of the request', rows);
    }
    if (typeof shapeKey !== 'string') throw invalid('INVALID_INPUT', 'a string', 'the shape key', shapeKey);
    let level = this.#defaultLevel;
    if (priority !== undefined && priority !== 0) {
      if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < 0) throw invalid('INVALID_INPUT', 'a non-negative integer', 'the priority', priority);
      if (this.#levels > 1) {
        if (priority > this.#levels) throw invalid('INVALID_INPUT', `a level in 1..${this.#levels}`, 'the priority', priority);
        level = priority;
      }
    }
    let timeout = this.#defaultTimeoutUs;
    if (timeoutUs !== undefined && timeoutUs !== 0) {
      if (typeof timeoutUs !== 'number' || !Number.isFinite(timeoutUs) || timeoutUs < 0) throw invalid('INVALID_INPUT', 'a non-negative number of microseconds', 'the timeout', timeoutUs);
      timeout = timeout > 0 ? Math.min(timeout, timeoutUs) : timeoutUs;
    }
    return { rows, priority: level, timeoutUs: timeout };
  }

  /** Dispatch every batch that is ready while slots are free, then re-arm the one timer. */
  #pump(): void {
    if (this.#pumping) {
      this.#repump = true; // execute or a settle called back in; the running loop picks it up
      return;
    }
    this.#pumping = true;
    try {
      let now: number;
      do {
        this.#repump = false;
        now = this.#now();
        this.#expire(now);
        this.#delayWakeAt = Infinity;
        while (this.#inFlight < this.#maxInFlight && this.#queue.size > 0) {
          const batch = this.#plan(now);
          if (!batch) break;
          this.#dispatch(batch, now);
        }
      } while (this.#repump);
      this.#arm(now);
    } finally {
      this.#pumping = false;
    }
  }

  /** The batch to send now, or null (with #delayWakeAt set) when it should wait to fill. */
  #plan(now: number): Pending<P, R>[] | null {
    // The queue only ever holds requests this batcher pushed.
    const walk = this.#queue[Symbol.iterator]() as Iterator<Pending<P, R>>;
    const first = walk.next();
    if (first.done) return null;
    const head = first.value;
    if (this.#maxBatchSize === 0) return [head];
    const batch = [head];
    let rows = head.rows;
    let oldest = head.enqueuedAt;
    let preferredCount = this.#preferred.has(rows) ? 1 : 0;
    while (rows < this.#maxBatchSize) {
      const next = walk.next();
      if (next.done) break;
      const request = next.value;
      if (request.shapeKey !== head.shapeKey) continue;
      if (rows + request.rows > this.#maxBatchSize) break;
      batch.push(request);
      rows += request.rows;
      if (request.enqueuedAt < oldest) oldest = request.enqueuedAt;
      if (this.#preferred.has(rows)) preferredCount = batch.length;
    }
    if (rows >= this.#maxBatchSize || this.#state !== 'open' || now - oldest >= this.#maxQueueDelayUs) return batch;
    if (preferredCount > 0) return batch.slice(0, preferredCount);
    this.#delayWakeAt = oldest + this.#maxQueueDelayUs;
    return null;
  }

  #dispatch(batch: Pending<P, R>[], now: number): void {
    const counters = this.#counters;
    let rows = 0;
    for (const request of batch) {
      this.#leave(request);
      rows += request.rows;
      counters.queueTimeUs += now - request.enqueuedAt;
    }
    counters.executions++;
    counters.inferences += rows;
    counters.executedRequests += batch.length;
    this.#inFlight++;
    let running: Promise<R[]>;
    try {
      running = Promise.resolve(this.#execute(batch.map((r) => r.payload), { rows, shapeKey: batch[0]!.shapeKey }));
    } catch (err) {
      running = Promise.reject(err);
    }
    running.then(
      (results) => this.#settle(batch, now, results, undefined),
      (err: unknown) => this.#settle(batch, now, undefined, err ?? new UmbraError('INTERNAL', 'the batch failed without a reason')),
    );
  }

  #settle(batch: Pending<P, R>[], startedAt: number, results: R[] | undefined, error: unknown): void {
    this.#inFlight--;
    this.#counters.executeTimeUs += this.#now() - startedAt;
    if (error === undefined && (!Array.isArray(results) || results.length !== batch.length)) {
      error = invalid('INTERNAL', `an array of ${batch.length} results`, 'the answer of a batch execution', results);
    }
    if (error === undefined) {
      batch.forEach((request, i) => request.resolve(results![i]!));
    } else {
      this.#counters.failedRequests += batch.length;
      for (const request of batch) request.reject(error);
    }
    this.#pump();
    this.#checkDrained();
  }

  /** Reject every queued request whose deadline has passed, and drop stale heap tops. */
  #expire(now: number): void {
    for (let top = this.#deadlines.peek(); top; top = this.#deadlines.peek()) {
      const request = top.item;
      if (request.queued && top.at > now) return;
      this.#deadlines.pop();
      if (!request.queued) continue;
      this.#leave(request);
      this.#counters.timeouts++;
      request.reject(new UmbraError('TIMEOUT', `the request waited ${formatMs(now - request.enqueuedAt)} in the queue, past its timeout of ${formatMs(request.timeoutUs)}`));
    }
  }

  #abort(request: Pending<P, R>, signal: AbortSignal): void {
    if (!request.queued) return;
    this.#leave(request);
    this.#counters.aborted++;
    request.reject(abortReason(signal));
    this.#pump(); // the head may have changed, and with it the timer
    this.#checkDrained();
  }

  #leave(request: Pending<P, R>): void {
    request.queued = false;
    this.#queue.remove(request);
    request.detachAbort?.();
    request.detachAbort = null;
  }

  #arm(now: number): void {
    let wake = this.#delayWakeAt;
    let top = this.#deadlines.peek();
    while (top && !top.item.queued) {
      this.#deadlines.pop();
      top = this.#deadlines.peek();
    }
    if (top && top.at < wake) wake = top.at;
    if (wake === this.#timerAt) return;
    this.#disarm();
    if (wake === Infinity) return;
    this.#timerAt = wake;
    this.#cancelTimer = this.#setTimer(() => {
      this.#cancelTimer = null;
      this.#timerAt = Infinity;
      this.#pump();
    }, Math.max(0, wake - now));
  }

  #disarm(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = null;
    this.#timerAt = Infinity;
  }

  #checkDrained(): void {
    if (this.#state !== 'open' && this.#queue.size === 0 && this.#inFlight === 0 && this.#resolveDrained) {
      this.#resolveDrained();
      this.#resolveDrained = null;
    }
  }
}

function abortReason(signal: AbortSignal): unknown {
  if (signal.reason !== undefined) return signal.reason;
  const error = new Error('the request was aborted');
  error.name = 'AbortError';
  return error;
}
