// Umbra's errors as gRPC statuses. Each code of the registry (src/errors.ts) has its status here,
// typed so a new code cannot be left without one. A refusal the client should retry (a full
// queue, a draining server, a model still loading) carries when to retry twice over: as
// google.rpc.RetryInfo in grpc-status-details-bin (what Google's and Envoy's clients read) and as
// grpc-retry-pushback-ms (what gRPC's own retry policy reads).
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { isUmbraError, type ErrorCode } from '../../errors.js';
import { ProtoWriter, WIRE_LENGTH, WIRE_VARINT, stringSize, varintSize } from '../../protocol/proto/wire.js';

export const GRPC_STATUS: Record<ErrorCode, Status> = {
  INVALID_INPUT: Status.INVALID_ARGUMENT,
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  UNAUTHORIZED: Status.UNAUTHENTICATED,
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

/** What a handler hands grpc-js to end a call with an error (grpc-js reads code, details, metadata). */
export class StatusError extends Error implements Partial<ServiceError> {
  metadata?: Metadata;

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

function retryMetadata(code: Status, message: string, seconds: number): Metadata {
  const metadata = new Metadata();
  metadata.set('grpc-retry-pushback-ms', String(Math.round(seconds * 1000)));
  metadata.set('grpc-status-details-bin', encodeRetryStatus(code, message, seconds));
  return metadata;
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
