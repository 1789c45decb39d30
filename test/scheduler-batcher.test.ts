import t from 'tap';
import { DynamicBatcher, type BatchInfo, type BatcherOptions, type SubmitOptions } from '../dist/scheduler/batcher.js';
import { UmbraError } from '../dist/errors.js';
import { Cancellation } from '../dist/scheduler/cancellation.js';
import { seededRandom as mulberry32 } from '../dist/random.js';
import { property } from './helpers/property.js';

// A fake clock with a fake timer list, and an execute whose batches the test answers by hand, so
// every step is explicit: nothing here waits on real time.

interface Call {
  items: number[];
  info: BatchInfo;
  resolve(results: number[]): void;
  reject(err: unknown): void;
}

interface Outcome<T> {
  state: 'pending' | 'resolved' | 'rejected';
  value?: T;
  error?: unknown;
}

function track<T>(promise: Promise<T>): Outcome<T> {
  const outcome: Outcome<T> = { state: 'pending' };
  promise.then(
    (value) => { outcome.state = 'resolved'; outcome.value = value; },
    (error: unknown) => { outcome.state = 'rejected'; outcome.error = error; },
  );
  return outcome;
}

/** Let every queued promise callback run (a macrotask boundary, not a wait on time). */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const answerOf = (x: number): number => x * 10 + 1;

function harness(overrides: Partial<BatcherOptions<number, number>> = {}) {
  let now = 1_000_000;
  const timers: { at: number; fn: () => void; live: boolean }[] = [];
  const calls: Call[] = [];
  let maxTimers = 0;
  const batcher = new DynamicBatcher<number, number>({
    maxBatchSize: 8,
    maxQueueDelayUs: 1000,
    preferredBatchSizes: [],
    maxQueueSize: 0,
    defaultTimeoutUs: 0,
    priorityLevels: 0,
    defaultPriorityLevel: 0,
    maxInFlight: 1,
    execute: (items, info) => new Promise<number[]>((resolve, reject) => { calls.push({ items, info, resolve, reject }); }),
    now: () => now,
    setTimer: (fn, delayUs) => {
      const timer = { at: now + delayUs, fn, live: true };
      timers.push(timer);
      maxTimers = Math.max(maxTimers, timers.filter((x) => x.live).length);
      return () => { timer.live = false; };
    },
    ...overrides,
  });
  const h = {
    batcher,
    calls,
    /** Most timers ever armed at once. */
    get maxTimers() { return maxTimers; },
    liveTimers: () => timers.filter((x) => x.live).length,
    /** Move the clock and fire due timers in order, as an event loop would. */
    advance(us: number) {
      now += us;
      for (;;) {
        const due = timers.filter((x) => x.live && x.at <= now).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        due.live = false;
        due.fn();
      }
    },
    /** Move the clock without firing anything (a timer that has not run yet). */
    skew(us: number) { now += us; },
    submit(payload: number, options: Partial<SubmitOptions> = {}) {
      return track(batcher.submit(payload, { rows: 1, shapeKey: 's', ...options }));
    },
    answer(index: number) {
      const call = calls[index]!;
      call.resolve(call.items.map(answerOf));
    },
  };
  return h;
}

const payloadsOf = (calls: Call[]): number[][] => calls.map((c) => c.items);

t.test('a batch never exceeds maxBatchSize rows; full batches go at once, the rest after the delay', async (t) => {
  const h = harness({ maxBatchSize: 4 });
  const outcomes = Array.from({ length: 10 }, (_, i) => h.submit(i));
  t.same(payloadsOf(h.calls), [[0, 1, 2, 3]], 'the first four fill a batch at once');
  h.answer(0);
  await flush();
  t.same(payloadsOf(h.calls), [[0, 1, 2, 3], [4, 5, 6, 7]]);
  h.answer(1);
  await flush();
  t.equal(h.calls.length, 2, 'two left over wait for the delay');
  h.advance(1000);
  t.same(payloadsOf(h.calls)[2], [8, 9]);
  h.answer(2);
  await flush();
  t.same(outcomes.map((o) => o.value), Array.from({ length: 10 }, (_, i) => answerOf(i)));

  const rows = harness({ maxBatchSize: 4, maxQueueDelayUs: 0, maxInFlight: 1 });
  rows.submit(100, { rows: 1 });
  rows.submit(1, { rows: 3 });
  rows.submit(2, { rows: 3 });
  rows.submit(3, { rows: 1 });
  rows.answer(0);
  await flush();
  t.same(rows.calls[1]!.items, [1], '3 + 3 rows do not fit in 4; the walk stops at the first misfit');
  t.equal(rows.calls[1]!.info.rows, 3);
  rows.answer(1);
  await flush();
  t.same(rows.calls[2]!.items, [2, 3]);
  t.same(rows.calls[2]!.info, { rows: 4, shapeKey: 's', staged: false });
});

