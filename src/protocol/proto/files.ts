// The .proto files of Umbra's gRPC surface (proto/ at the package root) and their messages as
// @grpc/proto-loader reads them, for everything off the inference path (metadata, readiness,
// repository, statistics, health): those are few and small, so protobufjs's codecs serve them.
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadSync, type MethodDefinition, type Options, type PackageDefinition } from '@grpc/proto-loader';

/** proto/ beside dist/ and src/ (this file is <root>/{src,dist}/protocol/proto/files.*). */
export const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));
export const INFERENCE_PROTO = join(PROTO_DIR, 'grpc_service.proto');
export const HEALTH_PROTO = join(PROTO_DIR, 'health.proto');

export const INFERENCE_SERVICE = 'inference.GRPCInferenceService';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

/** Field names as the .proto spells them; int64 as numbers; enums as their names; every field present. */
export const LOADER_OPTIONS: Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

let loaded: PackageDefinition | undefined;

export function protoPackage(): PackageDefinition {
  loaded ??= loadSync([INFERENCE_PROTO, HEALTH_PROTO], LOADER_OPTIONS);
  return loaded;
}

export type AnyMethod = MethodDefinition<object, object>;

/** One method's definition (path, codecs) of a service in proto/. */
export function protoMethod(service: string, method: string): AnyMethod {
  const definition = protoPackage()[service] as Record<string, AnyMethod> | undefined;
  const found = definition?.[method];
  if (!found) throw new Error(`${service} has no method ${method} in ${PROTO_DIR}`);
  return found;
}
