// What an I/O thread needs to know of the core to parse requests itself, and to answer an inline
// model's requests itself: each loaded version's signature, which model a hook may route
// elsewhere, the plans of inline versions. The core's thread builds it from the repository and the
// hooks and sends it on every load, unload and routing change; a request the catalog cannot vouch
// for goes to the core's thread unparsed, and one it cannot answer locally goes there parsed.
import { createHash } from 'node:crypto';
import type { Umbra } from '../../core/umbra.js';
import type { Executor, ExecutionPlan } from '../../execution/executor.js';
import type { ModelSignature } from '../../protocol/types.js';
import { SharedMemoryTable } from '../../protocol/shared-memory.js';
import type { Catalog, QueueCounts } from './wire.js';
import { queueFill } from '../../scheduler/options.js';

const fingerprints = new WeakMap<ModelSignature, string>();

/** A short digest of everything parsing checks against (names, datatypes, dims, batch size). */
export function signatureFingerprint(signature: ModelSignature): string {
  let fp = fingerprints.get(signature);
  if (fp === undefined) {
    fp = createHash('sha1').update(JSON.stringify(signature)).digest('base64');
    fingerprints.set(signature, fp);
  }
  return fp;
}

/** `local`: whether I/O threads may answer inline versions themselves (UMBRA_IO_LOCAL=0 says no). */
export function buildCatalog(core: Umbra, local: boolean): Catalog {
  const manager = core.manager;
  const catalog: Catalog = { models: {}, signatures: {}, replicas: {}, answering: core.hooks.hasAnswering, headers: core.hooks.readsHeaders, idPrefix: core.ids?.prefix ?? null, admission: {} };
  if (core.sharedMemory.enabled) catalog.sharedMemory = core.sharedMemory.regions();
  for (const name of manager.names()) {
    const versions: Record<string, string> = {};
    const seen = new Set<string>();
    for (const mv of manager.versionsOf(name)) {
      const fp = signatureFingerprint(mv.signature);
      versions[mv.version] = fp;
      seen.add(fp);
      catalog.signatures[fp] = mv.signature;
      const plan = local ? mv.execution.replicaPlan?.() : undefined;
      if (plan) catalog.replicas[`${name}/${mv.version}`] = plan;
      const board = mv.execution.admission?.();
      if (board) catalog.admission[`${name}/${mv.version}`] = board;
    }
    let fallback: string | null = null;
    try {
      fallback = manager.get(name).version;
    } catch {
      fallback = null;
    }
    // An unversioned request may be routed to any loaded version (canary, rollout): it can be
    // parsed ahead of routing only when every version takes the same inputs.
    catalog.models[name] = { versions, uniform: seen.size === 1 ? [...seen][0]! : null, default: fallback, claimed: core.hooks.claims(name) };
  }
  return catalog;
}

const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/** The I/O thread's copy. Signature objects stay the same while their fingerprint does (parsers cache per object). */
export class CatalogView {
  private catalog: Catalog = { models: {}, signatures: {}, replicas: {}, answering: true, headers: true, idPrefix: null, admission: {} };
  private readonly objects = new Map<string, ModelSignature>();
  /** Views of each version's admission flag (the memory is the core's: see Catalog.admission). */
  private boards = new Map<string, { flag: Int32Array; refusals: Record<number, string> }>();
  /** The shared-memory regions requests parsed here may use; undefined while the extension is off. */
  sharedMemory: SharedMemoryTable | undefined;

  get current(): Catalog {
    return this.catalog;
  }

  update(next: Catalog): void {
    this.catalog = next;
    if (next.sharedMemory === undefined) this.sharedMemory = undefined;
    else (this.sharedMemory ??= new SharedMemoryTable()).replace(next.sharedMemory);
    for (const fp of [...this.objects.keys()]) if (!has(next.signatures, fp)) this.objects.delete(fp);
    for (const [fp, sig] of Object.entries(next.signatures)) if (!this.objects.has(fp)) this.objects.set(fp, sig);
    this.boards = new Map(Object.entries(next.admission).map(([key, board]) => [key, { flag: new Int32Array(board.flag), refusals: board.refusals }]));
  }