t.test('a request with more rows than maxBatchSize is refused with INVALID_INPUT', async (t) => {
  const h = harness({ maxBatchSize: 4 });
  const big = h.submit(1, { rows: 5 });
  const zero = h.submit(2, { rows: 0 });
  await flush();
  t.equal(big.state, 'rejected');
  t.match(big.error, { code: 'INVALID_INPUT', status: 400 });
  t.match((big.error as Error).message, /expected at most 4 .* but received number 5/);
  t.match(zero.error, { code: 'INVALID_INPUT' });
  t.equal(h.batcher.pending, 0);
  t.equal(h.batcher.stats().rejectedInvalid, 2);
});

t.test('a preferred size sends at once when reached exactly', async (t) => {
  const h = harness({ maxBatchSize: 8, preferredBatchSizes: [4] });
  h.submit(1, { rows: 1 });
  h.submit(2, { rows: 2 });
  t.equal(h.calls.length, 0, '3 rows: waiting');
  h.submit(3, { rows: 1 });
  t.same(payloadsOf(h.calls), [[1, 2, 3]], '4 rows: sent without waiting for the delay');

  const exact = harness({ maxBatchSize: 8, preferredBatchSizes: [4], maxInFlight: 2 });
  exact.submit(1, { rows: 3 });
  exact.submit(2, { rows: 2 });
  t.equal(exact.calls.length, 0, '3 then 5 rows never equal 4: the batch waits');
  exact.advance(1000);
  t.same(payloadsOf(exact.calls), [[1, 2]]);

  const largest = harness({ maxBatchSize: 8, preferredBatchSizes: [2, 4], maxQueueDelayUs: 1000 });
  largest.submit(0, { rows: 2 });
  t.same(payloadsOf(largest.calls), [[0]], 'one request alone can already be a preferred size');
  for (let i = 1; i <= 5; i++) largest.submit(i);
  largest.answer(0);
  await flush();
  t.same(largest.calls[1]!.items, [1, 2, 3, 4], 'the largest preferred prefix goes; the rest waits');
  t.equal(largest.batcher.pending, 1);
});

t.test('the delay sends a partial batch once the oldest request has waited maxQueueDelayUs', async (t) => {
  const h = harness({ maxBatchSize: 8, maxQueueDelayUs: 1000 });
  h.submit(1);
  h.advance(400);
  h.submit(2);
  h.advance(599);
  t.equal(h.calls.length, 0);
  t.equal(h.liveTimers(), 1);
  h.advance(1);
  t.same(payloadsOf(h.calls), [[1, 2]], 'measured from the oldest, not the newest');
  t.equal(h.liveTimers(), 0, 'no timer left once the queue is empty');
  t.equal(h.maxTimers, 1, 'never more than one timer');
});

t.test('requests accumulate while every slot is busy', async (t) => {
  const h = harness({ maxBatchSize: 16, maxQueueDelayUs: 0, maxInFlight: 1 });
  h.submit(0);
  t.same(payloadsOf(h.calls), [[0]], 'delay 0 and a free slot: sent at once');
  for (let i = 1; i <= 5; i++) h.submit(i);
  t.equal(h.calls.length, 1);
  t.equal(h.batcher.pending, 5);
  h.answer(0);
  await flush();
  t.same(h.calls[1]!.items, [1, 2, 3, 4, 5], 'the backlog goes as one batch when the slot frees');
});

t.test('higher priority first, FIFO within a level; a batch fills across levels in that order', async (t) => {
  const one = harness({ maxBatchSize: 1, priorityLevels: 3, defaultPriorityLevel: 2, maxInFlight: 1 });
  one.submit(0, { priority: 1 }); // runs at once, holding the only slot
  one.submit(31, { priority: 3 });
  one.submit(21);
  one.submit(11, { priority: 1 });
  one.submit(22, { priority: 2 });
  one.submit(12, { priority: 1 });
  one.submit(32, { priority: 3 });
  for (let i = 0; i < 7; i++) {
    one.answer(i);
    await flush();
  }
  t.same(payloadsOf(one.calls).flat(), [0, 11, 12, 21, 22, 31, 32]);

  const many = harness({ maxBatchSize: 8, priorityLevels: 2, defaultPriorityLevel: 0, maxInFlight: 1, maxQueueDelayUs: 0 });
  many.submit(0);
  many.submit(20); // default 0 = the lowest level
  many.submit(10, { priority: 1 });
  many.submit(21, { priority: 2 });
  many.answer(0);
  await flush();
  t.same(many.calls[1]!.items, [10, 20, 21]);

  const bad = harness({ priorityLevels: 2, defaultPriorityLevel: 1 });
  const outcome = bad.submit(1, { priority: 3 });
  await flush();
  t.match(outcome.error, { code: 'INVALID_INPUT' });
});

