// A gRPC client made the way a KServe or Triton user makes one: @grpc/proto-loader over the
// published .proto, @grpc/grpc-js for the calls. Calls resolve with the answer or with the
// error's code, details and metadata, so tests can assert on either.
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const PROTO = fileURLToPath(new URL('../../proto/', import.meta.url));

export interface CallError {
  code: number;
  details: string;
  metadata: grpc.Metadata;
}

export type Outcome<T = any> = { ok: true; value: T } | { ok: false; error: CallError };

const definition = loader.loadSync([`${PROTO}grpc_service.proto`, `${PROTO}health.proto`], { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
const loaded = grpc.loadPackageDefinition(definition) as any;

export interface GeneratedClient {
  raw: any;
  health: any;
  call<T = any>(method: string, request: object, metadata?: Record<string, string>, options?: grpc.CallOptions): Promise<Outcome<T>>;
  check(service: string): Promise<Outcome>;
  close(): void;
}

export function generatedClient(port: number): GeneratedClient {
  const address = `127.0.0.1:${port}`;
  const raw = new loaded.inference.GRPCInferenceService(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  const health = new loaded.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
  const call = <T>(method: string, request: object, metadata: Record<string, string> = {}, options: grpc.CallOptions = {}): Promise<Outcome<T>> => new Promise((resolve) => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    raw[method](request, md, options, (err: grpc.ServiceError | null, value: T) => {
      resolve(err ? { ok: false, error: { code: err.code, details: err.details, metadata: err.metadata } } : { ok: true, value });
    });
  });
  return {
    raw,
    health,
    call,
    check: (service) => new Promise((resolve) => {
      health.Check({ service }, (err: grpc.ServiceError | null, value: unknown) => resolve(err ? { ok: false, error: { code: err.code, details: err.details, metadata: err.metadata } } : { ok: true, value }));
    }),
    close: () => {
      raw.close();
      health.close();
    },
  };
}

export { grpc };
