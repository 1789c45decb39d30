// Every Kubernetes manifest Umbra ships for serving, field by field against the schema its kind's
// owner publishes (fragments in test/fixtures/k8s-schemas, cut from the upstream CRDs and
// Kubernetes' OpenAPI document), and the references between them: names, ports, labels, images.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Ajv, { type ValidateFunction } from 'ajv';
import { parse } from 'yaml';
import { loadManifests, schemaFile } from './helpers/k8s-manifests.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SCHEMAS = `${ROOT}test/fixtures/k8s-schemas/`;
const VERSION = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')).version as string;

interface Manifest { file: string; index: number; doc: any }
const manifests: Manifest[] = loadManifests(ROOT);

function checker() {
  const ajv = new Ajv({ allErrors: true, strictTypes: false });
  ajv.addKeyword('x-kubernetes-int-or-string');
  ajv.addKeyword('x-kubernetes-preserve-unknown-fields');
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) });
  ajv.addFormat('double', { type: 'number', validate: (n: number) => Number.isFinite(n) });
  ajv.addFormat('byte', /^[A-Za-z0-9+/]*={0,2}$/);
  ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
  ajv.addFormat('url', { type: 'string', validate: (s: string) => URL.canParse(s) });
  const compiled = new Map<string, ValidateFunction>();
  return (apiVersion: string, kind: string): ValidateFunction => {
    const file = schemaFile(apiVersion, kind);
    let validate = compiled.get(file);
    if (!validate) {
      validate = ajv.compile(JSON.parse(readFileSync(SCHEMAS + file, 'utf8')).schema);
      compiled.set(file, validate);
    }
    return validate;
  };
}

const validator = checker();

function errorsOf(doc: any): string[] {
  const validate = validator(doc.apiVersion, doc.kind);
  return validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
}

const find = (kind: string, name?: string): Manifest[] => manifests.filter((m) => m.doc.kind === kind && (name === undefined || m.doc.metadata?.name === name));
const one = (kind: string, name?: string): any => {
  const found = find(kind, name);
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!.doc;
};

t.test('every document validates against the upstream schema of its kind', async (t) => {
  t.ok(manifests.length >= 19, `${manifests.length} documents`);
  const fixtures = readdirSync(SCHEMAS).filter((f) => f.endsWith('.json'));
  for (const m of manifests) {
    const file = schemaFile(m.doc.apiVersion, m.doc.kind);
    if (!fixtures.includes(file)) {
      t.fail(`${m.file} #${m.index}: no schema fragment ${file}; run test/fixtures/k8s-schemas/extract.mjs`);
      continue;
    }
    t.same(errorsOf(m.doc), [], `${m.file} #${m.index} ${m.doc.kind} ${m.doc.metadata?.name}`);
  }
  for (const f of fixtures) {
    const fixture = JSON.parse(readFileSync(SCHEMAS + f, 'utf8'));
    t.ok(manifests.some((m) => schemaFile(m.doc.apiVersion, m.doc.kind) === f), `${f} is used by a manifest`);
    t.match(fixture.source, { repository: /^[\w.-]+\/[\w.-]+$/, commit: /^[0-9a-f]{40}$/, path: /\S/, schema: /\S/ }, `${f} says where it came from`);
  }
});

