// What the manifests under deploy/ count on Umbra for, checked against Umbra itself: the
// containers' arguments are what `umbra serve` accepts, the probe and scrape paths answer, the
// model configs load, every Prometheus series a query names exists with the labels it filters
// on, and the analysis URLs Argo and Flagger call answer as their conditions expect, on real
// traffic through the release step's traffic policy.
import t from 'tap';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadManifests } from './helpers/k8s-manifests.mjs';
import { parseExposition } from './helpers/prometheus.js';
import { startTestServer } from './helpers/server.js';
import { until } from './helpers/repo.js';
import { buildProgram } from '../dist/cli/main.js';
import { resolveServeSettings, type ServeSettings } from '../dist/cli/settings.js';
import { modelDirRepository } from '../dist/repository/single-model.js';
import { readModelConfig, resolveConfigFile } from '../dist/repository/config.js';
import { modelSignature, readModel } from '../dist/onnx/model-io.js';
import { parsePolicy } from '../dist/traffic/index.js';
import { rulesFromQuery } from '../dist/traffic/analysis.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const manifests: { file: string; doc: any }[] = loadManifests(ROOT);
const docs = (kind: string) => manifests.filter((m) => m.doc.kind === kind).map((m) => m.doc);
const named = (kind: string, name: string) => docs(kind).find((d) => d.metadata.name === name);

const OUTCOMES = ['success', 'rejected', 'timeout', 'invalid', 'internal', 'cancelled'];
const ROLES = ['primary', 'canary', 'shadow', 'direct'];

/** The container's environment as the kubelet would give it: values, CPU limits through resourceFieldRef; absent optional secrets left out. */
function containerEnv(c: any): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    const field = e.valueFrom?.resourceFieldRef;
    if (field?.resource === 'limits.cpu') env[e.name] = String(Math.ceil(Number(c.resources.limits.cpu) / Number(field.divisor ?? 1)));
  }
  return env;
}

/** `umbra serve ARGS` parsed by Umbra's own command line, then resolved with the container's environment. */
async function serveSettings(args: string[], env: Record<string, string>): Promise<ServeSettings> {
  const program = await buildProgram();
  let flags: Record<string, unknown> | undefined;
  program.commands.find((c) => c.name() === 'serve')!.action((f: Record<string, unknown>) => { flags = f; });
  await program.parseAsync(['node', 'umbra', ...args]);
  if (!flags) throw new Error(`not a serve command: ${args.join(' ')}`);
  return resolveServeSettings(flags, env);
}

