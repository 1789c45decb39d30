// The model repository at run time: which versions are loaded, load/unload/reload with an atomic
// swap, readiness, and optional polling for new versions.
import { existsSync, realpathSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { EventEmitter } from 'node:events';
import { UmbraError, UnbatchedAnswersError } from '../errors.js';
import { readModel, modelSignature } from '../onnx/model-io.js';
import type { OpenExecution } from '../execution/types.js';
import { labelFilenames, readModelConfig, resolveConfigFile, type ResolvedModelConfig } from './config.js';
import { listModels, listVersions, noVersionReason, unservedEntries, parseVersion, selectVersions, validateModelName } from './layout.js';
import { ModelVersion } from './model-version.js';
import { OverrideStore, type LoadOverrides } from './overrides.js';

export type ModelState = 'LOADING' | 'READY' | 'UNAVAILABLE' | 'UNLOADING';

export interface IndexEntry {
  name: string;
  version?: string;
  state: ModelState;
  reason?: string;
}

interface ModelEntry {
  name: string;
  /** Serving versions, newest last. Replaced as a whole on reload (the atomic swap). */
  versions: Map<string, ModelVersion>;
  config?: ResolvedModelConfig;
  state: ModelState;
  reason?: string;
  /** Fingerprint of the files the serving set was loaded from, for polling. */
  fingerprint: string;
  /**
   * Fingerprint of the files a poll last failed to load: polling tries them again only once they
   * change, instead of loading (and warming up) a broken model on every pass.
   */
  failedFingerprint?: string;
  /** Serialises load/unload of one model. */
  busy: Promise<void>;
  /** Loads and unloads of the model queued or running (polling leaves such a model to the next pass). */
  pending: number;
}

export interface ManagerOptions {
  repository: string;
  /** Opens a version's execution (sessions, warm-up, placement); the execution layer provides it. */
  open: OpenExecution;
  /** Where models given in load requests live (overrides.ts): never inside the repository, which may be read-only. */
  overridesDir: string;
}

/** Where a model's configuration and versions are read from: the repository, or its override. */
interface ModelSource {
  configDir: string;
  /** The folder holding <model>/<version>/ (the repository, or the override store). */
  versionsRoot: string;
}

export class ModelManager extends EventEmitter {
  private readonly models = new Map<string, ModelEntry>();
  private pollTimer: NodeJS.Timeout | undefined;
  private pollGeneration = 0;
  /** Set by drainAll: no load or unload starts after it. */
  private closing = false;
  /** Old versions draining and releasing their sessions in the background (retire). */
  private readonly retiring = new Set<Promise<void>>();
  /** Models given in load requests, served beside the repository's. */
  readonly overrides: OverrideStore;

  constructor(private readonly options: ManagerOptions) {
    super();
    this.overrides = new OverrideStore(options.overridesDir);
    // Before any load or unload can start: what an earlier run cut short is put right first.
    this.recovered = this.overrides.recover();
  }

  /** What the start put right in the folder of models given in load requests, one note each (OverrideStore.recover). */
  readonly recovered: string[];

  get repository(): string {
    return this.options.repository;
  }

  /** What the top of the repository holds that is not served, as last seen: name there -> note (unservedEntries). */
  private unservedSeen = new Map<string, string>();

  /**
   * Notes on what the top of the repository holds that is not served (folders whose names cannot
   * name a model, model files outside a model folder), each with its fix; an 'unserved' event
   * tells of each new one, with its note.
   */
  unserved(): string[] {
    return [...this.unservedSeen.values()];
  }

  private lookForUnserved(): void {
    const now = unservedEntries(this.options.repository);
    for (const [name, note] of now) if (!this.unservedSeen.has(name)) this.emit('unserved', note);
    this.unservedSeen = now;
  }

  /** Loads every model of the repository and every model given in an earlier load request. Failures are recorded per model, not thrown. */
  async loadAll(): Promise<void> {
    this.lookForUnserved();
    await Promise.all(this.onDisk().map((n) => this.load(n).catch(() => undefined)));
  }

  /** Model names in the repository or the override store, sorted. */
  private onDisk(): string[] {
    return [...new Set([...listModels(this.options.repository), ...this.overrides.names()])].sort();
  }

  /**
   * Loads or reloads one model. On failure the versions already serving keep serving. With
   * `overrides` (a config, and files) the model is loaded as given, even one the repository does
   * not have; without, a model the repository has is loaded from the repository again.
   */
  load(name: string, overrides?: LoadOverrides): Promise<void> {
    validateModelName(name);
    // A name with no folder anywhere is not a model: no entry, so readiness is untouched.
    const given = overrides !== undefined && overrides.files.length > 0;
    if (!given && !this.models.has(name) && !this.onDisk().includes(name)) {
      return Promise.reject(new UmbraError('MODEL_NOT_FOUND', `no model '${name}' in repository ${this.options.repository}${overrides ? ' (a config alone overrides a model that exists; send its files too)' : ''}`));
    }
    return this.serialized(name, (entry) => (overrides ? this.loadGiven(entry, overrides) : this.loadFromRepository(entry)));
  }

  /** Runs `action` on the model's entry after whatever load or unload of it is running. */
  private serialized(name: string, action: (entry: ModelEntry) => Promise<void>, what = 'loaded'): Promise<void> {
    if (this.closing) return Promise.reject(new UmbraError('NOT_READY', `the model repository is closing; model '${name}' was not ${what}`));
    const entry = this.entry(name);
    entry.pending += 1;
    const run = entry.busy.then(() => action(entry)).finally(() => {
      entry.pending -= 1;
    });
    entry.busy = run.catch(() => undefined);
    return run;
  }

  /** The override in place, then the load; a failed load puts the previous override back. */
  private async loadGiven(entry: ModelEntry, overrides: LoadOverrides): Promise<void> {
    const change = await this.overrides.apply(entry.name, overrides);
    try {
      await this.doLoad(entry);
    } catch (err) {
      await change.undo().catch(() => undefined);
      this.forgetIfGone(entry);
      throw err;
    }
    await change.commit().catch(() => undefined);
  }

  /**
   * A refused load of a model given only in the request leaves nothing behind: with its files
   * taken back and nothing serving, the name is no model, so it neither lists as UNAVAILABLE nor
   * holds the server's readiness down (one mistaken upload must not take a serving pod out of
   * rotation). A model the repository has keeps its entry and its reason.
   */
  private forgetIfGone(entry: ModelEntry): void {
    if (entry.versions.size > 0 || entry.pending > 1 || this.models.get(entry.name) !== entry) return;
    if (this.onDisk().includes(entry.name)) return;
    this.models.delete(entry.name);
  }

  /** A model the repository has drops its override (Triton's rule); one only given in a request reloads as it is. */
  private async loadFromRepository(entry: ModelEntry): Promise<void> {
    const inRepository = listModels(this.options.repository).includes(entry.name);
    if (!inRepository || !existsSync(this.overrides.modelDir(entry.name))) {
      // A given model unloaded just before this load (queued behind it) has no files left: no entry either.
      await this.doLoad(entry).catch((err: unknown) => {
        this.forgetIfGone(entry);
        throw err;
      });
      return;
    }
    const removal = await this.overrides.remove(entry.name);
    try {
      await this.doLoad(entry);
    } catch (err) {
      await removal.undo().catch(() => undefined);
      throw err;
    }
    await removal.commit().catch(() => undefined);
  }

  private sourceOf(name: string): ModelSource {
    return {
      configDir: this.overrides.hasConfig(name) ? this.overrides.modelDir(name) : join(this.options.repository, name),
      versionsRoot: this.overrides.hasVersions(name) ? this.overrides.dir : this.options.repository,
    };
  }

  /**
   * Unloads one model. What a load request gave goes with it (as Triton forgets a model loaded
   * with overrides): otherwise a restart or a poll would load an unloaded model again, and its
   * files would stay for good. Its folder is set aside first, so an unload that cannot remove it
   * fails with the model still serving. A repository model's own files are never touched.
   */
  unload(name: string): Promise<void> {
    validateModelName(name);
    if (!this.models.has(name)) return Promise.reject(new UmbraError('MODEL_NOT_FOUND', `unknown model '${name}'`));
    // Queued on the entry like a load (and counted in `pending`), so a load asked after it runs
    // after it, on the entry it leaves listed.
    return this.serialized(name, async (entry) => {
      const removal = await this.overrides.remove(name);
      await this.doUnload(entry);
      await removal.commit().catch(() => undefined);
    }, 'unloaded');
  }

  private entry(name: string): ModelEntry {
    let entry = this.models.get(name);
    if (!entry) {
      entry = { name, versions: new Map(), state: 'LOADING', fingerprint: '', busy: Promise.resolve(), pending: 0 };
      this.models.set(name, entry);
    }
    return entry;
  }

  private async doLoad(entry: ModelEntry): Promise<void> {
    const source = this.sourceOf(entry.name);
    const dir = join(source.versionsRoot, entry.name);
    const hadServing = entry.versions.size > 0;
    if (!hadServing) entry.state = 'LOADING';
    try {
      const file = readModelConfig(source.configDir);
      const filename = file.modelFilename;
      const available = listVersions(source.versionsRoot, entry.name, filename);
      if (available.length === 0) throw new UmbraError('LOAD_FAILED', noVersionReason(entry.name, dir, filename));
      // The model's config (its policy, file name, batching) comes from the newest version's graph.
      const newest = available[available.length - 1]!;
      const signature = modelSignature(readModel(join(dir, String(newest), filename)));
      let config = resolveConfigFile(file, signature, entry.name);
      const selected = selectVersions(available, config.versionPolicy);
      if (selected.length === 0) throw new UmbraError('LOAD_FAILED', `version policy of model '${entry.name}' selects none of versions ${available.join(', ')}`);
      const fingerprint = await this.fingerprint(entry.name, selected, config.modelFilename);
      // Each older version is resolved against its own graph: requests are checked against the
      // inputs of the version that serves them, and a config's explicit inputs must match every one.
      const signatures = new Map(selected.map((v) => [v, v === newest ? signature : modelSignature(readModel(join(dir, String(v), filename)))]));
      const resolveFor = (v: number, unbatched?: string): ResolvedModelConfig => {
        if (v === newest && unbatched === undefined) return config;
        try {
          return resolveConfigFile(file, signatures.get(v)!, entry.name, unbatched);
        } catch (err) {
          throw v === newest ? err : new UmbraError('LOAD_FAILED', `version ${v}: ${(err as Error).message}`, { cause: err });
        }
      };
      const fresh = new Map<string, ModelVersion>();
      const openAll = (unbatched?: string) => Promise.allSettled(selected.map(async (v) => {
        const version = String(v);
        const resolved = resolveFor(v, unbatched);
        const execution = await this.options.open({ name: entry.name, version, modelPath: join(dir, version, resolved.modelFilename), config: resolved });
        return new ModelVersion(entry.name, version, resolved, execution);
      }));
      const loaded = (results: PromiseSettledResult<ModelVersion>[]) => results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      let settled = await openAll();
      let failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      // Every input and output had a dynamic first dim, so the model was loaded to batch, but its
      // answers at warm-up did not have a row per request row: where the config left
      // max_batch_size to the model, it is loaded again to take requests one at a time.
      if (failed?.reason instanceof UnbatchedAnswersError && config.maxBatchSizeDerived) {
        let single: ResolvedModelConfig | undefined;
        try {
          single = resolveConfigFile(file, signature, entry.name, failed.reason.reason);
        } catch {
          // The config's other fields need batching (dynamic_batching, dims without the batch):
          // the first error, which says to set max_batch_size: 0, stands.
        }
        if (single) {
          await this.retire(loaded(settled));
          config = single;
          settled = await openAll(failed.reason.reason);
          failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        }
      }
      if (failed) {
        // All or nothing: the versions that did load are released before the old set keeps serving.
        await this.retire(loaded(settled));
        throw failed.reason;
      }
      for (const r of settled) if (r.status === 'fulfilled') fresh.set(r.value.version, r.value);
      // The swap: one assignment. Requests already holding an old ModelVersion finish on it.
      const old = entry.versions;
      entry.versions = fresh;
      entry.config = config;
      entry.state = 'READY';
      delete entry.reason;
      entry.fingerprint = fingerprint;
      delete entry.failedFingerprint;
      this.emit('loaded', entry.name, [...fresh.keys()]);
      void this.retire([...old.values()]);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // The reason is shown to any client (index, ops page, a request's 404); the log keeps the host's paths.
      entry.reason = this.withoutHostPaths(message);
      if (!hadServing) entry.state = 'UNAVAILABLE';
      this.emit('load-failed', entry.name, message);
      throw err instanceof UmbraError ? err : new UmbraError('LOAD_FAILED', `failed to load model '${entry.name}': ${message}`, { cause: err });
    }
  }

  /** `message` with paths under the repository or the override store written relative to it. */
  private withoutHostPaths(message: string): string {
    const roots = new Set<string>();
    for (const dir of [this.options.repository, this.options.overridesDir]) {
      roots.add(resolve(dir));
      try {
        roots.add(realpathSync(dir));
      } catch {
        // Not made yet (the override store before its first model): only the path as given can appear.
      }
    }
    let out = message;
    for (const root of [...roots].sort((a, b) => b.length - a.length)) {
      const escaped = root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      out = out.split(root + sep).join('').replace(new RegExp(`${escaped}(?![\\w.-])`, 'g'), '.');
    }
    return out;
  }

  private async doUnload(entry: ModelEntry): Promise<void> {
    entry.state = 'UNLOADING';
    const old = [...entry.versions.values()];
    // With a load or unload of the model queued behind this one, the entry stays listed, serving
    // nothing, for that one to act on: removed here, a queued load would load into an entry no
    // longer listed, and the model would end loaded but neither listed nor served.
    if (entry.pending > 1) {
      entry.versions = new Map();
      delete entry.config;
      entry.fingerprint = '';
      delete entry.reason;
    } else {
      this.models.delete(entry.name);
    }
    this.emit('unloaded', entry.name);
    await this.retire(old);
  }

  /** Drains old versions in the background, then releases their sessions on every worker. */
  private retire(versions: ModelVersion[]): Promise<void> {
    const done = Promise.all(versions.map(async (mv) => {
      // A version that fails to drain is still released: its sessions must not leak.
      await mv.drain().catch(() => undefined);
      await mv.release().catch(() => undefined);
    })).then(() => undefined);
    this.retiring.add(done);
    void done.finally(() => this.retiring.delete(done));
    return done;
  }

  private async fingerprint(name: string, versions: number[], filename: string): Promise<string> {
    const parts: string[] = [];
    const source = this.sourceOf(name);
    for (const file of ['config.json', 'config.pbtxt']) {
      const s = await stat(join(source.configDir, file)).catch(() => undefined);
      if (s) parts.push(`${source.configDir}/${file}:${s.mtimeMs}:${s.size}`);
    }
    // Labels are read with the config: a changed label file must reload the model as a changed config does.
    let labels: string[] = [];
    try {
      labels = labelFilenames(readModelConfig(source.configDir));
    } catch {
      // A config that cannot be read: its own stat above already tells a change.
    }
    for (const file of labels) {
      const s = await stat(join(source.configDir, file)).catch(() => undefined);
      parts.push(`${file}:${s ? `${s.mtimeMs}:${s.size}` : 'missing'}`);
    }
    for (const v of versions) {
      const s = await stat(join(source.versionsRoot, name, String(v), filename));
      parts.push(`${v}:${s.mtimeMs}:${s.size}`);
    }
    return parts.join('|');
  }

  /** The version that serves a request: the named one, or the newest loaded. */
  get(name: string, version?: string): ModelVersion {
    validateModelName(name);
    const entry = this.models.get(name);
    if (!entry || entry.versions.size === 0) {
      if (entry?.state === 'LOADING') throw new UmbraError('NOT_READY', `model '${name}' is still loading`, { retryAfter: 1 });
      // A model in the repository that failed to load is known: say so, and why, not "unknown".
      if (entry?.reason) throw new UmbraError('MODEL_NOT_FOUND', `model '${name}' is not available (${entry.state}): ${entry.reason}`);
      throw new UmbraError('MODEL_NOT_FOUND', `unknown model '${name}'`);
    }
    if (version === undefined || version === '') return newestOf(entry.versions);
    // Keyed by the folder's name: a version given as the number 1 (a JavaScript caller) is '1',
    // where it was "has no loaded version 1 (loaded: 1, 2)".
    const mv = entry.versions.get(String(parseVersion(version)));
    if (!mv) throw new UmbraError('VERSION_NOT_FOUND', `model '${name}' has no loaded version ${version} (loaded: ${[...entry.versions.keys()].join(', ')})`);
    return mv;
  }

  /** Loaded versions of a model (empty when unknown). */
  versionsOf(name: string): ModelVersion[] {
    return [...(this.models.get(name)?.versions.values() ?? [])];
  }

  configOf(name: string): ResolvedModelConfig | undefined {
    return this.models.get(name)?.config;
  }

  /** Ready when at least one model is known and every known model serves. */
  isReady(): boolean {
    if (this.models.size === 0) return false;
    for (const e of this.models.values()) if (e.state !== 'READY') return false;
    return true;
  }

  /**
   * Every model the server holds an entry for (loaded, loading, or failed to load; an unloaded
   * model has none), with its state and serving versions. Synchronous and cheap: a scrape reads it.
   */
  states(): { name: string; state: ModelState; versions: string[] }[] {
    return [...this.models.values()].map((e) => ({ name: e.name, state: e.state, versions: [...e.versions.keys()] }));
  }

  isModelReady(name: string, version?: string): boolean {
    try {
      this.get(name, version);
      return this.models.get(name)?.state === 'READY';
    } catch {
      return false;
    }
  }

  /** Triton's repository index: every model in the repository directory (or given in a load request), loaded or not. */
  async index(readyOnly = false): Promise<IndexEntry[]> {
    const onDisk = this.onDisk();
    const names = [...new Set([...onDisk, ...this.models.keys()])].sort();
    const out: IndexEntry[] = [];
    for (const name of names) {
      const e = this.models.get(name);
      if (!e) {
        if (!readyOnly) out.push({ name, state: 'UNAVAILABLE', reason: 'unloaded' });
        continue;
      }
      if (e.versions.size === 0) {
        if (!readyOnly) out.push({ name, state: e.state, ...(e.reason ? { reason: e.reason } : {}) });
        continue;
      }
      for (const v of e.versions.keys()) out.push({ name, version: v, state: e.state });
    }
    return out;
  }

  /** Every `seconds`, reload models whose files changed, load new ones, unload removed ones. */
  startPolling(seconds: number): void {
    this.stopPolling();
    // A pass still running when polling restarts must not re-arm its own timer beside the new one.
    const generation = this.pollGeneration;
    const tick = async () => {
      try {
        await this.pollOnce();
      } finally {
        if (this.pollGeneration === generation) this.pollTimer = setTimeout(tick, seconds * 1000).unref();
      }
    };
    this.pollTimer = setTimeout(tick, seconds * 1000).unref();
  }

  stopPolling(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    this.pollGeneration += 1;
  }

  /** One polling pass; exported for tests so they need no timers. */
  async pollOnce(): Promise<void> {
    if (this.closing) return;
    this.lookForUnserved();
    const onDisk = new Set(this.onDisk());
    const work: Promise<void>[] = [];
    for (const name of onDisk) {
      const e = this.models.get(name);
      // A model being loaded (at start, by an admin, by the last pass) is compared once that is
      // done: its fingerprint is the one before, so it would look changed and load twice.
      if (e && e.pending > 0) continue;
      // Polling reloads what is on disk as it is: an override stays in place.
      if (!e) {
        work.push(this.serialized(name, (entry) => this.doLoad(entry)));
        continue;
      }
      const config = e.config;
      const filename = config?.modelFilename ?? 'model.onnx';
      let versions: number[] = [];
      try {
        versions = listVersions(this.sourceOf(name).versionsRoot, name, filename);
      } catch {
        // Unreadable right now (mid-copy, permissions): compare as changed and let load report it.
      }
      const selected = config ? selectVersions(versions, config.versionPolicy) : versions;
      const fp = await this.fingerprint(name, selected, filename).catch(() => '');
      if (fp === e.fingerprint || fp === e.failedFingerprint) continue;
      work.push(this.serialized(name, (entry) => this.doLoad(entry).catch((err: unknown) => {
        entry.failedFingerprint = fp;
        throw err;
      })));
    }
    for (const name of this.models.keys()) if (!onDisk.has(name)) work.push(this.unload(name));
    await Promise.allSettled(work);
  }

  /**
   * Stops polling, lets the loads and unloads under way finish (no new one starts), then drains
   * every version (used on shutdown). The worker pool stops after this: stopped under a worker
   * that was still opening or releasing a session, onnxruntime-node aborted the process.
   */
  async drainAll(): Promise<void> {
    this.stopPolling();
    this.closing = true;
    await Promise.all([...this.models.values()].map((e) => e.busy));
    await Promise.all(this.retiring);
    const all = [...this.models.values()].flatMap((e) => [...e.versions.values()]);
    await Promise.all(all.map((mv) => mv.drain()));
  }

  /** Names of models currently known (loaded or failed). */
  names(): string[] {
    return [...this.models.keys()];
  }
}

function newestOf(versions: Map<string, ModelVersion>): ModelVersion {
  let best: ModelVersion | undefined;
  for (const mv of versions.values()) if (!best || Number(mv.version) > Number(best.version)) best = mv;
  return best!;
}
