#!/usr/bin/env node
// deploy/monitoring/prometheus-rule.yaml is deploy/monitoring/umbra-rules.yaml (the one source of
// the rules, which plain Prometheus loads) wrapped as a prometheus-operator PrometheusRule. Run
// after editing the rules; `--check` exits 1 when the PrometheusRule is out of date (the test
// test/monitor-alert-rules.test.ts holds them equal the same way).
//
//   node scripts/build-prometheus-rule.mjs [--check]
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const RULES = `${ROOT}deploy/monitoring/umbra-rules.yaml`;
export const PROMETHEUS_RULE = `${ROOT}deploy/monitoring/prometheus-rule.yaml`;

const HEADER = `# GENERATED from umbra-rules.yaml by scripts/build-prometheus-rule.mjs: edit that file, then run
# \`node scripts/build-prometheus-rule.mjs\`. The same rules as a prometheus-operator PrometheusRule,
# in the namespace of the Prometheus that scrapes Umbra. A Prometheus whose ruleSelector selects by
# label (kube-prometheus-stack's selects \`release: <its release name>\`) needs that label added
# here, or \`ruleSelectorNilUsesHelmValues: false\`; docs/monitoring.md#alerts-and-dashboard.
`;

/** The PrometheusRule text for the rules text. */
export function prometheusRule(rulesText) {
  const { groups } = parse(rulesText);
  const doc = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'umbra', labels: { 'app.kubernetes.io/name': 'umbra', 'app.kubernetes.io/component': 'monitoring' } },
    spec: { groups },
  };
  return HEADER + stringify(doc, { lineWidth: 0 });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const wanted = prometheusRule(readFileSync(RULES, 'utf8'));
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(PROMETHEUS_RULE, 'utf8');
    } catch {
      // missing: out of date
    }
    if (current !== wanted) {
      process.stderr.write('deploy/monitoring/prometheus-rule.yaml is out of date: run node scripts/build-prometheus-rule.mjs\n');
      process.exit(1);
    }
  } else {
    writeFileSync(PROMETHEUS_RULE, wanted);
  }
}
