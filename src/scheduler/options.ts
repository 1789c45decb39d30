// The batcher's options and what it reports, with the checks that turn raw options (from a
// model config, possibly from JavaScript) into a normalised configuration.

import { invalid } from '../errors.js';
import type { AbortLike } from './cancellation.js';
import { PriorityRequestQueue, isRequestQueue, type RequestQueue } from './queue.js';

/** What `execute` is told about the batch besides its payloads. */
export interface BatchInfo {
  rows: number;
  shapeKey: string;
  /**
   * Sent while every execution slot was busy (see `maxStaged`): the executor should hold it on
   * an instance that is running, to start the moment that instance is free.
   */
  staged: boolean;
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
  /**
   * 0 = none; else once every request for an interval (this, at least 100 ms) has already waited
   * longer than this when submitted (behind a busy thread, before it could reach the queue: see
   * SubmitOptions.waitedUs), late requests are refused with QUEUE_FULL until one comes in time:
   * the server is behind, and queueing them would only make them later (see backlog.ts).
   */
  admissionBudgetUs?: number;
  /** 0 = none; a request's own timeout may only be shorter. */
  defaultTimeoutUs: number;
  /** 0 or 1 = a single level; else levels 1..N, 1 the highest. */
  priorityLevels: number;
  /** Level for requests that name none; 0 = the lowest level. */
  defaultPriorityLevel: number;
  /** Concurrent executions (e.g. the number of workers). */
  maxInFlight: number;
  /**
   * Full batches that may be sent while all maxInFlight slots are busy (default 0). An executor
   * that can hold one waiting batch per instance then starts it the moment the running one ends,
   * instead of after the result has gone back through a busy event loop and the next batch has
   * come out again. Only a full batch (maxBatchSize rows; any one request of a model that does
   * not batch) is staged: a partial one still waits for a free slot and may fill meanwhile.
   */
  maxStaged?: number;
  /** Runs one batch; answers one result per payload, in order. */
  execute: (items: P[], batch: BatchInfo) => Promise<R[]>;
  /** Monotonic clock in microseconds (tests inject one). */
  now?: () => number;
  /** Timer to pair with `now` (tests inject one); the default is a setTimeout. */
  setTimer?: SetTimer;
  /** Another queue policy; must be empty. Checked with `isRequestQueue`. */
  queue?: RequestQueue;
  /**
   * Dispatch after the current I/O phase instead of inside `submit`, so requests that arrive in
   * one event-loop turn share a batch even with no queue delay (for executors that run on the
   * event-loop thread, where nothing else can queue up while a batch runs).
   */
  coalesce?: boolean;
  /**
   * Asked when a partial batch would wait to fill: true when no request can arrive meanwhile
   * (every client of the thread is already waiting on an answer; see arrivals.ts), and the batch
   * is sent at once instead of after its delay. Absent: batches always wait as configured.
   */
  quiet?: () => boolean;
  /**
   * Told whenever whether the batcher would refuse any request now changes (see AdmissionState):
   * a transport may then refuse a request before it reads the body (src/core/admission.ts).
   */
  onAdmission?: (state: AdmissionState) => void;
}

/**
 * Whether a request would be refused now whatever it holds: 0 admits; QUEUE_AT_BOUND, the queue
 * (with the batches staged on busy slots) holds its bound; QUEUE_STANDS, requests have left the
 * queue past its budget for an interval and some still wait.
 */
export type AdmissionState = 0 | typeof QUEUE_AT_BOUND | typeof QUEUE_STANDS;
export const QUEUE_AT_BOUND = 1;
export const QUEUE_STANDS = 2;

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
  signal?: AbortLike;
  /**
   * How long the request had already waited when submitted (since the transport read it). It
   * counts as queue time: toward its timeout, its batch's delay, and the admission budget.
   */
  waitedUs?: number;
}

export type BatcherState = 'open' | 'draining' | 'closed';

/**
 * One queue's counts: requests waiting, batches running, requests in them. An I/O thread's
 * replica of an inline version reports these, and the core adds them to the version's own for
 * umbra_pending_requests and umbra_inflight_requests.
 */
