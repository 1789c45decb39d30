// `umbra serve` monitoring flags, resolved by src/cli/settings.ts like every other flag
// (flag > UMBRA_* env > config file) and turned into MonitoringOptions here.
import { join, resolve } from 'node:path';
import { parseBuckets } from './metrics.js';
import { DRIFT_DEFAULTS } from './drift.js';
import { describeLogUrl } from './log-store.js';
import type { MonitoringOptions } from './monitor.js';

export interface MonitorField {
  key: string;
  flag: string;
  env: string;
  kind: 'string' | 'int' | 'number';
  min?: number;
  max?: number;
  /** A number within min..max that is still refused: why (e.g. a gap in the range), else undefined. */
  check?: (n: number) => string | undefined;
}

export const MONITOR_FIELDS: MonitorField[] = [
  { key: 'monitoring', flag: '--monitoring', env: 'UMBRA_MONITORING', kind: 'string' },
  { key: 'logDb', flag: '--log-db', env: 'UMBRA_LOG_DB', kind: 'string' },
  { key: 'logSample', flag: '--log-sample', env: 'UMBRA_LOG_SAMPLE', kind: 'number', min: 0, max: 1 },
  { key: 'logInputs', flag: '--log-inputs', env: 'UMBRA_LOG_INPUTS', kind: 'string' },
  { key: 'logInputsSample', flag: '--log-inputs-sample', env: 'UMBRA_LOG_INPUTS_SAMPLE', kind: 'number', min: 0, max: 1 },
  { key: 'logRetentionDays', flag: '--log-retention-days', env: 'UMBRA_LOG_RETENTION_DAYS', kind: 'number', min: 0 },
  { key: 'logMaxRows', flag: '--log-max-rows', env: 'UMBRA_LOG_MAX_ROWS', kind: 'int', min: 0 },
  { key: 'logTensorMaxValues', flag: '--log-tensor-max-values', env: 'UMBRA_LOG_TENSOR_MAX_VALUES', kind: 'int', min: 0 },
  { key: 'metricsBuckets', flag: '--metrics-buckets', env: 'UMBRA_METRICS_BUCKETS', kind: 'string' },
  { key: 'driftWindow', flag: '--drift-window', env: 'UMBRA_DRIFT_WINDOW', kind: 'int', min: 1 },
  { key: 'driftWindowSeconds', flag: '--drift-window-seconds', env: 'UMBRA_DRIFT_WINDOW_SECONDS', kind: 'number', min: 0 },
  { key: 'driftThresholds', flag: '--drift-thresholds', env: 'UMBRA_DRIFT_THRESHOLDS', kind: 'string' },
  { key: 'driftMinSamples', flag: '--drift-min-samples', env: 'UMBRA_DRIFT_MIN_SAMPLES', kind: 'int', min: 1 },
  { key: 'webhook', flag: '--webhook', env: 'UMBRA_WEBHOOK', kind: 'string' },
  // Read by the CLI's settings (the file's content becomes feedbackToken), as --admin-token-file.
  { key: 'feedbackTokenFile', flag: '--feedback-token-file', env: 'UMBRA_FEEDBACK_TOKEN_FILE', kind: 'string' },
  { key: 'accuracyThreshold', flag: '--accuracy-threshold', env: 'UMBRA_ACCURACY_THRESHOLD', kind: 'number', min: 0, max: 1 },
  // An error of 0 is a perfect regression: a threshold there would alert on every rounding.
  { key: 'errorThreshold', flag: '--error-threshold', env: 'UMBRA_ERROR_THRESHOLD', kind: 'number', min: 0,
    check: (n) => (n > 0 ? undefined : 'expected a positive number (the live mean absolute error above which a regression model alerts)') },
];

/** Where `umbra serve` logs predictions unless told otherwise: in its state directory, never in the repository. */
export function defaultLogDb(stateDir: string): string {
  return `sqlite:${join(resolve(stateDir), 'predictions.sqlite')}`;
}

/** Where versions before the state directory logged by default; read by nothing, pointed at once in the log. */
export function legacyLogPath(repository: string): string {
  return join(resolve(repository), '.umbra', 'predictions.sqlite');
}

function onOff(value: unknown, flag: string): boolean {
  if (value === undefined) return true;
  if (value === 'on' || value === 'true') return true;
  if (value === 'off' || value === 'false') return false;
  throw new Error(`expected on or off for ${flag} but received ${JSON.stringify(value)}`);
}

/**
 * Takes the monitoring keys out of `values` (resolved flags) and returns the server option; the
 * default log and the reference profiles live in `stateDir`.
 * Throws Error with the flag named; the caller turns it into a usage error.
 */
