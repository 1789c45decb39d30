// Umbra's errors as gRPC statuses. Each code of the registry (src/errors.ts) has its status here,
// typed so a new code cannot be left without one. A refusal the client should retry (a full
// queue, a draining server, a model still loading) carries when to retry twice over: as
// google.rpc.RetryInfo in grpc-status-details-bin (what Google's and Envoy's clients read) and as
// grpc-retry-pushback-ms (what gRPC's own retry policy reads).
import { isUmbraError, type ErrorCode } from '../../errors.js';
import { ProtoWriter, WIRE_LENGTH, WIRE_VARINT, stringSize, varintSize } from '../../protocol/proto/wire.js';

/** gRPC's status codes (the numbers are the wire contract: grpc/doc/statuscodes.md). */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type Status = (typeof Status)[keyof typeof Status];

/** Response metadata beside a status: text values, or bytes for a `-bin` name. */
export type StatusMetadata = Record<string, string | Buffer>;

export const GRPC_STATUS: Record<ErrorCode, Status> = {
  INVALID_INPUT: Status.INVALID_ARGUMENT,
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  UNAUTHORIZED: Status.UNAUTHENTICATED,
  FORBIDDEN: Status.PERMISSION_DENIED,
  MODEL_NOT_FOUND: Status.NOT_FOUND,
  VERSION_NOT_FOUND: Status.NOT_FOUND,
  NOT_FOUND: Status.NOT_FOUND,
  METHOD_NOT_ALLOWED: Status.UNIMPLEMENTED,
  NOT_IMPLEMENTED: Status.UNIMPLEMENTED,
  CONFLICT: Status.FAILED_PRECONDITION,
  PAYLOAD_TOO_LARGE: Status.RESOURCE_EXHAUSTED,
  UNSUPPORTED_MEDIA_TYPE: Status.INVALID_ARGUMENT,
  TIMEOUT: Status.DEADLINE_EXCEEDED,
  QUEUE_FULL: Status.UNAVAILABLE,
  TOO_MANY_STREAMS: Status.RESOURCE_EXHAUSTED,
  NOT_READY: Status.UNAVAILABLE,
  LOAD_FAILED: Status.INVALID_ARGUMENT,
  INTERNAL: Status.INTERNAL,
};

/** An error that ends a call with its status, details and trailing metadata. */
export class StatusError extends Error {
  metadata?: StatusMetadata;

  constructor(readonly code: Status, readonly details: string) {
    super(details);
    this.name = 'StatusError';
  }
}

const RETRY_INFO_TYPE = 'type.googleapis.com/google.rpc.RetryInfo';

/** Any thrown value as a gRPC status (anything but an UmbraError is INTERNAL). */
export function toStatus(err: unknown): StatusError {
  if (err instanceof StatusError) return err;
  if (!isUmbraError(err)) {
    const message = err instanceof Error ? err.message : String(err);
    return new StatusError(Status.INTERNAL, `internal error: ${message}`);
  }
  return statusError(GRPC_STATUS[err.code], err.message, err.retryAfter);
}

export function statusError(code: Status, details: string, retryAfterSeconds?: number): StatusError {
  const out = new StatusError(code, details);
  if (retryAfterSeconds !== undefined) out.metadata = retryMetadata(code, details, retryAfterSeconds);
  return out;
}

function retryMetadata(code: Status, message: string, seconds: number): StatusMetadata {
  return {
    'grpc-retry-pushback-ms': String(Math.round(seconds * 1000)),
    'grpc-status-details-bin': encodeRetryStatus(code, message, seconds),
  };
}

/** google.rpc.Status { code, message, details: [Any(RetryInfo { retry_delay })] }. */
export function encodeRetryStatus(code: Status, message: string, seconds: number): Buffer {
  const whole = Math.floor(seconds);
  const nanos = Math.round((seconds - whole) * 1e9);
  const durationSize = (whole > 0 ? 1 + varintSize(whole) : 0) + (nanos > 0 ? 1 + varintSize(nanos) : 0);
  const retryInfoSize = 1 + varintSize(durationSize) + durationSize;
  const anySize = 1 + stringSize(RETRY_INFO_TYPE) + 1 + varintSize(retryInfoSize) + retryInfoSize;
  const size = (code !== 0 ? 1 + varintSize(code) : 0) + 1 + stringSize(message) + 1 + varintSize(anySize) + anySize;
  const w = new ProtoWriter(Buffer.allocUnsafe(size));
  if (code !== 0) {
    w.tag(1, WIRE_VARINT);
    w.varint(code);
  }
  w.string(2, message);
  w.tag(3, WIRE_LENGTH);
  w.varint(anySize);
  w.string(1, RETRY_INFO_TYPE);
  w.tag(2, WIRE_LENGTH);
  w.varint(retryInfoSize);
  w.tag(1, WIRE_LENGTH);
  w.varint(durationSize);
  if (whole > 0) {
    w.tag(1, WIRE_VARINT);
    w.varint(whole);
  }
  if (nanos > 0) {
    w.tag(2, WIRE_VARINT);
    w.varint(nanos);
  }
  return w.finish();
}
