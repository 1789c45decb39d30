// What a capability (traffic, monitoring, prediction lookup) gets when it plugs into the server:
// every dependency explicit, nothing found through module-level registries. Each capability
// exports one function taking this context (and the other capabilities it needs) and returns
// its handle; src/app.ts lists them in one place.
import type { Umbra } from '../core/umbra.js';
import type { ApiRequest, RouteTable } from './api.js';

export interface PluginContext {
  /** The inference entry point, the repository and the hooks. */
  readonly core: Umbra;
  /** Where the capability registers its routes. */
  readonly routes: RouteTable;
  /** Throws 401 (UNAUTHORIZED) unless the request carries the admin token. */
  readonly requireAdmin: (req: ApiRequest) => void;
  /** Whether admin routes need a token ('token') or answer loopback clients without one ('loopback'). */
  readonly adminGuard: 'token' | 'loopback';
  /** Whether the server takes new requests (false once it drains): readiness is this and the core's. */
  readonly isAccepting: () => boolean;
  /** Runs once when the server starts draining: stop starting background work. */
  onDrain(fn: () => void): void;
  /** Runs after the drain, once the core has closed: flush and close what the capability holds. */
  onStop(fn: () => Promise<void>): void;
}
