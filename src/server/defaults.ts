// The server's defaults, apart from the server itself: the command line reads them for every
// command, and importing them must not load the transport, the gRPC service and the model runtime.
export const DEFAULTS = {
  host: '127.0.0.1',
  port: 8000,
  grpcPort: 8001,
  maxBodyBytes: 64 * 1024 * 1024,
  drainSeconds: 30,
} as const;