t.test('shape keys never mix and each key keeps its order', async (t) => {
  const h = harness({ maxBatchSize: 8, maxQueueDelayUs: 0, maxInFlight: 1 });
  h.submit(0, { shapeKey: 'x' });
  h.submit(1, { shapeKey: 'a' });
  h.submit(2, { shapeKey: 'b' });
  h.submit(3, { shapeKey: 'a' });
  h.submit(4, { shapeKey: 'b' });
  h.submit(5, { shapeKey: 'a' });
  for (let i = 0; i < 3; i++) {
    h.answer(i);
    await flush();
  }
  t.same(payloadsOf(h.calls), [[0], [1, 3, 5], [2, 4]]);
  t.same(h.calls.map((c) => c.info.shapeKey), ['x', 'a', 'b']);

  // The head's key decides even when another key could fill a whole batch right now.
  const head = harness({ maxBatchSize: 2, maxQueueDelayUs: 1000, maxInFlight: 2 });
  head.submit(1, { shapeKey: 'a' });
  head.submit(2, { shapeKey: 'b' });
  head.submit(3, { shapeKey: 'b' });
  t.equal(head.calls.length, 0, 'b is full but waits behind a');
  head.advance(1000);
  t.same(payloadsOf(head.calls), [[1], [2, 3]]);
});

t.test('a full queue rejects at once with QUEUE_FULL and a Retry-After', async (t) => {
  const h = harness({ maxBatchSize: 1, maxQueueSize: 2, maxInFlight: 1 });
  const running = h.submit(0);
  const a = h.submit(1);
  const b = h.submit(2);
  const c = h.submit(3);
  await flush();
  t.equal(c.state, 'rejected');
  t.ok(c.error instanceof UmbraError);
  t.match(c.error, { code: 'QUEUE_FULL', status: 503, retryAfter: 1 });
  t.equal(h.batcher.pending, 2, 'the running batch does not count against the queue');
  t.equal(h.batcher.stats().rejectedQueueFull, 1);
  h.answer(0);
  await flush();
  const d = h.submit(4);
  t.equal(h.batcher.pending, 2, 'room again once one left the queue');
  t.equal(running.state, 'resolved');
  t.equal(a.state, 'pending');
  t.equal(b.state, 'pending');
  t.equal(d.state, 'pending');
});

t.test('a request whose timeout expires while queued is rejected with TIMEOUT and never executed', async (t) => {
  const h = harness({ maxBatchSize: 4, maxQueueDelayUs: 0, maxInFlight: 1, defaultTimeoutUs: 500 });
  h.submit(0);
  const late = h.submit(1);
  h.advance(499);
  await flush();
  t.equal(late.state, 'pending');
  h.advance(1);
  await flush();
  t.match(late.error, { code: 'TIMEOUT', status: 504 });
  t.match((late.error as Error).message, /timeout of 0\.5 ms/);
  h.answer(0);
  await flush();
  t.equal(h.calls.length, 1, 'nothing else ran');

  // Even when the clock passes the deadline before the timer gets to run, dispatch checks first.
  const skewed = harness({ maxBatchSize: 4, maxQueueDelayUs: 0, maxInFlight: 1, defaultTimeoutUs: 500 });
  skewed.submit(0);
  const expired = skewed.submit(1);
  const fresh = skewed.submit(2, { shapeKey: 'other' });
  skewed.skew(600);
  skewed.answer(0);
  await flush();
  t.match(expired.error, { code: 'TIMEOUT' });
  t.same(payloadsOf(skewed.calls), [[0]], 'the expired one and the one queued with it are gone');
  t.match(fresh.error, { code: 'TIMEOUT' });
  t.equal(skewed.batcher.stats().timeouts, 2);
});

