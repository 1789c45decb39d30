// What KServe passes a runtime: `umbra serve --model-name NAME --model-dir DIR --http-port P
// --grpc-port G`, DIR mounted read-only in one of three layouts. The layouts, the folder of links
// that serves them, the settings, readiness until warm, and SIGTERM with requests in flight.
import { freePort } from './helpers/prometheus.js';
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import http from 'node:http';
import { affineModel, externalWeightsModel, slowModel, until } from './helpers/repo.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { inspectModelDir, linkModelDir, modelDirRepository } from '../dist/repository/single-model.js';
import { resolveServeSettings } from '../dist/cli/settings.js';
import { startServer } from '../dist/index.js';

const BIN = new URL('../bin/umbra.js', import.meta.url).pathname;

function scratch(t: Parameters<Parameters<typeof t.test>[1]>[0]): string {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-kserve-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every path under `dir` with its size and mtime: what "nothing was written there" compares. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const s = statSync(p);
      out.push(`${relative(dir, p)} ${s.isDirectory() ? 'dir' : s.size} ${s.mtimeMs}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

t.test('the three layouts KServe storage can hand over, and the ones that are refused', async (t) => {
  const root = scratch(t);
  const bare = join(root, 'bare');
  mkdirSync(bare);
  writeModel(affineModel(2, 0), join(bare, 'model.onnx'));
  t.match(inspectModelDir('digits', bare), { layout: 'file', source: bare, file: { path: join(bare, 'model.onnx'), linkedAs: 'model.onnx' } });

  // A single-file storageUri lands under its own name.
  const named = join(root, 'named');
  mkdirSync(named);
  writeModel(affineModel(2, 0), join(named, 'mnist-v3.onnx'));
  t.match(inspectModelDir('mnist', named), { layout: 'file', file: { path: join(named, 'mnist-v3.onnx'), linkedAs: 'model.onnx' } });
  writeModel(affineModel(3, 0), join(named, 'other.onnx'));
  t.throws(() => inspectModelDir('mnist', named), /several model files \(mnist-v3\.onnx, other\.onnx\) and none is model\.onnx/);

  const versions = join(root, 'versions');
  for (const v of [1, 3]) {
    mkdirSync(join(versions, String(v)), { recursive: true });
    writeModel(affineModel(v, 0), join(versions, String(v), 'model.onnx'));
  }
  writeFileSync(join(versions, 'config.json'), JSON.stringify({ max_batch_size: 8 }));
  t.match(inspectModelDir('affine', versions), { layout: 'versions', source: versions });
  writeModel(affineModel(1, 0), join(versions, 'model.onnx'));
  t.throws(() => inspectModelDir('affine', versions), /both version folders \(1, 3\) and a bare model file \(model\.onnx\)/);
  rmSync(join(versions, 'model.onnx'));

  const repo = join(root, 'repo');
  mkdirSync(join(repo, 'affine', '1'), { recursive: true });
  writeModel(affineModel(1, 0), join(repo, 'affine', '1', 'model.onnx'));
  t.match(inspectModelDir('whatever-the-isvc-is-called', repo), { layout: 'repository', source: join(repo, 'affine') });
  mkdirSync(join(repo, 'other', '2'), { recursive: true });
  writeModel(affineModel(1, 0), join(repo, 'other', '2', 'model.onnx'));
  t.match(inspectModelDir('other', repo), { layout: 'repository', source: join(repo, 'other') }, 'the folder named like the model wins');
  t.throws(() => inspectModelDir('third', repo), /a repository of 2 models \(affine, other\) and none is called "third"/);

  const empty = join(root, 'empty');
  mkdirSync(empty);
  writeFileSync(join(empty, 'README.txt'), 'no model here');
  t.throws(() => inspectModelDir('m', empty), /holds no model \(found: README\.txt\); expected DIR\/model\.onnx, DIR\/<version>\/model\.onnx/);
  t.throws(() => inspectModelDir('m', join(root, 'absent')), /is not a directory/);
  t.throws(() => inspectModelDir('-bad', bare), /cannot name a model/);
});

t.test('the folder of links: never written into the model dir, refreshed with new versions, private', async (t) => {
  const root = scratch(t);
  const dir = join(root, 'mnt-models');
  mkdirSync(join(dir, '1'), { recursive: true });
  writeModel(affineModel(2, 1), join(dir, '1', 'model.onnx'));
  // A Triton repository's model: its config names its own folder, not the InferenceService.
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ name: 'affine', max_batch_size: 4, version_policy: { all: {} } }));
  const before = snapshot(dir);
  const base = join(root, 'tmp');
  const repository = modelDirRepository('affine-cpu', dir, base);
  t.equal(repository, modelDirRepository('affine-cpu', dir, base), 'the same folder on every start');
  t.not(repository, modelDirRepository('affine-cpu', join(root, 'elsewhere'), base), 'one folder per model dir');
  const links = linkModelDir(inspectModelDir('affine-cpu', dir), repository);
  t.equal(JSON.parse(readFileSync(join(repository, 'affine-cpu', 'config.json'), 'utf8')).name, 'affine-cpu', 'the config carries the served name');
  t.equal(statSync(join(repository, '..')).mode & 0o777, 0o700, 'only this user can plant links');

  const stateDir = `${repository}.state`;
  const server = await startServer({ repository, stateDir, host: '127.0.0.1', port: 0, workers: 1, ioThreads: 1, drainSeconds: 5 });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : server.stop()));
  const infer = (body: unknown, path = '/v2/models/affine-cpu/infer') => fetch(server.url + path, { method: 'POST', body: JSON.stringify(body) });
  const r = await infer({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
  t.equal(r.status, 200);
  t.same((await r.json()).outputs[0].data, [3, 5, 7, 9]);
  // Traffic state is written to the state directory beside the links, never into the model dir.
  const policy = await fetch(`${server.url}/v2/models/affine-cpu/traffic`, { method: 'PUT', body: JSON.stringify({ primary: '1' }) });
  t.equal(policy.status, 200);
  t.ok(statSync(join(stateDir, 'affine-cpu.traffic.json')).isFile());

  // A version added to the model dir reaches the server through refresh + the repository's poll.
  mkdirSync(join(dir, '2'));
  writeModel(affineModel(10, 0), join(dir, '2', 'model.onnx'));
  links.refresh();
  await server.umbra.manager.pollOnce();
  const v2 = await infer({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }, '/v2/models/affine-cpu/versions/2/infer');
  t.same((await v2.json()).outputs[0].data, [10, 20, 30, 40]);
  await server.stop();
  stopped = true;
  rmSync(join(dir, '2'), { recursive: true });
  t.same(snapshot(dir), before, 'the model dir is exactly as it was');

  // The next start over the same folder drops the link to the vanished version, keeps the state.
  linkModelDir(inspectModelDir('affine-cpu', dir), repository);
  t.same(readdirSync(join(repository, 'affine-cpu')).sort(), ['1', 'config.json']);
  t.ok(statSync(join(stateDir, 'affine-cpu.traffic.json')).isFile());

  // A folder someone else could write to is refused, not trusted.
  const shared = join(root, 'shared-tmp');
  const open = modelDirRepository('affine-cpu', dir, shared);
  mkdirSync(join(open, '..'), { recursive: true });
  chmodSync(join(open, '..'), 0o777);
  t.throws(() => linkModelDir(inspectModelDir('affine-cpu', dir), open), /is not a private folder of this user/);
});

t.test('a bare model file is version 1 under the served name, with its config beside it', async (t) => {
  const root = scratch(t);
  const dir = join(root, 'bare');
  mkdirSync(dir);
  writeModel(affineModel(2, 0), join(dir, 'exported.onnx'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ max_batch_size: 2 }));
  const links = linkModelDir(inspectModelDir('m', dir), modelDirRepository('m', dir, join(root, 'tmp')));
  t.same(readdirSync(join(links.repository, 'm')).sort(), ['1', 'config.json']);
  t.same(readdirSync(join(links.repository, 'm', '1')), ['model.onnx']);
  const server = await startServer({ repository: links.repository, host: '127.0.0.1', port: 0, workers: 1, ioThreads: 1 });
  t.teardown(() => server.stop());
  const meta = await (await fetch(`${server.url}/v2/models/m`)).json();
  t.same(meta.versions, ['1']);
  t.same(meta.inputs[0].shape, [-1, 4], 'max_batch_size from the config beside the file');
});

t.test('a bare model file with its external data beside it, and a model file named itself, serve on both backends', async (t) => {
  const root = scratch(t);
  const dir = join(root, 'mnt-models');
  mkdirSync(dir);
  const weights = externalWeightsModel(dir, 'model.onnx', 'model.onnx.data');
  writeFileSync(join(dir, 'README.md'), 'exported with torch.onnx.export(..., external_data=True)');
  const before = snapshot(dir);
  const plan = inspectModelDir('ext', dir);
  t.same(plan.file?.beside, ['README.md', 'model.onnx.data'], 'what lies beside the model file is linked beside it');
  const named = inspectModelDir('ext', join(dir, 'model.onnx'));
  t.match(named, { layout: 'file', source: dir, file: { path: join(dir, 'model.onnx'), linkedAs: 'model.onnx' } }, '--model-dir may name the .onnx file itself');
  t.throws(() => inspectModelDir('ext', join(dir, 'absent.onnx')), /absent\.onnx is not a directory \(it does not exist\)/);
  const x = [1, 2, -3, 0.5];
  const want = Array.from({ length: 6 }, (_, k) => {
    const r = Math.floor(k / 3);
    const c = k % 3;
    return x[r * 2]! * weights[c]! + x[r * 2 + 1]! * weights[3 + c]!;
  });
  for (const [label, which, backend] of [['the folder', plan, 'onnxruntime'], ['the file', named, 'native']] as const) {
    const links = linkModelDir(which, modelDirRepository('ext', which.dir, join(root, `tmp-${backend}`)));
    writeFileSync(join(links.repository, 'ext', 'config.json'), JSON.stringify({ backend }));
    const server = await startServer({ repository: links.repository, host: '127.0.0.1', port: 0, workers: 1, ioThreads: 1, monitoring: false });
    const answer = await (await fetch(`${server.url}/v2/models/ext/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: x }] }) })).json();
    await server.stop();
    const got = answer.outputs?.[0]?.data as number[] | undefined;
    t.ok(got && got.every((v, i) => Math.abs(v - want[i]!) < 1e-5), `${label} on ${backend}: the weights read from the external data (${JSON.stringify(answer).slice(0, 200)})`);
  }
  t.same(snapshot(dir), before, 'nothing written into the model dir');
});

