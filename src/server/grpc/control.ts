// Everything of GRPCInferenceService but inference: liveness, readiness, metadata, statistics and
// the model repository, answered from the same state the REST routes read.
import { isIP } from 'node:net';
import { status as Status, type Metadata, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { EXTENSIONS, modelMetadata, type Api, type ApiRequest } from '../../api/api.js';
import type { Umbra } from '../../core/umbra.js';
import { UmbraError, isUmbraError } from '../../errors.js';
import type { Monitor } from '../../monitor/index.js';
import { readLoadOverrides } from '../../repository/overrides.js';
import { VERSION } from '../../version.js';
import { MalformedMessage } from './definition.js';
import { statusError, toStatus } from './status.js';

export interface ControlDeps {
  core: Umbra;
  api: Api;
  monitor: Monitor | undefined;
  /** False once the server drains. */
  isAccepting: () => boolean;
}

type Message = Record<string, unknown>;
type Handler = (request: Message, metadata: Metadata, peer: string) => Message | Promise<Message>;

/** A unary handler: a malformed request is INVALID_ARGUMENT, a thrown error its status. */
export function unary(handler: Handler): (call: ServerUnaryCall<Message | MalformedMessage, Message>, callback: sendUnaryData<Message>) => void {
  return (call, callback) => {
    const request = call.request;
    if (request instanceof MalformedMessage) {
      callback(statusError(Status.INVALID_ARGUMENT, request.message));
      return;
    }
    let answer: Message | Promise<Message>;
    try {
      answer = handler(request, call.metadata, call.getPeer());
    } catch (err) {
      callback(toStatus(err));
      return;
    }
    Promise.resolve(answer).then((value) => callback(null, value), (err: unknown) => callback(toStatus(err)));
  };
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/**
 * The REST admin check (AdminGate), on the call's metadata and its peer: with no token, only a
 * loopback peer that came straight in (no proxy header) may call.
 */
function requireAdmin(api: Api, metadata: Metadata, peer: string): void {
  const headers: Record<string, string> = {};
  for (const name of ['authorization', 'forwarded', 'x-forwarded-for', 'x-real-ip']) {
    const value = metadata.get(name)[0];
    if (value !== undefined) headers[name] = typeof value === 'string' ? value : value.toString('latin1');
  }
  const request: ApiRequest = { method: 'POST', path: '', query: '', headers, body: new Uint8Array(0) };
  const address = peerAddress(peer);
  if (address !== undefined) request.remoteAddress = address;
  api.checkAdmin(request);
}

/**
 * The IP address in grpc-js's peer string: "127.0.0.1:5000", "::1:5000" (IPv6 unbracketed), or
 * with a scheme and brackets ("ipv6:[::1]:5000") as other versions write it; undefined for
 * anything else (a Unix socket, "unknown").
 */
export function peerAddress(peer: string): string | undefined {
  const bare = peer.replace(/^ipv[46]:/, '');
  // The port first: "::1:5000" is also an IPv6 address, but grpc-js always writes a TCP peer's port.
  const host = bare.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  if (isIP(host)) return host;
  return isIP(bare) ? bare : undefined;
}

/** A ModelRepositoryParameter map as plain values (the member its oneof chose). */
function repositoryParameters(map: unknown): Record<string, unknown> | undefined {
  if (typeof map !== 'object' || map === null) return undefined;
  const out: Record<string, unknown> = {};
  for (const [key, p] of Object.entries(map as Record<string, Record<string, unknown>>)) {
    const choice = p['parameter_choice'];
    out[key] = typeof choice === 'string' ? p[choice] : undefined;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function fileBytes(value: unknown, key: string): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new UmbraError('INVALID_INPUT', `expected the file's contents as bytes_param for parameter "${key}"`);
}

export function controlHandlers(deps: ControlDeps): Record<string, ReturnType<typeof unary>> {
  const { core, api, monitor } = deps;
  const manager = core.manager;
  return {
    ServerLive: unary(() => ({ live: true })),
    ServerReady: unary(() => ({ ready: deps.isAccepting() && manager.isReady() })),
    ModelReady: unary((req) => {
      const name = text(req.name);
      const version = text(req.version) || undefined;
      try {
        manager.get(name, version);
      } catch (err) {
        // Still loading is "not ready"; an unknown model or version is NOT_FOUND, as REST's 404.
        if (isUmbraError(err) && err.code === 'NOT_READY') return { ready: false };
        throw err;
      }
      return { ready: deps.isAccepting() && manager.isModelReady(name, version) };
    }),
    ServerMetadata: unary(() => ({ name: 'umbra', version: VERSION, extensions: EXTENSIONS })),
    ModelMetadata: unary((req) => modelMetadata(core, text(req.name), text(req.version) || undefined)),
    ModelStatistics: unary((req) => {
      if (!monitor) throw statusError(Status.UNIMPLEMENTED, 'statistics are kept by monitoring, which is off on this server (--monitoring on)');
      const name = text(req.name);
      const version = text(req.version) || undefined;
      if (name === '') {
        const all = manager.names().flatMap((m) => (monitor.statistics(m, version) as { model_stats: unknown[] }).model_stats);
        return { model_stats: all };
      }
      manager.get(name, version);
      return monitor.statistics(name, version) as Message;
    }),
    RepositoryIndex: unary(async (req) => {
      const entries = await manager.index(req.ready === true);
      return { models: entries.map((e) => ({ name: e.name, version: e.version ?? '', state: e.state, reason: e.reason ?? '' })) };
    }),
    RepositoryModelLoad: unary(async (req, metadata, peer) => {
      requireAdmin(api, metadata, peer);
      const overrides = readLoadOverrides(repositoryParameters(req.parameters), fileBytes);
      await manager.load(text(req.model_name), overrides);
      return {};
    }),
    RepositoryModelUnload: unary(async (req, metadata, peer) => {
      requireAdmin(api, metadata, peer);
      await manager.unload(text(req.model_name));
      return {};
    }),
  };
}