t.test('a per-request timeout may only be shorter than the default', async (t) => {
  const h = harness({ maxBatchSize: 1, maxInFlight: 1, defaultTimeoutUs: 1000 });
  h.submit(0);
  const longer = h.submit(1, { timeoutUs: 5000 });
  const shorter = h.submit(2, { timeoutUs: 200 });
  h.advance(200);
  await flush();
  t.equal(shorter.state, 'rejected', 'its own shorter timeout applies');
  t.equal(longer.state, 'pending');
  h.advance(800);
  await flush();
  t.match(longer.error, { code: 'TIMEOUT' }, 'cut to the default');

  const none = harness({ maxBatchSize: 1, maxInFlight: 1, defaultTimeoutUs: 0 });
  none.submit(0);
  const own = none.submit(1, { timeoutUs: 300 });
  const forever = none.submit(2);
  none.advance(1_000_000);
  await flush();
  t.match(own.error, { code: 'TIMEOUT' }, 'without a default, a request may set its own');
  t.equal(forever.state, 'pending');
  t.ok(none.maxTimers <= 1);
});

t.test('an aborted signal removes the request from the queue', async (t) => {
  const h = harness({ maxBatchSize: 4, maxQueueDelayUs: 0, maxInFlight: 1 });
  h.submit(0);
  const controller = new AbortController();
  const gone = h.submit(1, { signal: controller.signal });
  const kept = h.submit(2);
  controller.abort();
  await flush();
  t.equal(gone.state, 'rejected');
  t.equal((gone.error as Error).name, 'AbortError');
  t.equal(h.batcher.pending, 1);
  h.answer(0);
  await flush();
  t.same(h.calls[1]!.items, [2]);
  h.answer(1);
  await flush();
  t.equal(kept.value, answerOf(2));

  const already = h.submit(3, { signal: AbortSignal.abort(new Error('client left')) });
  await flush();
  t.match((already.error as Error).message, 'client left');
  t.equal(h.batcher.stats().aborted, 2);
});

t.test('a transport Cancellation shared by many requests removes only those still queued', async (t) => {
  const h = harness({ maxBatchSize: 1, maxQueueDelayUs: 0, maxInFlight: 1 });
  const connection = new Cancellation();
  const running = h.submit(0, { signal: connection });
  const queued = [h.submit(1, { signal: connection }), h.submit(2, { signal: connection })];
  const other = h.submit(3);
  t.equal(h.calls.length, 1, 'request 0 executes, 1..3 wait');
  connection.abort();
  connection.abort(); // a second abort is a no-op
  await flush();
  t.same(queued.map((o) => o.state), ['rejected', 'rejected']);
  t.equal((queued[0]!.error as Error).name, 'AbortError');
  t.equal(h.batcher.pending, 1, 'only the request without the cancellation is left');
  h.answer(0);
  await flush();
  t.equal(running.value, answerOf(0), 'a request already executing runs to the end');
  t.same(h.calls[1]!.items, [3]);
  h.answer(1);
  await flush();
  t.equal(other.value, answerOf(3));
  t.equal(h.batcher.stats().aborted, 2);

  // A request that leaves the queue normally detaches its listener: a later abort touches nothing.
  const later = new Cancellation();
  let calls = 0;
  later.addEventListener('abort', () => { calls += 1; });
  const done = h.submit(4, { signal: later });
  h.answer(2);
  await flush();
  t.equal(done.value, answerOf(4));
  later.abort(new Error('gone'));
  t.equal(calls, 1, 'only the test\'s own listener ran');
  t.match((later.reason as Error).message, 'gone');
  const refused = h.submit(5, { signal: later });
  await flush();
  t.match((refused.error as Error).message, 'gone', 'an aborted cancellation refuses at submit');
});

t.test('a failing execute rejects only its own batch and the batcher carries on', async (t) => {
  const h = harness({ maxBatchSize: 2, maxQueueDelayUs: 1000, maxInFlight: 2 });
  const a = [h.submit(1), h.submit(2)];
  const b = [h.submit(3), h.submit(4)];
  t.equal(h.calls.length, 2);
  const boom = new Error('worker crashed');
  h.calls[0]!.reject(boom);
  h.answer(1);
  await flush();
  t.same(a.map((o) => o.error), [boom, boom]);
  t.same(b.map((o) => o.value), [answerOf(3), answerOf(4)]);
  t.equal(h.batcher.inFlight, 0);
  t.equal(h.batcher.stats().failedRequests, 2);

  const after = h.submit(5);
  h.advance(1000);
  h.answer(2);
  await flush();
  t.equal(after.value, answerOf(5));

  let throws = true;
  const sync = new DynamicBatcher<number, number>({
    maxBatchSize: 2, maxQueueDelayUs: 0, preferredBatchSizes: [], maxQueueSize: 0, defaultTimeoutUs: 0,
    priorityLevels: 0, defaultPriorityLevel: 0, maxInFlight: 1,
    execute: (items) => {
      if (throws) throw new Error('thrown synchronously');
      return Promise.resolve(items.length === 1 ? [7, 8] : items);
    },
  });
  await t.rejects(sync.submit(1, { rows: 1, shapeKey: 's' }), { message: 'thrown synchronously' });
  throws = false;
  await t.rejects(sync.submit(1, { rows: 1, shapeKey: 's' }), { code: 'INTERNAL', message: /expected an array of 1 results/ });
  t.equal(sync.inFlight, 0);
});

