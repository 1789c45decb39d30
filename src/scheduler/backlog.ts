// Tells a standing backlog in front of the queue from a passing stall, the way CoDel does for
// packets. A request's wait before it reaches the queue (behind a thread that is busy, or a host
// that took the CPU away for a moment) is measured at submit. One slow moment makes a burst of
// requests late and then clears: those are served. Only when every request for a whole interval
// has arrived past the budget is the server behind for good; from then on each late request is
// refused at once (cheaply, so the backlog drains) until one arrives within the budget again.

/**
 * Shortest lateness that counts, and shortest interval it must last before refusals start: on a
 * busy host a thread loses the CPU for tens of milliseconds now and then, and that is no backlog.
 */
export const BACKLOG_MIN_US = 100_000;

export class BacklogDetector {
  #lateSince = -1;
  /** Requests later than this are late. */
  readonly budgetUs: number;
  /** How long every request must be late before late ones are refused. */
  readonly intervalUs: number;

  /** `queueBudgetUs`: the version's queue budget; lateness is judged against it, or BACKLOG_MIN_US if longer. */
  constructor(queueBudgetUs: number) {
    this.budgetUs = Math.max(BACKLOG_MIN_US, queueBudgetUs);
    this.intervalUs = this.budgetUs;
  }

  /** Whether a request that waited `waitedUs` before reaching the queue, seen at `now` (µs), is to be refused. */
  refuse(waitedUs: number, now: number): boolean {
    if (waitedUs <= this.budgetUs) {
      this.#lateSince = -1;
      return false;
    }
    if (this.#lateSince < 0) this.#lateSince = now;
    return now - this.#lateSince >= this.intervalUs;
  }
}
