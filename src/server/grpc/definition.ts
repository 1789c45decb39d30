// The methods of the served services as routes by path: each reads its request, decodes it,
// calls its handler and encodes the answer. Codecs come from proto/ (via @grpc/proto-loader) for
// everything off the inference path; the inference messages use Umbra's own codec
// (src/protocol/proto/infer-messages.ts), so their handlers work on bytes. A message that does
// not decode is INVALID_ARGUMENT and says where it broke.
import { protoPackage, type AnyMethod } from '../../protocol/proto/files.js';
import type { GrpcCall } from './call.js';
import { Status, StatusError } from './status.js';

/** Serves one call of a method. */
export type Route = (call: GrpcCall) => void;

export type Message = Record<string, unknown>;
export type UnaryHandler = (request: Message, call: GrpcCall) => Message | Promise<Message>;

/** What a method's request is called in errors ("ModelInferRequest"). */
export function requestTypeOf(definition: AnyMethod, method: string): string {
  return (definition.requestType.type as { name?: string }).name ?? `${method} request`;
}

export function malformed(type: string, err: unknown): StatusError {
  return new StatusError(Status.INVALID_ARGUMENT, `the ${type} does not decode as protobuf: ${err instanceof Error ? err.message : String(err)}`);
}

/** Reads the one request message of a unary or server-streaming call and decodes it, or ends the call INVALID_ARGUMENT. */
export function readRequest<T>(call: GrpcCall, type: string, decode: (bytes: Buffer) => T, onRequest: (request: T) => void): void {
  call.readOne(type, (bytes) => {
    let request: T;
    try {
      request = decode(bytes);
    } catch (err) {
      call.fail(malformed(type, err));
      return;
    }
    onRequest(request);
  });
}

/** Answers a call with what `produce` returns or resolves to, or with the status of what it throws. */
export function answerWith<T>(call: GrpcCall, produce: () => T | Promise<T>, encode: (answer: T) => Uint8Array): void {
  const send = (answer: T) => {
    let bytes: Uint8Array;
    try {
      bytes = encode(answer);
    } catch (err) {
      call.fail(err);
      return;
    }
    call.answer(bytes);
  };
  let answer: T | Promise<T>;
  try {
    answer = produce();
  } catch (err) {
    call.fail(err);
    return;
  }
  if (answer instanceof Promise) answer.then(send, (err: unknown) => call.fail(err));
  else send(answer);
}

/** A unary method whose messages protobufjs encodes and decodes (the control calls). */
export function unaryRoute(definition: AnyMethod, method: string, handler: UnaryHandler): Route {
  const type = requestTypeOf(definition, method);
  const decode = definition.requestDeserialize as (bytes: Buffer) => Message;
  const encode = definition.responseSerialize as (answer: Message) => Buffer;
  return (call) => readRequest(call, type, decode, (request) => answerWith(call, () => handler(request, call), encode));
}

/** The methods of a service in proto/, by name. */
export function methodsOf(service: string): Record<string, AnyMethod> {
  return protoPackage()[service] as unknown as Record<string, AnyMethod>;
}