t.test('drain sends what is queued, refuses new requests and waits for in-flight work', async (t) => {
  const h = harness({ maxBatchSize: 8, maxQueueDelayUs: 1_000_000, maxInFlight: 1, preferredBatchSizes: [1] });
  const first = h.submit(0);
  const queued = [h.submit(1), h.submit(2)];
  t.equal(h.calls.length, 1);
  const drained = track(h.batcher.drain());
  t.equal(h.batcher.state, 'draining');
  const refused = h.submit(3);
  await flush();
  t.match(refused.error, { code: 'NOT_READY', status: 503 });
  t.equal(drained.state, 'pending');
  h.answer(0);
  await flush();
  t.same(h.calls[1]!.items, [1, 2], 'sent without waiting out the long delay');
  t.equal(drained.state, 'pending', 'still one batch in flight');
  h.answer(1);
  await flush();
  t.equal(drained.state, 'resolved');
  t.equal(first.value, answerOf(0));
  t.same(queued.map((o) => o.value), [answerOf(1), answerOf(2)]);
  await h.batcher.drain(); // idempotent once drained

  const idle = harness();
  await idle.batcher.drain();
  t.pass('an idle batcher drains at once');
});

t.test('close rejects everything queued; batches in flight still finish', async (t) => {
  const h = harness({ maxBatchSize: 1, maxInFlight: 1, defaultTimeoutUs: 5000 });
  const running = h.submit(0);
  const queued = [h.submit(1), h.submit(2)];
  h.batcher.close();
  await flush();
  for (const o of queued) t.match(o.error, { code: 'NOT_READY', status: 503 });
  t.equal(h.batcher.pending, 0);
  t.equal(h.liveTimers(), 0, 'the timeout timer went with them');
  const refused = h.submit(3);
  h.answer(0);
  await flush();
  t.equal(running.value, answerOf(0));
  t.match(refused.error, { code: 'NOT_READY' });
  t.equal(h.calls.length, 1);
  t.equal(h.batcher.stats().closed, 2);

  const custom = harness({ maxBatchSize: 1, maxInFlight: 1 });
  custom.submit(0);
  const waiting = custom.submit(1);
  const reason = new UmbraError('MODEL_NOT_FOUND', 'unloaded');
  custom.batcher.close(reason);
  await flush();
  t.equal(waiting.error, reason);
});

t.test('maxBatchSize 0 runs every request alone, whatever its rows', async (t) => {
  const h = harness({ maxBatchSize: 0, maxQueueDelayUs: 1_000_000, maxInFlight: 1 });
  h.submit(0, { rows: 5 });
  h.submit(1);
  h.submit(2);
  t.same(payloadsOf(h.calls), [[0]], 'no waiting for a delay');
  h.answer(0);
  await flush();
  h.answer(1);
  await flush();
  t.same(payloadsOf(h.calls), [[0], [1], [2]]);
});

t.test('maxInFlight bounds concurrent executions', async (t) => {
  const h = harness({ maxBatchSize: 1, maxQueueDelayUs: 0, maxInFlight: 2 });
  for (let i = 0; i < 5; i++) h.submit(i);
  t.equal(h.batcher.inFlight, 2);
  t.equal(h.batcher.pending, 3);
  t.equal(h.calls.length, 2);
  h.answer(1);
  await flush();
  t.equal(h.calls.length, 3);
  t.equal(h.batcher.inFlight, 2);
  t.same(h.calls[2]!.items, [2]);
});

