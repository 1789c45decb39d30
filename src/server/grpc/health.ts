// grpc.health.v1.Health for Kubernetes gRPC probes and load balancers. Service "" (and
// "inference.GRPCInferenceService") is readiness: SERVING once every model has loaded, until the
// server drains. "liveness" is SERVING whenever the server answers (a liveness probe must not
// fail while models load). A model's name is that model's readiness. Check answers NOT_FOUND for
// a name the server does not know; Watch sends SERVICE_UNKNOWN and keeps watching, as the
// standard says.
import type { Umbra } from '../../core/umbra.js';
import { HEALTH_SERVICE, INFERENCE_SERVICE } from '../../protocol/proto/files.js';
import type { GrpcCall } from './call.js';
import { methodsOf, readRequest, requestTypeOf, unaryRoute, type Message, type Route } from './definition.js';
import { Status, statusError } from './status.js';

type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

export const LIVENESS_SERVICE = 'liveness';

export class HealthService {
  private readonly watchers = new Set<{ service: string; last: ServingStatus; call: GrpcCall; encode: (answer: Message) => Buffer }>();
  private readonly detach: (() => void)[] = [];

  constructor(private readonly core: Umbra, private readonly isAccepting: () => boolean) {
    const changed = () => this.notify();
    for (const event of ['loaded', 'unloaded', 'load-failed'] as const) {
      core.manager.on(event, changed);
      this.detach.push(() => core.manager.off(event, changed));
    }
    // A hook holding a model out of service (or letting it go) changes readiness too.
    this.detach.push(core.hooks.onChange(changed));
  }

  statusOf(service: string): ServingStatus {
    const manager = this.core.manager;
    if (service === LIVENESS_SERVICE) return 'SERVING';
    const accepting = this.isAccepting();
    if (service === '' || service === INFERENCE_SERVICE) return accepting && this.core.isReady() ? 'SERVING' : 'NOT_SERVING';
    if (!manager.names().includes(service)) return 'SERVICE_UNKNOWN';
    return accepting && this.core.isModelReady(service) ? 'SERVING' : 'NOT_SERVING';
  }

  /** Check and Watch, by method name. */
  routes(): Record<string, Route> {
    const methods = methodsOf(HEALTH_SERVICE);
    const watch = methods['Watch']!;
    const encode = watch.responseSerialize as (answer: Message) => Buffer;
    const serviceOf = (request: Message) => typeof request['service'] === 'string' ? request['service'] : '';
    return {
      Check: unaryRoute(methods['Check']!, 'Check', (request) => {
        const service = serviceOf(request);
        const status = this.statusOf(service);
        if (status === 'SERVICE_UNKNOWN') throw statusError(Status.NOT_FOUND, `unknown service or model ${JSON.stringify(service)}`);
        return { status };
      }),
      Watch: (call) => readRequest(call, requestTypeOf(watch, 'Watch'), watch.requestDeserialize as (bytes: Buffer) => Message, (request) => {
        const service = serviceOf(request);
        const watcher = { service, last: this.statusOf(service), call, encode };
        this.watchers.add(watcher);
        call.write(encode({ status: watcher.last }));
        call.cancellation.addEventListener('abort', () => this.watchers.delete(watcher));
      }),
    };
  }

  /** Sends each watcher its status if it changed. */
  notify(): void {
    for (const w of this.watchers) {
      const now = this.statusOf(w.service);
      if (now === w.last) continue;
      w.last = now;
      w.call.write(w.encode({ status: now }));
    }
  }

  /** Draining: every watcher hears NOT_SERVING, then its stream ends (so the drain can finish). */
  drain(): void {
    this.notify();
    for (const w of this.watchers) w.call.finish(Status.OK, '');
    this.watchers.clear();
    for (const d of this.detach.splice(0)) d();
  }
}
