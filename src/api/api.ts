// Transport-free HTTP API: (method, path, headers, body) -> (status, headers, body).
// The uWebSockets.js adapter and the tests both drive this; no socket logic lives here.
import { UmbraError, toErrorBody } from '../errors.js';
import { AdminGate } from './admin.js';
import type { Umbra } from '../core/umbra.js';
import { inferReply } from './infer-route.js';
import { predictTarget, v1Predict } from './v1-route.js';
import { hasInexactInteger, INEXACT_INTEGERS, parseJsonKeepingIntegers } from '../protocol/request-json.js';
import type { ModelVersion } from '../repository/model-version.js';
import { toTritonConfig } from '../repository/config.js';
import { base64File, readLoadOverrides, type LoadOverrides } from '../repository/overrides.js';
import type { AbortLike } from '../scheduler/cancellation.js';
import type { QueueBound } from '../scheduler/options.js';
import { VERSION } from '../version.js';
import { layerReportJson } from '../graph/layer-formats.js';
import { cudaStatus } from '../native/cuda.js';
import type { InferenceFront } from '../core/front.js';
import type { RequestContext } from '../core/hooks.js';

export interface ApiRequest {
  method: string;
  /** Path without the query string, percent-decoded per segment by the router. */
  path: string;
  query: string;
  /** Lower-case header names. */
  headers: Record<string, string>;
  body: Uint8Array;
  signal?: AbortLike;
  /**
   * The client's IP address, as the transport read it from the socket. Transports always set it;
   * without it the admin routes need the token (see AdminGate).
   */
  remoteAddress?: string;
  /** When the transport read the request (`performance.timeOrigin + performance.now()`); the wait since counts as queue time. */
  receivedAt?: number;
  /**
   * Memory the transport lends for a large reply body (`bytes` long). It takes the memory back
   * once the reply is written or the client has gone, so a route may put it in its reply's body
   * and nowhere else.
   */
  replyBuffer?: (bytes: number) => Buffer;
}

export interface ApiReply {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array | string;
  /**
   * A body that goes on after `body` (server-sent events): every chunk the stream writes is sent
   * as it comes, until the stream ends, the client leaves or the server drains.
   */
  stream?: ReplyStream;
}

export interface ReplyStream {
  /** Starts the stream; returns the function that stops it (the client left, or the server drains). */
  open(write: (chunk: string) => void, end: () => void): () => void;
}

export interface ApiOptions {
  adminToken?: string;
  /** Reported by readiness: false once draining starts. */
  isAccepting: () => boolean;
}

const JSON_TYPE = { 'content-type': 'application/json' };

export const EXTENSIONS = ['binary_tensor_data', 'classification', 'model_repository', 'model_configuration', 'statistics'];

/** Extensions served by a capability that may be off (monitoring serves statistics): advertised only while their route exists. */
const EXTENSION_ROUTES: Record<string, string> = { statistics: 'GET /v2/models/:/stats' };

function json(status: number, value: unknown, headers: Record<string, string> = {}): ApiReply {
  return { status, headers: Object.assign({}, JSON_TYPE, headers), body: JSON.stringify(value) };
}

export function errorReply(err: unknown): ApiReply {
  const { status, body, retryAfter } = toErrorBody(err);
  const headers: Record<string, string> = retryAfter !== undefined ? { 'retry-after': String(retryAfter) } : {};
  return json(status, body, headers);
}

/** Distinct method+path pairs whose route is remembered. */
const MATCH_CACHE_SIZE = 1024;

export type Handler = (req: ApiRequest, params: string[]) => Promise<ApiReply> | ApiReply;

/** Where capabilities register their routes (the Api is one). */
export interface RouteTable {
  route(method: Route['method'], path: string, handler: Handler): void;
}

interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Segments; ':' marks a parameter. */
  pattern: string[];
  handler: Handler;
}

let gpu: { cuda?: { devices: number; blas: { library: string; found: boolean; version: number } } } | undefined;

