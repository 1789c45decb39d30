// Waking whoever waits for a batch job's state to change (a segment arrived, a batch was computed
// or stored, a stage failed): waiters re-check their condition, so a wake-up is never lost or wrong.
export class Signal {
  private waiters: (() => void)[] = [];

  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  notify(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const wake of waiting) wake();
  }

  /** Resolves once `ready()` holds; throws what `failure()` returns as soon as it returns something. */
  async until(ready: () => boolean, failure: () => Error | undefined): Promise<void> {
    for (;;) {
      const err = failure();
      if (err) throw err;
      if (ready()) return;
      await this.wait();
    }
  }
}