t.test('settings: the pair of flags, the aliases, the conflicts, each named', async (t) => {
  const s = resolveServeSettings({ modelName: 'digits', modelDir: '/mnt/models', httpPort: '8080', grpcPort: '9000' }, {});
  t.equal(s.port, 8080, '--http-port sets the HTTP port');
  t.equal(s.grpcPort, 9000);
  t.same(s.modelDir, { name: 'digits', dir: '/mnt/models' });
  t.equal(s.repository, modelDirRepository('digits', '/mnt/models'));
  t.equal((s.monitoring as { log?: { url: string } }).log?.url, `sqlite:${join(`${s.repository}.state`, 'predictions.sqlite')}`, 'the default log is in the state directory beside the folder of links, not in /mnt/models');
  t.equal(resolveServeSettings({ modelName: 'digits', modelDir: '/mnt/models', stateDir: '/var/umbra' }, {}).stateDir, '/var/umbra', '--state-dir still decides');
  const env = resolveServeSettings({}, { UMBRA_MODEL_NAME: 'digits', UMBRA_MODEL_DIR: '/mnt/models', UMBRA_HTTP_PORT: '8081' });
  t.equal(env.port, 8081);
  t.equal(resolveServeSettings({ repo: '/srv/models', port: '8082' }, { UMBRA_HTTP_PORT: '8081' }).port, 8082, 'a flag beats the other name in the environment');
  t.equal(resolveServeSettings({ repo: '/srv/models', port: '8082', httpPort: '8082' }, {}).port, 8082, 'the same value twice is fine');
  t.throws(() => resolveServeSettings({ repo: '/srv/models', port: '8082', httpPort: '8083' }, {}), /--port and --http-port are one setting given two values \(8082 and 8083\)/);
  t.throws(() => resolveServeSettings({ modelDir: '/mnt/models' }, {}), /--model-name and --model-dir go together/);
  t.throws(() => resolveServeSettings({ modelName: 'digits' }, {}), /--model-name and --model-dir go together/);
  t.throws(() => resolveServeSettings({ repo: '/srv/models', modelName: 'digits', modelDir: '/mnt/models' }, {}), /--repo and --model-dir both say what to serve/);
  t.throws(() => resolveServeSettings({ modelName: 'digits', modelDir: '/mnt/models' }, { UMBRA_REPO: '/models' }), /UMBRA_REPO \(environment\) and --model-dir both say what to serve/);
  t.throws(() => resolveServeSettings({ modelName: 'a/b', modelDir: '/mnt/models' }, {}), /--model-name: "a\/b" cannot name a model/);
  t.throws(() => resolveServeSettings({ repo: '/srv/models', grpcPort: '70000' }, {}), /--grpc-port/);
  t.throws(() => resolveServeSettings({}, {}), /--repo is required.*--model-dir DIR --model-name NAME/);
});

