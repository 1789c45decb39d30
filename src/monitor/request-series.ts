// The request-path metrics (requests, latency histograms, inferences, executions) kept in plain
// arrays per (model, version, role, transport) and handed to prom-client only when scraped: prom-client's
// own observe() hashes the label set on every call, which cost more than the rest of monitoring.
import type { Registry } from 'prom-client';
import type { InferEvent, Outcome } from '../core/hooks.js';

export const OUTCOMES: Outcome[] = ['success', 'rejected', 'timeout', 'invalid', 'internal', 'cancelled'];
const OUTCOME_INDEX: Record<Outcome, number> = { success: 0, rejected: 1, timeout: 2, invalid: 3, internal: 4, cancelled: 5 };

const REQUEST = 0;
const QUEUE = 1;
const COMPUTE = 2;

interface Series {
  labels: { model: string; version: string; role: string; transport: string };
  requests: Float64Array;
  /** Per histogram: bucket counts (non-cumulative, last = above every bound), then sum. */
  histograms: [Float64Array, Float64Array, Float64Array];
  sums: Float64Array;
  inferences: number;
  executions: number;
}

interface MetricValue {
  labels: Record<string, string>;
  value: number;
  metricName?: string;
}

/** What prom-client's Registry needs of a metric. */
interface CustomMetric {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  get(): Promise<{ name: string; help: string; type: string; aggregator: 'sum'; values: MetricValue[] }>;
  reset(): void;
}

export class RequestSeries {
  private readonly series = new Map<string, Series>();

  constructor(private readonly buckets: number[], registry: Registry) {
    const counter = (name: string, help: string, values: () => MetricValue[]) => this.register(registry, { name, help, type: 'counter', values });
    counter('umbra_requests_total', 'Inference requests by outcome: success, rejected, timeout, invalid, internal, cancelled (the client went away first).', () => this.all((s) => OUTCOMES.map((outcome, i) => ({ labels: { ...s.labels, outcome }, value: s.requests[i]! }))));
    this.histogram(registry, REQUEST, 'umbra_request_duration_seconds', 'Time from arrival at the core to the answer.');
    this.histogram(registry, QUEUE, 'umbra_queue_duration_seconds', 'Time a request waited in the dynamic batcher queue.');
    this.histogram(registry, COMPUTE, 'umbra_compute_duration_seconds', 'Model execution time of the batch that carried the request.');
    counter('umbra_inferences_total', 'Rows inferred (a batch of 8 rows counts 8).', () => this.all((s) => [{ labels: s.labels, value: s.inferences }]));
    // The shares' float sum drifts off the whole number (2553.999999999991 for 2554 batches):
    // rounded to a millionth, a batch whose requests are all counted shows as exactly 1 again,
    // and the rounding never makes the counter go back.
    counter('umbra_executions_total', 'Model executions (batches); each request adds its share rows/batch_rows, so a batch sums to 1.', () => this.all((s) => [{ labels: s.labels, value: Math.round(s.executions * 1e6) / 1e6 }]));
  }

  /** Hot path: a Map lookup and a few array increments. */
  observe(event: InferEvent): void {
    const s = this.seriesOf(event.model, event.version, event.role, event.context.transport ?? 'in-process');
    s.requests[OUTCOME_INDEX[event.outcome]]! += 1;
    this.add(s, REQUEST, event.durationMs / 1000);
    const t = event.timing;
    if (t) {
      this.add(s, QUEUE, t.queueMs / 1000);
      this.add(s, COMPUTE, t.computeMs / 1000);
      s.inferences += t.rows;
      if (t.batchRows > 0) s.executions += t.rows / t.batchRows;
    }
  }

  /** Drops every role's and transport's series of a version no longer loaded, so retired versions do not pile up on /metrics. */
  forget(model: string, version: string): void {
    for (const [key, s] of this.series) if (s.labels.model === model && s.labels.version === version) this.series.delete(key);
  }

  private add(s: Series, which: number, seconds: number): void {
    const b = this.buckets;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    s.histograms[which as 0 | 1 | 2][i]! += 1;
    s.sums[which]! += seconds;
  }

  private seriesOf(model: string, version: string, role: string, transport: string): Series {
    const key = `${model}\u0000${version}\u0000${role}\u0000${transport}`;
    let s = this.series.get(key);
    if (!s) {
      const n = this.buckets.length + 1;
      s = { labels: { model, version, role, transport }, requests: new Float64Array(OUTCOMES.length), histograms: [new Float64Array(n), new Float64Array(n), new Float64Array(n)], sums: new Float64Array(3), inferences: 0, executions: 0 };
      this.series.set(key, s);
    }
    return s;
  }

  private all(f: (s: Series) => MetricValue[]): MetricValue[] {
    const out: MetricValue[] = [];
    for (const s of this.series.values()) out.push(...f(s));
    return out;
  }

  private histogram(registry: Registry, which: number, name: string, help: string): void {
    this.register(registry, {
      name, help, type: 'histogram',
      values: () => this.all((s) => {
        const counts = s.histograms[which as 0 | 1 | 2];
        const out: MetricValue[] = [];
        let cumulative = 0;
        this.buckets.forEach((bound, i) => {
          cumulative += counts[i]!;
          out.push({ labels: { ...s.labels, le: String(bound) }, value: cumulative, metricName: `${name}_bucket` });
        });
        cumulative += counts[this.buckets.length]!;
        out.push({ labels: { ...s.labels, le: '+Inf' }, value: cumulative, metricName: `${name}_bucket` });
        out.push({ labels: s.labels, value: s.sums[which]!, metricName: `${name}_sum` });
        out.push({ labels: s.labels, value: cumulative, metricName: `${name}_count` });
        return out;
      }),
    });
  }

  private register(registry: Registry, m: { name: string; help: string; type: 'counter' | 'histogram'; values: () => MetricValue[] }): void {
    const metric: CustomMetric = {
      name: m.name,
      help: m.help,
      type: m.type,
      aggregator: 'sum',
      get: async () => ({ name: m.name, help: m.help, type: m.type, aggregator: 'sum', values: m.values() }),
      reset: () => this.series.clear(),
    };
    registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
  }
}
