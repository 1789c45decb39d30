// The alerting rules and the Grafana dashboard under deploy/monitoring: promtool accepts the rules
// and their unit tests (each alert fires and stays quiet on synthetic series), the PrometheusRule
// is the rules file as generated, and every series the rules and the dashboard read is one a real
// server exports after traffic, drift, feedback and a rollout, so renaming a metric fails here.
// A real Prometheus scraping that server accepts every dashboard query, and the core traffic and
// latency panels return data.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { startTestServer, type TestServer } from './helpers/server.js';
import { affineModel, tempRepo } from './helpers/repo.js';
import { eventually, findBinary, startPrometheus } from './helpers/prometheus.js';
import { prometheusRule } from '../scripts/build-prometheus-rule.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const MONITORING = join(ROOT, 'deploy/monitoring');
const RULES_TEXT = readFileSync(join(MONITORING, 'umbra-rules.yaml'), 'utf8');
const PROMTOOL = findBinary('promtool');
const PROMETHEUS = findBinary('prometheus');
const NO_PROMTOOL = 'promtool is not installed (apt-get install -y prometheus; .ci/run installs it)';
const NO_PROMETHEUS = 'prometheus is not installed (apt-get install -y prometheus; .ci/run installs it)';

interface Rule { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
const groups = (parse(RULES_TEXT) as { groups: { name: string; rules: Rule[] }[] }).groups;
const rules = groups.flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert);
const recorded = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));

interface Panel { type: string; title: string; targets?: { expr: string }[] }
const dashboard = JSON.parse(readFileSync(join(MONITORING, 'umbra-dashboard.json'), 'utf8')) as {
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
};
const queryPanels = dashboard.panels.filter((p) => p.type !== 'row');

/** A dashboard expression as Prometheus gets it: Grafana's variables replaced by what "All" sends. */
function substitute(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$job', '.*').replaceAll('$model', '.*');
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'offset', 'bool', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan']);

/** The series names a PromQL expression reads: identifiers that are not functions, keywords, labels or durations. */
function seriesNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+\w+/g, ' ');
  const out: string[] = [];
  for (const m of bare.matchAll(/(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (m[2] || KEYWORDS.has(m[1]!.toLowerCase())) continue;
    out.push(m[1]!);
  }
  return out;
}

t.test('promtool check rules accepts the rules file', { skip: PROMTOOL ? false : NO_PROMTOOL }, async (t) => {
  const r = spawnSync(PROMTOOL!, ['check', 'rules', join(MONITORING, 'umbra-rules.yaml')], { encoding: 'utf8' });
  t.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

t.test('promtool test rules: every alert fires on series past its line and stays quiet on the others', { skip: PROMTOOL ? false : NO_PROMTOOL }, async (t) => {
  const r = spawnSync(PROMTOOL!, ['test', 'rules', 'umbra-rules.test.yaml'], { cwd: MONITORING, encoding: 'utf8' });
  t.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

t.test('the unit tests cover every alert, firing and quiet', async (t) => {
  const cases = (parse(readFileSync(join(MONITORING, 'umbra-rules.test.yaml'), 'utf8')) as { tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[] }).tests.flatMap((c) => c.alert_rule_test);
  for (const a of alerts) {
    const mine = cases.filter((c) => c.alertname === a.alert);
    t.ok(mine.some((c) => c.exp_alerts.length > 0) && mine.some((c) => c.exp_alerts.length === 0), `${a.alert} has a firing and a quiet case`);
  }
});

t.test('the PrometheusRule is the rules file as scripts/build-prometheus-rule.mjs writes it', async (t) => {
  t.equal(readFileSync(join(MONITORING, 'prometheus-rule.yaml'), 'utf8'), prometheusRule(RULES_TEXT), 'run node scripts/build-prometheus-rule.mjs');
});

t.test('every alert waits, says how bad, and names what and where to look', async (t) => {
  for (const a of alerts) {
    t.match(a, { for: /^\d+[smh]$/, labels: { severity: /^(critical|warning|info)$/ }, annotations: { summary: /\{\{ \$labels\.(model|instance) \}\}/, description: /(docs\/|README\.md)/ } }, a.alert);
  }
});

t.test('the dashboard: a current schema, a datasource variable, a model variable from label_values', async (t) => {
  t.ok(dashboard.schemaVersion >= 39, `schemaVersion ${dashboard.schemaVersion}`);
  const variables = dashboard.templating.list;
  t.match(variables.find((v) => v.name === 'datasource'), { type: 'datasource', query: 'prometheus' });
  t.match(variables.find((v) => v.name === 'model'), { type: 'query', query: { query: /^label_values\(umbra_requests_total\{[^}]*\}, model\)$/ } });
  const rows = dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title);
  t.same(rows, ['Traffic', 'Latency', 'Capacity', 'Quality', 'Rollouts', 'Prediction log and alerts']);
  t.ok(queryPanels.every((p) => (p.targets ?? []).length > 0), 'every panel queries something');
});

/** A repository of digits (classification, two versions) and an affine model of one output (regression). */
function repository(): { dir: string; remove(): void } {
  const repo = tempRepo();
  cpSync(join(ROOT, 'models/repository/digits'), join(repo.dir, 'digits'), { recursive: true });
  repo.addVersion('affine', 1, affineModel(2, 1, 1));
  return repo;
}

/** Traffic, an error, feedback, drift, a shadowing rollout, the log and the webhook: every series there is to export. */
async function exercise(t: Tap.Test, s: TestServer): Promise<void> {
  const ADMIN = { authorization: 'Bearer alerts-token', 'content-type': 'application/json' };
  const rollout = await s.post('/v2/models/digits/rollout', { candidate: '1', steps: [{ shadow: true, min_requests: 100000 }] }, ADMIN);
  t.equal(rollout.status, 201, 'a rollout shadows version 1');
  const rows = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').trim().split('\n').slice(1, 121).map((l) => l.split(',').slice(0, 65).map(Number));
  const labels: { id: string; truth: number }[] = [];
  for (const row of rows) {
    const r = await s.post('/v2/models/digits/infer', { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: row.slice(0, 64) }] });
    labels.push({ id: r.json.id, truth: row[64]! });
  }
  t.equal((await s.post('/v2/models/digits/feedback', { feedback: labels })).json.accepted, labels.length);
  const affine: { id: string; truth: number }[] = [];
  for (let i = 0; i < 40; i++) {
    const r = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: [i] }] });
    affine.push({ id: r.json.id, truth: 2 * i });
  }
  t.equal((await s.post('/v2/models/affine/feedback', { feedback: affine })).json.accepted, affine.length);
  t.equal((await s.post('/v2/models/digits/infer', { inputs: [{ name: 'nope', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] })).status, 400, 'one invalid request');
}