t.test('readiness is false until the model has loaded and warmed up', async (t) => {
  const root = scratch(t);
  const dir = join(root, 'affine');
  mkdirSync(dir);
  writeModel(affineModel(2, 0), join(dir, 'model.onnx'));
  const links = linkModelDir(inspectModelDir('slow', dir), modelDirRepository('slow', dir, join(root, 'tmp')));
  const server = await startServer({ repository: links.repository, host: '127.0.0.1', port: 0, workers: 1, ioThreads: 1, loadAll: false });
  t.teardown(() => server.stop());
  const ready = async () => (await server.api.handle({ method: 'GET', path: '/v2/health/ready', query: '', headers: {}, body: new Uint8Array(0) })).status;
  t.equal((await fetch(`${server.url}/v2/health/live`)).status, 200, 'live while nothing is loaded');
  t.equal(await ready(), 503);
  const loading = server.umbra.manager.load('slow');
  // The warm-up runs on a worker thread, so the load cannot finish before this answer.
  t.equal(await ready(), 503, 'not ready while the warm-up runs');
  await loading;
  t.equal(await ready(), 200);
});

interface Child {
  port: number;
  out: () => string;
  exited: Promise<number | null>;
  kill: (signal: NodeJS.Signals) => void;
}

function serveProcess(args: string[]): Promise<Child> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise<Child>((resolve, reject) => {
    child.stdout.on('data', (d: string) => {
      out += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve({ port: Number(m[1]), out: () => out, exited, kill: (s) => child.kill(s) });
    });
    void exited.then((code) => reject(new Error(`umbra serve exited (${code}) before listening: ${out}`)));
  });
}

