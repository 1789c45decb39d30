// What a queued request listens to for "the caller went away". AbortSignal fits this shape, but
// it is an EventTarget: creating one and adding and removing a listener cost about 2 µs and a
// dozen allocations per request, a sizeable share of a tiny model's whole request. Transports
// that raise cancellation themselves (HTTP's onAborted, a closing WebSocket) use the light
// `Cancellation` below; library callers may still pass a real AbortSignal.

/** A function, or an object whose handleEvent is called (as EventTarget takes either). */
export type AbortListener = (() => void) | { handleEvent(): void };

export interface AbortLike {
  readonly aborted: boolean;
  readonly reason?: unknown;
  addEventListener(type: 'abort', listener: AbortListener, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: AbortListener): void;
}

/** A one-shot abort flag with listeners, and nothing else. */
export class Cancellation implements AbortLike {
  aborted = false;
  reason: unknown = undefined;
  #listeners: AbortListener[] | null = null;

  /** Marks the caller gone and calls each listener once. Later calls do nothing. */
  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = this.#listeners;
    this.#listeners = null;
    if (listeners) for (const listener of listeners) typeof listener === 'function' ? listener() : listener.handleEvent();
  }

  addEventListener(_type: 'abort', listener: AbortListener): void {
    if (this.aborted) return;
    (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: AbortListener): void {
    const listeners = this.#listeners;
    if (!listeners) return;
    const i = listeners.lastIndexOf(listener);
    if (i < 0) return;
    // Order among listeners does not matter: swap with the last instead of shifting.
    listeners[i] = listeners[listeners.length - 1]!;
    listeners.pop();
  }
}
