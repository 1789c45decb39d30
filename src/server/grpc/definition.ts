// The services as grpc-js serves them: paths and codecs from proto/ (via @grpc/proto-loader), with
// two changes. Every request decoder catches what it throws and hands the handler a
// MalformedMessage instead, so a message that does not decode is answered INVALID_ARGUMENT
// (grpc-js answers a throwing decoder with INTERNAL). And the inference messages use Umbra's own
// codec (src/protocol/proto/infer-messages.ts): handlers encode answers to bytes themselves.
import type { ServiceDefinition } from '@grpc/grpc-js';
import { decodeInferRequest } from '../../protocol/proto/infer-messages.js';
import { HEALTH_SERVICE, INFERENCE_SERVICE, protoPackage, type AnyMethod } from '../../protocol/proto/files.js';

/** A request that did not decode; `reason` says where it broke. */
export class MalformedMessage {
  constructor(readonly type: string, readonly reason: string) {}

  get message(): string {
    return `the ${this.type} does not decode as protobuf: ${this.reason}`;
  }
}

const INFER_METHODS = new Set(['ModelInfer', 'ModelStreamInfer']);

function safely<T>(type: string, decode: (bytes: Buffer) => T): (bytes: Buffer) => T | MalformedMessage {
  return (bytes) => {
    try {
      return decode(bytes);
    } catch (err) {
      return new MalformedMessage(type, err instanceof Error ? err.message : String(err));
    }
  };
}

const passBytes = (bytes: Buffer): Buffer => bytes;

function serviceOf(name: string): ServiceDefinition {
  const methods = protoPackage()[name] as unknown as Record<string, AnyMethod>;
  const out: Record<string, AnyMethod> = {};
  for (const [method, definition] of Object.entries(methods)) {
    const requestType = (definition.requestType.type as { name?: string }).name ?? `${method} request`;
    const copy = { ...definition };
    if (INFER_METHODS.has(method)) {
      copy.requestDeserialize = safely(requestType, decodeInferRequest) as AnyMethod['requestDeserialize'];
      copy.responseSerialize = passBytes as unknown as AnyMethod['responseSerialize'];
    } else {
      copy.requestDeserialize = safely(requestType, definition.requestDeserialize) as AnyMethod['requestDeserialize'];
    }
    out[method] = copy;
  }
  return out as unknown as ServiceDefinition;
}

export function inferenceService(): ServiceDefinition {
  return serviceOf(INFERENCE_SERVICE);
}

export function healthService(): ServiceDefinition {
  return serviceOf(HEALTH_SERVICE);
}