t.test('umbra serve as KServe starts it: flags, answers, nothing written to the model dir, SIGTERM drain', async (t) => {
  const root = scratch(t);
  const dir = join(root, 'mnt-models');
  mkdirSync(dir);
  writeModel(slowModel(512, 120), join(dir, 'model.onnx'));
  const before = snapshot(dir);
  const grpcPort = await freePort();
  const child = await serveProcess(['--model-name', 'slow-isvc', '--model-dir', dir, '--http-port', '0', '--grpc-port', String(grpcPort), '--workers', '2', '--drain-seconds', '20']);
  t.match(child.out(), /serving .*mnt-models \(model file .*model\.onnx as version 1\) as model slow-isvc/);
  t.match(child.out(), new RegExp(`gRPC on 127\\.0\\.0\\.1:${grpcPort}`), 'KServe\'s grpc-v2 port is served');
  const base = `http://127.0.0.1:${child.port}`;
  t.same(await (await fetch(`${base}/v2/health/ready`)).json(), { ready: true });
  const meta = await (await fetch(`${base}/v2/models/slow-isvc`)).json();
  t.equal(meta.name, 'slow-isvc');

  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(0.5) }] });
  const post = () => new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: child.port, path: '/v2/models/slow-isvc/infer', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
  let first!: () => void;
  const firstDone = new Promise<void>((resolve) => { first = resolve; });
  const requests = Array.from({ length: 16 }, () => post().then((r) => { first(); return r; }));
  await firstDone;
  // SIGTERM once the server has admitted all 16 (answered or in flight): a connection still in a
  // listener's backlog when the listeners close is refused by the kernel, never "in flight".
  const admitted = async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    const sum = (name: string, extra = '') => [...text.matchAll(new RegExp(`^${name}\\{[^}]*model="slow-isvc"[^}]*${extra}[^}]*\\} ([\\d.e+]+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
    return sum('umbra_inflight_requests') + sum('umbra_requests_total', 'outcome="success"') >= 16;
  };
  await until(admitted, 'all 16 requests admitted');
  child.kill('SIGTERM');
  const replies = await Promise.all(requests);
  t.same(replies.filter((r) => r.status !== 200).map((r) => r.text), [], 'every request in flight at SIGTERM is answered');
  t.equal(JSON.parse(replies[0]!.text).outputs[0].data[0], 0.5, 'the identity chain answers its input');
  t.equal(await child.exited, 0, 'exit 0 after the drain');
  t.match(child.out(), /SIGTERM: draining \(at most 20s\)/);
  t.match(child.out(), /drained, exiting/);
  agent.destroy();
  t.same(snapshot(dir), before, 'the model dir is untouched (KServe mounts it read-only)');
});

t.test('a model dir that is no model stops the start with the flag named', async (t) => {
  const root = scratch(t);
  const dir = join(root, 'nothing');
  mkdirSync(dir);
  copyFileSync(BIN, join(dir, 'umbra.js'));
  const child = spawn(process.execPath, [BIN, 'serve', '--model-name', 'm', '--model-dir', dir, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { err += d; });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  t.equal(code, 2);
  t.match(err, /--model-dir: .*nothing holds no model \(found: umbra\.js\)/);
});