export interface QueueCounts {
  pending: number;
  inFlight: number;
  executingRequests: number;
  /** The queue's bound (max_queue_size in force, 0 = unbounded); summed over queues, their bounds together. */
  maxQueueSize: number;
  /** (pending + staged) / maxQueueSize of the fullest bounded queue (0 when none is bounded): summed over queues, their maximum. */
  fullest: number;
}

/**
 * How full a queue is against its bound; 0 for an unbounded one. `held` is what the bound counts:
 * requests queued plus those staged on a busy slot (BatcherStats pending + stagedRequests), so it
 * reads 1 when the queue refuses.
 */
export function queueFill(held: number, maxQueueSize: number): number {
  return maxQueueSize > 0 ? held / maxQueueSize : 0;
}

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
  /** Partial batches sent before their delay because no request could arrive (the `quiet` option). */
  quietDispatches: number;
  pending: number;
  /** Batches executing now. */
  inFlight: number;
  /** Requests in the batches executing now (pending + executingRequests = admitted, not yet answered). */
  executingRequests: number;
  /** Of executingRequests, those in batches staged on a busy slot, not started: the queue bound counts them with pending. */
  stagedRequests: number;
}

/** Options after checking, with defaults filled in and priorities mapped to concrete levels. */
export interface BatcherConfig<P, R> {
  maxBatchSize: number;
  maxQueueDelayUs: number;
  preferred: ReadonlySet<number>;
  maxQueueSize: number;
  admissionBudgetUs: number;
  defaultTimeoutUs: number;
  levels: number;
  defaultLevel: number;
  maxInFlight: number;
  maxStaged: number;
  execute: BatcherOptions<P, R>['execute'];
  now: () => number;
  setTimer: SetTimer;
  queue: RequestQueue;
  coalesce: boolean;
  quiet: (() => boolean) | null;
  onAdmission: ((state: AdmissionState) => void) | null;
}

/** A submit's options after checking: a concrete level and the effective timeout (0 = none). */
export interface CheckedSubmit {
  rows: number;
  priority: number;
  timeoutUs: number;
  /** Time already waited before the submit (0 when not given). */
  waitedUs: number;
}

/** Monotonic microseconds. */
const defaultNow = (): number => performance.now() * 1000;

