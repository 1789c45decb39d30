// One ModelStreamInfer call: requests are read as they come and run at once, each answer is
// written when it is ready and carries its request's id (so answers may overtake each other).
// An error is an answer too: error_message set, with the request's id. Reading pauses while a
// stream has its limit of requests outstanding or the client reads answers slower than they
// come. Draining, a stream refuses new requests, answers those it has, then ends UNAVAILABLE
// with retry info so the client reconnects elsewhere.
import { decodeInferRequest, encodeStreamResponse, type WireInferRequest, type WireInferResponse } from '../../protocol/proto/infer-messages.js';
import type { RequestContext } from '../../core/hooks.js';
import { Cancellation } from '../../scheduler/cancellation.js';
import type { GrpcCall } from './call.js';
import { malformed } from './definition.js';
import { contextOf, runInfer, type InferDeps } from './infer-call.js';
import { Status, statusError, toStatus } from './status.js';

/** Requests outstanding on one stream before it stops reading (as a WebSocket's default). */
export const STREAM_MAX_IN_FLIGHT = 256;

export class InferStream {
  /** Requests outstanding, each with its message (for its id, should the drain's deadline answer it). */
  private readonly running = new Map<Cancellation, WireInferRequest>();
  private clientDone = false;
  private draining = false;
  private ended = false;
  private paused = false;
  private writable = true;

  constructor(private readonly call: GrpcCall, private readonly deps: InferDeps, private readonly onEnd: (stream: InferStream) => void) {
    const context = contextOf(call);
    call.read((bytes) => this.accept(bytes, context), () => {
      this.clientDone = true;
      this.maybeEnd();
    });
    call.on('drain', () => {
      this.writable = true;
      this.flow();
    });
    // The client went away, its deadline passed or the call failed: queued requests leave the queue.
    call.cancellation.addEventListener('abort', () => this.abandon());
  }

  get outstanding(): number {
    return this.running.size;
  }

  private accept(bytes: Buffer, context: RequestContext): void {
    if (this.ended) return;
    let message: WireInferRequest;
    try {
      message = decodeInferRequest(bytes);
    } catch (err) {
      this.write(failure(undefined, malformed('ModelInferRequest', err).details));
      return;
    }
    if (this.draining) {
      this.write(failure(message, 'the server is shutting down; send the request to another server'));
      return;
    }
    const cancellation = new Cancellation();
    this.running.set(cancellation, message);
    this.flow();
    runInfer(this.deps, message, { ...context }, cancellation).then(
      (response) => this.settle(cancellation, encodeStreamResponse(response)),
      (err: unknown) => this.settle(cancellation, failure(message, toStatus(err).details)),
    );
  }

  private settle(cancellation: Cancellation, answer: Buffer): void {
    this.running.delete(cancellation);
    if (cancellation.aborted || this.ended) return;
    this.write(answer);
    this.flow();
    this.maybeEnd();
  }

  private write(answer: Buffer): void {
    if (!this.call.write(answer)) this.writable = false;
  }

  /** Reads while the stream has room and the client keeps up with its answers. */
  private flow(): void {
    const hold = !this.writable || this.running.size >= STREAM_MAX_IN_FLIGHT;
    if (hold && !this.paused) {
      this.paused = true;
      this.call.pause();
    } else if (!hold && this.paused) {
      this.paused = false;
      this.call.resume();
    }
  }

  private maybeEnd(): void {
    if (this.ended || this.running.size > 0) return;
    if (this.draining) {
      this.finish();
      this.call.fail(statusError(Status.UNAVAILABLE, 'the server is shutting down; reconnect to another server', 1));
      return;
    }
    if (this.clientDone) {
      this.finish();
      this.call.finish(Status.OK, '');
    }
  }

  private finish(): void {
    this.ended = true;
    this.onEnd(this);
  }

  /** Stops taking requests; ends once those outstanding are answered. */
  drain(): void {
    this.draining = true;
    if (this.paused) {
      this.paused = false;
      this.call.resume();
    }
    this.maybeEnd();
  }

  /**
   * The drain's deadline passed: each outstanding request is answered with `err`'s message (an
   * answer that comes later is dropped), then the call ends with its status (UNAVAILABLE).
   */
  cutOff(err: unknown): void {
    if (this.ended) return;
    const details = toStatus(err).details;
    for (const [c, message] of this.running) {
      c.abort();
      this.write(failure(message, details));
    }
    this.running.clear();
    this.finish();
    this.call.fail(err);
  }

  private abandon(): void {
    // With the call's reason: a deadline that ended the stream times its requests out (counted
    // timeout), where a client's cancel leaves them cancelled.
    const reason = this.call.cancellation.reason;
    for (const c of this.running.keys()) c.abort(reason);
    this.running.clear();
    if (!this.ended) this.finish();
  }
}

/** An in-band error answer: error_message, and the request's id so the client can match it. */
function failure(request: WireInferRequest | undefined, message: string): Buffer {
  const response: WireInferResponse = {
    modelName: request?.modelName ?? '',
    modelVersion: request?.modelVersion ?? '',
    id: request?.id ?? '',
    outputs: [],
    rawOutputContents: [],
  };
  return encodeStreamResponse(response, message);
}