t.test('with maxStaged, a full batch goes while every slot is busy; a partial one waits for a slot', async (t) => {
  const h = harness({ maxBatchSize: 4, maxQueueDelayUs: 1000, maxInFlight: 1, maxStaged: 1 });
  for (let i = 0; i < 4; i++) h.submit(i);
  t.same(h.calls.map((c) => c.info.staged), [false], 'the first full batch takes the free slot');
  for (let i = 4; i < 7; i++) h.submit(i);
  h.advance(5000);
  t.equal(h.calls.length, 1, 'three rows are not a full batch: they wait for the slot, past their delay');
  h.submit(7);
  t.same(payloadsOf(h.calls), [[0, 1, 2, 3], [4, 5, 6, 7]], 'the fourth row fills it: staged behind the running one');
  t.equal(h.calls[1]!.info.staged, true);
  t.equal(h.batcher.inFlight, 2);
  for (let i = 8; i < 12; i++) h.submit(i);
  t.equal(h.calls.length, 2, 'maxStaged 1: a second full batch waits');
  h.answer(0);
  await flush();
  t.same(payloadsOf(h.calls)[2], [8, 9, 10, 11]);
  t.equal(h.calls[2]!.info.staged, true, 'the staged batch holds the freed slot, so the next full one is staged again');
  h.submit(12);
  h.answer(1);
  await flush();
  t.equal(h.calls.length, 3, 'the staged batch now holds the slot, and one request is no full batch');
  h.answer(2);
  await flush();
  t.equal(h.calls.length, 3, 'the slot is free, and the lone request waits for its delay');
  h.advance(1000);
  t.same(h.calls[3]!.items, [12]);
  t.equal(h.calls[3]!.info.staged, false);

  // A model that does not batch: any one request is a full batch.
  const alone = harness({ maxBatchSize: 0, maxInFlight: 2, maxStaged: 2 });
  for (let i = 0; i < 6; i++) alone.submit(i);
  t.same(alone.calls.map((c) => c.info.staged), [false, false, true, true]);
  t.equal(alone.batcher.pending, 2);
  t.throws(() => harness({ maxStaged: -1 }), { code: 'INVALID_ARGUMENT', message: /maxStaged/ });
});

t.test('a staged batch counts against the queue bound until it starts; a running one does not', async (t) => {
  const h = harness({ maxBatchSize: 2, maxQueueDelayUs: 1000, maxInFlight: 1, maxStaged: 1, maxQueueSize: 3 });
  for (let i = 0; i < 4; i++) h.submit(i);
  t.same(h.calls.map((c) => c.info.staged), [false, true], 'one batch runs, one full batch is staged');
  const queued = h.submit(4);
  const refused = h.submit(5);
  await flush();
  t.equal(queued.state, 'pending', 'one queued and two staged: under the bound of three');
  t.match(refused.error, { code: 'QUEUE_FULL', status: 503, retryAfter: 1, message: /staged/ });
  h.answer(0);
  await flush();
  t.equal(h.batcher.inFlight, 1, 'the staged batch now runs, and counts no more');
  const more = [h.submit(6), h.submit(7), h.submit(8)];
  await flush();
  t.same(payloadsOf(h.calls)[2], [4, 6], '4 and 6 fill a batch, staged behind the running one');
  t.same(more.map((o) => o.state), ['pending', 'pending', 'rejected'], 'two staged and 7 queued make three: 8 is refused');
});

t.test('stats count executions, rows and queue time', async (t) => {
  const h = harness({ maxBatchSize: 4, maxQueueDelayUs: 1000, maxInFlight: 1 });
  h.submit(0, { rows: 2 });
  h.advance(300);
  h.submit(1, { rows: 1 });
  h.advance(700);
  h.answer(0);
  await flush();
  const s = h.batcher.stats();
  t.equal(s.submitted, 2);
  t.equal(s.executions, 1);
  t.equal(s.inferences, 3);
  t.equal(s.executedRequests, 2);
  t.equal(s.queueTimeUs, 1000 + 700);
  t.equal(s.pending, 0);
  t.equal(s.inFlight, 0);
});

