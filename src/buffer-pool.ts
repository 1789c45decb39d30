// Large buffers kept for reuse instead of allocated afresh. On a serving thread each fresh
// ArrayBuffer of a megabyte or so costs its page faults on the first write, and counts as external
// memory, which is what sets off V8's full collections there: a wide model's binary answers
// (64 x 4096 FP32 = 1 MiB each) had the serving thread in a mark-compact about every 100 ms with a
// 15 MB heap (bench/RESULTS-sparse.md). Whoever takes a buffer decides when nothing refers to it
// any more and gives it back; a buffer never given back is simply left to the collector.

/** Smaller buffers are not kept: cheap to allocate, and too many sizes to be worth it. */
export const MIN_RECYCLED_BYTES = 64 * 1024;

export interface BufferPoolOptions {
  /** Bytes kept at most, over every size (default 64 MiB). */
  maxBytes?: number;
  /** Buffers kept at most of one size (default 8). */
  maxPerSize?: number;
}

/**
 * ArrayBuffers by capacity: powers of two from MIN_RECYCLED_BYTES up, so tensors and bodies of a
 * few different batch sizes share them.
 */
export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private keptBytes = 0;
  private readonly maxBytes: number;
  private readonly maxPerSize: number;
  /** Takes that found a kept buffer, and ones that had to allocate (for tests and metrics). */
  reused = 0;
  allocated = 0;

  constructor(options: BufferPoolOptions = {}) {
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.maxPerSize = options.maxPerSize ?? 8;
  }

  /** Bytes held for reuse now. */
  get bytes(): number {
    return this.keptBytes;
  }

  /** A buffer of at least `bytes` (at least MIN_RECYCLED_BYTES): a kept one, else a new one. */
  take(bytes: number): ArrayBuffer {
    const capacity = capacityOf(Math.max(bytes, MIN_RECYCLED_BYTES));
    const kept = this.free.get(capacity)?.pop();
    if (kept) {
      this.keptBytes -= capacity;
      this.reused += 1;
      return kept;
    }
    this.allocated += 1;
    return new ArrayBuffer(capacity);
  }

  /**
   * Keeps buffers for later takes. The caller vouches that nothing refers to them any more; a
   * size this never hands out, and a detached buffer, are left to the collector.
   */
  recycle(buffers: readonly ArrayBuffer[]): void {
    for (const b of buffers) {
      const size = b.byteLength;
      if (size < MIN_RECYCLED_BYTES || capacityOf(size) !== size) continue;
      if (this.keptBytes + size > this.maxBytes) continue;
      let list = this.free.get(size);
      if (!list) {
        list = [];
        this.free.set(size, list);
      }
      if (list.length >= this.maxPerSize || list.includes(b)) continue;
      list.push(b);
      this.keptBytes += size;
    }
  }
}

/** The power of two at or above `bytes`. */
function capacityOf(bytes: number): number {
  return 2 ** Math.ceil(Math.log2(bytes));
}