/**
 * Server metadata's `cuda` field on a host with a usable GPU: the device count and the vendor
 * BLAS dense layers run through (cuBLASLt and its version, or found: false). Absent elsewhere.
 */
function gpuMetadata(): NonNullable<typeof gpu> {
  if (gpu) return gpu;
  try {
    const status = cudaStatus();
    gpu = status.available ? { cuda: { devices: status.deviceCount, blas: { library: status.blas.library, found: status.blas.found, version: status.blas.version } } } : {};
  } catch {
    gpu = {};
  }
  return gpu;
}

export class Api implements RouteTable {
  private readonly routes: Route[] = [];
  private readonly matched = new Map<string, { route: Route; params: string[] }>();
  readonly adminGate: AdminGate;

  constructor(private readonly umbra: Umbra, private readonly options: ApiOptions) {
    this.adminGate = new AdminGate(options.adminToken);
    const r = (method: Route['method'], path: string, handler: Handler) => this.routes.push({ method, pattern: path.split('/').filter(Boolean), handler });
    r('GET', '/v2/health/live', () => json(200, { live: true }));
    r('GET', '/v2/health/ready', () => {
      const ready = this.options.isAccepting() && this.umbra.isReady();
      return json(ready ? 200 : 503, { ready });
    });
    r('GET', '/v2', () => json(200, { name: 'umbra', version: VERSION, extensions: this.extensions(), ...gpuMetadata() }));
    r('GET', '/v2/models/:m', (_q, [m]) => this.metadata(m!));
    r('GET', '/v2/models/:m/versions/:v', (_q, [m, v]) => this.metadata(m!, v));
    // Triton's model configuration extension: the configuration in force, defaults filled in.
    r('GET', '/v2/models/:m/config', (_q, [m]) => json(200, configInForce(this.umbra.defaultVersion(m!))));
    r('GET', '/v2/models/:m/versions/:v/config', (_q, [m, v]) => json(200, configInForce(this.umbra.manager.get(m!, v))));
    r('GET', '/v2/models/:m/ready', (_q, [m]) => this.modelReady(m!));
    r('GET', '/v2/models/:m/versions/:v/ready', (_q, [m, v]) => this.modelReady(m!, v));
    r('POST', '/v2/models/:m/infer', (q, [m]) => this.infer(q, m!));
    r('POST', '/v2/models/:m/versions/:v/infer', (q, [m, v]) => this.infer(q, m!, v));
    r('POST', '/v2/repository/index', (q) => this.repositoryIndex(q));
    // KServe's V1 data plane (TensorFlow Serving's REST API): model list, readiness and predict.
    r('GET', '/v1/models', () => json(200, { models: this.umbra.manager.names() }));
    r('GET', '/v1/models/:m', (_q, [m]) => this.modelReady(m!));
    r('POST', '/v1/models/:m', (q, [m]) => this.v1(q, m!));
    r('POST', '/v1/models/:m/versions/:v', (q, [m, v]) => this.v1(q, m!, v));
    // Triton's system shared-memory extension (src/core/shared-memory.ts); registering is an admin call.
    const shm = this.umbra.sharedMemory;
    r('GET', '/v2/systemsharedmemory/status', () => json(200, shm.status()));
    r('GET', '/v2/systemsharedmemory/region/:r/status', (_q, [name]) => json(200, shm.status(name!)));
    r('POST', '/v2/systemsharedmemory/region/:r/register', (q, [name]) => this.admin(q, async () => {
      const body = parseJsonObject(q.body, 'the shared memory register request');
      await shm.register(name!, body.key, body.offset, body.byte_size);
      return json(200, {});
    }));
    r('POST', '/v2/systemsharedmemory/unregister', (q) => this.admin(q, async () => {
      await shm.unregister();
      return json(200, {});
    }));
    r('POST', '/v2/systemsharedmemory/region/:r/unregister', (q, [name]) => this.admin(q, async () => {
      await shm.unregister(name!);
      return json(200, {});
    }));
    // CUDA shared memory (cudaIPC handles) is not taken: no region is ever registered.
    r('GET', '/v2/cudasharedmemory/status', () => json(200, []));
    r('GET', '/v2/cudasharedmemory/region/:r/status', (_q, [name]) => {
      throw new UmbraError('NOT_FOUND', `no CUDA shared memory region named ${JSON.stringify(name)}: this server takes no CUDA shared memory (register a system shared memory region instead)`);
    });
    r('POST', '/v2/cudasharedmemory/region/:r/register', () => {
      throw new UmbraError('INVALID_ARGUMENT', 'this server takes no CUDA shared memory: register a system shared memory region (POST /v2/systemsharedmemory/region/{name}/register, with --shared-memory on) and copy the tensor there');
    });
    r('POST', '/v2/cudasharedmemory/unregister', () => json(200, {}));
    r('POST', '/v2/cudasharedmemory/region/:r/unregister', () => json(200, {}));
    r('POST', '/v2/repository/models/:m/load', (q, [m]) => this.admin(q, () => this.load(q, m!)));
    r('POST', '/v2/repository/models/:m/unload', (q, [m]) => this.admin(q, () => this.unload(m!)));
  }

