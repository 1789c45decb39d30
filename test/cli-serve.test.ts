// `umbra serve` as a process: flags, config file and environment, bad input, and SIGTERM under
// load with zero failed in-flight requests.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { tempRepo, slowModel, affineModel } from './helpers/repo.js';
import { resolveServeSettings } from '../dist/cli/settings.js';
import { defaultCoreReads, defaultIoThreads, readersInlineBudgetUs } from '../dist/server/server.js';

const BIN = new URL('../bin/umbra.js', import.meta.url).pathname;

function runCli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
}

/** `umbra serve ARGS` on a free port (and no gRPC port), resolved once it logs its listen line. */
async function serveUntilListening(args: string[]) {
  const child = spawn(process.execPath, [BIN, 'serve', '--grpc-port', '0', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { out += d; });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d: string) => {
      out += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`server exited early (${code}): ${out}`)));
  });
  /** Resolves once the output so far holds `text` (rejects if the server exits first). */
  const logged = (text: string) => new Promise<void>((resolve, reject) => {
    if (out.includes(text)) return resolve();
    const look = () => {
      if (!out.includes(text)) return;
      child.stdout.off('data', look);
      child.stderr.off('data', look);
      resolve();
    };
    child.stdout.on('data', look);
    child.stderr.on('data', look);
    void exited.then(() => reject(new Error(`the server exited before logging ${JSON.stringify(text)}: ${out}`)));
  });
  return { child, port, exited, logged, output: () => out };
}

t.test('--help on every command, and bad flags name the flag and the fix', async (t) => {
  const top = runCli(['--help']);
  t.equal(top.status, 0);
  t.match(top.stdout, /serve/);
  const help = runCli(['serve', '--help']);
  t.equal(help.status, 0);
  t.match(help.stdout, /--repo/);
  t.match(help.stdout, /--admin-token/);
  const noRepo = runCli(['serve'], { UMBRA_REPO: '' });
  t.equal(noRepo.status, 2);
  t.match(noRepo.stderr, /--repo is required/);
  const badPort = runCli(['serve', '--repo', '.', '--port', '99999']);
  t.equal(badPort.status, 2);
  t.match(badPort.stderr, /--port/);
  const notDir = runCli(['serve', '--repo', '/nonexistent/models']);
  t.equal(notDir.status, 2);
  t.match(notDir.stderr, /--repo: \/nonexistent\/models is not a directory/);
  const unknown = runCli(['serve', '--repo', '.', '--frobnicate']);
  t.not(unknown.status, 0);
  t.match(unknown.stderr, /unknown option '--frobnicate'/);
});

t.test('settings: flags over environment over config file over defaults', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-cfg-'));
  const file = join(dir, 'umbra.json');
  writeFileSync(file, JSON.stringify({ repo: '/from/file', port: 9001, workers: 3, adminToken: 'file-token' }));
  const s = resolveServeSettings({ config: file, port: '9003' }, { UMBRA_PORT: '9002', UMBRA_WORKERS: '5' });
  t.equal(s.repository, '/from/file');
  t.equal(s.port, 9003, 'flag wins');
  t.equal(s.workers, 5, 'environment beats the file');
  t.equal(s.adminToken, 'file-token');
  t.equal(s.host, '127.0.0.1', 'default');
  t.throws(() => resolveServeSettings({ repo: '.', workers: '0' }, {}), /--workers/);
  t.throws(() => resolveServeSettings({ repo: '.' }, { UMBRA_PORT: 'eighty' }), /UMBRA_PORT \(environment\).*--port/);
  t.throws(() => resolveServeSettings({ repo: '/models', pollSeconds: '-1' }, {}), { message: 'expected a number in 0..inf for --poll-seconds but received "-1"' }, 'a bad flag is named once');
  t.throws(() => resolveServeSettings({ repo: '/models', wsIdleSeconds: '5' }, {}), { message: '--ws-idle-seconds "5": WebSocket connections can be closed for silence after 8 s at the soonest: give 0 (never) or 8..960' }, 'a value the transport would round up is refused');
  t.same([0, 8].map((s) => resolveServeSettings({ repo: '/models', wsIdleSeconds: String(s) }, {}).wsIdleSeconds), [0, 8], '0 and 8 are taken');
  writeFileSync(file, JSON.stringify({ repo: '.', colour: 'blue' }));
  t.throws(() => resolveServeSettings({ config: file }, {}), /unknown setting "colour"/);
  writeFileSync(file, '{not json');
  t.throws(() => resolveServeSettings({ config: file }, {}), /not a valid JSON settings file/);
  t.throws(() => resolveServeSettings({ config: join(dir, 'missing.json') }, {}), /--config: cannot read/);
});