t.test('every series the rules and the dashboard read is exported by a server after traffic', async (t) => {
  const repo = repository();
  t.teardown(() => repo.remove());
  const state = mkdtempSync(join(tmpdir(), 'umbra-alerts-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const receiver = createServer((req, res) => req.resume().on('end', () => res.end('ok')));
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  t.teardown(() => receiver.close());
  const port = (receiver.address() as { port: number }).port;
  const s = await startTestServer(t, {
    repository: repo.dir, adminToken: 'alerts-token',
    monitoring: { log: { url: `sqlite:${join(state, 'predictions.sqlite')}` }, webhook: { url: `http://127.0.0.1:${port}/` }, accuracyThreshold: 0.99, minLabels: 10, drift: { captureRows: 50, minSamples: 20 } },
  });
  await exercise(t, s);
  await s.server.monitor!.webhook.idle();
  const text = (await s.get('/metrics')).text;
  const declared = new Set([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) => (type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name!])));
  const sampled = new Set([...text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)].map((m) => m[1]!));
  const read = new Map<string, string>();
  for (const r of rules) for (const n of seriesNames(r.expr)) read.set(n, r.alert ?? r.record!);
  for (const p of queryPanels) for (const target of p.targets ?? []) for (const n of seriesNames(target.expr)) read.set(n, `panel "${p.title}"`);
  t.ok(read.size >= 25, `${read.size} series names read`);
  for (const [name, where] of read) {
    if (recorded.has(name)) continue;
    if (name === 'up') continue; // Prometheus's own, per target: checked against a real Prometheus below
    t.ok(declared.has(name), `${name} (${where}) is in /metrics`);
  }
  // The ones that need the traffic above to have a sample at all.
  for (const name of ['umbra_drift_score', 'umbra_drift_detected', 'umbra_live_accuracy', 'umbra_live_mean_absolute_error', 'umbra_shadow_agreement', 'umbra_rollout_events_total', 'umbra_feedback_total', 'umbra_prediction_log_rows_total', 'umbra_webhook_deliveries_total', 'umbra_request_duration_seconds_bucket', 'umbra_ready', 'umbra_model_state', 'umbra_queue_bound_requests', 'umbra_threads_replaced_total', 'umbra_traffic_weight', 'umbra_rollout_state', 'umbra_prediction_log_backlog_rows']) {
    t.ok(sampled.has(name), `${name} has a sample after traffic`);
  }
});

t.test('a real Prometheus accepts every dashboard query, and the traffic and latency panels have data', { skip: PROMETHEUS ? false : NO_PROMETHEUS }, async (t) => {
  const repo = repository();
  t.teardown(() => repo.remove());
  const s = await startTestServer(t, { repository: repo.dir, adminToken: 'alerts-token', monitoring: { drift: { captureRows: 50, minSamples: 20 } } });
  const prom = await startPrometheus(`127.0.0.1:${s.server.port}`);
  t.teardown(() => prom.stop());
  await eventually(async () => (await prom.query('up{job="umbra"}'))[0]?.value[1] === '1', 'the first scrape');
  await exercise(t, s);
  for (const p of queryPanels) {
    for (const target of p.targets ?? []) {
      const expr = substitute(target.expr);
      const error = await prom.query(expr).then(() => '', (e: Error) => e.message);
      t.equal(error, '', `panel "${p.title}": ${expr}`);
    }
  }
  for (const rule of rules) {
    const error = await prom.query(rule.expr).then(() => '', (e: Error) => e.message);
    t.equal(error, '', `rule ${rule.alert ?? rule.record}`);
  }
  const finite = async (expr: string) => (await prom.query(expr)).some((r) => Number.isFinite(Number(r.value[1])));
  for (const title of ['Requests per second', 'Failed requests per second', 'Request latency p50 / p90 / p99', 'Queue wait and compute p99', 'Request latency p99 by transport']) {
    const panel = queryPanels.find((p) => p.title === title)!;
    for (const target of panel.targets!) {
      await eventually(() => finite(substitute(target.expr)), `data in panel "${title}": ${target.expr}`);
      t.pass(`panel "${title}" has data: ${target.expr.slice(0, 60)}...`);
    }
  }
});