// Kept referenced: the timer is armed only while requests are queued, and someone is awaiting
// them; an embedded caller (no server socket) would otherwise see its process exit mid-request.
const defaultSetTimer: SetTimer = (callback, delayUs) => {
  const handle = setTimeout(callback, Math.ceil(delayUs / 1000));
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

/** Check every option; throws INVALID_ARGUMENT worded "expected X for Y but received Z". */
export function resolveBatcherOptions<P, R>(options: BatcherOptions<P, R>): BatcherConfig<P, R> {
  const maxBatchSize = checkInteger(options.maxBatchSize, 0, 'maxBatchSize');
  const maxQueueDelayUs = checkDuration(options.maxQueueDelayUs, 'maxQueueDelayUs');
  if (!Array.isArray(options.preferredBatchSizes)) throw invalid('INVALID_ARGUMENT', 'an array', 'preferredBatchSizes', options.preferredBatchSizes);
  for (const size of options.preferredBatchSizes) {
    checkInteger(size, 1, 'a preferred batch size');
    if (maxBatchSize > 0 && size > maxBatchSize) throw invalid('INVALID_ARGUMENT', `at most maxBatchSize (${maxBatchSize})`, 'a preferred batch size', size);
  }
  const maxQueueSize = checkInteger(options.maxQueueSize, 0, 'maxQueueSize');
  const admissionBudgetUs = checkDuration(options.admissionBudgetUs ?? 0, 'admissionBudgetUs');
  const defaultTimeoutUs = checkDuration(options.defaultTimeoutUs, 'defaultTimeoutUs');
  const levels = Math.max(1, checkInteger(options.priorityLevels, 0, 'priorityLevels'));
  const defaultLevel = checkInteger(options.defaultPriorityLevel, 0, 'defaultPriorityLevel');
  if (levels > 1 && defaultLevel > levels) throw invalid('INVALID_ARGUMENT', `a level in 1..${levels}`, 'defaultPriorityLevel', defaultLevel);
  const maxInFlight = checkInteger(options.maxInFlight, 1, 'maxInFlight');
  const maxStaged = checkInteger(options.maxStaged ?? 0, 0, 'maxStaged');
  if (typeof options.execute !== 'function') throw invalid('INVALID_ARGUMENT', 'a function', 'execute', options.execute);
  if (options.onAdmission !== undefined && typeof options.onAdmission !== 'function') throw invalid('INVALID_ARGUMENT', 'a function', 'onAdmission', options.onAdmission);
  if (options.queue !== undefined) {
    if (!isRequestQueue(options.queue)) throw invalid('INVALID_ARGUMENT', 'an object with size, push, remove and an iterator', 'queue', options.queue);
    if (options.queue.size !== 0) throw invalid('INVALID_ARGUMENT', 'an empty queue', 'queue', options.queue.size);
  }
  return {
    maxBatchSize,
    maxQueueDelayUs,
    preferred: new Set(options.preferredBatchSizes),
    maxQueueSize,
    admissionBudgetUs,
    defaultTimeoutUs,
    levels,
    // Unprioritised traffic should not pre-empt anything, so "no default" means the lowest level.
    defaultLevel: levels === 1 ? 1 : defaultLevel === 0 ? levels : defaultLevel,
    maxInFlight,
    maxStaged,
    execute: options.execute,
    now: options.now ?? defaultNow,
    setTimer: options.setTimer ?? defaultSetTimer,
    queue: options.queue ?? new PriorityRequestQueue(levels),
    coalesce: options.coalesce === true,
    quiet: options.quiet ?? null,
    onAdmission: options.onAdmission ?? null,
  };
}

/** Check one submit against the configuration; throws INVALID_INPUT (the request is at fault). */
export function checkSubmitOptions(
  config: Pick<BatcherConfig<unknown, unknown>, 'maxBatchSize' | 'levels' | 'defaultLevel' | 'defaultTimeoutUs'>,
  options: SubmitOptions,
): CheckedSubmit {
  if (typeof options !== 'object' || options === null) throw invalid('INVALID_INPUT', 'an object', 'the submit options', options);
  const { rows, shapeKey, priority, timeoutUs } = options;
  if (typeof rows !== 'number' || !Number.isInteger(rows) || rows < 1) throw invalid('INVALID_INPUT', 'a positive integer', 'the batch size of the request', rows);
  if (config.maxBatchSize > 0 && rows > config.maxBatchSize) {
    throw invalid('INVALID_INPUT', `at most ${config.maxBatchSize} (the model's max batch size)`, 'the batch size of the request', rows);
  }
  if (typeof shapeKey !== 'string') throw invalid('INVALID_INPUT', 'a string', 'the shape key', shapeKey);
  let level = config.defaultLevel;
  if (priority !== undefined && priority !== 0) {
    if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < 0) throw invalid('INVALID_INPUT', 'a non-negative integer', 'the priority', priority);
    if (config.levels > 1) {
      if (priority > config.levels) throw invalid('INVALID_INPUT', `a level in 1..${config.levels}`, 'the priority', priority);
      level = priority;
    }
  }
  let timeout = config.defaultTimeoutUs;
  if (timeoutUs !== undefined && timeoutUs !== 0) {
    if (typeof timeoutUs !== 'number' || !Number.isFinite(timeoutUs) || timeoutUs < 0) throw invalid('INVALID_INPUT', 'a non-negative number of microseconds', 'the timeout', timeoutUs);
    timeout = timeout > 0 ? Math.min(timeout, timeoutUs) : timeoutUs;
  }
  const waited = options.waitedUs;
  // The transport's own clock reading; a negative or missing one (clock skew) counts as none.
  const waitedUs = typeof waited === 'number' && Number.isFinite(waited) && waited > 0 ? waited : 0;
  return { rows, priority: level, timeoutUs: timeout, waitedUs };
}

/** The default queue-time budget is this many of the model's measured batch times... */
export const QUEUE_BUDGET_BATCHES = 4;
/** ...and at least this long, so a very cheap model still queues enough to batch under load. */
export const QUEUE_BUDGET_FLOOR_MS = 25;