  /** Registers another route (capabilities add theirs: traffic, monitoring, lookup). */
  route(method: Route['method'], path: string, handler: Handler): void {
    this.routes.push({ method, pattern: path.split('/').filter(Boolean), handler });
    // A literal segment wins over a parameter in its place, whatever registered first: GET
    // /v2/models/stats is every model's statistics, not the metadata of a model named "stats".
    this.routes.sort(literalsFirst);
    this.matched.clear();
  }

  /** The extensions this server serves now (server metadata, REST and gRPC). */
  extensions(): string[] {
    const served = new Set(this.routes.map((route) => `${route.method} /${route.pattern.map((p) => (p.startsWith(':') ? ':' : p)).join('/')}`));
    const out = EXTENSIONS.filter((name) => EXTENSION_ROUTES[name] === undefined || served.has(EXTENSION_ROUTES[name]));
    if (this.umbra.sharedMemory.enabled) out.push('system_shared_memory');
    return out;
  }

  /**
   * The answer to a request that can be given from its method, path and headers alone, before
   * its body is read: the refusal of an infer request while the model version it would run on
   * refuses every request (Umbra.refuseEarly). Undefined sends it the usual way.
   */
  earlyReply(method: string, path: string, headers: Record<string, string>): ApiReply | undefined {
    return earlyInferRefusal(this.umbra, method, path, headers);
  }

  async handle(req: ApiRequest): Promise<ApiReply> {
    try {
      const found = this.resolve(req);
      return await found.route.handler(req, found.params);
    } catch (err) {
      return errorReply(err);
    }
  }

  /**
   * The route and parameters for a method and path. Clients repeat the same few paths (one infer
   * URL per model), so matches are remembered: splitting, decoding and walking the table once per
   * distinct path instead of once per request.
   */
  private resolve(req: ApiRequest): { route: Route; params: string[] } {
    const key = `${req.method} ${req.path}`;
    const known = this.matched.get(key);
    if (known) return known;
    const segments = splitPath(req.path);
    const allowed = new Set<string>();
    for (const route of this.routes) {
      const params = match(route.pattern, segments);
      if (!params) continue;
      if (route.method !== req.method) {
        allowed.add(route.method);
        continue;
      }
      // Bounded: a client walking endless distinct paths only resets the memory.
      if (this.matched.size >= MATCH_CACHE_SIZE) this.matched.clear();
      const found = { route, params };
      this.matched.set(key, found);
      return found;
    }
    if (allowed.size > 0) {
      // RFC 9110: a 405 lists the methods the resource takes (HEAD wherever GET is, as the transport answers it).
      if (allowed.has('GET')) allowed.add('HEAD');
      const allow = [...allowed].join(', ');
      const reply = errorReply(new UmbraError('METHOD_NOT_ALLOWED', `method ${req.method} is not allowed on ${req.path} (it takes ${allow})`));
      reply.headers.allow = allow;
      return { route: { method: req.method as Route['method'], pattern: [], handler: () => reply }, params: [] };
    }
    throw new UmbraError('NOT_FOUND', `no route for ${req.method} ${req.path}`);
  }