export function monitoringFromSettings(values: Record<string, unknown>, stateDir: string): MonitoringOptions | false {
  const v: Record<string, unknown> = {};
  for (const key of [...MONITOR_FIELDS.map((f) => f.key), 'feedbackToken']) {
    if (values[key] !== undefined) v[key] = values[key];
    delete values[key];
  }
  if (!onOff(v.monitoring, '--monitoring')) return false;
  const options: MonitoringOptions = { stateDir };
  if (typeof v.metricsBuckets === 'string') options.buckets = parseBuckets(v.metricsBuckets);
  const drift: NonNullable<Exclude<MonitoringOptions['drift'], false>> = {};
  if (typeof v.driftWindow === 'number') drift.windowRows = v.driftWindow;
  if (typeof v.driftWindowSeconds === 'number') drift.windowSeconds = v.driftWindowSeconds;
  if (typeof v.driftMinSamples === 'number') drift.minSamples = v.driftMinSamples;
  if (typeof v.driftThresholds === 'string') drift.thresholds = parseThresholds(v.driftThresholds);
  // A window that never holds the minimum sample leaves every verdict inconclusive, silently.
  const windowRows = drift.windowRows ?? DRIFT_DEFAULTS.windowRows;
  const minSamples = drift.minSamples ?? DRIFT_DEFAULTS.minSamples;
  if (windowRows < minSamples) {
    throw new Error(`--drift-window ${windowRows} is smaller than --drift-min-samples ${minSamples}: the window would never hold enough rows for a drift verdict; give a window of at least ${minSamples} rows, or a smaller --drift-min-samples`);
  }
  options.drift = drift;
  const logDb = typeof v.logDb === 'string' ? v.logDb : defaultLogDb(stateDir);
  if (logDb !== 'off') {
    describeLogUrl(logDb);
    options.log = { url: logDb, inputs: onOff(v.logInputs, '--log-inputs') };
    if (typeof v.logSample === 'number') options.log.sample = v.logSample;
    if (typeof v.logInputsSample === 'number') options.log.inputsSample = v.logInputsSample;
    if (typeof v.logRetentionDays === 'number') options.log.retentionDays = v.logRetentionDays;
    if (typeof v.logMaxRows === 'number') options.log.maxRows = v.logMaxRows;
    if (typeof v.logTensorMaxValues === 'number') options.log.tensorMaxValues = v.logTensorMaxValues;
  }
  if (typeof v.webhook === 'string') {
    if (!/^https?:\/\//.test(v.webhook)) throw new Error(`expected an http(s) URL for --webhook but received ${JSON.stringify(v.webhook)}`);
    options.webhook = { url: v.webhook };
  }
  if (typeof v.accuracyThreshold === 'number') options.accuracyThreshold = v.accuracyThreshold;
  if (typeof v.errorThreshold === 'number') options.errorThreshold = v.errorThreshold;
  if (typeof v.feedbackToken === 'string') options.feedbackToken = v.feedbackToken;
  return options;
}

const TESTS = ['ks', 'chi2', 'psi', 'js'] as const;

/**
 * The largest threshold each test can use: a p-value is below 1, so ks/chi2 at 1 or more would call
 * every feature drifted; the Jensen-Shannon distance (natural log) never passes sqrt(ln 2), so js
 * above it would never call one. PSI has no upper bound.
 */
const THRESHOLD_LIMITS: Record<(typeof TESTS)[number], { max: number; inclusive: boolean; what: string }> = {
  ks: { max: 1, inclusive: false, what: 'a p-value above 0 and below 1' },
  chi2: { max: 1, inclusive: false, what: 'a p-value above 0 and below 1' },
  psi: { max: Number.POSITIVE_INFINITY, inclusive: false, what: 'a distance above 0' },
  js: { max: Math.sqrt(Math.LN2), inclusive: true, what: 'a distance above 0 and at most 0.83 (the largest Jensen-Shannon distance)' },
};

/** `ks=0.01,psi=0.2`: p-values for ks/chi2, distances for psi/js. */
export function parseThresholds(text: string): Partial<Record<(typeof TESTS)[number], number>> {
  const out: Partial<Record<(typeof TESTS)[number], number>> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [name, value] = part.split('=') as [string, string | undefined];
    const n = Number(value);
    if (!(TESTS as readonly string[]).includes(name) || value === undefined || value.trim() === '' || !Number.isFinite(n) || n <= 0) {
      throw new Error(`expected test=value pairs (tests: ${TESTS.join(', ')}; positive values) for --drift-thresholds but received ${JSON.stringify(part)}`);
    }
    const limit = THRESHOLD_LIMITS[name as (typeof TESTS)[number]];
    if (limit.inclusive ? n > limit.max : n >= limit.max) {
      throw new Error(`expected ${limit.what} for ${name} in --drift-thresholds but received ${value}`);
    }
    out[name as (typeof TESTS)[number]] = n;
  }
  return out;
}