t.test('--response-compression: on or off (the default)', async (t) => {
  t.equal(resolveServeSettings({ repo: '/models', responseCompression: 'on' }, {}).responseCompression, true);
  t.equal(resolveServeSettings({ repo: '/models' }, { UMBRA_RESPONSE_COMPRESSION: 'off' }).responseCompression, false);
  t.notOk('responseCompression' in resolveServeSettings({ repo: '/models' }, {}), 'unset: the server\'s default (off)');
  t.throws(() => resolveServeSettings({ repo: '/models', responseCompression: 'gzip' }, {}), /--response-compression: expected on or off but received "gzip"/);
});

t.test('--http-guard: on (the default) or off', async (t) => {
  t.equal(resolveServeSettings({ repo: '/models', httpGuard: 'off' }, {}).httpGuard, false);
  t.equal(resolveServeSettings({ repo: '/models' }, { UMBRA_HTTP_GUARD: 'on' }).httpGuard, true);
  t.notOk('httpGuard' in resolveServeSettings({ repo: '/models' }, {}), 'unset: the server\'s default (on)');
  t.throws(() => resolveServeSettings({ repo: '/models', httpGuard: 'yes' }, {}), /--http-guard: expected on or off but received "yes"/);
});

t.test('--core-reads: on, off or auto (the default), and what auto picks for a host', async (t) => {
  t.equal(resolveServeSettings({ repo: '/models', coreReads: 'on' }, {}).coreReads, true);
  t.equal(resolveServeSettings({ repo: '/models' }, { UMBRA_CORE_READS: 'off' }).coreReads, false);
  t.notOk('coreReads' in resolveServeSettings({ repo: '/models', coreReads: 'auto' }, {}), 'auto leaves it to the host');
  t.notOk('coreReads' in resolveServeSettings({ repo: '/models' }, {}), 'unset: the host decides');
  t.throws(() => resolveServeSettings({ repo: '/models', coreReads: 'sometimes' }, {}), /--core-reads: expected on, off or auto but received "sometimes"/);
  // The host decides: the core's thread reads when it would have no core of its own.
  t.same([1, 2, 3, 4].map((io) => defaultCoreReads(io, 2)), [false, true, true, true], 'two cores: with every setting above one');
  t.same([2, 3, 4, 8].map((io) => defaultCoreReads(io, 16)), [false, false, false, false], 'sixteen cores: never at the default of eight or fewer');
  t.same([2, 3, 4].map((io) => defaultCoreReads(io, 4)), [false, false, true], 'four cores: from four threads up');
  t.same([1, 2, 3, 4, 16, 64].map((cores) => defaultIoThreads(cores)), [1, 2, 2, 2, 8, 8], 'I/O threads: one on one core, two on two (the core\'s thread reading: every core reads), half the cores up to eight');
  t.same([1, 2, 4, 16].map((cores) => defaultCoreReads(defaultIoThreads(cores), cores)), [false, true, false, false], 'at the default thread count, the core\'s thread reads on two cores only');
  // Where every core reads, a moderately costly model runs on the reading threads, not in workers.
  t.same([[2, true, 2], [2, false, 2], [1, true, 1], [2, true, 4], [4, true, 4], [8, false, 16]].map(([io, reads, cores]) => readersInlineBudgetUs(io as number, reads as boolean, cores as number)), [4000, undefined, undefined, undefined, 4000, undefined], 'the inline budget rises only where the reading threads, the core\'s among them, cover every core');
});

