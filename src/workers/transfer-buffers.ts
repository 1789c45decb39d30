// Buffers that carry a request's inputs to a model worker and come back with its answer, kept for
// the next request instead of allocated afresh: a fresh 1 MiB ArrayBuffer costs its page faults on
// the first copy into it, and every one counts as external memory, which is what sets off V8's
// full collections on the serving thread (bench/RESULTS-sparse.md). Only buffers this side no
// longer references are kept: ones the worker handed back after the transfer detached them here.
import type { TensorData } from '../protocol/types.js';
import { BufferPool, MIN_RECYCLED_BYTES } from '../buffer-pool.js';
import { withData, type WireTensor } from './messages.js';

export { MIN_RECYCLED_BYTES };
export type { BufferPoolOptions as TransferBuffersOptions } from '../buffer-pool.js';

/**
 * Input copies for the workers, in buffers of a BufferPool: a tensor copied into one is a view of
 * its first bytes, and a worker hands the buffer back with its answer.
 */
export class TransferBuffers extends BufferPool {
  /**
   * `t` with its data copied into a buffer of its own (kept or new), ready to be transferred;
   * the caller's tensor is left as it was. BYTES tensors are arrays, cloned by postMessage anyway.
   */
  copy(t: WireTensor): WireTensor {
    const d = t.data;
    if (Array.isArray(d)) return t;
    if (d.byteLength < MIN_RECYCLED_BYTES) return withData(t, d.slice() as TensorData);
    const buffer = this.take(d.byteLength);
    // The same storage class as the caller's (FP16 travels as its 16-bit patterns).
    const view = new (d.constructor as Uint8ArrayConstructor)(buffer, 0, d.length);
    view.set(d as Uint8Array);
    return withData(t, view as unknown as TensorData);
  }
}