/** A version's queue bound and the evidence it rests on (logged at load and shown in its metadata). */
export interface QueueBound {
  /** The most requests queued; 0 = unbounded (only when a config says so). */
  maxQueueSize: number;
  /** 'config': max_queue_size was set; 'derived': computed from the measured batch time and the budget. */
  source: 'config' | 'derived';
  /** How long an admitted request may wait before it runs; undefined for a config bound with no budget. */
  budgetMs?: number;
  /** Where the budget came from: the model's parameters.queue_budget_ms, or the default rule. */
  budgetSource?: 'parameters.queue_budget_ms' | 'default';
  /** The measured batch: its rows and fastest run time at warm-up, and the batches that may run at once. */
  batchRows?: number;
  batchMs?: number;
  /** The length the probe gave inputs' dynamic dims besides the batch, for a model that has them. */
  batchLength?: number;
  slots?: number;
}

export interface QueueBoundInput {
  /** Fastest run time of a `batchRows` batch at warm-up, in µs. */
  batchMicros: number;
  batchRows: number;
  /** The probe's length for inputs' dynamic dims besides the batch, where the model has them. */
  batchLength?: number;
  /** Batches of this version that may run at once (workers, instances, 1 inline). */
  slots: number;
  /** The model's max batch size (0 = it does not batch). */
  maxBatchSize: number;
  /** parameters.queue_budget_ms, when the config sets it. */
  budgetMs?: number;
}

/**
 * The default queue bound: as many requests as the version's slots can run within the queue-time
 * budget at the measured rate (one row per request), once the batch running on a slot is done,
 * so an admitted request waits about the budget at most before it runs and everything past it is
 * refused at once (503, Retry-After) instead of waiting longer and holding memory. Under load the
 * batch an arrival first waits for is a full one: its time, taken from the measured batch with
 * rows costing at most linearly, comes off the budget (without it an arrival at the bound waited
 * the budget and a full batch more, about three batch times of a heavy model in all). The budget
 * defaults to QUEUE_BUDGET_BATCHES measured batch times (at least QUEUE_BUDGET_FLOOR_MS): under
 * overload an answer then takes a few times what the model itself costs, not an unbounded queue's
 * worth. Never below one full batch per slot, so batching still fills its batches under load.
 */
export function deriveQueueBound(input: QueueBoundInput): QueueBound {
  const batchMs = Math.max(input.batchMicros, 1) / 1000;
  const budgetMs = input.budgetMs ?? Math.max(QUEUE_BUDGET_FLOOR_MS, QUEUE_BUDGET_BATCHES * batchMs);
  const slots = Math.max(1, input.slots);
  const runningMs = input.maxBatchSize > 0 ? batchMs * Math.max(1, input.maxBatchSize / input.batchRows) : batchMs;
  const runnable = Math.ceil((Math.max(0, budgetMs - runningMs) / batchMs) * input.batchRows * slots);
  const fullBatches = Math.max(1, input.maxBatchSize) * slots;
  return {
    maxQueueSize: Math.max(runnable, fullBatches),
    source: 'derived',
    budgetMs: round(budgetMs),
    budgetSource: input.budgetMs === undefined ? 'default' : 'parameters.queue_budget_ms',
    batchRows: input.batchRows,
    batchMs: round(batchMs),
    ...(input.batchLength !== undefined ? { batchLength: input.batchLength } : {}),
    slots,
  };
}

/** One line for the serve log. */
export function describeQueueBound(bound: QueueBound): string {
  if (bound.source === 'config') {
    const limit = bound.maxQueueSize === 0 ? 'unbounded (max_queue_size 0 in its config)' : `${bound.maxQueueSize} requests (max_queue_size in its config)`;
    return `queue ${limit}${bound.budgetMs === undefined ? '' : `, refusing requests that waited ${bound.budgetMs} ms before reaching it`}`;
  }
  const budget = bound.budgetSource === 'default'
    ? `a ${bound.budgetMs} ms queue budget (${QUEUE_BUDGET_BATCHES} batch times, at least ${QUEUE_BUDGET_FLOOR_MS} ms; parameters.queue_budget_ms sets another)`
    : `a ${bound.budgetMs} ms queue budget (parameters.queue_budget_ms)`;
  return `queue bound ${bound.maxQueueSize} requests, derived from a ${bound.batchRows}-row batch${bound.batchLength !== undefined ? ` of length ${bound.batchLength}` : ''} measured at ${bound.batchMs} ms at warm-up, ${bound.slots} batch${bound.slots === 1 ? '' : 'es'} at once and ${budget}; beyond it requests get 503 with Retry-After`;
}

const round = (ms: number): number => Number(ms.toPrecision(3));