// In the model workers (the default for this model), and on the reading threads: there a thread
// that runs batches takes new connections late, and a drain must not reset those still queued.
for (const execution of ['worker', 'inline']) t.test(`SIGTERM under load (${execution}): every in-flight request succeeds, then exit 0`, async (t) => {
  const repo = tempRepo();
  t.teardown(() => {
    repo.remove();
    rmSync(`${repo.dir}.state`, { recursive: true, force: true });
  });
  repo.addVersion('slow', 1, slowModel(512, 200));
  // A queue for all 48, and a queue-time budget no wait here reaches: this test is about the drain,
  // not load shedding's 503s (under CI's load the batches ran far slower than at warm-up, and the
  // default budget refused half of the 48 as a standing backlog).
  repo.writeConfig('slow', { max_batch_size: 4, dynamic_batching: { max_queue_delay_microseconds: 1000, max_queue_size: 64 }, parameters: { execution, queue_budget_ms: '600000' } });
  const { child, port, output, exited } = await serveUntilListening(['--repo', repo.dir, '--state-dir', `${repo.dir}.state`, '--workers', '2']);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 48 });
  const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(1) }] });
  const post = () => new Promise<string>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v2/models/slow/infer', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => resolve(res.statusCode === 200 ? 'ok' : `${res.statusCode} ${text}`));
    });
    req.on('error', reject);
    req.end(body);
  });
  let first!: () => void;
  const firstDone = new Promise<void>((resolve) => { first = resolve; });
  const requests = Array.from({ length: 48 }, () => post().then((status) => { first(); return status; }));
  await firstDone;
  child.kill('SIGTERM');
  const statuses = await Promise.all(requests);
  t.same(statuses.filter((s) => s !== 'ok'), [], 'no in-flight request failed');
  t.equal(await exited, 0, 'exit code 0 after the drain');
  t.match(output(), /HTTP guard: on/, 'the start-up log says the HTTP guard is on');
  t.match(output(), /SIGTERM: draining/);
  t.match(output(), /drained, exiting/);
  agent.destroy();
});

t.test('a repository with no model: the start-up log says so, and where a model file at its top goes; a given model\'s failed reload and its unload are logged', async (t) => {
  const repo = tempRepo();
  t.teardown(() => {
    repo.remove();
    rmSync(`${repo.dir}.state`, { recursive: true, force: true });
  });
  // An export written straight into the repository, as a first user does.
  repo.addVersion('staging', 1, affineModel(2, 1));
  const file = join(repo.dir, 'staging', '1', 'model.onnx');
  writeFileSync(join(repo.dir, 'churn.onnx'), readFileSync(file));
  rmSync(join(repo.dir, 'staging'), { recursive: true });
  const { child, port, output, exited, logged } = await serveUntilListening(['--repo', repo.dir, '--state-dir', `${repo.dir}.state`]);
  const url = `http://127.0.0.1:${port}`;
  const ready = await fetch(`${url}/v2/health/ready`);
  // Then a model given by an admin (loopback, no token), a reload that fails, and an unload: each logged.
  const load = (file: Buffer) => fetch(`${url}/v2/repository/models/churn/load`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ parameters: { config: '{}', 'file:1/model.onnx': file.toString('base64') } }) });
  t.equal((await load(readFileSync(join(repo.dir, 'churn.onnx')))).status, 200, 'a model given in a load request');
  t.equal((await fetch(`${url}/v2/health/ready`)).status, 200, 'ready once it serves');
  t.equal((await load(Buffer.from('not onnx'))).status, 400, 'a broken reload is refused');
  await logged('model churn failed to reload, version 1 keeps serving: ');
  t.equal((await fetch(`${url}/v2/repository/models/churn/unload`, { method: 'POST' })).status, 200);
  await logged('model churn unloaded');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'stops cleanly');
  t.equal(ready.status, 503, 'not ready with nothing to serve');
  t.match(output(), 'file "churn.onnx" at the top of the repository is not served: each model has its own folder with numbered versions; move it to churn/1/model.onnx', 'the loose file is named with where it goes');
  t.match(output(), `the repository ${repo.dir} holds no model: each model goes in its own folder, <model>/<version>/model.onnx; the server is not ready until one loads`, 'the empty repository is named');
  t.match(output(), /listening on .*\(ready: false\)/);
});
