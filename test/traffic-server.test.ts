// Traffic through a real server on loopback: policies over the admin API, sticky canary routing,
// shadows that never touch the primary's answer, rollouts that promote or roll back on their own,
// state that survives a restart, and continuous delivery of a new version.
import t from 'tap';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../dist/index.js';
import { ShadowRunner } from '../dist/traffic/index.js';
import { tempRepo, affineModel, type TempRepo } from './helpers/repo.js';
import { property } from './helpers/property.js';
import { seededRandom as seeded } from '../dist/random.js';

const TOKEN = 'secret-token';
const ADMIN = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

/** v1: 2x+1 (primary); v2: the same function (a good candidate); v3: 2x+1.5 (wrong answers). */
function affineRepo(config: Record<string, unknown> = {}): TempRepo {
  const repo = tempRepo();
  repo.writeConfig('affine', { version_policy: { all: {} }, ...config });
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.addVersion('affine', 2, affineModel(2, 1));
  repo.addVersion('affine', 3, affineModel(2, 1.5));
  return repo;
}

type Server = Awaited<ReturnType<typeof startServer>>;

/** Traffic state persists in a state directory beside the repository (never inside it), kept across restarts of one test. */
const stateDirOf = (repo: TempRepo) => `${repo.dir}.state`;

async function serve(t: Tap.Test, repo: TempRepo): Promise<Server> {
  const server = await startServer({ repository: repo.dir, stateDir: stateDirOf(repo), port: 0, workers: 1, adminToken: TOKEN, monitoring: false } as Parameters<typeof startServer>[0]);
  t.teardown(async () => {
    await server.stop();
    rmSync(stateDirOf(repo), { recursive: true, force: true });
  });
  return server;
}