t.test('the fragments refuse what kubectl would refuse', async (t) => {
  const mutate = (doc: any, change: (d: any) => void) => {
    const copy = structuredClone(doc);
    change(copy);
    return errorsOf(copy);
  };
  const runtime = one('ClusterServingRuntime');
  t.match(mutate(runtime, (d) => { d.spec.containers[0].imagePullPolicyy = 'Always'; }).join(), /must NOT have additional properties \(imagePullPolicyy\)/, 'a misspelled field');
  t.match(mutate(runtime, (d) => { d.spec.containers[0].ports[0].containerPort = '8080'; }).join(), /containerPort must be integer/, 'a port as a string');
  t.match(mutate(runtime, (d) => { delete d.spec.containers[0].name; }).join(), /must have required property 'name'/, 'a container without a name');
  t.match(mutate(runtime, (d) => { d.metadata.nmae = 'x'; }).join(), /\/metadata must NOT have additional properties \(nmae\)/, 'metadata is checked as ObjectMeta');
  t.match(mutate(one('Canary'), (d) => { d.spec.analysis.webhooks[0].type = 'gate'; }).join(), /must be equal to one of the allowed values/, 'a Flagger webhook type outside the enum');
  t.match(mutate(one('Canary'), (d) => { d.spec.analysis.webhooks[0].timeout = 'ten seconds'; }).join(), /must match pattern/, 'a Flagger duration');
  t.match(mutate(one('HorizontalPodAutoscaler'), (d) => { delete d.spec.maxReplicas; }).join(), /must have required property 'maxReplicas'/);
  t.match(mutate(one('ScaledObject'), (d) => { d.spec.triggers[0].metadata.threshold = 64; }).join(), /must be string/, 'KEDA trigger metadata is strings');
  t.match(mutate(one('AnalysisTemplate', 'umbra-verdict'), (d) => { d.spec.metrics[0].provider.web.timeoutSeconds = '5s'; }).join(), /must be integer/);
  t.same(mutate(one('Service', 'umbra-digits'), (d) => { d.spec.ports[0].targetPort = 8000; }), [], 'targetPort takes a number or a name');
  t.match(mutate(one('PrometheusRule'), (d) => { d.spec.groups[1].rules[0].for = 'two minutes'; }).join(), /must match pattern/, 'a PrometheusRule duration');
});

/** The container of a pod template (or a ServingRuntime) by name. */
const container = (containers: any[], name: string): any => containers.find((c) => c.name === name);
const envValue = (c: any, name: string): string | undefined => c.env?.find((e: any) => e.name === name)?.value;
const preStopSeconds = (c: any): number => {
  const command: string[] = c.lifecycle?.preStop?.exec?.command ?? [];
  return command[0] === 'sleep' ? Number(command[1]) : 0;
};

t.test('images: umbra:VERSION everywhere, the CUDA build through KServe runtimeVersion', async (t) => {
  const images: string[] = [];
  const walk = (v: any): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) (k === 'image' && typeof x === 'string' ? images.push(x) : walk(x));
  };
  manifests.forEach((m) => walk(m.doc));
  t.ok(images.length >= 2);
  t.same([...new Set(images)], [`umbra:${VERSION}`]);
  // KServe replaces the tag with runtimeVersion (UpdateImageTag).
  const gpu = one('InferenceService', 'digits-gpu');
  const runtime = one('ClusterServingRuntime');
  const image = container(runtime.spec.containers, 'kserve-container').image.replace(/(:[\w.\-_]*)$/, `:${gpu.spec.predictor.model.runtimeVersion}`);
  t.equal(image, `umbra:${VERSION}-cuda`, 'the tag deploy/Dockerfile.cuda is built as');
});

