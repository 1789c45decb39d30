// Retrain / alert webhook: JSON events (drift and accuracy alerts, rollout decisions) POSTed one
// at a time, retried with exponential backoff, from a bounded queue (the oldest undelivered event
// is dropped first when it overflows). A stop gives every event left one more attempt, without
// backoff, within a bounded grace; what the grace cannot deliver is counted as dropped and said.

export interface WebhookOptions {
  url: string;
  /** Attempts per event including the first (default 5). */
  attempts?: number;
  /** First retry delay; doubles each time (default 500 ms). */
  backoffMs?: number;
  /** Per-attempt timeout (default 5000 ms). */
  timeoutMs?: number;
  /** Undelivered events kept (default 100). */
  maxQueue?: number;
  /** Extra headers, e.g. authorization. */
  headers?: Record<string, string>;
}

export interface AlertEvent {
  type: 'drift' | 'accuracy' | 'rollout';
  model: string;
  version: string;
  time: string;
  [field: string]: unknown;
}

export interface WebhookCounters {
  result(result: 'delivered' | 'retried' | 'failed' | 'dropped'): void;
}

export class Webhook {
  private readonly queue: AlertEvent[] = [];
  private running: Promise<void> | undefined;
  /** A stop began: no more backoff, each event left gets its final attempt now. */
  private closing = false;
  /** The stop's grace is over: nothing more is sent. */
  private closed = false;
  /** Aborts the delivery in flight when the grace is over. */
  private readonly abort = new AbortController();
  /** Cuts a backoff wait short when a stop begins. */
  private readonly hurry = new AbortController();
  /** Events in flight when the grace ran out. */
  private abandoned = 0;
  private stopped: Promise<void> | undefined;

  constructor(
    private readonly options: WebhookOptions,
    private readonly counters: WebhookCounters,
    private readonly notice: (message: string) => void = (message) => process.emitWarning(message),
  ) {}

  send(event: AlertEvent): void {
    if (this.closed) {
      this.counters.result('dropped');
      return;
    }
    this.queue.push(event);
    if (this.queue.length > (this.options.maxQueue ?? 100)) {
      this.queue.shift();
      this.counters.result('dropped');
    }
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves when every queued event has been delivered or given up on. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const event = this.queue.shift()!;
      await this.deliver(event);
    }
  }

  private async deliver(event: AlertEvent): Promise<void> {
    const attempts = this.options.attempts ?? 5;
    let delay = this.options.backoffMs ?? 500;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.options.timeoutMs ?? 5000)]);
        const res = await fetch(this.options.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...this.options.headers },
          body: JSON.stringify({ ...event, attempt }),
          signal,
        });
        await res.arrayBuffer().catch(() => undefined);
        // 4xx other than 408/429 will not get better by retrying.
        if (res.ok) {
          this.counters.result('delivered');
          return;
        }
        if (res.status < 500 && res.status !== 408 && res.status !== 429) break;
      } catch {
        if (this.closed) {
          this.abandoned++;
          return;
        }
      }
      // Stopping: the attempt just made was this event's last.
      if (this.closing) break;
      if (attempt < attempts) {
        this.counters.result('retried');
        await sleep(delay, this.hurry.signal);
        delay *= 2;
      }
    }
    this.counters.result('failed');
  }

  /**
   * Gives every event still queued or waiting on a backoff one attempt, in order, within `graceMs`;
   * then aborts the one in flight, counts it and those never tried as dropped, and says how many.
   */
  close(graceMs = 2000): Promise<void> {
    this.stopped ??= this.stop(graceMs);
    return this.stopped;
  }

  private async stop(graceMs: number): Promise<void> {
    this.closing = true;
    this.hurry.abort();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
      timer.unref();
    });
    await Promise.race([this.idle(), grace]);
    clearTimeout(timer);
    this.closed = true;
    this.abort.abort();
    await this.running?.catch(() => undefined);
    const lost = this.abandoned + this.queue.length;
    this.queue.length = 0;
    for (let i = 0; i < lost; i++) this.counters.result('dropped');
    if (lost > 0) {
      this.notice(`umbra webhook: ${lost} alert event${lost === 1 ? '' : 's'} not delivered to ${new URL(this.options.url).host} within the ${graceMs} ms a stop gives the webhook; counted as dropped in umbra_webhook_deliveries_total`);
      // process.emitWarning writes on the next tick: let the line out before a stopping server exits.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
}

/** Waits `ms`, or until `signal` aborts; leaves no listener behind either way (a retry loop runs for the server's life). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