  /** The check every admin endpoint makes (see AdminGate): the token, or a loopback client when there is none. */
  checkAdmin(req: ApiRequest): void {
    this.adminGate.check(req);
  }

  private async admin(req: ApiRequest, action: () => Promise<ApiReply>): Promise<ApiReply> {
    this.checkAdmin(req);
    return action();
  }

  private metadata(model: string, version?: string): ApiReply {
    // Extension fields (OIP clients ignore fields they do not know; gRPC's message has no place
    // for them): how this version runs and what decided it, and its queue bound with the
    // measurement it rests on, both measured at load.
    const mv = version ? this.umbra.manager.get(model, version) : this.umbra.defaultVersion(model);
    return json(200, { ...modelMetadata(this.umbra, model, version), execution: executionOf(mv), queue: queueMetadata(mv.queueBound) });
  }

  private modelReady(model: string, version?: string): ApiReply {
    // Unknown models and versions are 404s, not "not ready".
    this.umbra.manager.get(model, version);
    const ready = this.options.isAccepting() && this.umbra.isModelReady(model, version);
    return json(ready ? 200 : 503, { name: model, ready });
  }

  /** POST /v1/models/{m}:predict, or /v1/models/{m}/versions/{v}:predict (the verb ends the last segment). */
  private v1(req: ApiRequest, model: string, version?: string): Promise<ApiReply> {
    const target = predictTarget(version ?? model);
    if (target === undefined) throw new UmbraError('NOT_FOUND', `no route for POST ${req.path}: the V1 protocol serves :predict (POST /v1/models/{m}:predict)`);
    let body = parseJsonObject(req.body, 'the request body');
    // Integers past what a double holds are read as spelled (as /v2 reads them), where the parser can.
    const text = Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength).toString('utf8');
    if (hasInexactInteger(text)) body = parseJsonKeepingIntegers(text) as Record<string, unknown>;
    const inexact = (body as Record<symbol, unknown>)[INEXACT_INTEGERS] === true;
    return version === undefined ? v1Predict(this.umbra, req, body, target, undefined, inexact) : v1Predict(this.umbra, req, body, model, target, inexact);
  }

  private infer(req: ApiRequest, model: string, version?: string): Promise<ApiReply> {
    return inferReply(this.umbra, req, model, version);
  }

  private async repositoryIndex(req: ApiRequest): Promise<ApiReply> {
    let readyOnly = false;
    if (req.body.byteLength > 0) {
      const body = parseJsonObject(req.body, 'the repository index request');
      if (body.ready !== undefined && typeof body.ready !== 'boolean') throw new UmbraError('INVALID_INPUT', 'expected a boolean for "ready"');
      readyOnly = body.ready === true;
    }
    return json(200, await this.umbra.manager.index(readyOnly));
  }

  /** Triton's load: a body {"parameters": {"config": "<JSON>", "file:1/model.onnx": "<base64>"}} loads the model as given. */
  private async load(req: ApiRequest, model: string): Promise<ApiReply> {
    let overrides: LoadOverrides | undefined;
    if (req.body.byteLength > 0) {
      const body = parseJsonObject(req.body, 'the load request');
      const parameters = body.parameters;
      if (parameters !== undefined && (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters))) {
        throw new UmbraError('INVALID_INPUT', 'expected an object for "parameters" in the load request');
      }
      overrides = readLoadOverrides(parameters as Record<string, unknown> | undefined, base64File);
    }
    await this.umbra.manager.load(model, overrides);
    return json(200, {});
  }

  private async unload(model: string): Promise<ApiReply> {
    await this.umbra.manager.unload(model);
    return json(200, {});
  }
}

