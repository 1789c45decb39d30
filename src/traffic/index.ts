// Traffic as a capability: `trafficPlugin` wires routing, shadows and rollouts into the core and
// registers their routes.
//   GET/PUT /v2/models/{m}/traffic      policy (PUT needs the admin token)
//   GET     /v2/models/{m}/shadow       shadow comparison stats and sampled disagreements (admin)
//   POST    /v2/models/{m}/rollout      start; GET shows state, step, evidence, history
//   POST    /v2/models/{m}/rollout/{promote|abort|resume}   (admin)
//   GET     /v2/models/{m}/analysis     verdict for Argo Rollouts' web provider; POST for Flagger webhooks
import type { ApiReply, ApiRequest } from '../api/api.js';
import { parseJsonObject } from '../api/api.js';
import type { PluginContext } from '../api/plugin.js';
import type { Monitor } from '../monitor/index.js';
import { rulesFromQuery } from './analysis.js';
import { TrafficController, type TrafficOptions } from './controller.js';
import { monitorBridge } from './monitor-bridge.js';

export { TrafficController, type TrafficOptions } from './controller.js';
export { parsePolicy, stickyPoint, takesCanary, type TrafficPolicy, type CanarySpec, type ShadowSpec } from './policy.js';
export { Rollout, parseRolloutSpec, DEFAULT_STEPS, type RolloutSpec, type RolloutStep, type RolloutRecord, type RolloutState, type Decision } from './rollout.js';
export { analyse, Evidence, parseRules, DEFAULT_RULES, type AnalysisRules, type AnalysisResult, type Verdict, type MonitorEvidence } from './analysis.js';
export { compareOutputs, compareModeOf, tensorForLog, type Comparison } from './compare.js';
export { ShadowRunner, type ShadowOptions } from './shadow.js';

function json(status: number, value: unknown): ApiReply {
  return { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) };
}

/**
 * Registers the traffic routes and hooks; returns the controller (tests tick it). `monitor` feeds
 * rollout analysis (drift, live accuracy) and shadow metrics; without it those rules are refused.
 */
export function trafficPlugin(ctx: PluginContext, options: Omit<TrafficOptions, 'monitor'> & { monitor?: Monitor | undefined } = {}): TrafficController {
  const { monitor, ...rest } = options;
  const traffic = new TrafficController(ctx.core, { ...rest, monitor: monitorBridge(monitor) });
  // No new shadow work or rollout steps once the server drains.
  ctx.onDrain(() => traffic.close());
  const api = ctx.routes;
  const admin = ctx.requireAdmin;
  const body = (req: ApiRequest, what: string) => parseJsonObject(req.body, what);
  api.route('GET', '/v2/models/:m/traffic', (_q, [m]) => json(200, traffic.policyOf(m!)));
  api.route('PUT', '/v2/models/:m/traffic', (q, [m]) => {
    admin(q);
    return json(200, traffic.setPolicy(m!, body(q, 'the traffic policy')));
  });
  api.route('GET', '/v2/models/:m/shadow', (q, [m]) => {
    // Disagreements carry production inputs: admin only.
    admin(q);
    traffic.policyOf(m!);
    return json(200, traffic.shadows.snapshot(m!));
  });
  api.route('POST', '/v2/models/:m/rollout', (q, [m]) => {
    admin(q);
    return json(201, traffic.startRollout(m!, body(q, 'the rollout')));
  });
  api.route('GET', '/v2/models/:m/rollout', (_q, [m]) => json(200, traffic.rolloutOf(m!)));
  for (const action of ['promote', 'abort', 'resume'] as const) {
    api.route('POST', `/v2/models/:m/rollout/${action}`, (q, [m]) => {
      admin(q);
      return json(200, traffic.command(m!, action));
    });
  }
  api.route('GET', '/v2/models/:m/analysis', (q, [m]) => json(200, traffic.analysisOf(m!, rulesFromQuery(q.query))));
  // Flagger webhooks treat any non-2xx answer as a failed check: only "pass" answers 200.
  api.route('POST', '/v2/models/:m/analysis', (q, [m]) => {
    const result = traffic.analysisOf(m!, rulesFromQuery(q.query));
    return json(result.verdict === 'pass' ? 200 : 412, result);
  });
  return traffic;
}
