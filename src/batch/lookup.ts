// The serving side of batch prediction: GET /v2/models/{m}/predictions/{key} and the
// `parameters.lookup_key` short-circuit, answering from the store when a prediction is there and
// fresh enough (the model's max_staleness), and running the model online otherwise.
import { Counter, register } from 'prom-client';
import { UmbraError, invalid } from '../errors.js';
import type { RequestContext } from '../core/hooks.js';
import type { ApiReply, ApiRequest } from '../api/api.js';
import type { PluginContext } from '../api/plugin.js';
import { float32ToHalf, isDataType, typedArrayFor } from '../protocol/index.js';
import type { InferRequest, InferResponse, Tensor } from '../protocol/types.js';
import type { ModelVersion } from '../repository/model-version.js';
import type { UmbraMetrics } from '../monitor/index.js';
import { parseStaleness } from './staleness.js';
import { openStore, type PredictionStore, type StoredPrediction, type StoredTensor } from './store.js';

export type LookupResult = 'hit' | 'miss' | 'stale' | 'error';

export interface LookupOptions {
  /** Entries kept in the read cache (0 = no cache); default 10000. */
  cacheSize?: number;
  /** How long a cached entry (found or absent) is trusted; default 1000 ms. */
  cacheTtlMs?: number;
  /** The server's metrics (monitoring on): the lookup counter is exported on its /metrics too. */
  metrics?: UmbraMetrics | undefined;
}

export interface PredictionService {
  readonly store: PredictionStore;
  /** Newest stored prediction for the key (of one version, or of any), through the cache. */
  lookup(model: string, version: string | undefined, key: string): Promise<StoredPrediction | undefined>;
  /** Lookup outcomes per model, and the cache's own counts. */
  stats(): { models: Record<string, Record<LookupResult, number>>; cache: { entries: number; hits: number; misses: number } };
  close(): Promise<void>;
}


interface CacheEntry {
  value: StoredPrediction | undefined;
  expires: number;
}

/** Opens the store at `url` and wires the lookup route and hook into the core. */
export async function predictionStorePlugin(ctx: PluginContext, url: string, options: LookupOptions = {}): Promise<PredictionService> {
  const store = await openStore(url);
  const service = new Lookups(store, options);
  ctx.routes.route('GET', '/v2/models/:m/predictions/:key', (req, [m, key]) => service.reply(req, m!, key!));
  // Also on the server's own /metrics registry when monitoring is on (it does not serve the default one).
  const serverRegistry = options.metrics?.registry;
  if (serverRegistry && !serverRegistry.getSingleMetric(LOOKUP_METRIC)) serverRegistry.registerMetric(lookupCounter());
  const detach = ctx.core.hooks.use({ answer: (mv, request, context) => service.answer(mv, request, context), readsHeaders: false });
  const close = async () => {
    detach();
    await store.close();
  };
  ctx.onStop(close);
  return { store, lookup: (m, v, k) => service.lookup(m, v, k), stats: () => service.stats(), close };
}

const LOOKUP_METRIC = 'umbra_lookup_total';

/** One counter per process, in the default prom-client registry. */
function lookupCounter(): Counter<'model' | 'result'> {
  const existing = register.getSingleMetric(LOOKUP_METRIC);
  if (existing) return existing as Counter<'model' | 'result'>;
  return new Counter({ name: LOOKUP_METRIC, help: 'Inference requests with parameters.lookup_key, by result: hit (answered from the store), miss, stale (both ran online), error (store unreachable, ran online).', labelNames: ['model', 'result'] });
}

class Lookups {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly counts = new Map<string, Record<LookupResult, number>>();
  private readonly staleness = new WeakMap<ModelVersion, number | undefined>();
  private readonly counter = lookupCounter();
  private readonly cacheSize: number;
  private readonly cacheTtlMs: number;
  private cacheHits = 0;
  private cacheMisses = 0;

  constructor(private readonly store: PredictionStore, options: LookupOptions) {
    this.cacheSize = options.cacheSize ?? 10_000;
    this.cacheTtlMs = options.cacheTtlMs ?? 1000;
  }