t.test('KServe: the runtime KServe picks and the container it merges', async (t) => {
  const runtime = one('ClusterServingRuntime');
  const c = container(runtime.spec.containers, 'kserve-container');
  t.ok(c, 'a container named kserve-container');
  t.ok(runtime.spec.supportedModelFormats.some((f: any) => f.name === 'onnx' && f.autoSelect), 'onnx, selected automatically');
  t.same(runtime.spec.protocolVersions, ['v2', 'grpc-v2', 'v1']);
  t.ok(c.args.includes('--model-name={{.Name}}') && c.args.includes('--model-dir=/mnt/models'));
  const http = c.ports.find((p: any) => p.name === 'http').containerPort;
  const grpc = c.ports.find((p: any) => p.name.includes('grpc')).containerPort;
  t.ok(c.args.includes(`--http-port=${http}`) && c.args.includes(`--grpc-port=${grpc}`), 'the ports Umbra listens on are the ports declared');
  t.equal(c.readinessProbe.httpGet.port, http);
  t.equal(c.livenessProbe.httpGet.port, http);
  t.equal(runtime.spec.annotations['prometheus.io/port'], String(http));
  t.equal(runtime.spec.annotations['prometheus.kserve.io/port'], String(http));
  t.equal(c.env.find((e: any) => e.name === 'UMBRA_WORKERS').valueFrom.resourceFieldRef.containerName, c.name);
  // A read-only root: every folder Umbra writes is a volume (the links under /tmp, --state-dir).
  t.equal(c.securityContext.readOnlyRootFilesystem, true);
  const mounts = c.volumeMounts.map((v: any) => v.mountPath);
  const stateDir = c.args.find((a: string) => a.startsWith('--state-dir=')).split('=')[1];
  t.ok(mounts.includes('/tmp') && mounts.includes(stateDir), 'scratch and state are mounted');
  for (const mount of c.volumeMounts) t.ok(runtime.spec.volumes.some((v: any) => v.name === mount.name), `volume ${mount.name} exists`);
  for (const isvc of find('InferenceService').map((m) => m.doc)) {
    const p = isvc.spec.predictor;
    t.equal(p.model.runtime, runtime.metadata.name, `${isvc.metadata.name} names the runtime`);
    t.equal(p.model.modelFormat.name, 'onnx');
    t.ok(runtime.spec.protocolVersions.includes(p.model.protocolVersion));
    const needed = preStopSeconds(c) + Number(envValue(c, 'UMBRA_DRAIN_SECONDS')) + 5;
    t.ok(p.terminationGracePeriodSeconds >= needed, `${isvc.metadata.name}: grace ${p.terminationGracePeriodSeconds} s covers preStop + drain + exit (${needed} s)`);
  }
});

t.test('the plain Deployment, its Services and its config', async (t) => {
  const deployment = one('Deployment', 'umbra-digits');
  const pod = deployment.spec.template;
  const c = container(pod.spec.containers, 'umbra');
  t.same(deployment.spec.selector.matchLabels, { app: pod.metadata.labels.app });
  const needed = preStopSeconds(c) + Number(envValue(c, 'UMBRA_DRAIN_SECONDS')) + 5;
  t.ok(pod.spec.terminationGracePeriodSeconds >= needed, `grace ${pod.spec.terminationGracePeriodSeconds} s covers preStop + drain + exit (${needed} s)`);
  const portNames = c.ports.map((p: any) => p.name);
  t.ok(portNames.includes(c.readinessProbe.httpGet.port) && portNames.includes(c.livenessProbe.httpGet.port));
  const http = c.ports.find((p: any) => p.name === 'http').containerPort;
  t.equal(pod.metadata.annotations['prometheus.io/port'], String(http));
  t.ok(c.args.includes(`--port=${http}`));
  const repo = c.args.find((a: string) => a.startsWith('--repo=')).split('=')[1];
  const configMount = c.volumeMounts.find((v: any) => v.name === 'digits-config');
  t.equal(configMount.mountPath, `${repo}/digits/config.json`, 'the ConfigMap lands on digits\' config.json');
  const configMap = pod.spec.volumes.find((v: any) => v.name === 'digits-config').configMap.name;
  t.ok(one('ConfigMap', configMap).data[configMount.subPath], `ConfigMap ${configMap} has ${configMount.subPath}`);
  t.same(one('PodDisruptionBudget').spec.selector.matchLabels, deployment.spec.selector.matchLabels);
  for (const service of find('Service').map((m) => m.doc)) {
    t.same(service.spec.selector, deployment.spec.selector.matchLabels, `${service.metadata.name} selects the pods`);
    for (const port of service.spec.ports) t.ok(portNames.includes(port.targetPort), `${service.metadata.name} ${port.name} targets a named container port`);
  }
});

