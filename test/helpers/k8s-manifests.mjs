// The Kubernetes manifests under deploy/ that Umbra ships for serving (KServe, plain Deployment,
// Argo Rollouts, Flagger, autoscaling, monitoring), read the way kubectl reads them: every YAML document of
// every file. Shared by the manifest tests and by test/fixtures/k8s-schemas/extract.mjs, which
// cuts the upstream schemas down to the fields these documents use.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export const MANIFEST_DIRS = ['deploy/kserve', 'deploy/serve', 'deploy/argo', 'deploy/flagger', 'deploy/autoscaling', 'deploy/monitoring'];

/** YAML files in those folders that are not Kubernetes objects (a Helm chart's values, Prometheus rule files and their promtool tests). */
export const NOT_OBJECTS = ['deploy/autoscaling/prometheus-adapter-rules.yaml', 'deploy/monitoring/umbra-rules.yaml', 'deploy/monitoring/umbra-rules.test.yaml'];

/**
 * Every document of every manifest file: `{ file, index, doc }` in file order. A YAML error
 * (or a duplicate key, which YAML 1.2 forbids and kubectl refuses) throws, naming the file.
 * @param {string} root the repository root
 * @returns {{ file: string, index: number, doc: any }[]}
 */
export function loadManifests(root) {
  const out = [];
  for (const dir of MANIFEST_DIRS) {
    for (const name of readdirSync(join(root, dir)).filter((n) => n.endsWith('.yaml')).sort()) {
      const file = `${dir}/${name}`;
      if (NOT_OBJECTS.includes(file)) continue;
      parseAllDocuments(readFileSync(join(root, file), 'utf8'), { uniqueKeys: true }).forEach((parsed, index) => {
        if (parsed.errors.length > 0) throw new Error(`${file} document ${index}: ${parsed.errors[0].message}`);
        const doc = parsed.toJSON();
        if (doc !== null && doc !== undefined) out.push({ file, index, doc });
      });
    }
  }
  return out;
}

/**
 * The fixture holding the schema of one apiVersion and kind: `<group>.<version>.<Kind>.json`,
 * the core group written as "core".
 * @param {string} apiVersion
 * @param {string} kind
 */
export function schemaFile(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['core', apiVersion];
  return `${group}.${version}.${kind}.json`;
}
