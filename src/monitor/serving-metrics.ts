// What the server is doing rather than what its requests did: readiness, each model's state,
// threads replaced after a crash, the prediction log's backlog, traffic weights and rollout states.
// Every value is read at scrape time from state the server keeps anyway (nothing on the request
// path), and each scrape rebuilds its gauges, so a model unloaded or a version retired leaves no
// series behind.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Umbra } from '../core/umbra.js';
import type { ThreadKind } from '../core/threads.js';
import type { ModelState } from '../repository/manager.js';
import type { TrafficReading } from './metrics.js';
import type { PredictionLog } from './prediction-log.js';

export interface ServingSources {
  core: Umbra;
  /** False once the server drains (readiness is this and the core's). */
  isAccepting: () => boolean;
  log: PredictionLog | undefined;
  /** Set by src/traffic through its monitor bridge; absent, no traffic series. */
  traffic: () => TrafficReading | undefined;
}

const MODEL_STATES: readonly string[] = ['ready', 'loading', 'unavailable'];
const ROLLOUT_STATES: readonly TrafficReading['rollouts'][number]['state'][] = ['running', 'paused', 'promoted', 'rolled_back'];
/** Kinds that are replaced when they end: each is exported from the start, at 0, so increase() sees the first. */
const REPLACED_KINDS: readonly ThreadKind[] = ['io', 'model'];

/** The repository's state in the metric's words; UNLOADING is gone from the repository in the same turn. */
function stateName(state: ModelState): string {
  return state === 'READY' ? 'ready' : state === 'LOADING' ? 'loading' : 'unavailable';
}

export function registerServingMetrics(registry: Registry, sources: ServingSources): void {
  const registers = [registry];
  const { core } = sources;
  const ready = new Gauge({
    name: 'umbra_ready',
    help: 'Whether the server is ready (1) as GET /v2/health/ready answers it: taking requests, every model it knows loaded, none held out of service; 0 otherwise.',
    registers,
    collect() {
      this.set(sources.isAccepting() && core.isReady() ? 1 : 0);
    },
  });
  const modelState = new Gauge({
    name: 'umbra_model_state',
    help: 'State of each model version the server knows: 1 for its state (ready, loading, unavailable: its load failed), 0 for the others. A model with no version serving (loading, or failed) has version="". An unloaded model has no series.',
    labelNames: ['model', 'version', 'state'],
    registers,
    collect() {
      this.reset();
      for (const m of core.manager.states()) {
        const now = stateName(m.state);
        for (const version of m.versions.length > 0 ? m.versions : ['']) {
          for (const state of MODEL_STATES) this.set({ model: m.name, version, state }, state === now ? 1 : 0);
        }
      }
    },
  });
  const replaced = new Counter({
    name: 'umbra_threads_replaced_total',
    help: 'Threads that ended while the server ran (a crash, a fatal error) and were replaced, by kind: io (I/O threads: their connections failed), model (model workers: the batch they ran failed).',
    labelNames: ['kind'],
    registers,
    collect() {
      const counts = core.threads.replacements();
      this.reset();
      for (const kind of REPLACED_KINDS) this.inc({ kind }, counts.get(kind) ?? 0);
    },
  });
  const backlog = new Gauge({
    name: 'umbra_prediction_log_backlog_rows',
    help: 'Prediction log rows waiting to be written: buffered, and in the batch the writer thread is writing. Past 50,000 buffered rows (the default bound) new ones are dropped. 0 without a log.',
    registers,
    collect() {
      this.set(sources.log?.backlog ?? 0);
    },
  });
  const weight = new Gauge({
    name: 'umbra_traffic_weight',
    help: 'Traffic policy in force, per version taking traffic: role primary or canary, its share of the model\'s unversioned requests (0..1); role shadow, the share of primary requests copied to it. A running rollout\'s current step included.',
    labelNames: ['model', 'version', 'role'],
    registers,
    collect() {
      this.reset();
      for (const w of sources.traffic()?.weights ?? []) this.set({ model: w.model, version: w.version, role: w.role }, w.weight);
    },
  });
  const rollout = new Gauge({
    name: 'umbra_rollout_state',
    help: 'Each model\'s latest rollout, by its candidate version: 1 for its state (running, paused: waiting for a person, promoted, rolled_back), 0 for the others, as GET /v2/models/M/rollout shows it.',
    labelNames: ['model', 'version', 'state'],
    registers,
    collect() {
      this.reset();
      for (const r of sources.traffic()?.rollouts ?? []) {
        for (const state of ROLLOUT_STATES) this.set({ model: r.model, version: r.version, state }, state === r.state ? 1 : 0);
      }
    },
  });
  void ready;
  void modelState;
  void replaced;
  void backlog;
  void weight;
  void rollout;
}