t.test('options are checked up front', async (t) => {
  const base: BatcherOptions<number, number> = {
    maxBatchSize: 4, maxQueueDelayUs: 0, preferredBatchSizes: [], maxQueueSize: 0, defaultTimeoutUs: 0,
    priorityLevels: 0, defaultPriorityLevel: 0, maxInFlight: 1, execute: async (items) => items,
  };
  t.throws(() => new DynamicBatcher({ ...base, maxBatchSize: -1 }), { code: 'INVALID_ARGUMENT' });
  t.throws(() => new DynamicBatcher({ ...base, maxInFlight: 0 }), { code: 'INVALID_ARGUMENT', message: /maxInFlight/ });
  t.throws(() => new DynamicBatcher({ ...base, preferredBatchSizes: [8] }), { message: /at most maxBatchSize/ });
  t.throws(() => new DynamicBatcher({ ...base, priorityLevels: 2, defaultPriorityLevel: 3 }), { code: 'INVALID_ARGUMENT' });
  t.throws(() => new DynamicBatcher({ ...base, maxQueueDelayUs: Number.NaN }), { code: 'INVALID_ARGUMENT' });
  t.throws(() => new DynamicBatcher({ ...base, queue: {} as never }), { message: /queue/ });
});

t.test('the default clock and timer send a partial batch after the delay', async (t) => {
  let reached: (call: number[]) => void = () => {};
  const executed = new Promise<number[]>((resolve) => { reached = resolve; });
  const batcher = new DynamicBatcher<number, number>({
    maxBatchSize: 8, maxQueueDelayUs: 2000, preferredBatchSizes: [], maxQueueSize: 0, defaultTimeoutUs: 0,
    priorityLevels: 0, defaultPriorityLevel: 0, maxInFlight: 1,
    execute: async (items) => { reached(items); return items.map(answerOf); },
  });
  // The batcher's timer is unref'd (a server's socket keeps the process up), so hold the loop open here.
  const keepAlive = setInterval(() => {}, 60_000);
  try {
    const results = Promise.all([batcher.submit(1, { rows: 1, shapeKey: 's' }), batcher.submit(2, { rows: 1, shapeKey: 's' })]);
    t.same(await executed, [1, 2]);
    t.same(await results, [answerOf(1), answerOf(2)]);
    await batcher.drain();
  } finally {
    clearInterval(keepAlive);
  }
});

for (const maxStaged of [0, 2]) t.test(`random traffic keeps every invariant (seeded, maxStaged ${maxStaged})`, async (t) => {
  const rng = mulberry32(20240611 + maxStaged);
  const maxBatchSize = 6;
  const maxInFlight = 2;
  const h = harness({
    maxBatchSize, maxInFlight, maxStaged, maxQueueDelayUs: 500, preferredBatchSizes: [4], priorityLevels: 3, defaultPriorityLevel: 2,
    defaultTimeoutUs: 3000,
  });
  const submitted: { payload: number; key: string; level: number; outcome: Outcome<number> }[] = [];
  const answered = new Set<number>();
  let maxOutstanding = 0;
  let checked = 0;
  const stagedWhenBusy = property('staged only while every slot is busy, and a staged batch is full');
  const outstanding = () => h.calls.filter((_, i) => !answered.has(i));
  const answerRandom = async () => {
    const open = h.calls.map((_, i) => i).filter((i) => !answered.has(i));
    const pick = open[Math.floor(rng() * open.length)];
    if (pick === undefined) return;
    answered.add(pick);
    h.answer(pick);
    await flush();
  };
  for (let step = 0; step < 400; step++) {
    const roll = rng();
    if (roll < 0.55) {
      const payload = step * 1000 + Math.floor(rng() * 1000); // unique, so results can be matched
      const key = ['a', 'b', 'c'][Math.floor(rng() * 3)]!;
      const priority = Math.floor(rng() * 4);
      submitted.push({ payload, key, level: priority === 0 ? 2 : priority, outcome: h.submit(payload, { rows: 1 + Math.floor(rng() * 3), shapeKey: key, priority }) });
    } else if (roll < 0.8) {
      h.advance(Math.floor(rng() * 300));
    } else {
      await answerRandom();
    }
    maxOutstanding = Math.max(maxOutstanding, outstanding().length);
    // Each batch sent in this step: staged exactly when every slot was busy, and then full.
    for (let i = checked; i < h.calls.length; i++) {
      const busy = h.calls.slice(0, i).filter((_, j) => !answered.has(j)).length;
      const call = h.calls[i]!;
      stagedWhenBusy.check(call.info.staged === (busy >= maxInFlight) && (!call.info.staged || call.info.rows === maxBatchSize),
        () => `batch ${i}: staged ${call.info.staged} with ${busy} busy, ${call.info.rows} rows`);
    }
    checked = h.calls.length;
  }
  const drained = track(h.batcher.drain());
  while (outstanding().length > 0) await answerRandom();
  await flush();
  stagedWhenBusy.assert(t);
  t.equal(drained.state, 'resolved');
  t.ok(maxOutstanding <= maxInFlight + maxStaged, 'never more than maxInFlight + maxStaged batches at once');
  if (maxStaged > 0) t.ok(h.calls.some((c) => c.info.staged), 'some batches were staged');
  t.equal(h.maxTimers, 1, 'one timer at a time');

  const byPayload = new Map(submitted.map((s) => [s.payload, s]));
  const seen = new Set<number>();
  const oneKey = property('one shape key per batch');
  const withinMax = property('within maxBatchSize');
  const runsOnce = property('each request runs once');
  for (const [i, call] of h.calls.entries()) {
    const keys = new Set(call.items.map((p) => byPayload.get(p)!.key));
    oneKey.check(keys.size === 1, () => `batch ${i}: keys ${[...keys].join(', ')}`);
    withinMax.check(call.info.rows <= maxBatchSize, () => `batch ${i}: ${call.info.rows} rows`);
    for (const p of call.items) {
      runsOnce.check(!seen.has(p), () => `request ${p} ran again in batch ${i}`);
      seen.add(p);
    }
  }
  for (const p of [oneKey, withinMax, runsOnce]) p.assert(t);
  let timedOut = 0;
  const timeoutsNeverRun = property('a timed-out request fails with TIMEOUT and never runs');
  const ownResult = property('every other request answered with its own result');
  for (const s of submitted) {
    if (s.outcome.state === 'rejected') {
      timeoutsNeverRun.check((s.outcome.error as { code?: string }).code === 'TIMEOUT' && !seen.has(s.payload),
        () => `request ${s.payload}: ${String(s.outcome.error)}, ran: ${seen.has(s.payload)}`);
      timedOut++;
    } else {
      ownResult.check(s.outcome.value === answerOf(s.payload), () => `request ${s.payload} answered ${String(s.outcome.value)}`);
    }
  }
  timeoutsNeverRun.assert(t);
  ownResult.assert(t);
  t.equal(timedOut, h.batcher.stats().timeouts);
  t.ok(timedOut > 0 && timedOut < submitted.length / 2, `some but not most requests timed out (${timedOut})`);
  t.ok(h.calls.some((c) => c.items.length > 1), 'requests were batched');
  t.equal(seen.size + timedOut, submitted.length);
  // Within one level and one key, dispatch order is submit order.
  const order = h.calls.flatMap((c) => c.items);
  const fifo = property('within one key and one level, dispatch order is submit order');
  for (const key of ['a', 'b', 'c']) {
    for (const level of [1, 2, 3]) {
      const expected = submitted.filter((s) => s.key === key && s.level === level && seen.has(s.payload)).map((s) => s.payload);
      fifo.same(order.filter((p) => expected.includes(p)), expected, () => `key ${key} at level ${level}`);
    }
  }
  fifo.assert(t);
});

