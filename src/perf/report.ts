// Output forms: a terminal table, the JSON array scripts read, and CSV with one row per level.
import type { PerfLevelResult } from './runner.js';

export const CSV_COLUMNS = [
  'concurrency', 'request_rate', 'protocol', 'batch_size', 'throughput', 'inferences_per_s', 'completed',
  'mean_ms', 'p50_ms', 'p90_ms', 'p95_ms', 'p99_ms', 'max_ms', 'errors', 'error_rate', 'errors_by_status',
  'windows', 'stable', 'duration_s', 'send_lag_p99_ms', 'client_cpu_pct', 'server_queue_ms', 'server_compute_ms',
] as const;

export function toJson(results: readonly PerfLevelResult[]): string {
  return `${JSON.stringify(results, null, 2)}\n`;
}

function csvCell(value: unknown): string {
  if (value === undefined || value === null) return '';
  const text = typeof value === 'object' ? Object.entries(value as Record<string, number>).map(([k, v]) => `${k}=${v}`).join(';') : String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(results: readonly PerfLevelResult[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of results) lines.push(CSV_COLUMNS.map((c) => csvCell(r[c])).join(','));
  return `${lines.join('\n')}\n`;
}

function fixed(v: number | null | undefined, digits = 2): string {
  return v === null || v === undefined ? '-' : v.toFixed(digits);
}

export function toTable(results: readonly PerfLevelResult[]): string {
  const rateMode = results.some((r) => r.request_rate !== undefined);
  const head = [rateMode ? 'rate/s' : 'conc', 'req/s', 'p50 ms', 'p90 ms', 'p95 ms', 'p99 ms', 'max ms', 'errors', 'queue ms', 'compute ms', 'client cpu', 'stable'];
  const rows = results.map((r) => [
    String(rateMode ? r.request_rate : r.concurrency),
    fixed(r.throughput, 1), fixed(r.p50_ms, 3), fixed(r.p90_ms, 3), fixed(r.p95_ms, 3), fixed(r.p99_ms, 3), fixed(r.max_ms, 3),
    r.errors === 0 ? '0' : `${r.errors} (${Object.entries(r.errors_by_status).map(([k, v]) => `${k}:${v}`).join(' ')})`,
    fixed(r.server_queue_ms, 3), fixed(r.server_compute_ms, 3), `${r.client_cpu_pct.toFixed(0)}%`, r.stable ? 'yes' : 'no',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  return `${[line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')}\n`;
}
