import t from 'tap';
import { PriorityRequestQueue, isRequestQueue, type QueuedRequest, type RequestQueue } from '../dist/scheduler/queue.js';
import { DeadlineHeap } from '../dist/scheduler/deadline-heap.js';
import { DynamicBatcher } from '../dist/scheduler/batcher.js';
import { rowOffsets, splitRows } from '../dist/scheduler/rows.js';
import { seededRandom as mulberry32 } from '../dist/random.js';
import { property } from './helpers/property.js';

const request = (priority: number, tag: number): QueuedRequest & { tag: number } => ({ rows: 1, shapeKey: 's', priority, enqueuedAt: tag, tag });

t.test('the priority queue walks level 1 first, FIFO within a level, and removes from anywhere', async (t) => {
  const q = new PriorityRequestQueue<ReturnType<typeof request>>(3);
  const items = [request(3, 1), request(1, 2), request(2, 3), request(1, 4), request(9, 5), request(0, 6)];
  for (const item of items) q.push(item);
  t.equal(q.size, 6);
  t.same([...q].map((r) => r.tag), [2, 4, 3, 1, 5, 6], 'out-of-range priorities land at the lowest level');
  t.ok(q.remove(items[3]!));
  t.notOk(q.remove(items[3]!), 'a second remove finds nothing');
  t.ok(q.remove(items[0]!));
  t.same([...q].map((r) => r.tag), [2, 3, 5, 6]);
  q.push(items[3]!);
  t.same([...q].map((r) => r.tag), [2, 4, 3, 5, 6], 'pushed again: back of its level');
  for (const item of items) q.remove(item);
  t.equal(q.size, 0);
  t.same([...q], []);
});

t.test('isRequestQueue tells a queue from anything else', async (t) => {
  t.ok(isRequestQueue(new PriorityRequestQueue()));
  t.notOk(isRequestQueue(null));
  t.notOk(isRequestQueue([]));
  t.notOk(isRequestQueue({ size: 0, push() {}, remove() {} }));
  t.ok(isRequestQueue({ size: 0, push() {}, remove() {}, *[Symbol.iterator]() {} }));
});

t.test('the batcher takes another queue policy through its options', async (t) => {
  // Newest first: the batcher forms batches in whatever order the queue walks.
  class Lifo implements RequestQueue {
    readonly items: QueuedRequest[] = [];
    get size() { return this.items.length; }
    push(item: QueuedRequest) { this.items.push(item); }
    remove(item: QueuedRequest) {
      const i = this.items.indexOf(item);
      if (i < 0) return false;
      this.items.splice(i, 1);
      return true;
    }
    [Symbol.iterator]() { return [...this.items].reverse()[Symbol.iterator](); }
  }
  const calls: number[][] = [];
  let release: () => void = () => {};
  const batcher = new DynamicBatcher<number, number>({
    maxBatchSize: 2, maxQueueDelayUs: 0, preferredBatchSizes: [], maxQueueSize: 0, defaultTimeoutUs: 0,
    priorityLevels: 0, defaultPriorityLevel: 0, maxInFlight: 1, queue: new Lifo(),
    execute: (items) => {
      calls.push(items);
      return new Promise((resolve) => { release = () => resolve(items); });
    },
  });
  const all = [1, 2, 3, 4].map((p) => batcher.submit(p, { rows: 1, shapeKey: 's' }));
  release();
  await all[0];
  release();
  await all[3];
  release();
  await Promise.all(all);
  t.same(calls, [[1], [4, 3], [2]]);

  const used = new Lifo();
  used.push(request(1, 1));
  t.throws(() => new DynamicBatcher({ ...baseOptions(), queue: used }), { message: /an empty queue/ });
});

function baseOptions() {
  return {
    maxBatchSize: 2, maxQueueDelayUs: 0, preferredBatchSizes: [], maxQueueSize: 0, defaultTimeoutUs: 0,
    priorityLevels: 0, defaultPriorityLevel: 0, maxInFlight: 1, execute: async (items: number[]) => items,
  };
}

t.test('the deadline heap pops in deadline order (seeded random)', async (t) => {
  const rng = mulberry32(7);
  const heap = new DeadlineHeap<number>();
  const deadlines = Array.from({ length: 200 }, () => Math.floor(rng() * 10_000));
  deadlines.forEach((at, i) => heap.push(at, i));
  t.equal(heap.size, 200);
  const popped: number[] = [];
  for (let e = heap.pop(); e; e = heap.pop()) popped.push(e.at);
  t.same(popped, [...deadlines].sort((a, b) => a - b));
  t.equal(heap.peek(), undefined);
});

t.test('splitRows and rowOffsets', async (t) => {
  t.same(splitRows(10, 3), [4, 3, 3]);
  t.same(splitRows(2, 4), [1, 1, 0, 0]);
  t.same(splitRows(0, 2), [0, 0]);
  const rng = mulberry32(11);
  const even = property('random splits add up to the total, and no two parts differ by more than one row');
  for (let i = 0; i < 50; i++) {
    const total = Math.floor(rng() * 1000);
    const parts = 1 + Math.floor(rng() * 17);
    const pieces = splitRows(total, parts);
    even.check(pieces.reduce((a, b) => a + b, 0) === total && Math.max(...pieces) - Math.min(...pieces) <= 1, () => `${total} rows in ${parts}: ${pieces.join(', ')}`);
  }
  even.assert(t);
  t.same(rowOffsets([2, 1, 3]), [0, 2, 3, 6]);
  t.same(rowOffsets([]), [0]);
  t.throws(() => splitRows(5, 0), { code: 'INVALID_ARGUMENT', message: /expected a positive integer for the number of parts but received number 0/ });
  t.throws(() => rowOffsets([1, -1]), { code: 'INVALID_ARGUMENT' });
});
