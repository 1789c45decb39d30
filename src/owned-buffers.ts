// Buffers a request owns alone, which an I/O thread may hand to the core's thread by transfer
// instead of copying them into its turn's slab (src/server/io/wire.ts): copying a 602 KB image into
// the slab was about a tenth of the I/O thread's time per request, and moving it took the server's
// CPU per request at 8 connections from 475-546 µs to 444-450 (bench/RESULTS-shared-memory.md).
// 'always': read for the request and used by nothing else (a tensor read from shared memory);
// 'answered': its body, which may go only once the request is answered (with its event), since
// until then the body may be sent again whole.

export type MoveWhen = 'always' | 'answered';

/** Tensors smaller than this are copied: one slab per turn beats a transfer per tensor. */
export const MOVE_MIN_BYTES = 64 * 1024;

const owned = new WeakMap<ArrayBufferLike, MoveWhen>();

export function markOwned(buffer: ArrayBufferLike, when: MoveWhen): void {
  if (buffer.byteLength >= MOVE_MIN_BYTES) owned.set(buffer, when);
}

/** Whether `buffer` may be transferred now; it is unmarked if so (a buffer moves once). */
export function takeOwned(buffer: ArrayBufferLike, answered: boolean): buffer is ArrayBuffer {
  const when = owned.get(buffer);
  if (when === undefined || (when === 'answered' && !answered) || !(buffer instanceof ArrayBuffer)) return false;
  owned.delete(buffer);
  return true;
}