async function infer(server: Server, row: number[], opts: { key?: string; bodyKey?: string; version?: string } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.key) headers['x-umbra-key'] = opts.key;
  const body: Record<string, unknown> = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: row }] };
  if (opts.bodyKey) body.parameters = { routing_key: opts.bodyKey };
  const path = opts.version ? `/v2/models/affine/versions/${opts.version}/infer` : '/v2/models/affine/infer';
  const r = await fetch(`${server.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
  const json = await r.json();
  return { status: r.status, header: r.headers.get('x-umbra-version'), json };
}

async function call(server: Server, method: string, path: string, body?: unknown, headers: Record<string, string> = ADMIN) {
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(`${server.url}${path}`, init);
  return { status: r.status, json: await r.json() };
}

/** Waits for a condition the server reaches on its own (shadow lanes emptying); not a fixed sleep. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function rowFrom(random: () => number): number[] {
  return Array.from({ length: 4 }, () => Math.round((random() * 20 - 10) * 1000) / 1000);
}

t.test('policy over the admin API: token, validation, loaded versions, persistence', async (t) => {
  const repo = affineRepo();
  t.teardown(() => repo.remove());
  const server = await serve(t, repo);
  const initial = await call(server, 'GET', '/v2/models/affine/traffic', undefined, {});
  t.equal(initial.status, 200);
  t.match(initial.json, { primary: '3', canary: null, shadows: [], pinned: false }, 'default: newest version, nothing pinned');
  const policy = { primary: '1', canary: { version: '2', weight: 0.5 }, shadows: [{ version: '3', sample: 1 }] };
  t.equal((await call(server, 'PUT', '/v2/models/affine/traffic', policy, { 'content-type': 'application/json' })).status, 401, '401 without the token');
  t.equal((await call(server, 'PUT', '/v2/models/affine/traffic', policy, { authorization: 'Bearer wrong' })).status, 401, '401 with a wrong token');
  const bad = await call(server, 'PUT', '/v2/models/affine/traffic', { primary: '1', canary: { version: '2', weight: 2 } });
  t.equal(bad.status, 400);
  t.match(bad.json.error, /fraction in 0\.\.1/);
  const unloaded = await call(server, 'PUT', '/v2/models/affine/traffic', { primary: '9' });
  t.equal(unloaded.status, 400);
  t.match(unloaded.json.error, /version 9 .* not loaded/);
  t.equal((await call(server, 'PUT', '/v2/models/ghost/traffic', { primary: '1' })).status, 404);
  const malformed = await fetch(`${server.url}/v2/models/affine/traffic`, { method: 'PUT', headers: ADMIN, body: '{nope' });
  t.equal(malformed.status, 400);
  const ok = await call(server, 'PUT', '/v2/models/affine/traffic', policy);
  t.equal(ok.status, 200);
  t.match(ok.json, { ...policy, pinned: true });
  t.ok(existsSync(join(stateDirOf(repo), 'affine.traffic.json')), 'persisted in the state directory');
  t.notOk(existsSync(join(repo.dir, 'affine', 'traffic.json')), 'nothing written into the repository');
  t.same((await call(server, 'GET', '/v2/models/affine/traffic')).json.canary, policy.canary);
});

t.test('routing: sticky canary by header or body key, versioned requests go where they ask', async (t) => {
  const repo = affineRepo();
  t.teardown(() => repo.remove());
  const server = await serve(t, repo);
  t.equal((await call(server, 'PUT', '/v2/models/affine/traffic', { primary: '1', canary: { version: '2', weight: 0.5 }, shadows: [] })).status, 200);
  const random = seeded(1);
  const seen = new Map<string, string>();
  const named = property('the header names the serving version');
  const sticks = property('a key sticks to its version');
  const bodyKey = property('a key in parameters.routing_key routes like the header');
  for (let i = 0; i < 20; i++) {
    const key = `user-${i}`;
    const a = await infer(server, rowFrom(random), { key });
    const b = await infer(server, rowFrom(random), { key });
    const c = await infer(server, rowFrom(random), { bodyKey: key });
    named.check(a.header === a.json.model_version, () => `${key}: header ${a.header}, body ${a.json.model_version}`);
    sticks.check(a.header === b.header, () => `${key}: ${a.header} then ${b.header}`);
    bodyKey.check(c.header === a.header, () => `${key}: header ${a.header}, body key ${c.header}`);
    seen.set(key, a.header!);
  }
  for (const p of [named, sticks, bodyKey]) p.assert(t);
  t.same(new Set(seen.values()), new Set(['1', '2']), 'both versions serve some keys');
  t.equal((await infer(server, [1, 2, 3, 4], { version: '3', key: 'user-1' })).header, '3', 'versioned request is not rerouted');
  // Raising the weight moves keys only toward the canary.
  await call(server, 'PUT', '/v2/models/affine/traffic', { primary: '1', canary: { version: '2', weight: 0.9 }, shadows: [] });
  const staysOnCanary = property('a key on the canary stays there when its weight rises');
  for (const [key, before] of seen) {
    const after = (await infer(server, [1, 1, 1, 1], { key })).header;
    if (before === '2') staysOnCanary.check(after === '2', () => `${key} moved to ${after}`);
  }
  staysOnCanary.assert(t);
});

t.test('shadows never change the primary answer; agreement on equal and differing versions', async (t) => {
  const repo = affineRepo();
  t.teardown(() => repo.remove());
  const server = await serve(t, repo);
  await call(server, 'PUT', '/v2/models/affine/traffic', { primary: '1', canary: null, shadows: [{ version: '2', sample: 1 }, { version: '3', sample: 1 }] });
  const random = seeded(2);
  const primary = property('every request is answered 200 by the primary, its answer unchanged');
  for (let i = 0; i < 40; i++) {
    const row = rowFrom(random);
    const r = await infer(server, row);
    const expected = row.map((v) => Math.fround(Math.fround(v) * 2) + 1);
    const got: number[] = r.json?.outputs?.[0]?.data ?? [];
    primary.check(r.status === 200 && r.header === '1' && got.length === expected.length && got.every((v, j) => Math.abs(v - expected[j]!) < 1e-4),
      () => `request ${i}: status ${r.status}, version ${r.header}, ${JSON.stringify(got)}`);
  }
  primary.assert(t);
  await until(() => server.traffic.shadows.busy('affine') === 0, 'shadow lanes to empty');
  t.equal((await call(server, 'GET', '/v2/models/affine/shadow', undefined, {})).status, 401, 'the disagreement log is admin only');
  const shadow = (await call(server, 'GET', '/v2/models/affine/shadow')).json;
  const v2 = shadow.versions['2'];
  const v3 = shadow.versions['3'];
  t.equal(v2.requests + v2.dropped + v2.skipped, 40, 'every request was shadowed or counted as dropped');
  t.equal(v2.agreement, 1, 'identical model agrees');
  t.equal(v2.mean_abs_diff, 0);
  t.equal(v3.agreement, 0, 'shifted model disagrees on every row');
  t.ok(Math.abs(v3.mean_abs_diff - 0.5) < 1e-6, `mean abs diff 0.5 (${v3.mean_abs_diff})`);
  t.ok(shadow.disagreements.length > 0 && shadow.disagreements.length <= 50, 'bounded disagreement log');
  const d = shadow.disagreements[0];
  t.equal(d.version, '3');
  t.same(d.inputs[0].shape, [1, 4]);
  t.ok(Math.abs(d.shadow[0].data[0] - d.primary[0].data[0] - 0.5) < 1e-6, 'both outputs logged');
});

t.test('under overload shadow work is dropped (counted) and the primary is untouched', async (t) => {
  let pending = 5;
  const started: string[] = [];
  const resolvers: Array<() => void> = [];
  const fakeVersion = {
    version: '2', pending: 0, config: { parameters: {}, dynamicBatching: { priorityLevels: 3 } },
    signature: { maxBatchSize: 8, outputs: [{ name: 'y', datatype: 'FP32' }] },
    infer(request: { parameters: Record<string, unknown> }) {
      started.push(String(request.parameters.priority));
      return new Promise((resolve) => resolvers.push(() => resolve({ response: { model_name: 'm', model_version: '2', outputs: [] }, timing: { queueMs: 0, computeMs: 1, rows: 1, batchRows: 1 } })));
    },
  };
  const primary = { get pending() { return pending; } };
  const dropped: string[] = [];
  const runner = new ShadowRunner({
    resolve: () => fakeVersion as never,
    primaryOf: () => primary as never,
    run: (mv: typeof fakeVersion, request: { parameters: Record<string, unknown> }) => mv.infer(request) as never,
    onOutcome: () => undefined,
    onDropped: (_m: string, v: string) => dropped.push(v),
    random: seeded(3),
  }, { queueCapacity: 4, concurrency: 1, logCapacity: 10 });
  t.teardown(() => runner.close());
  const job = { request: { parameters: { priority: 1, timeout: 5 }, inputs: [] }, primary: { model_name: 'm', model_version: '1', outputs: [] }, primaryLatencyMs: 1 };
  const accepted = Array.from({ length: 10 }, () => runner.offer('m', '2', job as never));
  t.same(accepted, [true, true, true, true, false, false, false, false, false, false], 'queue bound holds, the rest is dropped');
  t.equal(dropped.length, 6, 'drops are counted');
  t.equal(started.length, 0, 'nothing starts while the primary has queued work');
  pending = 0;
  runner.pumpModel('m');
  t.equal(started.length, 1, 'one shadow in flight at a time once the primary is idle');
  t.equal(started[0], '3', 'shadow asks for the lowest priority level, not the client one');
  resolvers.shift()!();
  await until(() => started.length === 2, 'the next shadow');
  t.equal(runner.snapshot('m').versions['2'] && (runner.snapshot('m').versions['2'] as { dropped: number }).dropped, 6);
});

async function driveUntil(server: Server, random: () => number, done: () => Promise<boolean>, limit = 3000): Promise<number> {
  for (let i = 0; i < limit; i++) {
    await infer(server, rowFrom(random), { key: `k${i}` });
    if (i % 10 === 9 && (await done())) return i + 1;
  }
  return limit;
}

const QUICK_ROLLOUT = {
  steps: [{ shadow: true, min_requests: 30 }, { weight: 0.3, min_requests: 20 }, { weight: 1, min_requests: 20 }],
  // Latency on a shared test machine is noise at this scale: judge answers and errors here,
  // latency in the pure and simulation tests. A 5% error limit passes after 90 clean answers (the
  // default 1% takes 459), and the earlier rule names stay accepted.
  analysis: { min_samples: 20, max_p99_ratio: 50, p99_slack_ms: 100, max_error_rate: 0.05, warmup: 0 },
};

t.test('rollout over HTTP: a good candidate is promoted, a wrong one rolled back in the shadow step', async (t) => {
  const repo = affineRepo();
  t.teardown(() => repo.remove());
  const server = await serve(t, repo);
  await call(server, 'PUT', '/v2/models/affine/traffic', { primary: '1', canary: null, shadows: [] });
  t.equal((await call(server, 'POST', '/v2/models/affine/rollout', { candidate: '2', ...QUICK_ROLLOUT }, {})).status, 401);
  t.equal((await call(server, 'POST', '/v2/models/affine/rollout', { candidate: '7' })).status, 400, 'unloaded candidate');
  t.equal((await call(server, 'POST', '/v2/models/affine/rollout', { candidate: '2', steps: 'fast' })).status, 400);
  const started = await call(server, 'POST', '/v2/models/affine/rollout', { candidate: '2', ...QUICK_ROLLOUT });
  t.equal(started.status, 201);
  t.equal(started.json.state, 'running');
  t.equal((await call(server, 'POST', '/v2/models/affine/rollout', { candidate: '3' })).status, 409, 'one rollout at a time');
  t.equal((await call(server, 'PUT', '/v2/models/affine/traffic', { primary: '3' })).status, 409, 'no hand edits during a rollout');
  const early = await call(server, 'GET', '/v2/models/affine/analysis', undefined, {});
  t.equal(early.json.verdict, 'inconclusive', 'no evidence yet');
  const random = seeded(4);
  await driveUntil(server, random, async () => (await call(server, 'GET', '/v2/models/affine/rollout')).json.state !== 'running');
  const done = (await call(server, 'GET', '/v2/models/affine/rollout')).json;
  t.equal(done.state, 'promoted', JSON.stringify(done.history.at(-1)));
  t.same(done.history.map((d: { action: string }) => d.action), ['start', 'advance', 'advance', 'promote']);
  t.match((await call(server, 'GET', '/v2/models/affine/traffic')).json, { primary: '2', canary: null, shadows: [] });
  t.equal((await infer(server, [1, 2, 3, 4])).header, '2', 'the candidate now serves');

  // Now a candidate with wrong answers.
  await call(server, 'POST', '/v2/models/affine/rollout', { candidate: '3', ...QUICK_ROLLOUT });
  await driveUntil(server, random, async () => (await call(server, 'GET', '/v2/models/affine/rollout')).json.state !== 'running');
  const bad = (await call(server, 'GET', '/v2/models/affine/rollout')).json;
  t.equal(bad.state, 'rolled_back');
  t.equal(bad.history.at(-1).step, 0, 'rolled back in the shadow step');
  t.match(bad.history.at(-1).reason, /agreement/);
  t.match((await call(server, 'GET', '/v2/models/affine/traffic')).json, { primary: '2', canary: null, shadows: [] });
  const flagger = await fetch(`${server.url}/v2/models/affine/analysis`, { method: 'POST', body: '{}' });
  t.equal(flagger.status, 412, 'Flagger webhook: not a pass');
});

t.test('a rollout resumes at its step after a restart, and can be aborted by hand', async (t) => {
  const repo = affineRepo();
  t.teardown(() => repo.remove());
  const first = await serve(t, repo);
  await call(first, 'PUT', '/v2/models/affine/traffic', { primary: '1', canary: null, shadows: [] });
  const spec = { candidate: '2', steps: [{ shadow: true, min_requests: 30 }, { weight: 0.25, min_requests: 100000 }, { weight: 1, min_requests: 10 }], analysis: QUICK_ROLLOUT.analysis };
  await call(first, 'POST', '/v2/models/affine/rollout', spec);
  await driveUntil(first, seeded(6), async () => (await call(first, 'GET', '/v2/models/affine/rollout')).json.step === 1);
  t.equal((await call(first, 'GET', '/v2/models/affine/rollout')).json.step, 1);
  await first.stop();
  const second = await serve(t, repo);
  const resumed = (await call(second, 'GET', '/v2/models/affine/rollout')).json;
  t.equal(resumed.state, 'running');
  t.equal(resumed.step, 1, 'same step, not 100%');
  t.equal(resumed.history.at(-1).action, 'restart');
  t.match((await call(second, 'GET', '/v2/models/affine/traffic')).json, { primary: '1', canary: { version: '2', weight: 0.25 } });
  const aborted = await call(second, 'POST', '/v2/models/affine/rollout/abort');
  t.equal(aborted.json.state, 'rolled_back');
  t.match((await call(second, 'GET', '/v2/models/affine/traffic')).json, { primary: '1', canary: null, shadows: [] });
  t.equal((await call(second, 'POST', '/v2/models/affine/rollout/promote')).status, 409, 'nothing left to promote');
});

t.test('a rollout whose candidate is unloaded pauses, and resumes once it is back', async (t) => {
  const repo = affineRepo();
  t.teardown(() => repo.remove());
  const server = await serve(t, repo);
  await call(server, 'PUT', '/v2/models/affine/traffic', { primary: '1', canary: null, shadows: [] });
  const started = await call(server, 'POST', '/v2/models/affine/rollout', { candidate: '2', steps: [{ shadow: true, min_requests: 100000 }] });
  t.equal(started.json.state, 'running', JSON.stringify(started.json));
  // A reload whose version policy leaves version 2 out.
  const reload = await call(server, 'POST', '/v2/repository/models/affine/load', { parameters: { config: JSON.stringify({ version_policy: { specific: { versions: [1, 3] } } }) } });
  t.equal(reload.status, 200, JSON.stringify(reload.json));
  const paused = (await call(server, 'GET', '/v2/models/affine/rollout')).json;
  t.equal(paused.state, 'paused', 'no longer running toward a version that is not there');
  t.match(paused.history.at(-1), { action: 'pause', reason: 'version 2 (its candidate) no longer loaded; load it again and resume, or abort' });
  t.same([(await infer(server, [1, 2, 3, 4])).status, (await infer(server, [1, 2, 3, 4])).header], [200, '1'], 'the primary serves');
  const early = await call(server, 'POST', '/v2/models/affine/rollout/resume');
  t.equal(early.status, 400, 'resuming without the candidate is refused');
  t.match(early.json.error, /names version 2 of model 'affine', which is not loaded/);
  t.equal((await call(server, 'POST', '/v2/repository/models/affine/load')).status, 200, 'the repository\'s config again: every version');
  const resumed = await call(server, 'POST', '/v2/models/affine/rollout/resume');
  t.same([resumed.status, resumed.json.state], [200, 'running']);
});

t.test('damaged saved state: no guess at the primary, not ready, until a policy names one', async (t) => {
  const repo = affineRepo();
  t.teardown(() => repo.remove());
  const { mkdirSync, readFileSync, writeFileSync } = await import('node:fs');
  mkdirSync(stateDirOf(repo), { recursive: true });
  const file = join(stateDirOf(repo), 'affine.traffic.json');
  // A weight no policy may have (a hand edit gone wrong); a truncated file reads the same way.
  const damaged = JSON.stringify({ policy: { primary: '1', canary: { version: '3', weight: 5 }, shadows: [] }, rollout: null, known_versions: ['1', '2', '3'] });
  writeFileSync(file, damaged);
  const server = await serve(t, repo);
  const refused = await infer(server, [1, 2, 3, 4]);
  t.equal(refused.status, 503, 'an unversioned request is not routed to the newest version by default');
  t.match(refused.json.error, /model 'affine' does not know its primary version: .*affine\.traffic\.json.*PUT \/v2\/models\/affine\/traffic/, 'the error names the file and the fix');
  t.equal((await infer(server, [1, 2, 3, 4], { version: '1' })).status, 200, 'a request naming its version still runs');
  t.equal((await fetch(`${server.url}/v2/health/ready`)).status, 503, 'the server is not ready');
  t.equal((await fetch(`${server.url}/v2/models/affine/ready`)).status, 503, 'nor the model');
  t.equal((await fetch(`${server.url}/v2/models/affine/versions/1/ready`)).status, 200, 'its versions are');
  t.match((await call(server, 'GET', '/v2/models/affine/traffic')).json, { primary: null, damaged_state: /does not know its primary version/ }, 'GET traffic says so');
  t.equal((await call(server, 'POST', '/v2/models/affine/rollout', { candidate: '3' })).status, 409, 'no rollout from an unknown primary');
  t.equal(readFileSync(file, 'utf8'), damaged, 'the file is kept as it was, for repair');
  t.equal((await call(server, 'PUT', '/v2/models/affine/traffic', { primary: '1', canary: null, shadows: [] })).status, 200);
  const served = await infer(server, [1, 2, 3, 4]);
  t.same([served.status, served.header], [200, '1'], 'a policy set by hand routes again');
  t.equal((await fetch(`${server.url}/v2/health/ready`)).status, 200, 'and the server is ready');
});

t.test('continuous delivery: rollout "auto" starts when a new version appears', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.writeConfig('affine', { version_policy: { all: {} }, rollout: { auto: true, ...QUICK_ROLLOUT } });
  repo.addVersion('affine', 1, affineModel(2, 1));
  const server = await serve(t, repo);
  t.match((await call(server, 'GET', '/v2/models/affine/traffic')).json, { primary: '1', pinned: true });
  repo.addVersion('affine', 2, affineModel(2, 1));
  await server.umbra.manager.pollOnce();
  const r = (await call(server, 'GET', '/v2/models/affine/rollout')).json;
  t.equal(r.state, 'running');
  t.equal(r.candidate, '2');
  t.equal((await infer(server, [1, 2, 3, 4])).header, '1', 'the new version waits for its rollout');
});

t.test('policy from config.json; models without traffic settings leave no state file', async (t) => {
  const repo = affineRepo({ traffic: { primary: '1', canary: { version: '2', weight: 1 }, shadows: [] } });
  t.teardown(() => repo.remove());
  repo.writeConfig('plain', {});
  repo.addVersion('plain', 1, affineModel(1, 0));
  const server = await serve(t, repo);
  t.match((await call(server, 'GET', '/v2/models/affine/traffic')).json, { primary: '1', canary: { version: '2', weight: 1 }, pinned: true });
  t.equal((await infer(server, [1, 2, 3, 4])).header, '2', 'weight 1: the canary answers');
  t.notOk(existsSync(join(stateDirOf(repo), 'plain.traffic.json')), 'no file for a model with no traffic settings');
  t.equal((await call(server, 'GET', '/v2/models/plain/rollout')).status, 404, 'no rollout');
  const analysis = (await call(server, 'GET', '/v2/models/plain/analysis?min_agreement=0.9')).json;
  t.equal(analysis.verdict, 'inconclusive');
  t.equal((await call(server, 'GET', '/v2/models/plain/analysis?min_agreement=2')).status, 400, 'query rules validated');
});