  async lookup(model: string, version: string | undefined, key: string): Promise<StoredPrediction | undefined> {
    if (this.cacheSize <= 0) return this.store.get(model, version, key);
    const id = `${model}\u0000${version ?? ''}\u0000${key}`;
    const now = Date.now();
    const hit = this.cache.get(id);
    if (hit && hit.expires > now) {
      this.cacheHits += 1;
      return hit.value;
    }
    this.cacheMisses += 1;
    const value = await this.store.get(model, version, key);
    // Map order is insertion order: re-inserting makes this the newest, the first is the oldest.
    this.cache.delete(id);
    this.cache.set(id, { value, expires: now + this.cacheTtlMs });
    if (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    return value;
  }

  async reply(req: ApiRequest, model: string, key: string): Promise<ApiReply> {
    const version = new URLSearchParams(req.query).get('version') ?? undefined;
    let found: StoredPrediction | undefined;
    try {
      found = await this.lookup(model, version, key);
    } catch (err) {
      throw new UmbraError('NOT_READY', `the prediction store ${this.store.description} is unavailable: ${(err as Error).message}`, { retryAfter: 1, cause: err });
    }
    if (!found) {
      throw new UmbraError('NOT_FOUND', `no stored prediction for key '${key}' of model '${model}'${version ? ` version ${version}` : ''}`);
    }
    const body = { model_name: found.model, model_version: found.version, key: found.key, computed_at: found.computedAt.toISOString(), outputs: found.outputs };
    return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  }

  async answer(mv: ModelVersion, request: InferRequest, context: RequestContext): Promise<InferResponse | undefined> {
    const raw = request.parameters.lookup_key;
    if (raw === undefined || raw === null) return undefined;
    if (typeof raw !== 'string' && typeof raw !== 'number') throw invalid('INVALID_INPUT', 'a string or number', 'parameters.lookup_key', raw);
    const rows = mv.signature.maxBatchSize > 0 ? (request.inputs[0]?.shape[0] ?? 1) : 1;
    if (rows !== 1) throw new UmbraError('INVALID_INPUT', `parameters.lookup_key names one prediction, so the request must have one row but it has ${rows}`);
    const key = String(raw);
    let found: StoredPrediction | undefined;
    try {
      found = await this.lookup(mv.name, mv.version, key);
    } catch {
      // The store being down must not fail requests the model can answer itself.
      return this.fallBack(mv, context, 'error');
    }
    if (!found) return this.fallBack(mv, context, 'miss');
    const maxAgeMs = this.maxStaleness(mv);
    if (maxAgeMs !== undefined && Date.now() - found.computedAt.getTime() > maxAgeMs) return this.fallBack(mv, context, 'stale', found);
    this.count(mv.name, 'hit');
    const wanted = request.outputs?.map((o) => o.name);
    const outputs = found.outputs.filter((o) => !wanted || wanted.includes(o.name)).map(toTensor);
    if (wanted) {
      for (const name of wanted) {
        if (!outputs.some((o) => o.name === name)) throw new UmbraError('INVALID_INPUT', `unexpected inference output '${name}' for model '${mv.name}'`);
      }
    }
    const response: InferResponse = {
      model_name: mv.name,
      model_version: found.version,
      parameters: { lookup: 'hit', computed_at: found.computedAt.toISOString() },
      outputs,
    };
    if (request.id !== undefined) response.id = request.id;
    return response;
  }

  private fallBack(mv: ModelVersion, context: RequestContext, result: LookupResult, found?: StoredPrediction): undefined {
    this.count(mv.name, result);
    context.responseParameters = { ...context.responseParameters, lookup: result };
    if (found) context.responseParameters.computed_at = found.computedAt.toISOString();
    return undefined;
  }

  private maxStaleness(mv: ModelVersion): number | undefined {
    if (!this.staleness.has(mv)) this.staleness.set(mv, parseStaleness(mv.config.parameters.max_staleness, mv.name));
    return this.staleness.get(mv);
  }

  private count(model: string, result: LookupResult): void {
    let c = this.counts.get(model);
    if (!c) {
      c = { hit: 0, miss: 0, stale: 0, error: 0 };
      this.counts.set(model, c);
    }
    c[result] += 1;
    this.counter.inc({ model, result });
  }

  stats(): ReturnType<PredictionService['stats']> {
    return {
      models: Object.fromEntries([...this.counts].map(([m, c]) => [m, { ...c }])),
      cache: { entries: this.cache.size, hits: this.cacheHits, misses: this.cacheMisses },
    };
  }
}

/** A stored output back as a response tensor (typed array in the datatype's storage). */
function toTensor(stored: StoredTensor): Tensor {
  const datatype = isDataType(stored.datatype) ? stored.datatype : 'FP32';
  const values = stored.data;
  const data = typedArrayFor(datatype, values.length);
  if (Array.isArray(data)) {
    values.forEach((v, i) => { data[i] = String(v); });
  } else if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    values.forEach((v, i) => { data[i] = BigInt(v as number | bigint); });
  } else if (datatype === 'FP16') {
    // Stored as floats (the JSON form); tensors hold raw half bits.
    values.forEach((v, i) => { (data as Uint16Array)[i] = float32ToHalf(v as number); });
  } else {
    const target = data as Float64Array;
    values.forEach((v, i) => { target[i] = typeof v === 'boolean' ? (v ? 1 : 0) : (v as number); });
  }
  return { name: stored.name, datatype, shape: stored.shape, data };
}
