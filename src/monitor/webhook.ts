// Retrain / alert webhook: JSON events (drift and accuracy alerts, rollout decisions) POSTed one
// at a time, retried with exponential backoff, from a bounded queue (the oldest undelivered event
// is dropped first when it overflows).

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
  private closed = false;
  private readonly abort = new AbortController();

  constructor(private readonly options: WebhookOptions, private readonly counters: WebhookCounters) {}

  send(event: AlertEvent): void {
    if (this.closed) return;
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
        if (this.closed) break;
      }
      if (attempt < attempts) {
        this.counters.result('retried');
        await sleep(delay, this.abort.signal);
        delay *= 2;
      }
    }
    this.counters.result('failed');
  }

  /** Gives pending deliveries `graceMs` to finish, then abandons them. */
  async close(graceMs = 2000): Promise<void> {
    const timer = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([this.idle(), timer]);
    this.closed = true;
    this.abort.abort();
    await this.running?.catch(() => undefined);
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
