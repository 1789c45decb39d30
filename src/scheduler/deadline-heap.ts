// A binary min-heap of (deadline, item). The batcher keeps one timer for all queued requests, so
// it needs the earliest deadline cheaply. Entries are not removed when a request leaves the queue
// early; the owner skips stale tops instead (lazy deletion), which keeps removal O(1).

interface Entry<T> {
  at: number;
  item: T;
}

export class DeadlineHeap<T> {
  readonly #entries: Entry<T>[] = [];

  get size(): number {
    return this.#entries.length;
  }

  push(at: number, item: T): void {
    const entries = this.#entries;
    entries.push({ at, item });
    let i = entries.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (entries[parent]!.at <= entries[i]!.at) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  peek(): Entry<T> | undefined {
    return this.#entries[0];
  }

  pop(): Entry<T> | undefined {
    const entries = this.#entries;
    const top = entries[0];
    const last = entries.pop();
    if (top === undefined || last === undefined || entries.length === 0) return top;
    entries[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < entries.length && entries[left]!.at < entries[smallest]!.at) smallest = left;
      if (right < entries.length && entries[right]!.at < entries[smallest]!.at) smallest = right;
      if (smallest === i) break;
      this.#swap(i, smallest);
      i = smallest;
    }
    return top;
  }

  clear(): void {
    this.#entries.length = 0;
  }

  #swap(a: number, b: number): void {
    const entries = this.#entries;
    const tmp = entries[a]!;
    entries[a] = entries[b]!;
    entries[b] = tmp;
  }
}
