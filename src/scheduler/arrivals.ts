// Whether anything can still send this thread a request: a batch waiting to fill asks before it
// waits out its delay. A client on an HTTP/1.1 connection sends its next request only once its
// last one is answered, so while every client connection of the thread already has a request in
// progress, no request can join a waiting batch: waiting delays every one of them and adds no
// row. On two cores, two readers each serving half of 64 closed-loop clients a 64-row model
// waited out the whole 2 ms delay on every batch (bench/RESULTS-io-threads.md).
//
// The transports of the thread register what they can tell. Anything they cannot rule out counts
// as a possible arrival: an idle connection, a body still arriving, any WebSocket or HTTP/2
// connection (they carry many requests at once). A thread with no transport registered (Umbra
// embedded as a library, `predict()` callers) is never quiet, so its batches wait as configured.

export interface ClientSource {
  /** True while a client of this source may send a request that has not reached a batcher yet. */
  mayArrive(): boolean;
}

export class ThreadArrivals {
  readonly #sources = new Set<ClientSource>();

  /** Registers a source; returns the function that removes it. */
  add(source: ClientSource): () => void {
    this.#sources.add(source);
    return () => {
      this.#sources.delete(source);
    };
  }

  /** True when a transport is registered and none of its clients can send another request now. */
  readonly quiet = (): boolean => {
    if (this.#sources.size === 0) return false;
    for (const source of this.#sources) if (source.mayArrive()) return false;
    return true;
  };
}

/** This thread's clients (each worker thread loads its own copy of this module). */
export const threadArrivals = new ThreadArrivals();