/** The version's queue bound and its evidence, in the protocol's snake_case. */
function queueMetadata(bound: QueueBound): Record<string, unknown> {
  const out: Record<string, unknown> = { max_queue_size: bound.maxQueueSize, source: bound.source };
  if (bound.budgetMs !== undefined) out.budget_ms = bound.budgetMs;
  if (bound.budgetSource !== undefined) out.budget_source = bound.budgetSource;
  if (bound.batchRows !== undefined) out.measured_batch_rows = bound.batchRows;
  if (bound.batchMs !== undefined) out.measured_batch_ms = bound.batchMs;
  if (bound.batchLength !== undefined) out.measured_batch_length = bound.batchLength;
  if (bound.slots !== undefined) out.concurrent_batches = bound.slots;
  return out;
}

/**
 * GET .../config (and gRPC's ModelConfig): the version's configuration in Triton's shape, with the
 * queue bound in force (a derived one included, as the metadata's `queue` shows it).
 */
export function configInForce(mv: ModelVersion): Record<string, unknown> {
  return toTritonConfig(mv.config, mv.queueBound.maxQueueSize);
}

/** The metadata's `execution` field: backend, where batches run, and each native layer's format with its evidence. */
function executionOf(mv: ModelVersion): Record<string, unknown> {
  return {
    backend: mv.session.backend,
    placement: mv.placement,
    ...(mv.placementReason ? { placement_reason: mv.placementReason } : {}),
    ...(mv.providerNote ? { execution_providers_note: mv.providerNote } : {}),
    ...(mv.backendNote ? { backend_note: mv.backendNote } : {}),
    // One copy of the weights for every session of the version: its size.
    ...(mv.sharedWeights ? { shared_weights_bytes: mv.sharedWeights.bytes } : {}),
    // A model that does not batch, where the config left max_batch_size to it: why.
    ...(mv.config.batchingReason ? { batching: 'off', batching_reason: mv.config.batchingReason } : {}),
    ...(mv.layers ? { layers: layerReportJson(mv.layers) } : {}),
    // On a GPU below fp32 (config `precision`): the cost measured at load. (On the CPU, as
    // device: auto may land, the precision does not apply and nothing is shown.)
    ...(mv.accuracy ? { precision: mv.accuracy.precision, accuracy: { reference: mv.accuracy.reference, rows: mv.accuracy.rows, max_abs_diff: mv.accuracy.maxAbsDiff, rel_l2: mv.accuracy.relL2 } } : {}),
  };
}

function fullShape(mv: ModelVersion, dims: number[]): number[] {
  return mv.signature.maxBatchSize > 0 ? [-1, ...dims] : dims;
}

/** GET /v2/models/{m}[/versions/{v}] (and gRPC's ModelMetadata): versions, platform, inputs, outputs. */
export function modelMetadata(core: Umbra, model: string, version?: string): { name: string; versions: string[]; platform: string; inputs: TensorMetadata[]; outputs: TensorMetadata[] } {
  // Unversioned: the version such requests go to (the policy's primary), whose inputs they must have.
  const mv = version ? core.manager.get(model, version) : core.defaultVersion(model);
  const versions = version ? [mv.version] : core.manager.versionsOf(model).map((v) => v.version);
  return {
    name: mv.name,
    versions,
    platform: mv.session.backend === 'native' ? 'umbra_native' : 'onnxruntime_onnx',
    inputs: mv.signature.inputs.map((s) => ({ name: s.name, datatype: s.datatype, shape: fullShape(mv, s.dims) })),
    outputs: mv.signature.outputs.map((s) => ({ name: s.name, datatype: s.datatype, shape: fullShape(mv, s.dims) })),
  };
}

interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

type InferRoute = { model: string; version?: string };

/** Infer paths already split (clients repeat one per model): at most MATCH_CACHE_SIZE, null for other paths. */
const inferRoutes = new Map<string, InferRoute | null>();

