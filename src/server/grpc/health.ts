// grpc.health.v1.Health for Kubernetes gRPC probes and load balancers. Service "" (and
// "inference.GRPCInferenceService") is readiness: SERVING once every model has loaded, until the
// server drains. "liveness" is SERVING whenever the server answers (a liveness probe must not
// fail while models load). A model's name is that model's readiness. Check answers NOT_FOUND for
// a name the server does not know; Watch sends SERVICE_UNKNOWN and keeps watching, as the
// standard says.
import { status as Status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from '@grpc/grpc-js';
import type { Umbra } from '../../core/umbra.js';
import { INFERENCE_SERVICE } from '../../protocol/proto/files.js';
import { MalformedMessage } from './definition.js';
import { statusError } from './status.js';

type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
type Request = { service?: unknown } | MalformedMessage;
type Response = { status: ServingStatus };

export const LIVENESS_SERVICE = 'liveness';

export class HealthService {
  private readonly watchers = new Set<{ service: string; last: ServingStatus; call: ServerWritableStream<Request, Response> }>();
  private readonly detach: (() => void)[] = [];

  constructor(private readonly core: Umbra, private readonly isAccepting: () => boolean) {
    const changed = () => this.notify();
    for (const event of ['loaded', 'unloaded', 'load-failed'] as const) {
      core.manager.on(event, changed);
      this.detach.push(() => core.manager.off(event, changed));
    }
  }

  statusOf(service: string): ServingStatus {
    const manager = this.core.manager;
    if (service === LIVENESS_SERVICE) return 'SERVING';
    const accepting = this.isAccepting();
    if (service === '' || service === INFERENCE_SERVICE) return accepting && manager.isReady() ? 'SERVING' : 'NOT_SERVING';
    if (!manager.names().includes(service)) return 'SERVICE_UNKNOWN';
    return accepting && manager.isModelReady(service) ? 'SERVING' : 'NOT_SERVING';
  }

  handlers(): Record<string, unknown> {
    return {
      Check: (call: ServerUnaryCall<Request, Response>, callback: sendUnaryData<Response>) => {
        const request = call.request;
        if (request instanceof MalformedMessage) {
          callback(statusError(Status.INVALID_ARGUMENT, request.message));
          return;
        }
        const service = typeof request.service === 'string' ? request.service : '';
        const status = this.statusOf(service);
        if (status === 'SERVICE_UNKNOWN') callback(statusError(Status.NOT_FOUND, `unknown service or model ${JSON.stringify(service)}`));
        else callback(null, { status });
      },
      Watch: (call: ServerWritableStream<Request, Response>) => {
        const request = call.request;
        if (request instanceof MalformedMessage) {
          call.destroy(statusError(Status.INVALID_ARGUMENT, request.message));
          return;
        }
        const service = typeof request.service === 'string' ? request.service : '';
        const watcher = { service, last: this.statusOf(service), call };
        this.watchers.add(watcher);
        call.write({ status: watcher.last });
        call.on('cancelled', () => this.watchers.delete(watcher));
      },
    };
  }

  /** Sends each watcher its status if it changed. */
  notify(): void {
    for (const w of this.watchers) {
      const now = this.statusOf(w.service);
      if (now === w.last) continue;
      w.last = now;
      w.call.write({ status: now });
    }
  }

  /** Draining: every watcher hears NOT_SERVING, then its stream ends (so the drain can finish). */
  drain(): void {
    this.notify();
    for (const w of this.watchers) w.call.end();
    this.watchers.clear();
    for (const d of this.detach.splice(0)) d();
  }
}
