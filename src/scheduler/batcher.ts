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
// Sending it: at once when it holds maxBatchSize rows; else everything at once when no request can
// arrive meanwhile (the `quiet` option: every client is already waiting on an answer); else the
// longest prefix whose rows equal a preferred size; else everything, once its oldest request has
// waited maxQueueDelayUs (or at once while draining, when nothing more will arrive). Nothing
// partial is sent while all maxInFlight slots are busy, so requests pile up under load and the
// next batch is fuller; a full batch may be staged on a busy slot (up to maxStaged of them), to
// start the moment that slot frees.
//
// Requests with more rows than maxBatchSize are refused at submit (INVALID_INPUT). With
// maxBatchSize 0 the model does not batch: each request runs alone as soon as a slot is free.
//
// One timer at a time covers both the batching delay and every queued request's timeout.

import { UmbraError, invalid } from '../errors.js';
import { DeadlineHeap } from './deadline-heap.js';
import { BacklogDetector } from './backlog.js';
import {
  checkSubmitOptions, resolveBatcherOptions, QUEUE_AT_BOUND, QUEUE_STANDS,
  type AdmissionState, type BatcherConfig, type CheckedSubmit, type BatcherOptions, type BatcherState, type BatcherStats, type SubmitOptions,
} from './options.js';
import type { QueuedRequest } from './queue.js';
import type { AbortLike } from './cancellation.js';

export type { AdmissionState, BatchInfo, BatcherOptions, BatcherState, BatcherStats, SetTimer, SubmitOptions } from './options.js';
export { QUEUE_AT_BOUND, QUEUE_STANDS } from './options.js';

/**
 * A queued request. It is its own abort listener (an EventListener object: AbortSignal and
 * Cancellation both take one), so a request with a signal allocates no closures. A fresh
 * closure stored on every request made V8 tenure requests' allocation site: each request was
 * then born in the old generation, and everything it held was copied through every young
 * collection until a full one (about 1.5 MB per young collection at 14k requests/s).
 */
class Pending<P, R> implements QueuedRequest {
  queued = true;
  signal: AbortLike | null = null;

  constructor(
    readonly payload: P,
    readonly rows: number,
    readonly shapeKey: string,
    readonly priority: number,
    readonly enqueuedAt: number,
    readonly timeoutUs: number,
    readonly resolve: (value: R) => void,
    readonly reject: (reason: unknown) => void,
    private readonly onAbort: (request: Pending<P, R>) => void,
  ) {}

  /** The signal fired while this request waited. */
  handleEvent(): void {
    this.onAbort(this);
  }
}

type Counters = Omit<BatcherStats, 'pending' | 'inFlight' | 'executingRequests' | 'stagedRequests'>;

const formatMs = (us: number): string => `${Number((us / 1000).toFixed(3))} ms`;

