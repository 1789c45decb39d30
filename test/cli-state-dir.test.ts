// Umbra writes only into its state directory (--state-dir, default ./.umbra-state where it runs),
// never into the model repository: a read-only repository serves, profiles, logs and keeps traffic
// state; a mistyped --repo or log path is an error that creates nothing; state that earlier
// versions wrote into the repository is still read, and said so once.
import t from 'tap';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { resolveServeSettings, resolveStateDir } from '../dist/cli/settings.js';
import { newProfile, readProfile, stateProfilePath } from '../dist/monitor/profile.js';
import { TrafficStore } from '../dist/traffic/store.js';
import { ROOT, BIN, runUmbra, startServing } from './helpers/cli-process.js';
import { affineModel, tempRepo } from './helpers/repo.js';

// Spawns a dozen `umbra` processes and three servers: slow on a busy host.
t.setTimeout(600_000);

const work = mkdtempSync(join(tmpdir(), 'umbra-state-test-'));
t.teardown(() => {
  chmodTree(work, true);
  rmSync(work, { recursive: true, force: true });
});

/** Every path under `dir` with its size and modification time: equal snapshots mean nothing was written. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const s = lstatSync(path);
      out[path.slice(dir.length)] = s.isDirectory() ? `dir ${s.mtimeMs}` : `${s.size} ${s.mtimeMs}`;
      if (s.isDirectory()) walk(path);
    }
  };
  walk(dir);
  return out;
}

function chmodTree(dir: string, writable: boolean): void {
  if (!existsSync(dir)) return;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const s = lstatSync(path);
      if (s.isSymbolicLink()) continue;
      if (s.isDirectory()) walk(path);
      chmodSync(path, writable ? (s.isDirectory() ? 0o755 : 0o644) : (s.isDirectory() ? 0o555 : 0o444));
    }
  };
  walk(dir);
  chmodSync(dir, writable ? 0o755 : 0o555);
}

const DIGIT = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
  0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0];

t.test('the state directory: default, flag, environment, config file; never inside the repository', async (t) => {
  t.equal(resolveStateDir(undefined, '/srv/models'), resolve('.umbra-state'), 'default: .umbra-state where umbra runs');
  t.equal(resolveStateDir('state', '/srv/models'), resolve('state'));
  const s = resolveServeSettings({ repo: '/srv/models' }, { UMBRA_STATE_DIR: '/var/lib/umbra' });
  t.equal(s.stateDir, '/var/lib/umbra', 'UMBRA_STATE_DIR');
  t.match(s.monitoring, { log: { url: 'sqlite:/var/lib/umbra/predictions.sqlite' }, stateDir: '/var/lib/umbra' });
  const file = join(work, 'umbra.json');
  writeFileSync(file, JSON.stringify({ repo: '/srv/models', stateDir: '/from/file' }));
  t.equal(resolveServeSettings({ config: file }, {}).stateDir, '/from/file', '"stateDir" in --config');
  t.equal(resolveServeSettings({ config: file, stateDir: '/from/flag' }, {}).stateDir, '/from/flag', 'the flag wins');

  t.throws(() => resolveStateDir('/srv/models/state', '/srv/models'), /--state-dir: \/srv\/models\/state is inside the model repository/);
  t.throws(() => resolveStateDir('/srv/models', '/srv/models'), /inside the model repository/);
  t.throws(() => resolveStateDir(undefined, '.'), /default state directory .* is inside the model repository \.; run umbra from another directory or pass --state-dir/);
  t.equal(resolveStateDir('/srv/models-state', '/srv/models'), '/srv/models-state', 'a sibling with a common prefix is outside');
  // Through a symbolic link the repository is still recognised.
  const repo = join(work, 'real-repo');
  mkdirSync(repo);
  symlinkSync(repo, join(work, 'linked-repo'));
  t.throws(() => resolveStateDir(join(work, 'real-repo', 'state'), join(work, 'linked-repo')), /inside the model repository/);
  const serve = runUmbra(['serve', '--repo', '.'], { cwd: repo });
  t.equal(serve.status, 2, 'serve --repo . with the default state directory is a usage error');
  t.match(serve.stderr, /--state-dir: the default state directory/);
});

t.test('a read-only repository serves, is profiled, logs, keeps traffic state; nothing is written into it', async (t) => {
  const repo = join(work, 'ro-repo');
  cpSync(join(ROOT, 'models/repository/digits'), join(repo, 'digits'), { recursive: true });
  const cwd = join(work, 'ro-cwd');
  mkdirSync(cwd);
  chmodTree(repo, false);
  const before = snapshot(repo);

  const profile = runUmbra(['profile', '--repo', repo, '--model', 'digits', '--data', join(ROOT, 'models/digits.csv'), '--where', 'split=train'], { cwd });
  t.equal(profile.status, 0, profile.stderr);
  const state = join(cwd, '.umbra-state');
  t.match(profile.stdout, `wrote ${join(state, 'digits.reference-profile.json')}: 1437 rows`);

  const server = await startServing(process.execPath, [BIN, 'serve', '--repo', repo, '--port', '0', '--workers', '1'], { cwd });
  t.teardown(() => server.stop());
  t.match(server.output(), `state directory: ${state}`);
  const infer = await fetch(`${server.url}/v2/models/digits/infer`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [{ name: 'pixels', shape: [1, 64], datatype: 'FP32', data: DIGIT }] }),
  });
  t.equal(infer.status, 200);
  const policy = await fetch(`${server.url}/v2/models/digits/traffic`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ primary: '1', canary: null, shadows: [] }) });
  t.equal(policy.status, 200, await policy.text());
  const drift = await (await fetch(`${server.url}/v2/models/digits/versions/2/drift`)).json() as { reference: { source: string; rows: number } };
  t.same(drift.reference, { source: 'digits.csv', rows: 1437 }, 'the server reads the profile umbra profile wrote');
  t.equal(await server.stop(), 0);
  t.notMatch(server.output(), /prediction log unavailable/);

  const files = readdirSync(state).filter((f) => !/-(wal|shm|journal)$/.test(f)).sort();
  t.same(files, ['digits.reference-profile.json', 'digits.traffic.json', 'predictions.sqlite'], 'the state directory holds the profile, the traffic state and the log');
  t.match(JSON.parse(readFileSync(join(state, 'digits.traffic.json'), 'utf8')), { policy: { primary: '1' } });
  const exported = runUmbra(['export-log', '--out', 'log.jsonl'], { cwd });
  t.equal(exported.status, 0, exported.stderr);
  t.match(exported.stderr, /exported 1 predictions to log\.jsonl/, 'export-log finds the log in the same state directory');

  t.same(snapshot(repo), before, 'the repository is exactly as it was');
});

t.test('a --repo or log path that does not exist is an error, and nothing is created', async (t) => {
  const missing = join(work, 'no-such-repo');
  for (const args of [
    ['export-log', '--repo', missing],
    ['profile', '--repo', missing, '--model', 'digits', '--data', join(ROOT, 'models/digits.csv')],
    ['serve', '--repo', missing],
  ]) {
    const r = runUmbra(args, { cwd: work });
    t.equal(r.status, 2, `${args[0]} exits 2`);
    t.match(r.stderr, `--repo: ${missing} is not a directory`);
    t.notOk(existsSync(missing), `${args[0]} created nothing`);
  }
  const typo = join(work, 'nowhere', 'typo.sqlite');
  const r = runUmbra(['export-log', '--log-db', `sqlite:${typo}`], { cwd: work });
  t.equal(r.status, 2);
  t.match(r.stderr, `--log-db: no prediction log at ${typo}`);
  t.notOk(existsSync(join(work, 'nowhere')), 'no folder, no database');
  const empty = mkdtempSync(join(work, 'empty-'));
  const none = runUmbra(['export-log'], { cwd: empty });
  t.equal(none.status, 2);
  t.match(none.stderr, /--state-dir: no prediction log at .*\.umbra-state\/predictions\.sqlite/);
  t.same(readdirSync(empty), [], 'no state directory appeared');
});

t.test('state from earlier versions in the repository: traffic policies still apply, said once', async (t) => {
  const repo = tempRepo();
  const stateDir = `${repo.dir}.state`;
  t.teardown(() => {
    repo.remove();
    rmSync(stateDir, { recursive: true, force: true });
  });
  repo.writeConfig('affine', { version_policy: { all: {} } });
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.addVersion('affine', 2, affineModel(3, 0));
  const legacy = { policy: { primary: '1', canary: { version: '2', weight: 1 }, shadows: [] }, rollout: null, known_versions: ['1', '2'] };
  writeFileSync(join(repo.dir, 'affine', 'traffic.json'), JSON.stringify(legacy));
  mkdirSync(join(repo.dir, '.umbra'));
  writeFileSync(join(repo.dir, '.umbra', 'predictions.sqlite'), '');
  const before = snapshot(repo.dir);

  const server = await startServing(process.execPath, [BIN, 'serve', '--repo', repo.dir, '--state-dir', stateDir, '--port', '0', '--workers', '1', '--log-db', 'off']);
  t.teardown(() => server.stop());
  const infer = async () => (await fetch(`${server.url}/v2/models/affine/infer`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }),
  })).headers.get('x-umbra-version');
  t.equal(await infer(), '2', 'the canary at weight 1 from the old traffic.json answers');
  const put = await fetch(`${server.url}/v2/models/affine/traffic`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ primary: '2', canary: null, shadows: [] }) });
  t.equal(put.status, 200);
  t.equal(await server.stop(), 0);
  const notices = server.output().match(/read the traffic state of model 'affine' from [^\n]*traffic\.json, where earlier versions kept it/g) ?? [];
  t.equal(notices.length, 1, 'said once');
  t.match(JSON.parse(readFileSync(join(stateDir, 'affine.traffic.json'), 'utf8')), { policy: { primary: '2' } }, 'changes go to the state directory');
  t.same(snapshot(repo.dir), before, 'the old files are left as they were');

  // The log default only: an explicit --log-db says where the log is, so no pointer to the old one.
  const again = await startServing(process.execPath, [BIN, 'serve', '--repo', repo.dir, '--state-dir', stateDir, '--port', '0', '--workers', '1']);
  t.equal(await again.stop(), 0);
  t.match(again.output(), `an earlier prediction log is at ${join(repo.dir, '.umbra', 'predictions.sqlite')}`);
  t.notMatch(server.output(), /an earlier prediction log/);
});

t.test('TrafficStore: in memory without a state directory; a legacy file is read once', async (t) => {
  const repo = mkdtempSync(join(work, 'store-'));
  mkdirSync(join(repo, 'm'));
  writeFileSync(join(repo, 'm', 'traffic.json'), JSON.stringify({ policy: { primary: '1', canary: null, shadows: [] }, known_versions: ['1'] }));
  const notices: string[] = [];
  const memory = new TrafficStore(repo, undefined, (m) => notices.push(m));
  t.equal(memory.pathOf('m'), undefined);
  t.match(memory.read('m'), { policy: { primary: '1' } });
  t.match(memory.read('m'), { policy: { primary: '1' } });
  t.equal(notices.length, 1, 'one notice per model');
  memory.write('m', { policy: null, rollout: null, known_versions: ['1', '2'] });
  t.same(memory.read('m'), { policy: null, rollout: null, known_versions: ['1', '2'] }, 'writes are kept in memory');
  t.equal(memory.read('other'), undefined);
  t.same(readdirSync(join(repo, 'm')), ['traffic.json'], 'nothing written into the repository');

  const stateDir = join(repo, '..', 'store-state');
  const onDisk = new TrafficStore(repo, stateDir, (m) => notices.push(m));
  onDisk.write('n', { policy: null, rollout: null, known_versions: ['3'] });
  t.same(new TrafficStore(repo, stateDir).read('n'), { policy: null, rollout: null, known_versions: ['3'] }, 'a new store reads what the last one wrote');
});

t.test('reference profiles: the state directory first, then one shipped beside the model', async (t) => {
  const repo = mkdtempSync(join(work, 'profiles-'));
  const stateDir = `${repo}.state`;
  mkdirSync(join(repo, 'm'));
  mkdirSync(stateDir);
  t.equal(readProfile(repo, 'm', stateDir), undefined);
  writeFileSync(join(repo, 'm', 'reference-profile.json'), JSON.stringify(newProfile('m', 'shipped.csv', 10, [])));
  t.equal(readProfile(repo, 'm', stateDir)!.source, 'shipped.csv', 'one shipped with the model');
  writeFileSync(stateProfilePath(stateDir, 'm'), JSON.stringify(newProfile('m', 'built.csv', 20, [])));
  t.equal(readProfile(repo, 'm', stateDir)!.source, 'built.csv', 'umbra profile\'s own wins');
  const out = join(repo, 'm', 'shipped.json');
  const r = runUmbra(['profile', '--repo', join(ROOT, 'models/repository'), '--model', 'digits', '--data', join(ROOT, 'models/digits.csv'), '--where', 'split=train', '--out', out]);
  t.equal(r.status, 0, r.stderr);
  t.match(JSON.parse(readFileSync(out, 'utf8')), { model: 'digits', rows: 1437 }, '--out writes where asked');
});