t.test('the containers\' arguments and environment are what umbra serve takes', async (t) => {
  const runtime = docs('ClusterServingRuntime')[0];
  const kserve = runtime.spec.containers.find((c: any) => c.name === 'kserve-container');
  // KServe fills {{.Name}} with the InferenceService's name.
  const args = kserve.args.map((a: string) => a.replace('{{.Name}}', 'digits'));
  t.equal(args[0], 'serve', 'the image\'s entrypoint is umbra; arguments start with the command');
  const s = await serveSettings(args, containerEnv(kserve));
  t.same(s.modelDir, { name: 'digits', dir: '/mnt/models' });
  t.equal(s.host, '0.0.0.0');
  t.equal(s.port, kserve.ports.find((p: any) => p.name === 'http').containerPort);
  t.equal(s.grpcPort, kserve.ports.find((p: any) => p.name === 'grpc').containerPort);
  t.equal(s.workers, 2, 'one worker per CPU of the limit');
  t.equal(s.ioThreads, 2);
  t.equal(s.drainSeconds, 20);
  t.equal(s.stateDir, '/var/lib/umbra');
  t.notOk((s.monitoring as { log?: unknown }).log, 'no prediction log in scratch space');
  t.match(modelDirRepository('digits', '/mnt/models', '/tmp'), /^\/tmp\//, 'the folder of links is under /tmp, which the runtime mounts');

  const deployment = named('Deployment', 'umbra-digits');
  const umbra = deployment.spec.template.spec.containers.find((c: any) => c.name === 'umbra');
  const d = await serveSettings(umbra.args, containerEnv(umbra));
  t.equal(d.repository, '/app/models/repository', 'the repository the image holds');
  t.equal(d.port, umbra.ports.find((p: any) => p.name === 'http').containerPort);
  t.equal(d.grpcPort, umbra.ports.find((p: any) => p.name === 'grpc').containerPort);
  t.equal(d.workers, 2);
  t.equal(d.ioThreads, 2);
  t.equal(d.drainSeconds, 20);
});

t.test('every release step\'s model config loads with the digits model and names loaded versions', async (t) => {
  const signature = modelSignature(readModel(join(ROOT, 'models/repository/digits/2/model.onnx')));
  const dir = mkdtempSync(join(tmpdir(), 'umbra-k8s-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const configMap of docs('ConfigMap')) {
    writeFileSync(join(dir, 'config.json'), configMap.data['config.json']);
    const file = readModelConfig(dir);
    const config = resolveConfigFile(file, signature, 'digits');
    t.same(config.versionPolicy, { kind: 'specific', versions: [1, 2] }, `${configMap.metadata.name}: versions 1 and 2 load`);
    const policy = parsePolicy(file.raw.traffic);
    const named = [policy.primary, ...(policy.canary ? [policy.canary.version] : []), ...policy.shadows.map((s) => s.version)];
    t.ok(named.every((v) => v === '1' || v === '2'), `${configMap.metadata.name}: the policy names loaded versions`);
  }
});

/** Metric names a PromQL query reads, and its label matchers (name, operator, value). */
function promql(query: string) {
  const series: { metric: string; matchers: { label: string; value: string }[] }[] = [];
  for (const m of query.matchAll(/\b(umbra_[a-z_]+)\{([^}]*)\}/g)) {
    const matchers = [...m[2]!.matchAll(/([a-z_]+)\s*(?:=~|!=|!~|=)\s*"([^"]*)"/g)].map((x) => ({ label: x[1]!, value: x[2]! }));
    series.push({ metric: m[1]!, matchers });
  }
  return series;
}

function prometheusQueries(): { where: string; query: string }[] {
  const out: { where: string; query: string }[] = [];
  for (const m of docs('MetricTemplate')) out.push({ where: `MetricTemplate ${m.metadata.name}`, query: m.spec.query });
  for (const a of docs('AnalysisTemplate')) for (const metric of a.spec.metrics) if (metric.provider.prometheus) out.push({ where: `AnalysisTemplate ${a.metadata.name}`, query: metric.provider.prometheus.query });
  for (const s of docs('ScaledObject')) for (const trigger of s.spec.triggers.filter((x: any) => x.type === 'prometheus')) out.push({ where: `ScaledObject trigger ${trigger.name}`, query: trigger.metadata.query });
  for (const i of docs('InferenceService')) for (const metric of i.spec.predictor.autoScaling?.metrics ?? []) out.push({ where: `InferenceService ${i.metadata.name}`, query: metric.external.metric.query });
  for (const h of docs('HorizontalPodAutoscaler')) for (const metric of h.spec.metrics.filter((m: any) => m.type === 'Pods')) out.push({ where: `HPA ${h.metadata.name}`, query: `${metric.pods.metric.name}{}` });
  return out;
}

t.test('Umbra serving the trial step: probes, series, and the verdict Argo and Flagger read', async (t) => {
  const repo = mkdtempSync(join(tmpdir(), 'umbra-k8s-trial-'));
  t.teardown(() => rmSync(repo, { recursive: true, force: true }));
  for (const v of ['1', '2']) {
    mkdirSync(join(repo, 'digits', v), { recursive: true });
    copyFileSync(join(ROOT, 'models/repository/digits', v, 'model.onnx'), join(repo, 'digits', v, 'model.onnx'));
  }
  writeFileSync(join(repo, 'digits', 'config.json'), named('ConfigMap', 'umbra-digits-v2-trial').data['config.json']);
  const s = await startTestServer(t, { repository: repo, stateDir: join(repo, '.state') });

  // The probes and the scrape path every pod template names.
  const runtime = docs('ClusterServingRuntime')[0];
  const containers = [runtime.spec.containers[0], named('Deployment', 'umbra-digits').spec.template.spec.containers[0]];
  for (const c of containers) {
    for (const probe of [c.readinessProbe, c.livenessProbe]) t.equal((await s.get(probe.httpGet.path)).status, 200, `${c.name} ${probe.httpGet.path}`);
  }
  t.equal((await s.get(runtime.spec.annotations['prometheus.io/path'])).status, 200);

  // Real digits, one row a request, eight at a time: half answered by version 2, all shadowed by it.
  // 600 rows: without errors, the error-rate rule needs 459 candidate answers to show a rate below 1%.
  const rows = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').trim().split('\n').slice(1, 601).map((line) => line.split(',').slice(0, 64).map(Number));
  for (let i = 0; i < rows.length; i += 8) {
    const replies = await Promise.all(rows.slice(i, i + 8).map((data) => s.post('/v2/models/digits/infer', { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data }] })));
    t.ok(replies.every((r) => r.status === 200), `requests ${i}..${i + 7}`);
  }
  t.equal((await s.post('/v2/models/digits/infer', { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] })).status, 400);

  // Every series a query or an autoscaler names is exported, with the labels it filters on.
  const exposition = parseExposition((await s.get('/metrics')).text);
  for (const { where, query } of prometheusQueries()) {
    for (const { metric, matchers } of promql(query)) {
      const samples = exposition.filter((x) => x.name === metric);
      t.ok(samples.length > 0, `${where}: ${metric} is exported`);
      for (const { label, value } of matchers) {
        if (label === 'namespace' || label === 'pod') continue; // Prometheus adds them when it scrapes a pod
        t.ok(samples.some((x) => label in x.labels), `${where}: ${metric} has label ${label}`);
        if (label === 'outcome') t.ok(value.split('|').every((v) => OUTCOMES.includes(v)), `${where}: outcome values ${value}`);
        if (label === 'role') t.ok(ROLES.includes(value), `${where}: role ${value}`);
        if (label === 'model') t.match(value, /^digits(-gpu)?$/, `${where}: the InferenceService's model name`);
      }
    }
  }

  // Argo's web metric, as the AnalysisTemplate builds the URL from the Rollout's arguments.
  const template = named('AnalysisTemplate', 'umbra-verdict');
  const rollout = docs('Rollout')[0];
  const args: Record<string, string> = { namespace: 'default' };
  for (const a of template.spec.args) if (a.value !== undefined) args[a.name] = a.value;
  for (const a of rollout.spec.strategy.canary.analysis.args) if (a.value !== undefined) args[a.name] = a.value;
  const url = new URL(template.spec.metrics[0].provider.web.url.replace(/\{\{args\.([\w-]+)\}\}/g, (_: string, name: string) => args[name]!));
  t.equal(url.host, `umbra-digits-canary.default.svc:8000`);
  rulesFromQuery(url.search.slice(1)); // the rules are Umbra's: an unknown one would be a 400, an Error to Argo
  // Shadow runs finish after their primary answered: read the verdict once enough of them have
  // been counted for the error-rate rule to decide, as Argo would a step later.
  let verdict = await s.get(url.pathname + url.search);
  await until(async () => {
    verdict = await s.get(url.pathname + url.search);
    return verdict.json.rules?.find((r: any) => r.rule === 'error_rate')?.verdict !== 'inconclusive';
  }, 'every shadow run counted');
  t.equal(verdict.status, 200, 'always 200: the verdict is in the body');
  t.match(verdict.json, { model: 'digits', source: 'traffic', candidate: '2', primary: '1' });
  t.ok(['pass', 'fail', 'inconclusive'].includes(verdict.json.verdict), `verdict ${verdict.json.verdict}`);
  const rule = (name: string) => verdict.json.rules.find((r: any) => r.rule === name);
  t.equal(rule('error_rate').verdict, 'pass', `${rule('error_rate').reason}`);
  t.equal(rule('agreement').verdict, 'pass', `the two trained versions agree on real digits: ${rule('agreement').reason}`);
  t.ok(rule('agreement').samples >= 50, 'the shadow runs compared enough rows');

  // Flagger's webhook: the same evidence, 200 only on pass.
  const webhook = new URL(docs('Canary')[0].spec.analysis.webhooks[0].url);
  const gate = await s.post(webhook.pathname + webhook.search, { name: 'umbra-digits', namespace: 'default', phase: 'Progressing', metadata: {} });
  t.equal(gate.status, gate.json.verdict === 'pass' ? 200 : 412, `verdict ${gate.json.verdict}, status ${gate.status}`);

  // A revision with no candidate: nothing to judge, so inconclusive (Argo pauses), still a 200.
  t.equal((await s.request('PUT', '/v2/models/digits/traffic', JSON.stringify({ primary: '2' }))).status, 200);
  const none = await s.get(url.pathname + url.search);
  t.equal(none.status, 200);
  t.match(none.json, { verdict: 'inconclusive', source: 'none' });
  t.equal((await s.post(webhook.pathname + webhook.search, {})).status, 412);
  // A wrong model name is not a verdict: 404, which Argo records as an Error.
  t.equal((await s.get(`/v2/models/digitz/analysis${url.search}`)).status, 404);
});
