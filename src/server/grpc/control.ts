// Everything of GRPCInferenceService but inference: liveness, readiness, metadata, statistics and
// the model repository, answered from the same state the REST routes read.
import { configInForce, modelMetadata, type Api, type ApiRequest } from '../../api/api.js';
import type { Umbra } from '../../core/umbra.js';
import { UmbraError, isUmbraError } from '../../errors.js';
import type { Monitor } from '../../monitor/index.js';
import { readLoadOverrides } from '../../repository/overrides.js';
import { VERSION } from '../../version.js';
import type { GrpcCall } from './call.js';
import type { Message, UnaryHandler } from './definition.js';
import { Status, statusError } from './status.js';

export interface ControlDeps {
  core: Umbra;
  api: Api;
  monitor: Monitor | undefined;
  /** False once the server drains. */
  isAccepting: () => boolean;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** A uint64 field as protobufjs decodes it (a number, a Long, or its decimal string). */
function uint(value: unknown): number | string {
  if (typeof value === 'number') return value;
  if (value === undefined || value === null) return 0;
  return String(value);
}

/**
 * The REST admin check (AdminGate), on the call's metadata and its peer: with no token, only a
 * loopback peer that came straight in (no proxy header) may call.
 */
function requireAdmin(api: Api, call: GrpcCall): void {
  const headers: Record<string, string> = {};
  for (const name of ['authorization', 'forwarded', 'x-forwarded-for', 'x-real-ip']) {
    const value = call.metadata(name);
    if (value !== undefined) headers[name] = value;
  }
  const request: ApiRequest = { method: 'POST', path: '', query: '', headers, body: new Uint8Array(0) };
  const address = call.remoteAddress;
  if (address !== undefined) request.remoteAddress = address;
  api.checkAdmin(request);
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

export function controlHandlers(deps: ControlDeps): Record<string, UnaryHandler> {
  const { core, api, monitor } = deps;
  const manager = core.manager;
  return {
    ServerLive: () => ({ live: true }),
    ServerReady: () => ({ ready: deps.isAccepting() && core.isReady() }),
    ModelReady: (req) => {
      const name = text(req.name);
      const version = text(req.version) || undefined;
      try {
        manager.get(name, version);
      } catch (err) {
        // Still loading is "not ready"; an unknown model or version is NOT_FOUND, as REST's 404.
        if (isUmbraError(err) && err.code === 'NOT_READY') return { ready: false };
        throw err;
      }
      return { ready: deps.isAccepting() && core.isModelReady(name, version) };
    },
    ServerMetadata: () => ({ name: 'umbra', version: VERSION, extensions: api.extensions() }),
    ModelMetadata: (req) => modelMetadata(core, text(req.name), text(req.version) || undefined) as unknown as Message,
    // REST's GET /v2/models/{m}[/versions/{v}]/config, in the same shape.
    // Unversioned: the version such requests go to (the policy's primary), as REST's /config.
    ModelConfig: (req) => ({ config: configInForce(text(req.version) ? manager.get(text(req.name), text(req.version)) : core.defaultVersion(text(req.name))) }),
    ModelStatistics: (req) => {
      if (!monitor) throw statusError(Status.UNIMPLEMENTED, 'statistics are kept by monitoring, which is off on this server (--monitoring on)');
      const name = text(req.name);
      const version = text(req.version) || undefined;
      if (name === '') {
        const all = manager.names().flatMap((m) => (monitor.statistics(m, version) as { model_stats: unknown[] }).model_stats);
        return { model_stats: all };
      }
      manager.get(name, version);
      return monitor.statistics(name, version) as Message;
    },
    RepositoryIndex: async (req) => {
      const entries = await manager.index(req.ready === true);
      return { models: entries.map((e) => ({ name: e.name, version: e.version ?? '', state: e.state, reason: e.reason ?? '' })) };
    },
    RepositoryModelLoad: async (req, call) => {
      requireAdmin(api, call);
      const overrides = readLoadOverrides(repositoryParameters(req.parameters), fileBytes);
      await manager.load(text(req.model_name), overrides);
      return {};
    },
    RepositoryModelUnload: async (req, call) => {
      requireAdmin(api, call);
      await manager.unload(text(req.model_name));
      return {};
    },
    SystemSharedMemoryStatus: (req) => {
      const regions: Record<string, Message> = {};
      for (const r of core.sharedMemory.status(text(req.name) || undefined)) regions[r.name] = { ...r };
      return { regions };
    },
    SystemSharedMemoryRegister: async (req, call) => {
      requireAdmin(api, call);
      await core.sharedMemory.register(text(req.name), text(req.key), uint(req.offset), uint(req.byte_size));
      return {};
    },
    SystemSharedMemoryUnregister: async (req, call) => {
      requireAdmin(api, call);
      await core.sharedMemory.unregister(text(req.name) || undefined);
      return {};
    },
    CudaSharedMemoryStatus: (req) => {
      const name = text(req.name);
      if (name !== '') throw statusError(Status.NOT_FOUND, `no CUDA shared memory region named ${JSON.stringify(name)}: this server takes no CUDA shared memory (register a system shared memory region instead)`);
      return { regions: {} };
    },
    CudaSharedMemoryRegister: () => {
      throw statusError(Status.UNIMPLEMENTED, 'this server takes no CUDA shared memory: register a system shared memory region (SystemSharedMemoryRegister, with --shared-memory on) and copy the tensor there');
    },
    CudaSharedMemoryUnregister: () => ({}),
  };
}
