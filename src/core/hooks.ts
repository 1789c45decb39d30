// Extension points of the inference path. Traffic routing (canary), monitoring (metrics, drift,
// prediction log) and shadowing plug in here instead of into the transports or the batcher.
import { isUmbraError } from '../errors.js';
import type { InferRequest, InferResponse } from '../protocol/types.js';
import type { InferTiming } from '../execution/types.js';
import type { ModelVersion } from '../repository/model-version.js';

/** Why a version served a request: the default, the canary draw, a shadow copy, or a named version. */
export type TrafficRole = 'primary' | 'canary' | 'shadow' | 'direct';

/** What the transport knows about a request beyond its body. */
export interface RequestContext {
  /** Sticky routing key (header x-umbra-key or parameters.routing_key). */
  routingKey?: string;
  /** Lower-case request headers, when the transport has them. */
  headers?: Record<string, string>;
  transport?: 'http' | 'ws' | 'grpc' | 'in-process' | 'batch';
  /** Parameters a hook adds to the response (e.g. whether a lookup hit), merged in by the core. */
  responseParameters?: Record<string, unknown>;
}

/** `cancelled`: the caller went away (client disconnect, gRPC cancel) before its answer. */
export type Outcome = 'success' | 'rejected' | 'timeout' | 'invalid' | 'internal' | 'cancelled';

/** One finished request, successful or not. Hooks must not mutate it. */
export interface InferEvent {
  model: string;
  version: string;
  role: TrafficRole;
  outcome: Outcome;
  context: RequestContext;
  request?: InferRequest;
  response?: InferResponse;
  error?: unknown;
  timing?: InferTiming;
  /** From arrival at the core (after the transport read the body) to the answer. */
  durationMs: number;
}

export interface UmbraHooks {
  /** Picks the serving version of an unversioned or versioned request; undefined = default. */
  route?(model: string, requestedVersion: string | undefined, context: RequestContext): { version: ModelVersion; role: TrafficRole } | undefined;
  /**
   * Whether `route` may pick something other than the default for this model now (a traffic
   * policy is in effect). A hook with `route` must say so, and call `HookSet.changed()` when the
   * answer may have changed: requests of an unclaimed model may be routed without asking it (an
   * I/O thread answering an inline model itself).
   */
  claims?(model: string): boolean;
  /** The version an unversioned request of `model` is meant for (a policy's primary); undefined = the default. */
  primary?(model: string): ModelVersion | undefined;
  /**
   * Why the hook holds `model` out of service (its routing cannot be known: damaged saved state),
   * or undefined. A held model's unversioned requests are refused by `route`, and it and the
   * server are not ready. Like `claims`, a change is announced with `HookSet.changed()`.
   */
  holds?(model: string): string | undefined;
  /** Every model the hook holds (see `holds`). */
  held?(): string[];
  /** Runs before the request is queued (e.g. to assign a prediction id). */
  prepare?(version: ModelVersion, request: InferRequest, context: RequestContext): void;
  /**
   * May answer the request without running the model (e.g. from a store of precomputed
   * predictions); undefined = run it. Called after `prepare`, before queueing.
   */
  answer?(version: ModelVersion, request: InferRequest, context: RequestContext): Promise<InferResponse | undefined> | InferResponse | undefined;
  /** Runs after every request, off the answer's critical path as far as the hook is concerned. */
  onResult?(event: InferEvent): void;
  /**
   * Whether the hook reads `context.headers` (default: true). Say false when it does not: while
   * no hook reads them, requests that I/O threads hand to the core's thread, and the events of
   * requests they answer themselves, cross without their headers (less to copy, and header
   * values such as credentials stay on the thread that read them).
   */
  readsHeaders?: boolean;
}

export function outcomeOf(err: unknown): Outcome {
  // The batcher rejects a request whose caller went away with an AbortError: no fault of the
  // model or the server, so it must not count as internal (the error-rate alert, canary analysis).
  if (err instanceof Error && err.name === 'AbortError') return 'cancelled';
  if (!isUmbraError(err)) return 'internal';
  switch (err.code) {
    case 'QUEUE_FULL':
    case 'NOT_READY':
      return 'rejected';
    case 'TIMEOUT':
      return 'timeout';
    case 'INVALID_INPUT':
    case 'MODEL_NOT_FOUND':
    case 'VERSION_NOT_FOUND':
      return 'invalid';
    default:
      return 'internal';
  }
}

export class HookSet {
  private readonly list: UmbraHooks[] = [];
  /** The hooks that can answer, kept apart so requests do not filter the list each time. */
  private answering: UmbraHooks[] = [];
  private readonly listeners: (() => void)[] = [];

  use(hooks: UmbraHooks): () => void {
    this.list.push(hooks);
    this.answering = this.list.filter((h) => h.answer);
    this.changed();
    return () => {
      const i = this.list.indexOf(hooks);
      if (i >= 0) this.list.splice(i, 1);
      this.answering = this.list.filter((h) => h.answer);
      this.changed();
    };
  }

  /** Whether a hook may route this model's requests away from the default version now. */
  claims(model: string): boolean {
    for (const h of this.list) if (h.route && (h.claims ? h.claims(model) : true)) return true;
    return false;
  }

  /** Why a hook holds `model` out of service, or undefined (see UmbraHooks.holds). */
  holds(model: string): string | undefined {
    for (const h of this.list) {
      const why = h.holds?.(model);
      if (why !== undefined) return why;
    }
    return undefined;
  }

  /** Whether any hook holds any model out of service. */
  get holdsAny(): boolean {
    for (const h of this.list) if ((h.held?.().length ?? 0) > 0) return true;
    return false;
  }

  /** Whether any hook may read a request's headers (see UmbraHooks.readsHeaders). */
  get readsHeaders(): boolean {
    for (const h of this.list) if (h.readsHeaders !== false) return true;
    return false;
  }

  /** Whether any hook may answer requests without the model (a prediction store). */
  get hasAnswering(): boolean {
    return this.answering.length > 0;
  }

  /** A hook's claims or the set of hooks changed. */
  changed(): void {
    for (const fn of this.listeners) fn();
  }

  /** Calls `fn` on every change; returns the function that stops it. */
  onChange(fn: () => void): () => void {
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  route(model: string, requested: string | undefined, context: RequestContext): { version: ModelVersion; role: TrafficRole } | undefined {
    for (const h of this.list) {
      const r = h.route?.(model, requested, context);
      if (r) return r;
    }
    return undefined;
  }

  /** The first hook's primary version of `model` (see UmbraHooks.primary). */
  primary(model: string): ModelVersion | undefined {
    for (const h of this.list) {
      const mv = h.primary?.(model);
      if (mv) return mv;
    }
    return undefined;
  }

  prepare(version: ModelVersion, request: InferRequest, context: RequestContext): void {
    for (const h of this.list) h.prepare?.(version, request, context);
  }

  /** The first hook's answer; undefined (synchronously, when no hook answers) = run the model. */
  answer(version: ModelVersion, request: InferRequest, context: RequestContext): Promise<InferResponse | undefined> | undefined {
    const answering = this.answering;
    if (answering.length === 0) return undefined;
    return (async () => {
      for (const h of answering) {
        const r = await h.answer!(version, request, context);
        if (r) return r;
      }
      return undefined;
    })();
  }

  /** A failing observer never fails the request it observes. */
  emit(event: InferEvent): void {
    for (const h of this.list) {
      try {
        h.onResult?.(event);
      } catch {
        // Observers report their own faults (metrics); the answer is already decided.
      }
    }
  }
}
