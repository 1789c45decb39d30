// One registry of every error Umbra returns, with its HTTP status. Transports turn an
// UmbraError into `{"error": message}` with `status`; anything else is a 500 internal fault.

export const ERROR_CODES = {
  INVALID_INPUT: { status: 400, description: 'the request body or a parameter is malformed or does not match the model' },
  INVALID_ARGUMENT: { status: 400, description: 'a CLI flag, config field or admin input is invalid' },
  UNAUTHORIZED: { status: 401, description: 'the admin token is missing or wrong' },
  FORBIDDEN: { status: 403, description: 'the server was started without the feature the call needs (e.g. --shared-memory on)' },
  MODEL_NOT_FOUND: { status: 404, description: 'no such model in the repository or not loaded' },
  VERSION_NOT_FOUND: { status: 404, description: 'no such version of the model is loaded' },
  NOT_FOUND: { status: 404, description: 'no such route or resource' },
  METHOD_NOT_ALLOWED: { status: 405, description: 'the route exists but not for this HTTP method' },
  CONFLICT: { status: 409, description: 'the change conflicts with the current state (e.g. a rollout is running)' },
  PAYLOAD_TOO_LARGE: { status: 413, description: 'the request body is over the configured limit' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, description: 'the content encoding is not supported' },
  TIMEOUT: { status: 504, description: 'the request waited in the queue longer than its timeout' },
  QUEUE_FULL: { status: 503, description: 'the model queue is full; retry later' },
  TOO_MANY_STREAMS: { status: 503, description: 'too many open event streams (GET /v2/ops/events); close one or retry later' },
  NOT_READY: { status: 503, description: 'the server or model is not ready (loading or draining)' },
  LOAD_FAILED: { status: 400, description: 'a model failed to load; the previous version keeps serving' },
  INTERNAL: { status: 500, description: 'an internal fault' },
  NOT_IMPLEMENTED: { status: 501, description: 'the request uses a transfer coding the server does not implement' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Refusals a loaded server answers by the thousand each second (load shedding, draining, queue
 * timeouts). Their stack says nothing (the cause is the load, not the code path), and collecting
 * it was about a third of what a refusal cost the core thread under a 2x overload.
 */
const SHEDDING: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['QUEUE_FULL', 'NOT_READY', 'TIMEOUT', 'TOO_MANY_STREAMS']);
let savedStackLimit = Error.stackTraceLimit;

/** Passes `message` through; for a shedding code, V8 collects no stack for the Error made next. */
function stackless(code: ErrorCode, message: string): string {
  if (SHEDDING.has(code)) {
    savedStackLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
  }
  return message;
}

/**
 * The backend failed while running a batch (onnxruntime's kernel refused an index out of the
 * embedding table, say): the model's own answer to these inputs, as opposed to a worker that
 * died or a pool that closed. The executor finds which request of the batch caused it.
 */
export class ModelRunError extends Error {}

export class UmbraError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds for a `Retry-After` header on 503 answers. */
  readonly retryAfter?: number;

  constructor(code: ErrorCode, message: string, options: { retryAfter?: number; cause?: unknown } = {}) {
    super(stackless(code, message), options.cause === undefined ? undefined : { cause: options.cause });
    if (SHEDDING.has(code)) Error.stackTraceLimit = savedStackLimit;
    this.name = 'UmbraError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    if (options.retryAfter !== undefined) this.retryAfter = options.retryAfter;
  }
}

/**
 * A flag's value that is malformed or does not fit what it names (the model, the data): the
 * command line is at fault, not the run, so the CLI exits 2 as for any usage error.
 */
export class FlagError extends UmbraError {
  readonly exitCode = 2;
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/**
 * A model loaded to batch whose answers do not have a row per request row (an output whose first
 * dim is a count of its own: NonZero's indices, a detector's boxes, a reduction over the batch).
 * Requests cannot share its batches: one request's rows would be answered with another's.
 */
export class UnbatchedAnswersError extends UmbraError {
  constructor(readonly reason: string) {
    super('LOAD_FAILED', `${reason}, so requests cannot share a batch; set max_batch_size: 0`);
  }
}

export function isUmbraError(value: unknown): value is UmbraError {
  return value instanceof UmbraError;
}

/** Wording every validation message the same way: "expected X for Y but received Z". */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${typeof value} ${String(value)}`;
  return typeof value;
}

export function invalid(code: ErrorCode, expected: string, what: string, received: unknown): UmbraError {
  return new UmbraError(code, `expected ${expected} for ${what} but received ${describeValue(received)}`);
}

/** Map any thrown value to the status and message a transport sends. */
export function toErrorBody(err: unknown): { status: number; body: { error: string }; retryAfter?: number } {
  if (isUmbraError(err)) {
    const out: { status: number; body: { error: string }; retryAfter?: number } = { status: err.status, body: { error: err.message } };
    if (err.retryAfter !== undefined) out.retryAfter = err.retryAfter;
    return out;
  }
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, body: { error: `internal error: ${message}` } };
}
