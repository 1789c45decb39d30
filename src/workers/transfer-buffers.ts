// Buffers that carry a request's inputs to a model worker and come back with its answer, kept for
// the next request instead of allocated afresh: a fresh 1 MiB ArrayBuffer costs its page faults on
// the first copy into it, and every one counts as external memory, which is what sets off V8's
// full collections on the serving thread (bench/RESULTS-sparse.md). Only buffers this side no
// longer references are kept: ones the worker handed back after the transfer detached them here.
import type { TensorData } from '../protocol/types.js';
import { withData, type WireTensor } from './messages.js';

/** Smaller tensors are copied into fresh buffers: cheap, and too many sizes to be worth keeping. */
export const MIN_RECYCLED_BYTES = 64 * 1024;

export interface TransferBuffersOptions {
  /** Bytes kept at most, over every size (default 64 MiB). */
  maxBytes?: number;
  /** Buffers kept at most of one size (default 8). */
  maxPerSize?: number;
}

/**
 * Buffers by capacity: powers of two from MIN_RECYCLED_BYTES up, so requests of a few different
 * batch sizes share them. A tensor copied into one is a view of its first bytes.
 */
export class TransferBuffers {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private keptBytes = 0;
  private readonly maxBytes: number;
  private readonly maxPerSize: number;
  /** Copies that found a kept buffer, and ones that had to allocate (for tests and metrics). */
  reused = 0;
  allocated = 0;

  constructor(options: TransferBuffersOptions = {}) {
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.maxPerSize = options.maxPerSize ?? 8;
  }

  /** Bytes held for reuse now. */
  get bytes(): number {
    return this.keptBytes;
  }

  /**
   * `t` with its data copied into a buffer of its own (kept or new), ready to be transferred;
   * the caller's tensor is left as it was. BYTES tensors are arrays, cloned by postMessage anyway.
   */
  copy(t: WireTensor): WireTensor {
    const d = t.data;
    if (Array.isArray(d)) return t;
    if (d.byteLength < MIN_RECYCLED_BYTES) return withData(t, d.slice() as TensorData);
    const buffer = this.take(capacityOf(d.byteLength));
    // The same storage class as the caller's (FP16 travels as its 16-bit patterns).
    const view = new (d.constructor as Uint8ArrayConstructor)(buffer, 0, d.length);
    view.set(d as Uint8Array);
    return withData(t, view as unknown as TensorData);
  }

  /**
   * Keeps buffers a worker handed back. The caller vouches that nothing on this thread refers to
   * them (they arrived by transfer); any of a size this never hands out is left to the collector.
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
      if (list.length >= this.maxPerSize) continue;
      list.push(b);
      this.keptBytes += size;
    }
  }

  private take(capacity: number): ArrayBuffer {
    const kept = this.free.get(capacity)?.pop();
    if (kept) {
      this.keptBytes -= capacity;
      this.reused += 1;
      return kept;
    }
    this.allocated += 1;
    return new ArrayBuffer(capacity);
  }
}

/** The power of two at or above `bytes`. */
function capacityOf(bytes: number): number {
  return 2 ** Math.ceil(Math.log2(bytes));
}
