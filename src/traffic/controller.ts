// Traffic for every model of one Umbra: the effective policy (explicit policy + running rollout),
// the routing and result hooks, shadow runs, rollout ticks and persistence.
import { join } from 'node:path';
import { UmbraError } from '../errors.js';
import type { InferEvent, RequestContext, UmbraHooks } from '../core/hooks.js';
import type { Umbra } from '../core/umbra.js';
import type { ModelVersion, TrafficRole } from '../repository/model-version.js';
import { readModelConfig } from '../repository/config.js';
import { analyse, DEFAULT_RULES, Evidence, type AnalysisResult, type AnalysisRules } from './analysis.js';
import { NO_MONITOR, type MonitorBridge } from './monitor-bridge.js';
import { parsePolicy, policyVersions, takesCanary, type TrafficPolicy } from './policy.js';
import { parseRolloutSpec, Rollout, type Decision, type RolloutSpec, type RolloutState } from './rollout.js';
import { DEFAULT_SHADOW_OPTIONS, ShadowRunner, type ShadowJob, type ShadowOptions, type ShadowOutcome } from './shadow.js';
import { TrafficStore } from './store.js';

export interface TrafficOptions {
  /** Where policy and rollout state persist (<stateDir>/<model>.traffic.json); unset = in memory (src/traffic/store.ts). */
  stateDir?: string;
  shadow?: Partial<ShadowOptions>;
  /** Injectable for tests: wall clock in ms and the canary/shadow draw. */
  now?: () => number;
  random?: () => number;
  /** Period of the rollout clock tick (time-based steps); 0 = none (tests tick by hand). */
  tickMs?: number;
  monitor?: MonitorBridge;
  /**
   * Where rollout decisions are logged, one line each (start, advance, retry, pause, resume,
   * promote, rollback, restart, with the reason); default standard output, as `umbra serve` logs.
   */
  log?: (line: string) => void;
}