export class DynamicBatcher<P, R> {
  readonly #config: BatcherConfig<P, R>;
  readonly #deadlines = new DeadlineHeap<Pending<P, R>>();
  readonly #counters: Counters = {
    submitted: 0, executions: 0, inferences: 0, executedRequests: 0, failedRequests: 0, queueTimeUs: 0, executeTimeUs: 0,
    rejectedQueueFull: 0, rejectedNotReady: 0, rejectedInvalid: 0, timeouts: 0, aborted: 0, closed: 0, quietDispatches: 0,
  };

  #state: BatcherState = 'open';
  #inFlight = 0;
  #executingRequests = 0;
  /**
   * Requests of each batch in flight, in the order sent. Past the first maxInFlight, batches are
   * staged on a busy slot: they have left the queue but not started, so the queue bound counts
   * them as waiting (under overload a staged full batch is one more batch time in front of every
   * arrival).
   */
  readonly #inFlightSizes: number[] = [];
  #pumping = false;
  #repump = false;
  #pumpScheduled = false;
  /** When the candidate batch's delay runs out; Infinity when no slot is free or nothing waits. */
  #delayWakeAt = Infinity;
  #timerAt = Infinity;
  #cancelTimer: (() => void) | null = null;
  #drained: Promise<void> | null = null;
  /** Refuses requests while a backlog stands in front of the queue (admissionBudgetUs). */
  readonly #backlog: BacklogDetector | null;
  /**
   * Judges the queue itself the same way, by what dispatched requests waited: the bound in
   * requests rests on the warm-up's batch time, and a host that slows every batch down (other work
   * on its cores) makes the same number of requests wait several budgets.
   */
  readonly #sojourn: BacklogDetector | null;
  /** Whether the last batch's youngest request had waited past the budget for a whole interval. */
  #queueStands = false;
  /** What onAdmission was last told. */
  #admission: AdmissionState = 0;
  #resolveDrained: (() => void) | null = null;

  constructor(options: BatcherOptions<P, R>) {
    this.#config = resolveBatcherOptions(options);
    this.#backlog = this.#config.admissionBudgetUs > 0 ? new BacklogDetector(this.#config.admissionBudgetUs) : null;
    this.#sojourn = this.#config.admissionBudgetUs > 0 ? new BacklogDetector(this.#config.admissionBudgetUs) : null;
  }

  /** Queue one request; settles with its result, or rejects (QUEUE_FULL, TIMEOUT, NOT_READY, INVALID_INPUT, the execute error). */
  submit(payload: P, options: SubmitOptions): Promise<R> {
    const counters = this.#counters;
    if (this.#state !== 'open') {
      counters.rejectedNotReady++;
      return Promise.reject(new UmbraError('NOT_READY', `the model is ${this.#state === 'draining' ? 'draining' : 'closed'} and takes no new requests`, { retryAfter: 1 }));
    }
    let checked: CheckedSubmit;
    try {
      checked = checkSubmitOptions(this.#config, options);
    } catch (err) {
      counters.rejectedInvalid++;
      return Promise.reject(err);
    }
    const signal = options.signal;
    if (signal?.aborted) {
      counters.aborted++;
      return Promise.reject(abortReason(signal));
    }
    const now = this.#config.now();
    this.#expire(now);
    const admission = this.#admissionNow();
    if (admission !== 0) {
      counters.rejectedQueueFull++;
      return Promise.reject(this.refusal(admission));
    }
    const waitedUs = checked.waitedUs;
    if (this.#backlog?.refuse(waitedUs, now)) {
      counters.rejectedQueueFull++;
      return Promise.reject(new UmbraError('QUEUE_FULL', `the server is behind: requests have waited past the queue budget of ${formatMs(this.#backlog.budgetUs)} before reaching the queue for over ${formatMs(this.#backlog.intervalUs)} (this one ${formatMs(waitedUs)}); retry later`, { retryAfter: 1 }));
    }
    return new Promise<R>((resolve, reject) => {
      const request = new Pending<P, R>(payload, checked.rows, options.shapeKey, checked.priority, now - waitedUs, checked.timeoutUs, resolve, reject, this.#onAbort);
      this.#config.queue.push(request);
      if (request.timeoutUs > 0) this.#deadlines.push(request.enqueuedAt + request.timeoutUs, request);
      if (signal) {
        request.signal = signal;
        signal.addEventListener('abort', request, { once: true });
      }
      counters.submitted++;
      if (this.#config.coalesce) this.#pumpSoon();
      else this.#pump();
      this.#publishAdmission();
    });
  }

  /**
   * Refuses a request before anything of it is known (a transport that has its path and headers
   * but has not read its body): the QUEUE_FULL error `submit` would give any request now, counted
   * as `submit` counts it; undefined when one would be admitted (or refused for what it holds).
   */
  refuseEarly(): UmbraError | undefined {
    if (this.#state !== 'open') return undefined;
    this.#expire(this.#config.now());
    const admission = this.#admissionNow();
    if (admission === 0) return undefined;
    this.#counters.rejectedQueueFull++;
    return this.refusal(admission);
  }

  /** Counts a refusal made elsewhere on this batcher's published state (another thread's transport). */
  countRefused(): void {
    this.#counters.rejectedQueueFull++;
  }

  /** The error of a refusal for `admission` (not 0). */
  refusal(admission: AdmissionState): UmbraError {
    if (admission === QUEUE_STANDS) {
      const sojourn = this.#sojourn!;
      return new UmbraError('QUEUE_FULL', `the queue stands: requests have left it after more than its budget of ${formatMs(sojourn.budgetUs)} for over ${formatMs(sojourn.intervalUs)}; retry later`, { retryAfter: 1 });
    }
    return new UmbraError('QUEUE_FULL', `the queue holds its limit of ${this.#config.maxQueueSize} requests (queued, or staged on a busy slot); retry later`, { retryAfter: 1 });
  }

  /** Whether any request would be refused now, whatever it holds (see AdmissionState). */
  #admissionNow(): AdmissionState {
    if (this.#state !== 'open') return 0;
    const config = this.#config;
    if (config.maxQueueSize > 0 && config.queue.size + this.#stagedRequests() >= config.maxQueueSize) return QUEUE_AT_BOUND;
    // A standing queue refuses arrivals until it drains; an empty one never does (no batch leaves
    // it to say it stopped standing).
    if (this.#queueStands && this.#sojourn && config.queue.size > 0) return QUEUE_STANDS;
    return 0;
  }

  /** Tells onAdmission when the state changed (after anything that moves requests in or out of the queue). */
  #publishAdmission(): void {
    const listener = this.#config.onAdmission;
    if (!listener) return;
    const admission = this.#admissionNow();
    if (admission === this.#admission) return;
    this.#admission = admission;
    listener(admission);
  }

  /** Requests in batches sent while every slot was busy, not yet started (see #inFlightSizes). */
  #stagedRequests(): number {
    const sizes = this.#inFlightSizes;
    let staged = 0;
    for (let i = this.#config.maxInFlight; i < sizes.length; i++) staged += sizes[i]!;
    return staged;
  }

  /** Requests queued (not rows). */
  get pending(): number {
    return this.#config.queue.size;
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
    for (const request of [...this.#config.queue] as Pending<P, R>[]) {
      this.#leave(request);
      this.#counters.closed++;
      request.reject(error);
    }
    this.#deadlines.clear();
    this.#publishAdmission();
    this.#checkDrained();
  }

  stats(): BatcherStats {
    return { ...this.#counters, pending: this.#config.queue.size, inFlight: this.#inFlight, executingRequests: this.#executingRequests, stagedRequests: this.#stagedRequests() };
  }

  /** One pump after the current I/O phase, however many requests arrive in it. */
  #pumpSoon(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
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
        now = this.#config.now();
        this.#expire(now);
        this.#delayWakeAt = Infinity;
        const config = this.#config;
        while (config.queue.size > 0) {
          const staged = this.#inFlight >= config.maxInFlight;
          if (staged && this.#inFlight >= config.maxInFlight + config.maxStaged) break;
          const batch = this.#plan(now, staged);
          if (!batch) break;
          this.#dispatch(batch, now, staged);
        }
      } while (this.#repump);
      this.#arm(now);
    } finally {
      this.#pumping = false;
    }
    this.#publishAdmission();
  }

  /**
   * The batch to send now, or null when it should wait to fill (with #delayWakeAt set, when a
   * slot is free). With `fullOnly` (every slot busy, staging) only a full batch is sent.
   */
  #plan(now: number, fullOnly: boolean): Pending<P, R>[] | null {
    // The queue only ever holds requests this batcher pushed.
    const walk = this.#config.queue[Symbol.iterator]() as Iterator<Pending<P, R>>;
    const first = walk.next();
    if (first.done) return null;
    const head = first.value;
    if (this.#config.maxBatchSize === 0) return [head];
    const batch = [head];
    let rows = head.rows;
    let oldest = head.enqueuedAt;
    let preferredCount = this.#config.preferred.has(rows) ? 1 : 0;
    while (rows < this.#config.maxBatchSize) {
      const next = walk.next();
      if (next.done) break;
      const request = next.value;
      if (request.shapeKey !== head.shapeKey) continue;
      if (rows + request.rows > this.#config.maxBatchSize) break;
      batch.push(request);
      rows += request.rows;
      if (request.enqueuedAt < oldest) oldest = request.enqueuedAt;
      if (this.#config.preferred.has(rows)) preferredCount = batch.length;
    }
    if (rows >= this.#config.maxBatchSize) return batch;
    if (fullOnly) return null;
    if (this.#state !== 'open' || now - oldest >= this.#config.maxQueueDelayUs) return batch;
    // Nothing can join it: every client that could send is waiting on an answer already.
    if (this.#config.quiet?.()) {
      this.#counters.quietDispatches++;
      return batch;
    }
    if (preferredCount > 0) return batch.slice(0, preferredCount);
    this.#delayWakeAt = oldest + this.#config.maxQueueDelayUs;
    return null;
  }

  #dispatch(batch: Pending<P, R>[], now: number, staged: boolean): void {
    const counters = this.#counters;
    let rows = 0;
    let youngest = -Infinity;
    for (const request of batch) {
      this.#leave(request);
      rows += request.rows;
      counters.queueTimeUs += now - request.enqueuedAt;
      if (request.enqueuedAt > youngest) youngest = request.enqueuedAt;
    }
    if (this.#sojourn) this.#queueStands = this.#sojourn.refuse(now - youngest, now);
    counters.executions++;
    counters.inferences += rows;
    counters.executedRequests += batch.length;
    this.#inFlight++;
    this.#executingRequests += batch.length;
    this.#inFlightSizes.push(batch.length);
    let running: Promise<R[]>;
    try {
      running = Promise.resolve(this.#config.execute(batch.map((r) => r.payload), { rows, shapeKey: batch[0]!.shapeKey, staged }));
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
    this.#executingRequests -= batch.length;
    // Batches finish in about the order sent; which entry of this size goes does not matter.
    const sizes = this.#inFlightSizes;
    sizes.splice(sizes.indexOf(batch.length), 1);
    this.#counters.executeTimeUs += this.#config.now() - startedAt;
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

  /** One function for every request of this batcher (see Pending). */
  readonly #onAbort = (request: Pending<P, R>): void => {
    const signal = request.signal;
    if (!request.queued || !signal) return;
    this.#leave(request);
    this.#counters.aborted++;
    request.reject(abortReason(signal));
    this.#pump(); // the head may have changed, and with it the timer
    this.#checkDrained();
  };

  #leave(request: Pending<P, R>): void {
    request.queued = false;
    this.#config.queue.remove(request);
    const signal = request.signal;
    if (signal) {
      signal.removeEventListener('abort', request);
      request.signal = null;
    }
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
    this.#cancelTimer = this.#config.setTimer(() => {
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
    if (this.#state !== 'open' && this.#config.queue.size === 0 && this.#inFlight === 0 && this.#resolveDrained) {
      this.#resolveDrained();
      this.#resolveDrained = null;
    }
  }
}

function abortReason(signal: AbortLike): unknown {
  if (signal.reason !== undefined) return signal.reason;
  const error = new Error('the request was aborted');
  error.name = 'AbortError';
  return error;
}
