// Monitoring without traps: a profile written while the server runs replaces the live reference
// (at once, or at a reload); drift is a rollout rule by default where it can judge; shadow answers
// feed drift, feedback and the log like any other answer; a model can keep every input for
// retraining, and export-log says plainly when inputs were sampled away.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempRepo, affineModel, type TempRepo } from './helpers/repo.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { newProfile, profileColumn, profilePath, writeProfile } from '../dist/monitor/profile.js';
import { openLogStore } from '../dist/monitor/log-store.js';
import { seededRandom } from '../dist/random.js';

const ROOT = new URL('..', import.meta.url).pathname;
const TOKEN = 'monitor-token';
const ADMIN = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

function repoWith(config: Record<string, unknown> = {}): TempRepo {
  const repo = tempRepo();
  repo.writeConfig('affine', { version_policy: { all: {} }, ...config });
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.addVersion('affine', 2, affineModel(2, 1.5));
  return repo;
}

/** A reference profile of the affine model's four inputs drawn from `random`, named `source`. */
function profileOf(repo: TempRepo, source: string, random: () => number): void {
  const rows = 500;
  const columns = Array.from({ length: 4 }, () => Array.from({ length: rows }, () => random() * 10));
  writeProfile(profilePath(repo.dir, 'affine'), newProfile('affine', source, rows, columns.map((c, i) => profileColumn(`x[${i}]`, c))));
}

async function send(s: TestServer, n: number, random: () => number, idPrefix?: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const body: Record<string, unknown> = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: Array.from({ length: 4 }, () => random() * 10) }] };
    if (idPrefix) body.id = `${idPrefix}-${i}`;
    const r = await s.post('/v2/models/affine/infer', body);
    t.equal(r.status, 200);
    ids.push(r.json.id);
  }
  return ids;
}

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('a profile written while serving replaces the live reference, and a reload re-reads it', async (t) => {
  const repo = repoWith({ traffic: { primary: '1' } });
  t.teardown(() => repo.remove());
  const s = await startTestServer(t, { repository: repo.dir, workers: 1, adminToken: TOKEN, monitoring: { drift: { captureRows: 50, minSamples: 20 } } });
  const random = seededRandom(3);
  await send(s, 30, random);
  const before = (await s.get('/v2/models/affine/versions/1/drift')).json;
  t.not(before.reference.source, 'train.csv', 'no profile yet: the reference comes from live rows');
  profileOf(repo, 'train.csv', random);
  const after = (await s.get('/v2/models/affine/versions/1/drift')).json;
  t.match(after.reference, { source: 'train.csv', rows: 500 }, 'the new profile is read without a restart');
  t.equal(after.window, 0, 'the live window starts again against the new reference');
  await send(s, 30, random);
  t.equal((await s.get('/v2/models/affine/versions/1/drift')).json.verdict, 'no_drift', 'live rows from the profiled distribution: no drift');
  profileOf(repo, 'retrain.csv', random);
  t.equal((await s.post('/v2/repository/models/affine/load', undefined, ADMIN)).status, 200);
  t.match((await s.get('/v2/models/affine/versions/1/drift')).json.reference, { source: 'retrain.csv' }, 'an admin reload re-reads it too');
});

t.test('drift is a default rollout rule when monitoring is on and the model has a profile', async (t) => {
  const repo = repoWith({ traffic: { primary: '1' } });
  t.teardown(() => repo.remove());
  const s = await startTestServer(t, { repository: repo.dir, workers: 1, adminToken: TOKEN, monitoring: {} });
  const none = await s.post('/v2/models/affine/rollout', { candidate: '2' }, ADMIN);
  t.equal(none.json.analysis_rules.drift, false, 'no profile: nothing to judge drift against, the rule is off');
  t.equal((await s.post('/v2/models/affine/rollout/abort', undefined, ADMIN)).status, 200);
  profileOf(repo, 'train.csv', seededRandom(4));
  const started = await s.post('/v2/models/affine/rollout', { candidate: '2' }, ADMIN);
  t.equal(started.json.analysis_rules.drift, true, 'with a profile the started rollout shows drift: true');
  t.ok(started.json.analysis.rules.some((r: { rule: string }) => r.rule === 'drift'), 'and judges it');
  t.equal((await s.post('/v2/models/affine/rollout/abort', undefined, ADMIN)).status, 200);
  const off = await s.post('/v2/models/affine/rollout', { candidate: '2', analysis: { drift: false } }, ADMIN);
  t.equal(off.json.analysis_rules.drift, false, 'an explicit false stays false');
});