t.test('quiet: a partial batch goes at once when no request can arrive, and waits while one can', async (t) => {
  let quiet = false;
  const h = harness({ maxBatchSize: 8, maxQueueDelayUs: 1000, preferredBatchSizes: [4], quiet: () => quiet });
  h.submit(1);
  h.submit(2);
  t.equal(h.calls.length, 0, 'while a client may still send, the batch waits');
  quiet = true;
  h.submit(3);
  t.same(payloadsOf(h.calls), [[1, 2, 3]], 'the request that leaves nobody to wait for sends all three, not a preferred prefix');
  t.equal(h.batcher.stats().quietDispatches, 1);
  h.submit(4);
  h.submit(5);
  t.equal(h.calls.length, 1, 'nothing partial leaves while the only slot is busy, quiet or not');
  h.answer(0);
  await flush();
  t.same(payloadsOf(h.calls)[1], [4, 5], 'the slot frees and the quiet queue goes at once');
  quiet = false;
  h.answer(1);
  await flush();
  h.submit(6);
  h.advance(999);
  t.equal(h.calls.length, 2, 'not quiet: the delay holds');
  h.advance(1);
  t.same(payloadsOf(h.calls)[2], [6]);
  t.equal(h.batcher.stats().quietDispatches, 2, 'a batch sent by its delay is not counted');

  let asked = 0;
  const full = harness({ maxBatchSize: 2, maxInFlight: 2, quiet: () => { asked += 1; return false; } });
  full.submit(1);
  t.equal(asked, 1, 'a partial batch asks');
  full.submit(2);
  t.same(payloadsOf(full.calls), [[1, 2]], 'a full batch goes');
  t.equal(asked, 1, 'without asking');
  t.equal(full.batcher.stats().quietDispatches, 0);
});