  /**
   * The version a request for (model, version) runs on, where this thread can tell without its
   * body: no hook may answer requests without the model, and an unversioned one only when no
   * hook claims the model (its default). Undefined otherwise.
   */
  target(model: string, version: string | undefined): { version: string; role: 'primary' | 'direct' } | undefined {
    const c = this.catalog;
    if (c.answering) return undefined;
    const entry = has(c.models, model) ? c.models[model] : undefined;
    if (!entry) return undefined;
    const named = version !== undefined && version !== '';
    // A named version is never rerouted; an unversioned one only when no hook claims the model.
    if (!named && entry.claimed) return undefined;
    const chosen = named ? version : entry.default;
    if (chosen === null || !has(entry.versions, chosen)) return undefined;
    return { version: chosen, role: named ? 'direct' : 'primary' };
  }

  /** The message of the refusal the core's batcher of model/version would give any request now, or undefined while it admits. */
  refusal(model: string, version: string): string | undefined {
    const board = this.boards.get(`${model}/${version}`);
    if (!board) return undefined;
    const state = Atomics.load(board.flag, 0);
    return state === 0 ? undefined : board.refusals[state];
  }

  /** The signature a request for (model, version) can be parsed against, or undefined. */
  lookup(model: string, version: string | undefined): { fp: string; signature: ModelSignature } | undefined {
    const entry = has(this.catalog.models, model) ? this.catalog.models[model] : undefined;
    if (!entry) return undefined;
    const fp = version === undefined || version === '' ? entry.uniform : has(entry.versions, version) ? entry.versions[version] : undefined;
    if (fp === undefined || fp === null) return undefined;
    const signature = this.objects.get(fp);
    return signature ? { fp, signature } : undefined;
  }

  /**
   * The version this thread may answer itself for (model, version), and its role: only when no
   * hook may route the model elsewhere or answer without it, and the version runs inline.
   */
  localVersion(model: string, version: string | undefined): { version: string; role: 'primary' | 'direct' } | undefined {
    const target = this.target(model, version);
    return target && has(this.catalog.replicas, `${model}/${target.version}`) ? target : undefined;
  }
}

/** This thread's replicas of inline versions, opened and retired as the catalog changes. */
export class LocalReplicas {
  private readonly ready = new Map<string, Executor>();
  private readonly opening = new Set<string>();
  private plans: Record<string, ExecutionPlan> = {};
  private closed = false;

  constructor(private readonly open: (plan: ExecutionPlan) => Promise<Executor>) {}

  update(plans: Record<string, ExecutionPlan>): void {
    this.plans = plans;
    const wanted = new Set(Object.values(plans).map((p) => p.session.key));
    for (const plan of Object.values(plans)) {
      const key = plan.session.key;
      if (this.ready.has(key) || this.opening.has(key)) continue;
      this.opening.add(key);
      this.open(plan).then((executor) => {
        this.opening.delete(key);
        if (this.closed || !this.wanted(key)) void retire(executor);
        else this.ready.set(key, executor);
      }, (err: Error) => {
        // The core's own session keeps serving this version's requests.
        this.opening.delete(key);
        process.stderr.write(`umbra: an I/O thread could not open ${key} (its requests go to the core thread): ${err.message}\n`);
      });
    }
    for (const [key, executor] of this.ready) {
      if (wanted.has(key)) continue;
      this.ready.delete(key);
      void retire(executor);
    }
  }

  private wanted(key: string): boolean {
    return Object.values(this.plans).some((p) => p.session.key === key);
  }

  get(model: string, version: string): Executor | undefined {
    const plan = has(this.plans, `${model}/${version}`) ? this.plans[`${model}/${version}`] : undefined;
    return plan ? this.ready.get(plan.session.key) : undefined;
  }

  /** Each ready replica's queue, by "model/version": what the core's gauges add to its own. */
  queues(): Record<string, QueueCounts> {
    const out: Record<string, QueueCounts> = {};
    for (const [name, plan] of Object.entries(this.plans)) {
      const executor = this.ready.get(plan.session.key);
      if (!executor) continue;
      const s = executor.stats();
      const bound = executor.queueBound.maxQueueSize;
      out[name] = { pending: s.pending, inFlight: s.inFlight, executingRequests: s.executingRequests, maxQueueSize: bound, fullest: queueFill(s.pending + s.stagedRequests, bound) };
    }
    return out;
  }

  /** Drains and releases every replica (the thread is stopping). */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.ready.values()];
    this.ready.clear();
    await Promise.all(all.map(retire));
  }
}

async function retire(executor: Executor): Promise<void> {
  await executor.drain().catch(() => undefined);
  await executor.release().catch(() => undefined);
}
