// THE one place where traffic meets src/monitor: shadow metrics go to its prom-client registry
// (umbra_shadow_dropped_total, umbra_shadow_agreement), rollout decisions to its counter
// (umbra_rollout_events_total) and webhook, the weights and rollout states in force are read at
// scrape time (umbra_traffic_weight, umbra_rollout_state), and its drift verdict and live accuracy feed rollout
// analysis. With monitoring off every call is a no-op and the drift/accuracy rules are refused at
// validation. Traffic's own stats stay the source of truth for GET /shadow.
import type { Monitor, TrafficReading } from '../monitor/index.js';
import type { RolloutEvent } from '../monitor/monitor.js';
import type { MonitorEvidence } from './analysis.js';

export type { RolloutEvent } from '../monitor/monitor.js';

export interface MonitorBridge {
  readonly hasDrift: boolean;
  readonly hasAccuracy: boolean;
  /** Whether the model has a reference profile (`umbra profile`) to judge drift against. */
  hasProfile(model: string): boolean;
  /** A rollout decision: counted, and sent to the webhook when one is set. */
  rolloutEvent(event: RolloutEvent): void;
  shadowDropped(model: string, version: string): void;
  /** `agreement`: the version's running agreement with the primary, 0..1. */
  shadowAgreement(model: string, version: string, agreement: number): void;
  /** How /metrics reads the weights and rollouts in force, at each scrape. */
  readTraffic(read: () => TrafficReading): void;
  /** The monitor's evidence on a version; live accuracy only from labels of predictions made at or after `sinceMs`. */
  evidence(model: string, version: string, sinceMs: number): MonitorEvidence;
  /** The versions rollouts under way name: their live accuracy is kept while they are not loaded (a paused rollout's evidence). */
  readRolloutVersions(read: () => { model: string; version: string }[]): void;
}

export const NO_MONITOR: MonitorBridge = {
  hasDrift: false,
  hasAccuracy: false,
  hasProfile: () => false,
  rolloutEvent: () => undefined,
  shadowDropped: () => undefined,
  shadowAgreement: () => undefined,
  readTraffic: () => undefined,
  evidence: () => ({}),
  readRolloutVersions: () => undefined,
};

/** The bridge to one server's monitor; with none (monitoring off), NO_MONITOR. */
export function monitorBridge(monitor: Monitor | undefined): MonitorBridge {
  if (!monitor) return NO_MONITOR;
  return {
    hasDrift: true,
    hasAccuracy: true,
    hasProfile(model) {
      return monitor.hasProfile(model);
    },
    rolloutEvent(event) {
      monitor.recordRollout(event);
    },
    shadowDropped(model, version) {
      monitor.metrics.shadowDropped.inc({ model, version });
    },
    shadowAgreement(model, version, agreement) {
      monitor.metrics.shadowAgreement.set({ model, version }, agreement);
    },
    readTraffic(read) {
      monitor.metrics.collectors.traffic = read;
    },
    evidence(model, version, sinceMs) {
      const out: MonitorEvidence = {};
      const drift = monitor.driftReport(model, version);
      if (drift) out.drift = { verdict: drift.verdict === 'drift' ? 'fail' : drift.verdict === 'no_drift' ? 'pass' : 'inconclusive', detail: { window: drift.window } };
      const acc = monitor.liveAccuracy(model, version, sinceMs);
      if (acc && acc.accuracy !== undefined) out.accuracy = { value: acc.accuracy, samples: acc.window };
      return out;
    },
    readRolloutVersions(read) {
      monitor.keepWindowsOf(read);
    },
  };
}
