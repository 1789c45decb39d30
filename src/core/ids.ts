// Prediction ids: every answered request carries one, the caller's or a fresh one, so feedback
// labels can be joined to it later. Fresh ids are a random prefix per server start and a sequence
// number (unique, and cheap for the feedback join to look up). An I/O thread that answers requests
// itself takes sequence numbers in blocks, so ids stay unique across threads.
import { randomBytes } from 'node:crypto';
import type { InferRequest } from '../protocol/types.js';

export class IdAssigner {
  readonly prefix = `${randomBytes(8).toString('hex')}-`;
  private next = 0;

  /** Gives the request a fresh id unless it brought one. */
  assign(request: InferRequest): void {
    if (request.id === undefined || request.id === '') request.id = `${this.prefix}${this.next++}`;
  }

  /** Reserves `count` sequence numbers for another thread; returns the first. */
  reserve(count: number): number {
    const start = this.next;
    this.next += count;
    return start;
  }
}

/** An I/O thread's share of the sequence: blocks reserved by the core's thread, used in order. */
export class IdBlock {
  private next = 0;
  private end = 0;

  constructor(readonly prefix: string) {}

  /** Ids left in the current block. */
  get left(): number {
    return this.end - this.next;
  }

  add(start: number, count: number): void {
    this.next = start;
    this.end = start + count;
  }

  /** A fresh id, or false when the block is spent (the request then goes to the core's thread). */
  assign(request: InferRequest): boolean {
    if (request.id !== undefined && request.id !== '') return true;
    if (this.next >= this.end) return false;
    request.id = `${this.prefix}${this.next++}`;
    return true;
  }
}
