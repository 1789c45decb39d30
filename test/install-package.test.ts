// The install route the README gives: `npm pack` here, `npm install` of the tarball in another
// project, which then imports `umbra` and `umbra/client`, serves, predicts and runs the `umbra`
// command. Offline and bounded: the dependencies come from the npm cache at the versions this
// checkout's package-lock.json pins (the consumer's lockfile is derived from it), and their own
// install scripts are skipped (better-sqlite3 would compile SQLite; nothing here opens a database).
// Umbra's install script does run: it must take the addon that came in the tarball, not compile.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers/cli-process.js';

t.setTimeout(600_000);

const work = mkdtempSync(join(tmpdir(), 'umbra-install-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

function npm(args: string[], cwd: string, timeoutMs: number) {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' } });
  if (r.status !== 0) throw new Error(`npm ${args.join(' ')} in ${cwd} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

interface LockEntry { dev?: boolean; [key: string]: unknown }

t.test('npm pack, then npm install of the tarball in a fresh project: import umbra and umbra/client', async (t) => {
  // --ignore-scripts: dist/ and the addon are already built (npm test builds them); a user's
  // `npm pack` runs prepack (scripts/ensure-built.js) to build them first.
  const packed = JSON.parse(npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT, 120_000).stdout) as { filename: string; integrity: string; files: { path: string }[] }[];
  const tarball = packed[0]!;
  const files = tarball.files.map((f) => f.path);
  for (const needed of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/client/index.js', 'dist/client/index.d.ts', 'dist/cli/main.js',
    'bin/umbra.js', 'build/Release/umbra.node', 'scripts/install-native.js', 'CMakeLists.txt', 'binding.gyp',
    'src/ui/static/index.html', 'src/ui/static/app.js', 'src/ui/static/app.css',
    'proto/grpc_service.proto', 'proto/model_config.proto', 'proto/health.proto']) {
    t.ok(files.includes(needed), `the tarball has ${needed}`);
  }
  t.ok(files.some((f) => f.startsWith('native/src/')), 'and the native sources, to build where the shipped addon does not load');
  // The ops page's files are served as they are (src/ui/static): the one part of src/ that ships.
  t.same(files.filter((f) => /^(test|bench|src|models|deploy|\.ci)\//.test(f) && !f.startsWith('src/ui/static/')), [], 'no tests, benchmarks, TypeScript sources or example models');

  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; license: string; dependencies: Record<string, string>; bin: Record<string, string>; engines: Record<string, string> };
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const app = join(work, 'app');
  mkdirSync(app);
  const spec = `file:../${tarball.filename}`;
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module', dependencies: { umbra: spec } }, null, 2));
  // Umbra's runtime dependencies at the versions its own lockfile pins, hoisted as they are here.
  const packages: Record<string, unknown> = {
    '': { name: 'app', dependencies: { umbra: spec } },
    'node_modules/umbra': {
      version: pkg.version, resolved: spec, integrity: tarball.integrity, hasInstallScript: true, license: pkg.license,
      dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) if (path.startsWith('node_modules/') && !entry.dev) packages[path] = entry;
  writeFileSync(join(app, 'package-lock.json'), JSON.stringify({ name: 'app', lockfileVersion: 3, requires: true, packages }, null, 2));
  npm(['ci', '--offline', '--ignore-scripts'], app, 300_000);
  const built = npm(['rebuild', 'umbra', '--offline', '--foreground-scripts'], app, 300_000);
  t.match(built.stdout, /umbra: using the native addon that came with the package/, 'the install script took the shipped addon instead of compiling');

  writeFileSync(join(app, 'main.js'), `
import { startServer, Umbra } from 'umbra';
import { UmbraHttpClient, UmbraGrpcClient, streamUrl } from 'umbra/client';
const repository = ${JSON.stringify(join(ROOT, 'models/repository'))};
const pixels = new Float32Array(64).fill(4);
const server = await startServer({ repository, port: 0, grpcPort: 'any', workers: 1 });
const http = new UmbraHttpClient(server.url);
const answer = await http.infer('digits', { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: pixels }] });
const grpc = new UmbraGrpcClient('127.0.0.1:' + server.grpcPort);
const overGrpc = { ready: await grpc.serverReady(), config: (await grpc.modelConfig('digits')).name };
grpc.close();
const page = await Promise.all(['/ui', '/ui/assets/app.js', '/ui/assets/uplot.js'].map((p) => fetch(server.url + p).then((r) => r.status)));
await server.stop();
const umbra = await Umbra.open({ repository, workers: 1 });
const predicted = await umbra.predict('digits', { pixels: { data: pixels, shape: [1, 64] } });
await umbra.close();
console.log(JSON.stringify({
  resolved: [import.meta.resolve('umbra'), import.meta.resolve('umbra/client')],
  http: Number(answer.outputs.find((o) => o.name === 'label').data[0]),
  predict: Number(predicted.outputs.find((o) => o.name === 'label').data[0]),
  stream: streamUrl(server.url),
  page,
  overGrpc,
}));
`);
  const run = spawnSync(process.execPath, ['main.js'], { cwd: app, encoding: 'utf8', timeout: 120_000 });
  t.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { resolved: string[]; http: number; predict: number; stream: string; page: number[]; overGrpc: unknown };
  const installed = `file://${realpathSync(join(app, 'node_modules', 'umbra'))}/`;
  t.same(result.resolved, [`${installed}dist/index.js`, `${installed}dist/client/index.js`], 'both entry points resolve inside the installed package');
  t.ok(Number.isInteger(result.http) && result.http >= 0 && result.http < 10, 'served over HTTP');
  t.equal(result.predict, result.http, 'in-process predict() gives the same class');
  t.match(result.stream, /^ws:\/\/127\.0\.0\.1:\d+\/v2\/stream$/);
  t.same(result.page, [200, 200, 200], 'the ops page and uPlot are served from the installed package');
  t.same(result.overGrpc, { ready: true, config: 'digits' }, 'gRPC serves from the installed package (its .proto files came with it)');

  const cli = spawnSync(join(app, 'node_modules', '.bin', 'umbra'), ['--version'], { cwd: app, encoding: 'utf8', timeout: 60_000 });
  t.equal(cli.status, 0, cli.stderr);
  t.equal(cli.stdout.trim(), pkg.version, 'the umbra command is installed too');
});