function logToStdout(line: string): void {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

interface ModelTraffic {
  /** Explicit policy (PUT, config, state file); undefined = Umbra's default routing. */
  policy?: TrafficPolicy;
  rollout?: Rollout;
  /** The policy in force: `policy` with the rollout applied. */
  effective?: TrafficPolicy;
  knownVersions: string[];
  /** Model config `rollout`: set = continuous delivery of new versions. */
  auto?: Omit<RolloutSpec, 'candidate'>;
  /** Evidence about the canary (or first shadow) when no rollout runs, for GET /analysis. */
  ambient?: { subject: string; evidence: Evidence };
  /** Answers per version since it (re)loaded, for the warm-up a rollout leaves out of latency. */
  answered: Map<string, number>;
  /**
   * Why the saved state could not be read: which version is primary is then unknown, and Umbra's
   * default (the newest version) may be a candidate that was never vetted, so the model's
   * unversioned requests are refused and it is not ready until a policy is set (PUT, or a rollout).
   */
  damaged?: string;
}

// A client that went away (cancelled) is no server fault, but the rollout compares the candidate
// with the primary, where impatient clients weigh on both alike, and a candidate too slow to wait
// for must not pass for a good one: it counts against the version, as it did when it read internal.
const ERROR_OUTCOMES = new Set(['internal', 'timeout', 'rejected', 'cancelled']);

function latencyOf(event: InferEvent): number | undefined {
  return event.timing ? event.timing.queueMs + event.timing.computeMs : undefined;
}

export class TrafficController {
  readonly shadows: ShadowRunner;
  private readonly models = new Map<string, ModelTraffic>();
  private readonly store: TrafficStore;
  private readonly now: () => number;
  private readonly random: () => number;
  private timer: NodeJS.Timeout | undefined;
  private readonly detach: Array<() => void> = [];
  readonly monitor: MonitorBridge;
  private readonly log: (line: string) => void;

  constructor(private readonly umbra: Umbra, options: TrafficOptions = {}) {
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.monitor = options.monitor ?? NO_MONITOR;
    this.log = options.log ?? logToStdout;
    this.store = new TrafficStore(umbra.manager.repository, options.stateDir);
    this.shadows = new ShadowRunner({
      resolve: (model, version) => this.tryGet(model, version),
      primaryOf: (model) => {
        const p = this.models.get(model)?.effective?.primary;
        return p ? this.tryGet(model, p) : undefined;
      },
      run: (mv, request) => this.umbra.execute(mv, request, { role: 'shadow', context: { transport: 'in-process' } }),
      onOutcome: (o) => this.onShadowOutcome(o),
      onDropped: (model, version) => this.monitor.shadowDropped(model, version),
      random: this.random,
    }, { ...DEFAULT_SHADOW_OPTIONS, ...options.shadow });
    const hooks: UmbraHooks = {
      route: (model, requested, context) => this.route(model, requested, context),
      claims: (model) => {
        const t = this.models.get(model);
        return t !== undefined && (t.effective !== undefined || t.damaged !== undefined);
      },
      holds: (model) => this.models.get(model)?.damaged,
      held: () => [...this.models].flatMap(([name, t]) => (t.damaged !== undefined ? [name] : [])),
      primary: (model) => {
        const p = this.models.get(model)?.effective;
        return p ? this.tryGet(model, p.primary) : undefined;
      },
      onResult: (event) => this.onResult(event),
      // Routes by the routing key, which the transport takes from x-umbra-key; no other header.
      readsHeaders: false,
    };
    this.detach.push(umbra.hooks.use(hooks));
    this.monitor.readTraffic(() => this.reading());
    this.monitor.readRolloutVersions(() => this.rolloutVersions());
    const onLoaded = (name: string, versions: string[]) => this.onLoaded(name, versions);
    umbra.manager.on('loaded', onLoaded);
    this.detach.push(() => umbra.manager.off('loaded', onLoaded));
    const onUnloaded = (name: string) => this.onUnloaded(name);
    umbra.manager.on('unloaded', onUnloaded);
    this.detach.push(() => umbra.manager.off('unloaded', onUnloaded));
    // Models loaded before we attached.
    for (const name of umbra.manager.names()) {
      const versions = umbra.manager.versionsOf(name).map((v) => v.version);
      if (versions.length > 0) this.onLoaded(name, versions);
    }
    const tickMs = options.tickMs ?? 1000;
    if (tickMs > 0) {
      this.timer = setInterval(() => this.tickAll(), tickMs);
      this.timer.unref();
    }
  }

  private tryGet(model: string, version: string): ModelVersion | undefined {
    try {
      return this.umbra.manager.get(model, version);
    } catch {
      return undefined;
    }
  }

  // ---- hooks ----

  private route(model: string, requested: string | undefined, context: RequestContext): { version: ModelVersion; role: TrafficRole } | undefined {
    if (requested) return undefined;
    const t = this.models.get(model);
    if (t?.damaged !== undefined) throw new UmbraError('NOT_READY', t.damaged);
    const p = t?.effective;
    if (!p) return undefined;
    if (p.canary && takesCanary(model, p.canary.weight, context.routingKey, this.random)) {
      const mv = this.tryGet(model, p.canary.version);
      if (mv) return { version: mv, role: 'canary' };
    }
    const mv = this.tryGet(model, p.primary);
    return mv ? { version: mv, role: 'primary' } : undefined;
  }

  /**
   * The latency of one answer as rollout evidence: undefined while its version is in its warm-up
   * (the first `warmup` answers since it loaded), so cold runs weigh on neither side.
   */
  private warmLatency(t: ModelTraffic, version: string, latencyMs: number | undefined): number | undefined {
    const seen = t.answered.get(version) ?? 0;
    t.answered.set(version, seen + 1);
    const warmup = t.rollout?.record.spec.analysis.warmup ?? DEFAULT_RULES.warmup;
    return seen >= warmup ? latencyMs : undefined;
  }

  private onResult(event: InferEvent): void {
    if (event.role === 'shadow' || event.role === 'direct') return;
    const t = this.models.get(event.model);
    if (!t) return;
    const ok = !ERROR_OUTCOMES.has(event.outcome);
    const counts = event.outcome !== 'invalid';
    const latency = event.outcome === 'success' ? this.warmLatency(t, event.version, latencyOf(event)) : undefined;
    const p = t.effective;
    if (event.role === 'primary') {
      if (counts) {
        t.rollout?.observePrimary(ok, latency);
        t.ambient?.evidence.observePrimary(ok, latency);
      }
      if (event.outcome === 'success' && p && event.request && event.response) {
        for (const s of p.shadows) {
          if (s.sample < 1 && this.random() >= s.sample) continue;
          const job: ShadowJob = { request: event.request, primary: event.response, primaryLatencyMs: latencyOf(event) ?? event.durationMs, primaryWarm: latency !== undefined };
          if (event.timing) job.primaryComputeMs = event.timing.computeMs;
          this.shadows.offer(event.model, s.version, job);
        }
      }
      this.shadows.pumpModel(event.model);
    } else if (event.role === 'canary' && counts) {
      if (t.rollout && t.rollout.candidate === event.version) t.rollout.observeCanary(ok, latency);
      if (t.ambient?.subject === event.version) t.ambient.evidence.observeCandidate('canary', ok, latency);
    }
    if (t.rollout?.state === 'running') this.tick(event.model);
  }

  private onShadowOutcome(o: ShadowOutcome): void {
    const t = this.models.get(o.model);
    const agreement = this.shadows.agreementOf(o.model, o.version);
    if (agreement !== undefined) this.monitor.shadowAgreement(o.model, o.version, agreement);
    // Other observers saw the shadow answer as any other (the core ran it, role `shadow`): metrics
    // count it, drift watches its inputs and outputs, feedback scores it under the primary's id,
    // the log keeps it.
    if (!t) return;
    // Compute against compute on the same rows (see Evidence.observeCandidate).
    const compute = o.ok ? this.warmLatency(t, o.version, o.timing?.computeMs) : undefined;
    const primaryCompute = o.primaryWarm ? o.primaryComputeMs : undefined;
    if (t.rollout && t.rollout.candidate === o.version) {
      t.rollout.observeShadow(o.ok, compute, primaryCompute, o.comparison);
      this.tick(o.model);
    }
    if (t.ambient?.subject === o.version) {
      t.ambient.evidence.observeCandidate('shadow', o.ok, compute, primaryCompute);
      if (o.comparison) t.ambient.evidence.observeComparison(o.comparison);
    }
  }

  // ---- model lifecycle ----

  /** Runs inside the manager's 'loaded' event: a fault here must not fail the model's load. */
  private onLoaded(name: string, versions: string[]): void {
    try {
      this.loaded(name, versions);
    } catch (err) {
      process.emitWarning(`umbra traffic: model '${name}': ${(err as Error).message}; it keeps Umbra's default routing`);
    }
  }

  /**
   * A model no longer loaded lets go of what it holds here (its evidence, answer counts, shadow
   * counters and disagreement log): kept, every model name ever served would hold them for the
   * life of the process. What it saved (policy, rollout, versions seen) is read again at its next
   * load. A rollout under way keeps its entry, as does damaged state, which holds readiness.
   */
  private onUnloaded(name: string): void {
    if (this.umbra.manager.versionsOf(name).length > 0) return;
    const t = this.models.get(name);
    if (t?.rollout?.active || t?.damaged !== undefined) return;
    this.models.delete(name);
    this.shadows.forget(name);
  }

  /** How many models hold state here (for tests: a model unloaded lets go of its own). */
  get heldModels(): number {
    return this.models.size;
  }

  private loaded(name: string, versions: string[]): void {
    let t = this.models.get(name);
    const wasDamaged = t?.damaged !== undefined;
    // A reload reads damaged state again: repaired or removed, the model routes as it says.
    if (!t || wasDamaged) {
      t = this.initModel(name);
      this.models.set(name, t);
      if (wasDamaged || t.damaged !== undefined) this.umbra.hooks.changed();
    }
    this.readAutoConfig(name, t);
    // Nothing is guessed for a model whose state is damaged, and its file is kept for repair.
    if (t.damaged !== undefined) return;
    // A reload that dropped the candidate or the primary of a running rollout: its steps would
    // route to a version that is not there, so it pauses, saying which, until it is back.
    const r = t.rollout;
    if (r?.state === 'running') {
      const gone = [[r.candidate, 'candidate'], [r.record.baseline, 'primary']].filter(([v]) => !versions.includes(v!));
      if (gone.length > 0) {
        const what = gone.map(([v, role]) => `version ${v} (its ${role})`).join(' and ');
        this.apply(name, t, r.pauseFor(`${what} no longer loaded; load ${gone.length === 1 ? 'it' : 'them'} again and resume, or abort`));
      }
    }
    // A (re)loaded version starts cold.
    for (const v of versions) t.answered.delete(v);
    const fresh = versions.filter((v) => !t.knownVersions.includes(v)).sort((a, b) => Number(a) - Number(b));
    if (fresh.length === 0) return;
    const firstSight = t.knownVersions.length === 0;
    const previousNewest = t.knownVersions.length > 0 ? Math.max(...t.knownVersions.map(Number)) : 0;
    t.knownVersions = [...new Set([...t.knownVersions, ...versions])].sort((a, b) => Number(a) - Number(b));
    if (t.auto) {
      if (firstSight) {
        // Pin the primary so a new version waits for its rollout instead of taking traffic.
        t.policy ??= { primary: versions.reduce((a, b) => (Number(b) > Number(a) ? b : a)), canary: null, shadows: [] };
      } else {
        const candidate = fresh[fresh.length - 1]!;
        if (Number(candidate) > previousNewest && !t.rollout?.active) {
          try {
            this.startRollout(name, { ...t.auto, candidate });
            return;
          } catch (err) {
            process.emitWarning(`umbra traffic: continuous delivery of ${name} version ${candidate} did not start: ${(err as Error).message}`);
          }
        }
      }
    }
    this.refresh(name, t);
    // Models with no traffic configuration leave no file behind.
    if (t.auto || t.policy || t.rollout) this.persist(name, t);
  }

  private initModel(name: string): ModelTraffic {
    const t: ModelTraffic = { knownVersions: [], answered: new Map() };
    let saved: ReturnType<TrafficStore['read']>;
    try {
      saved = this.store.read(name);
    } catch (err) {
      // A damaged state file must not route by guesswork either: which version was primary is
      // unknown, and the default (the newest) may be an unvetted candidate. Versioned requests
      // still run; the rest wait for an operator, and the next policy rewrites the file.
      t.damaged = `model '${name}' does not know its primary version: ${(err as Error).message}; it answers only requests that name a version, and is not ready, until the file is repaired or removed and the model reloaded, or a policy is set with PUT /v2/models/${name}/traffic`;
      this.log(`umbra traffic: ${t.damaged}`);
    }
    if (saved) {
      if (saved.policy) t.policy = saved.policy;
      if (saved.rollout) {
        t.rollout = Rollout.resume(saved.rollout, this.now);
        const restart = t.rollout.record.history.at(-1);
        if (t.rollout.active && restart?.action === 'restart') this.announce(name, t.rollout, restart);
      }
      t.knownVersions = saved.known_versions;
    } else if (t.damaged === undefined) {
      const raw = this.configRaw(name);
      try {
        if (raw?.traffic !== undefined) t.policy = parsePolicy(raw.traffic, `model '${name}' config "traffic"`);
      } catch (err) {
        process.emitWarning(`umbra traffic: ${(err as Error).message}; ignoring it`);
      }
    }
    this.refresh(name, t);
    if (saved?.rollout) this.persist(name, t);
    return t;
  }

  private configRaw(name: string): Record<string, unknown> | undefined {
    try {
      return readModelConfig(join(this.umbra.manager.repository, name)).raw;
    } catch {
      return undefined;
    }
  }

  /** `rollout: "auto"` (default steps and rules) or `rollout: {auto: true, steps, analysis}`. */
  private readAutoConfig(name: string, t: ModelTraffic): void {
    const raw = this.configRaw(name)?.rollout;
    delete t.auto;
    if (raw === undefined || raw === 'off' || raw === false) return;
    if (raw === 'auto' || raw === true) {
      t.auto = parseRolloutSpec({}, `model '${name}' config "rollout"`, false);
      return;
    }
    const obj = raw as Record<string, unknown>;
    if (typeof raw === 'object' && raw !== null && obj.auto === false) return;
    t.auto = parseRolloutSpec(raw, `model '${name}' config "rollout"`, false);
  }

  /** Recomputes the effective policy (one assignment: routing sees the old or the new one). */
  private refresh(name: string, t: ModelTraffic): void {
    const base = t.policy;
    let effective: TrafficPolicy | undefined = base;
    if (t.rollout?.active) {
      const start = base ?? { primary: t.rollout.record.baseline, canary: null, shadows: [] };
      effective = t.rollout.applyTo(start);
    }
    const claimedBefore = t.effective !== undefined;
    t.effective = effective;
    // Whether this model's requests may bypass routing changed: tell the I/O threads.
    if (claimedBefore !== (effective !== undefined)) this.umbra.hooks.changed();
    const subject = effective?.canary?.version ?? effective?.shadows[0]?.version;
    if (!subject) delete t.ambient;
    else if (t.ambient?.subject !== subject) t.ambient = { subject, evidence: new Evidence(this.now()) };
  }

  private persist(name: string, t: ModelTraffic): void {
    this.store.write(name, { policy: t.policy ?? null, rollout: t.rollout?.record ?? null, known_versions: t.knownVersions });
  }

  private model(name: string): ModelTraffic {
    this.umbra.manager.get(name);
    const t = this.models.get(name);
    if (!t) throw new UmbraError('NOT_READY', `model '${name}' has not finished loading`, { retryAfter: 1 });
    return t;
  }

  private requireLoaded(name: string, versions: string[], what: string): void {
    const loaded = this.umbra.manager.versionsOf(name).map((v) => v.version);
    for (const v of versions) {
      if (!loaded.includes(v)) throw new UmbraError('INVALID_ARGUMENT', `${what} names version ${v} of model '${name}', which is not loaded (loaded: ${loaded.join(', ') || 'none'}; the model's version_policy decides which versions load)`);
    }
  }

  // ---- admin operations ----

  /** The policy in force, with the default (newest version) spelled out when none is set. */
  policyOf(name: string): Record<string, unknown> {
    const t = this.model(name);
    const p = t.effective;
    const loaded = this.umbra.manager.versionsOf(name).map((v) => v.version);
    // Damaged state names no primary: null, with the reason, rather than the default it does not use.
    const doc = t.damaged !== undefined
      ? { primary: null, canary: null, shadows: [], pinned: false, damaged_state: t.damaged }
      : p
        ? { primary: p.primary, canary: p.canary, shadows: p.shadows, pinned: true }
        : { primary: this.umbra.manager.get(name).version, canary: null, shadows: [], pinned: false };
    const missing = p ? policyVersions(p).filter((v) => !loaded.includes(v)) : [];
    // last_rollout: the state of the rollout GET .../rollout shows (running or finished), null when there is none.
    return { ...doc, loaded_versions: loaded, rollout: t.rollout?.active ? t.rollout.state : null, last_rollout: t.rollout?.state ?? null, ...(missing.length ? { unloaded_versions: missing } : {}) };
  }

  /**
   * The weights and rollouts in force for every loaded model, as routing applies them (for
   * /metrics, read at scrape time): a canary that is not loaded takes nothing, and a primary that
   * is not loaded leaves its share to the newest version, Umbra's default. A model held by damaged
   * state routes no unversioned request, so it has no weights.
   */
  reading(): { weights: { model: string; version: string; role: 'primary' | 'canary' | 'shadow'; weight: number }[]; rollouts: { model: string; version: string; state: RolloutState }[] } {
    const weights: ReturnType<TrafficController['reading']>['weights'] = [];
    const rollouts: ReturnType<TrafficController['reading']>['rollouts'] = [];
    for (const model of this.umbra.manager.names()) {
      const loaded = this.umbra.manager.versionsOf(model).map((v) => v.version);
      if (loaded.length === 0) continue;
      const t = this.models.get(model);
      if (t?.rollout) rollouts.push({ model, version: t.rollout.candidate, state: t.rollout.state });
      if (t?.damaged !== undefined) continue;
      const p = t?.effective;
      const canary = p?.canary && loaded.includes(p.canary.version) ? p.canary : null;
      const primary = p && loaded.includes(p.primary) ? p.primary : this.umbra.manager.get(model).version;
      weights.push({ model, version: primary, role: 'primary', weight: 1 - (canary?.weight ?? 0) });
      if (canary) weights.push({ model, version: canary.version, role: 'canary', weight: canary.weight });
      for (const s of p?.shadows ?? []) if (loaded.includes(s.version)) weights.push({ model, version: s.version, role: 'shadow', weight: s.sample });
    }
    return { weights, rollouts };
  }

  /** The candidate and baseline of every rollout under way (running or paused). */
  private rolloutVersions(): { model: string; version: string }[] {
    const out: { model: string; version: string }[] = [];
    for (const [model, t] of this.models) {
      if (t.rollout?.active) out.push({ model, version: t.rollout.candidate }, { model, version: t.rollout.record.baseline });
    }
    return out;
  }

  /** Replaces the policy atomically: validated, persisted, then swapped in. */
  setPolicy(name: string, value: unknown): Record<string, unknown> {
    const t = this.model(name);
    const policy = parsePolicy(value);
    this.requireLoaded(name, policyVersions(policy), 'the traffic policy');
    if (t.rollout?.active) throw new UmbraError('CONFLICT', `a rollout of version ${t.rollout.candidate} is ${t.rollout.state}; promote or abort it before changing the policy by hand`);
    const next: ModelTraffic = { ...t, policy };
    this.persist(name, next);
    t.policy = policy;
    // A policy set by hand names the primary: damaged state, if any, is replaced by it.
    const repaired = t.damaged !== undefined;
    delete t.damaged;
    this.refresh(name, t);
    if (repaired) this.umbra.hooks.changed();
    return this.policyOf(name);
  }

  startRollout(name: string, value: unknown): Record<string, unknown> {
    const t = this.model(name);
    const spec = parseRolloutSpec(value) as RolloutSpec;
    // Unset: the drift rule is on where it can judge, with monitoring on and a reference profile.
    spec.analysis.drift ??= this.monitor.hasDrift && this.monitor.hasProfile(name);
    if (spec.analysis.drift && !this.monitor.hasDrift) throw new UmbraError('INVALID_ARGUMENT', 'analysis.drift needs the monitoring module (driftVerdict), which is not available');
    if (spec.analysis.min_accuracy !== undefined && !this.monitor.hasAccuracy) throw new UmbraError('INVALID_ARGUMENT', 'analysis.min_accuracy needs the monitoring module (liveAccuracy), which is not available');
    if (t.rollout?.active) throw new UmbraError('CONFLICT', `a rollout of version ${t.rollout.candidate} is already ${t.rollout.state}; promote or abort it first`);
    if (t.damaged !== undefined) throw new UmbraError('CONFLICT', `${t.damaged}; a rollout needs a known primary to start from`);
    const baseline = t.effective?.primary ?? this.umbra.manager.get(name).version;
    if (spec.candidate === baseline) throw new UmbraError('INVALID_ARGUMENT', `the candidate version ${spec.candidate} is already the primary`);
    this.requireLoaded(name, [spec.candidate, baseline], 'the rollout');
    const base: TrafficPolicy = t.effective ? { ...t.effective, canary: null } : { primary: baseline, canary: null, shadows: [] };
    const rollout = Rollout.start(spec, baseline, this.now);
    this.persist(name, { ...t, policy: base, rollout });
    t.policy = base;
    t.rollout = rollout;
    this.refresh(name, t);
    this.announce(name, rollout, rollout.record.history.at(-1)!);
    return rollout.view();
  }

  rolloutOf(name: string): Record<string, unknown> {
    const t = this.model(name);
    if (!t.rollout) throw new UmbraError('NOT_FOUND', `model '${name}' has no rollout; start one with POST /v2/models/${name}/rollout`);
    return t.rollout.view(this.monitor.evidence(name, t.rollout.candidate, t.rollout.evidenceSince));
  }

  /** promote | abort | resume by hand. */
  command(name: string, action: 'promote' | 'abort' | 'resume'): Record<string, unknown> {
    const t = this.model(name);
    if (!t.rollout) throw new UmbraError('NOT_FOUND', `model '${name}' has no rollout`);
    const r = t.rollout;
    if (action !== 'abort') this.requireLoaded(name, action === 'promote' ? [r.candidate] : [r.candidate, r.record.baseline], `the rollout's ${action}`);
    const d = action === 'promote' ? r.promote() : action === 'abort' ? r.abort() : r.resume();
    this.apply(name, t, d);
    return r.view();
  }

  /** Runs every running rollout's clock (time-based steps). */
  tickAll(): void {
    for (const [name, t] of this.models) if (t.rollout?.state === 'running') this.tick(name);
  }

  tick(name: string): Decision | undefined {
    const t = this.models.get(name);
    const r = t?.rollout;
    if (!t || !r || r.state !== 'running') return undefined;
    const d = r.tick(this.monitor.evidence(name, r.candidate, r.evidenceSince));
    if (d) this.apply(name, t, d);
    return d;
  }

  /** A decision changes the policy: the end states fold the rollout into the explicit policy. */
  private apply(name: string, t: ModelTraffic, d: Decision): void {
    const r = t.rollout!;
    this.announce(name, r, d);
    if (!r.active) t.policy = r.applyTo(t.policy ?? { primary: r.record.baseline, canary: null, shadows: [] });
    this.refresh(name, t);
    try {
      this.persist(name, t);
    } catch (err) {
      process.emitWarning(`umbra traffic: could not persist the state of model '${name}': ${(err as Error).message}`);
    }
  }

  /** GET /analysis: the rollout's verdict, or one about the current canary/shadow with `rules`. */
  analysisOf(name: string, rules: AnalysisRules): Record<string, unknown> {
    const t = this.model(name);
    const r = t.rollout;
    let result: AnalysisResult;
    let extra: Record<string, unknown>;
    if (r?.active) {
      result = r.analysis(this.monitor.evidence(name, r.candidate, r.evidenceSince));
      extra = { source: 'rollout', state: r.state, candidate: r.candidate, primary: r.record.baseline, step: r.record.step };
    } else if (t.ambient) {
      const e = t.ambient.evidence;
      result = analyse({ step: e, rollout: e, shadowStep: e.canaryRequests === 0 }, rules, this.monitor.evidence(name, t.ambient.subject, e.since));
      extra = { source: 'traffic', candidate: t.ambient.subject, primary: t.effective?.primary ?? null, evidence: e.summary() };
    } else {
      result = { verdict: 'inconclusive', rules: [] };
      extra = { source: 'none', reason: `model '${name}' has no canary, shadow or rollout to judge` };
    }
    const failed = result.rules.filter((x) => x.verdict === 'fail').map((x) => x.rule);
    return { verdict: result.verdict, model: name, ...extra, failed_rules: failed, rules: result.rules, at: new Date(this.now()).toISOString() };
  }

  /** Every decision is said three ways: a log line, a webhook event and a counter (the last two with monitoring on). */
  private announce(name: string, r: Rollout, d: Decision): void {
    const where = d.action === 'advance' ? `step ${d.step} -> ${d.step + 1}` : `step ${d.step}`;
    this.log(`rollout of ${name} version ${r.candidate} over ${r.record.baseline}: ${d.action} at ${where} (${r.state}): ${d.reason}`);
    this.monitor.rolloutEvent({
      model: name, candidate: r.candidate, baseline: r.record.baseline, event: d.action, step: d.step, state: r.state,
      reason: d.reason, at: d.at, ...(d.verdict ? { verdict: d.verdict } : {}),
    });
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const d of this.detach.splice(0)) d();
    this.shadows.close();
  }
}
