// The gRPC transport: @grpc/grpc-js on the core's thread, serving GRPCInferenceService
// (Open Inference Protocol + Triton's streaming, statistics and repository extensions) and
// grpc.health.v1.Health. Inference goes through the same core entry point as HTTP (infer-call.ts).
// Drain: stop accepting (the listener closes, connections get GOAWAY, streams refuse new
// requests), answer what is in flight, then close.
import {
  Server, ServerCredentials, status as Status,
  type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { UmbraApp } from '../../app.js';
import { encodeInferResponse, type WireInferRequest } from '../../protocol/proto/infer-messages.js';
import { Cancellation } from '../../scheduler/cancellation.js';
import { buildCatalog, CatalogView } from '../io/catalog.js';
import { controlHandlers } from './control.js';
import { healthService, inferenceService, MalformedMessage } from './definition.js';
import { HealthService } from './health.js';
import { contextOf, runInfer, type InferDeps } from './infer-call.js';
import { statusError, toStatus } from './status.js';
import { InferStream, type StreamCall } from './stream.js';

export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port (see `port`). */
  port: number;
  /** Largest request message (the HTTP body limit applies to gRPC messages too). */
  maxMessageBytes: number;
}

export class GrpcServer {
  private readonly server: Server;
  private readonly catalog = new CatalogView();
  private readonly streams = new Set<InferStream>();
  private readonly health: HealthService;
  private readonly detach: (() => void)[] = [];
  private readonly deps: InferDeps;
  port = 0;

  constructor(app: UmbraApp, private readonly options: GrpcServerOptions, private readonly isAccepting: () => boolean) {
    const core = app.core;
    this.deps = { core, catalog: this.catalog };
    this.server = new Server({
      'grpc.max_receive_message_length': options.maxMessageBytes,
      'grpc.max_send_message_length': -1,
    });
    this.health = new HealthService(core, isAccepting);
    const inference: UntypedServiceImplementation = {
      ...controlHandlers({ core, api: app.api, monitor: app.monitor, isAccepting }),
      ModelInfer: (call: ServerUnaryCall<WireInferRequest | MalformedMessage, Buffer>, callback: sendUnaryData<Buffer>) => this.infer(call, callback),
      ModelStreamInfer: (call: StreamCall) => this.stream(call),
    };
    this.server.addService(inferenceService(), inference);
    this.server.addService(healthService(), this.health.handlers() as UntypedServiceImplementation);
    // Requests are parsed here against the loaded signatures, kept current as models come and go.
    // Signatures only: gRPC is served on the core's thread, which runs inline models itself.
    const refresh = () => this.catalog.update(buildCatalog(core, false));
    refresh();
    for (const event of ['loaded', 'unloaded', 'load-failed'] as const) {
      core.manager.on(event, refresh);
      this.detach.push(() => core.manager.off(event, refresh));
    }
  }

  listen(): Promise<void> {
    const { host, port } = this.options;
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, ServerCredentials.createInsecure(), (err, bound) => {
        if (err) {
          reject(new Error(`could not listen for gRPC on ${host}:${port}: ${err.message} (use --grpc-port to pick another, 0 to turn gRPC off)`));
          return;
        }
        this.port = bound;
        resolve();
      });
    });
  }

  private infer(call: ServerUnaryCall<WireInferRequest | MalformedMessage, Buffer>, callback: sendUnaryData<Buffer>): void {
    const request = call.request;
    if (request instanceof MalformedMessage) {
      callback(statusError(Status.INVALID_ARGUMENT, request.message));
      return;
    }
    // The client going away, or its deadline passing (grpc-js answers DEADLINE_EXCEEDED then),
    // takes the request out of the queue.
    const cancellation = new Cancellation();
    call.once('cancelled', () => cancellation.abort());
    runInfer(this.deps, request, contextOf(call.metadata), cancellation).then(
      (response) => callback(null, encodeInferResponse(response)),
      (err: unknown) => callback(toStatus(err)),
    );
  }

  private stream(call: StreamCall): void {
    const stream = new InferStream(call, this.deps, (s) => this.streams.delete(s));
    this.streams.add(stream);
    if (!this.isAccepting()) stream.drain();
  }

  /** Open ModelStreamInfer calls and their outstanding requests. */
  streamStats(): { streams: number; outstanding: number } {
    let outstanding = 0;
    for (const s of this.streams) outstanding += s.outstanding;
    return { streams: this.streams.size, outstanding };
  }

  /**
   * Stops accepting and resolves once every call is answered (or at `deadline`): the listener
   * closes and connections are told to go away (grpc-js's tryShutdown), streams and health
   * watches finish.
   */
  async drain(deadline: Promise<void>): Promise<void> {
    for (const d of this.detach.splice(0)) d();
    this.health.drain();
    for (const s of this.streams) s.drain();
    const shutdown = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    await Promise.race([shutdown, deadline]);
  }

  /** Ends whatever is still open (calls past the drain deadline). */
  async close(): Promise<void> {
    this.server.forceShutdown();
  }
}