t.test('shadow answers feed drift, feedback and the prediction log like any other answer', async (t) => {
  const repo = repoWith({ traffic: { primary: '1', shadows: [{ version: '2', sample: 1 }] } });
  t.teardown(() => repo.remove());
  const logDb = `sqlite:${join(repo.dir, 'log.sqlite')}`;
  const s = await startTestServer(t, { repository: repo.dir, workers: 1, monitoring: { log: { url: logDb } } });
  const ids = await send(s, 40, seededRandom(6));
  await until(() => s.server.traffic.shadows.busy('affine') === 0, 'shadow runs to finish');
  const feedback = await s.post('/v2/models/affine/feedback', { feedback: ids.map((id) => ({ id, truth: 0 })) });
  t.equal(feedback.json.accepted, 40);
  const shadowDrift = (await s.get('/v2/models/affine/versions/2/drift')).json;
  const shadowed = (await s.get('/v2/models/affine/shadow')).json.versions['2'].requests;
  t.ok(shadowed > 0, `${shadowed} requests shadowed`);
  // Without a profile the first live rows become the reference: they are counted there.
  t.match(shadowDrift.reference, { source: 'capturing', rows: shadowed }, 'every shadow answer reached the candidate\'s drift');
  t.equal(shadowDrift.accuracy.labelled, shadowed, 'one label scored the primary and the shadow that answered the id');
  t.equal((await s.get('/v2/models/affine/versions/1/drift')).json.accuracy.labelled, 40);
  await s.server.monitor!.log!.flush();
  const store = await openLogStore(logDb);
  t.teardown(() => store.close());
  const roles: Record<string, number> = {};
  for await (const row of store.exportRows({ labelledOnly: true })) roles[row.role] = (roles[row.role] ?? 0) + 1;
  t.same(roles, { primary: 40, shadow: shadowed }, 'the log keeps shadow answers too, labelled by the same id');
});

t.test('a model can keep every input for retraining; export-log says when inputs were sampled away', async (t) => {
  for (const [name, config, expectInputs] of [
    ['log_inputs_sample "1"', { parameters: { log_inputs_sample: '1' } }, 40],
    ['the server default (one in ten)', {}, undefined],
  ] as const) {
    const repo = repoWith(config);
    t.teardown(() => repo.remove());
    const logDb = `sqlite:${join(repo.dir, 'log.sqlite')}`;
    const s = await startTestServer(t, { repository: repo.dir, workers: 1, monitoring: { log: { url: logDb } } });
    const ids = await send(s, 40, seededRandom(8), 'row');
    t.equal((await s.post('/v2/models/affine/feedback', { feedback: ids.map((id) => ({ id, truth: 1 })) })).json.accepted, 40);
    await s.server.stop();
    const out = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'export-log', '--log-db', logDb, '--labelled', '--out', join(repo.dir, 'train.jsonl')], { encoding: 'utf8' });
    t.equal(out.status, 0, out.stderr);
    const { readFileSync } = await import('node:fs');
    const rows = readFileSync(join(repo.dir, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { inputs: unknown });
    const withInputs = rows.filter((r) => r.inputs !== null).length;
    t.equal(rows.length, 40, `${name}: every labelled prediction exported`);
    if (expectInputs !== undefined) {
      t.equal(withInputs, expectInputs, `${name}: every one with its inputs`);
      t.notMatch(out.stderr, /have no inputs/);
    } else {
      t.ok(withInputs < 40, `${name}: ${withInputs} of 40 with inputs`);
      t.match(out.stderr, new RegExp(`${40 - withInputs} of 40 labelled predictions have no inputs.*log_inputs_sample`), 'export-log says how to keep them');
    }
  }
});

t.test('a rollout paused because a reload left its candidate out keeps the candidate\'s live accuracy for when it is back', async (t) => {
  const repo = repoWith();
  t.teardown(() => repo.remove());
  const s = await startTestServer(t, { repository: repo.dir, workers: 1, stateDir: `${repo.dir}.state` });
  t.teardown(() => rmSync(`${repo.dir}.state`, { recursive: true, force: true }));
  t.equal((await s.request('PUT', '/v2/models/affine/traffic', JSON.stringify({ primary: '1', canary: null, shadows: [] }))).status, 200);
  t.equal((await s.post('/v2/models/affine/rollout', { candidate: '2', steps: [{ shadow: true, min_requests: 100000 }] })).json.state, 'running');
  const x = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] };
  for (let i = 0; i < 5; i++) t.equal((await s.post('/v2/models/affine/versions/2/infer', { id: `c-${i}`, inputs: [x] })).status, 200);
  t.equal((await s.post('/v2/models/affine/feedback', { feedback: Array.from({ length: 5 }, (_, i) => ({ id: `c-${i}`, truth: 0 })) })).json.accepted, 5);
  const leftOut = await s.post('/v2/repository/models/affine/load', { parameters: { config: JSON.stringify({ version_policy: { specific: { versions: [1] } } }) } });
  t.equal(leftOut.status, 200, JSON.stringify(leftOut.json));
  t.equal((await s.get('/v2/models/affine/rollout')).json.state, 'paused');
  // A scrape lets go of what versions no longer loaded hold.
  t.equal((await s.get('/metrics')).status, 200);
  t.equal((await s.post('/v2/repository/models/affine/load', {})).status, 200, 'every version again');
  t.equal((await s.get('/v2/models/affine/versions/2/drift')).json.accuracy?.labelled, 5, 'the labels gathered before the pause still count');
});
