// The batcher's waiting room. The batcher only needs to add, remove and walk requests in
// dispatch order, so the queue is an interface: another policy (say, a fixed-capacity ring) can be
// passed in, and `isRequestQueue` checks at run time that what was passed really is one.

/** What a queue sees of a waiting request. Levels are 1-based; 1 is the highest priority. */
export interface QueuedRequest {
  readonly rows: number;
  readonly shapeKey: string;
  readonly priority: number;
  /** Monotonic microseconds at submit. */
  readonly enqueuedAt: number;
}

export interface RequestQueue<T extends QueuedRequest = QueuedRequest> {
  /** Requests waiting (not rows). */
  readonly size: number;
  push(item: T): void;
  /** Take `item` out wherever it sits; false when it was not queued. */
  remove(item: T): boolean;
  /** Every waiting request in dispatch order. The batcher never mutates the queue while walking it. */
  [Symbol.iterator](): Iterator<T>;
}

/** Runtime guard for a queue handed in through options (TypeScript types do not survive to JS callers). */
export function isRequestQueue(value: unknown): value is RequestQueue {
  if (typeof value !== 'object' || value === null) return false;
  const q = value as Record<PropertyKey, unknown>;
  return typeof q.size === 'number'
    && typeof q.push === 'function'
    && typeof q.remove === 'function'
    && typeof q[Symbol.iterator] === 'function';
}

interface Node<T> {
  item: T;
  prev: Node<T> | null;
  next: Node<T> | null;
}

class Level<T> {
  head: Node<T> | null = null;
  tail: Node<T> | null = null;
}

/**
 * One FIFO per priority level, walked from level 1 down. Doubly linked lists plus an index make
 * push and remove O(1), which matters because timeouts and aborts remove from the middle.
 */
export class PriorityRequestQueue<T extends QueuedRequest = QueuedRequest> implements RequestQueue<T> {
  readonly #levels: Level<T>[];
  /**
   * Each queued item's node. A WeakMap, not a Map: a Map under this churn (a set and a delete per
   * request) is rehashed into a new table every few hundred requests, and V8 links each outgrown
   * table to its successor (for live iterators) while the old one still holds the requests it had.
   * Once one table had been promoted to the old generation (it lived across two young
   * collections, by chance), the dead old table kept the next one alive, which was promoted in
   * turn with the requests in it, and so on for good: ~1 KB promoted per request and a full
   * collection every second or so, at a random point in a server's life (bench/RESULTS-gc.md).
   * A WeakMap's tables are not linked.
   */
  readonly #nodes = new WeakMap<T, Node<T>>();
  #size = 0;

  /** `levels` below 1 means a single level; an item's priority outside 1..levels lands at the lowest. */
  constructor(levels = 1) {
    const count = Math.max(1, Math.floor(levels));
    this.#levels = Array.from({ length: count }, () => new Level<T>());
  }

  get size(): number {
    return this.#size;
  }

  push(item: T): void {
    if (this.#nodes.has(item)) return;
    const level = this.#levelOf(item);
    const node: Node<T> = { item, prev: level.tail, next: null };
    if (level.tail) level.tail.next = node;
    else level.head = node;
    level.tail = node;
    this.#nodes.set(item, node);
    this.#size += 1;
  }

  remove(item: T): boolean {
    const node = this.#nodes.get(item);
    if (!node) return false;
    const level = this.#levelOf(item);
    if (node.prev) node.prev.next = node.next;
    else level.head = node.next;
    if (node.next) node.next.prev = node.prev;
    else level.tail = node.prev;
    // A removed node must not keep its neighbours reachable. A node the collector has moved to
    // the old generation (one queued across two young collections) is only found dead by a full
    // collection; until then its `next` holds the next request, and everything that request
    // holds, through every young collection, which promotes that node in turn, and so on down
    // the stream: once started, every request was promoted (~1.5 MB per young collection).
    node.prev = null;
    node.next = null;
    this.#nodes.delete(item);
    this.#size -= 1;
    return true;
  }

  *[Symbol.iterator](): Iterator<T> {
    for (const level of this.#levels) {
      for (let node = level.head; node; node = node.next) yield node.item;
    }
  }

  #levelOf(item: T): Level<T> {
    const index = Number.isInteger(item.priority) && item.priority >= 1 ? Math.min(item.priority, this.#levels.length) - 1 : this.#levels.length - 1;
    return this.#levels[index]!;
  }
}
