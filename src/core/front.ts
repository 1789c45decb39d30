// The one call a transport makes to run a request: an Open Inference Protocol body in, a result
// out. The core implements it on its own thread; an I/O thread implements it by handing the
// parsed request to the core's thread (src/server/io). HTTP and WebSocket code sees only this.
import type { binaryOutputsFor } from '../protocol/index.js';
import type { InferOptions, InferResult } from '../execution/types.js';
import type { RequestContext } from './hooks.js';
import type { UmbraError } from '../errors.js';

export interface BodyInferResult extends InferResult {
  /** Which outputs the request asked for as binary (Triton's binary tensor extension). */
  binaryOutputs: ReturnType<typeof binaryOutputsFor>;
}

export interface InferBodyOptions extends InferOptions {
  context?: RequestContext;
  /** The JSON header, when the transport has parsed it already (a WebSocket frame). */
  header?: unknown;
}

export interface InferenceFront {
  /** Parses a body (JSON, or JSON + binary tensors after `headerLength` bytes), routes it and runs it. */
  inferBody(model: string, version: string | undefined, body: Uint8Array, headerLength?: number, options?: InferBodyOptions): Promise<BodyInferResult>;
  /**
   * The refusal a request for (model, version) gets before its body is read, where the version it
   * would run on refuses every request now; undefined sends it the usual way (see Umbra.refuseEarly).
   */
  refuseEarly?(model: string, version: string | undefined, context: RequestContext): UmbraError | undefined;
}

/**
 * Thrown by `Umbra.infer` when a request parsed ahead of routing (on an I/O thread) was routed to a
 * version whose signature is not the one it was parsed against: the caller sends the body instead.
 */
export class SignatureChanged extends Error {
  constructor() {
    super('the serving version changed its signature after the request was parsed');
    this.name = 'SignatureChanged';
  }
}