t.test('Argo Rollouts: the Rollout runs the Deployment\'s template and supplies the analysis its arguments', async (t) => {
  const rollout = one('Rollout');
  const deployment = one('Deployment', 'umbra-digits');
  t.same(rollout.spec.workloadRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name, scaleDown: 'onsuccess' });
  t.same(rollout.spec.selector, deployment.spec.selector);
  const canary = rollout.spec.strategy.canary;
  t.ok(one('Service', canary.canaryService) && one('Service', canary.stableService));
  const supplied = canary.analysis.args.map((a: any) => a.name);
  for (const ref of canary.analysis.templates) {
    const template = one('AnalysisTemplate', ref.templateName);
    for (const arg of template.spec.args) t.ok(arg.value !== undefined || supplied.includes(arg.name), `${ref.templateName}: argument ${arg.name} has a value`);
  }
  t.ok(canary.analysis.args.find((a: any) => a.name === 'service').value === canary.canaryService, 'the verdict is asked of the new revision\'s pods');
  const verdict = one('AnalysisTemplate', 'umbra-verdict').spec.metrics[0];
  t.equal(verdict.provider.web.jsonPath, undefined, 'the whole answer is the measurement');
  t.equal(verdict.successCondition, 'result.verdict == "pass"');
  t.equal(verdict.failureCondition, 'result.verdict == "fail"');
  const errors = one('AnalysisTemplate', 'umbra-canary-errors');
  t.match(errors.spec.metrics[0].provider.prometheus.query, /umbra_requests_total/);
});

t.test('Flagger and the autoscalers point at the Deployment and its ports', async (t) => {
  const deployment = one('Deployment', 'umbra-digits');
  const c = container(deployment.spec.template.spec.containers, 'umbra');
  const canary = one('Canary');
  t.same(canary.spec.targetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
  t.equal(canary.spec.service.port, c.ports.find((p: any) => p.name === canary.spec.service.portName).containerPort);
  for (const metric of canary.spec.analysis.metrics) t.ok(one('MetricTemplate', metric.templateRef.name), `MetricTemplate ${metric.templateRef.name}`);
  t.match(canary.spec.analysis.webhooks[0].url, new RegExp(`^http://${deployment.metadata.name}-canary\\.`), 'the webhook asks the canary Service Flagger makes');
  const target = { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name };
  const hpa = one('HorizontalPodAutoscaler');
  t.same(hpa.spec.scaleTargetRef, target);
  t.same(one('ScaledObject').spec.scaleTargetRef, target);
  // The adapter's rules publish exactly the per-pod metrics the HPA asks for.
  const adapter = parse(readFileSync(`${ROOT}deploy/autoscaling/prometheus-adapter-rules.yaml`, 'utf8'));
  const published = adapter.rules.custom.map((r: any) => r.name.as).sort();
  const asked = hpa.spec.metrics.filter((m: any) => m.type === 'Pods').map((m: any) => m.pods.metric.name).sort();
  t.same(published, asked);
  for (const rule of adapter.rules.custom) t.match(rule.seriesQuery, new RegExp(`^${rule.name.matches}\\{`));
});

t.test('every YAML file under deploy/ reads as kubectl reads it, the batch Job and CronJob included', async (t) => {
  const { parseAllDocuments } = await import('yaml');
  const { readdirSync: list, statSync } = await import('node:fs');
  const walk = (dir: string): string[] => list(`${ROOT}${dir}`).flatMap((n) => (statSync(`${ROOT}${dir}/${n}`).isDirectory() ? walk(`${dir}/${n}`) : /\.ya?ml$/.test(n) ? [`${dir}/${n}`] : []));
  const files = walk('deploy').sort();
  t.ok(files.includes('deploy/batch-cronjob.yaml') && files.includes('deploy/batch-indexed-job.yaml'), `${files.length} files`);
  const problems: string[] = [];
  for (const file of files) {
    parseAllDocuments(readFileSync(`${ROOT}${file}`, 'utf8'), { uniqueKeys: true }).forEach((parsed, index) => {
      if (parsed.errors.length > 0) return void problems.push(`${file} #${index}: ${parsed.errors[0]!.message}`);
      const doc = parsed.toJSON();
      // A batch Job's (or CronJob's) container arguments: a list of plain strings, as the CLI takes them.
      const spec = doc?.kind === 'CronJob' ? doc.spec?.jobTemplate?.spec : doc?.kind === 'Job' ? doc.spec : undefined;
      for (const c of spec?.template?.spec?.containers ?? []) {
        if (!Array.isArray(c.args) || !c.args.every((a: unknown) => typeof a === 'string')) problems.push(`${file} #${index}: container ${c.name}'s args are not a list of strings`);
      }
    });
  }
  t.same(problems, [], 'no YAML errors, no duplicate keys, batch arguments well formed');
});