/** /v2/models/{m}/infer and /v2/models/{m}/versions/{v}/infer; undefined for anything else (or a malformed path). */
export function inferRoute(path: string): InferRoute | undefined {
  if (!path.startsWith('/v2/models/') || !path.endsWith('/infer')) return undefined;
  const known = inferRoutes.get(path);
  if (known !== undefined) return known ?? undefined;
  let route: InferRoute | null = null;
  try {
    const segments = splitPath(path);
    if (segments.length === 4 && segments[3] === 'infer') route = { model: segments[2]! };
    else if (segments.length === 6 && segments[3] === 'versions' && segments[5] === 'infer') route = { model: segments[2]!, version: segments[4]! };
  } catch {
    route = null;
  }
  // Bounded: a client walking endless distinct paths only resets the memory.
  if (inferRoutes.size >= MATCH_CACHE_SIZE) inferRoutes.clear();
  inferRoutes.set(path, route);
  return route ?? undefined;
}

/** POST /v1/models/{m}:predict and /v1/models/{m}/versions/{v}:predict (KServe V1): the model and version; undefined otherwise. */
function predictRoute(path: string): InferRoute | undefined {
  if (!path.startsWith('/v1/models/') || !path.endsWith(':predict')) return undefined;
  let segments: string[];
  try {
    segments = splitPath(path);
  } catch {
    return undefined;
  }
  if (segments.length === 3) {
    const model = predictTarget(segments[2]!);
    return model === undefined ? undefined : { model };
  }
  if (segments.length === 5 && segments[3] === 'versions') {
    const version = predictTarget(segments[4]!);
    return version === undefined ? undefined : { model: segments[2]!, version };
  }
  return undefined;
}

/** Refusals as answered, by message: while a version refuses, every refusal is the same answer. */
const refusalReplies = new Map<string, ApiReply>();

/** An infer (or V1 predict) request's refusal before its body is read, where `front` gives one (see InferenceFront.refuseEarly). */
export function earlyInferRefusal(front: InferenceFront, method: string, path: string, headers: Record<string, string>): ApiReply | undefined {
  if (method !== 'POST' || !front.refuseEarly) return undefined;
  const route = inferRoute(path) ?? predictRoute(path);
  if (!route) return undefined;
  // As inferReply builds it: the hooks see a refused request's headers and transport.
  const context: RequestContext = { headers, transport: 'http' };
  const key = headers['x-umbra-key'];
  if (key) context.routingKey = key;
  const refusal = front.refuseEarly(route.model, route.version, context);
  if (!refusal) return undefined;
  let reply = refusalReplies.get(refusal.message);
  if (!reply) {
    if (refusalReplies.size >= 64) refusalReplies.clear();
    reply = errorReply(refusal);
    refusalReplies.set(refusal.message, reply);
  }
  return reply;
}

/** The path's segments, percent-decoded; a malformed escape is a 400. */
export function splitPath(path: string): string[] {
  const segments: string[] = [];
  for (const s of path.split('/')) {
    if (s === '') continue;
    // Most segments hold no escape: decoding them would only copy them (a tenth of a request's
    // routing on an I/O thread, where every infer request's path is split).
    if (!s.includes('%')) {
      segments.push(s);
      continue;
    }
    try {
      segments.push(decodeURIComponent(s));
    } catch {
      throw new UmbraError('INVALID_INPUT', `malformed percent-encoding in path segment '${s}'`);
    }
  }
  return segments;
}

/** Orders patterns segment by segment, a literal before a parameter (a stable sort keeps the rest in order). */
function literalsFirst(a: Route, b: Route): number {
  const n = Math.min(a.pattern.length, b.pattern.length);
  for (let i = 0; i < n; i++) {
    const pa = a.pattern[i]!.startsWith(':');
    const pb = b.pattern[i]!.startsWith(':');
    if (pa !== pb) return pa ? 1 : -1;
  }
  return a.pattern.length - b.pattern.length;
}

function match(pattern: string[], segments: string[]): string[] | undefined {
  if (pattern.length !== segments.length) return undefined;
  const params: string[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const s = segments[i]!;
    if (p.startsWith(':')) params.push(s);
    else if (p !== s) return undefined;
  }
  return params;
}


export function parseJsonObject(body: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch (err) {
    throw new UmbraError('INVALID_INPUT', `malformed JSON in ${what}: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UmbraError('INVALID_INPUT', `expected a JSON object for ${what}`);
  return value as Record<string, unknown>;
}
