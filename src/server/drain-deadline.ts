// What a request still unanswered when the drain's deadline passes is told, on every transport
// (HTTP 503, a WebSocket error message, gRPC UNAVAILABLE): a connection closed with no answer
// cannot be told from a crash, and most clients do not retry it.
import { UmbraError } from '../errors.js';

/** The refusal for a request the drain's deadline (`drainSeconds`) cut off; retried elsewhere. */
export function drainDeadlineError(drainSeconds: number): UmbraError {
  return new UmbraError('NOT_READY', `the server stopped before it could answer: it was draining and its drain deadline (--drain-seconds ${drainSeconds}) passed; retry on another server`, { retryAfter: 1 });
}
