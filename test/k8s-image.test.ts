// The images (deploy/Dockerfile, deploy/Dockerfile.cuda) cannot be built here (no container
// engine), so their steps are held to the ones .ci/run proves on every change: the same Debian
// packages, the same `npm ci`, and nothing copied in that the build does not have. The runtime
// stage is held to what the manifests assume: the entrypoint, the user, the ports, the example
// repository, and a default command that `umbra serve` accepts.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadManifests } from './helpers/k8s-manifests.mjs';
import { buildProgram } from '../dist/cli/main.js';
import { resolveServeSettings } from '../dist/cli/settings.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8'));

interface Instruction { op: string; args: string }
interface Stage { from: string; name?: string; steps: Instruction[] }

/** Instructions of a Dockerfile, continuation lines joined, comments left out, split into stages. */
function dockerfile(path: string): { args: Record<string, string>; stages: Stage[] } {
  const lines = readFileSync(`${ROOT}${path}`, 'utf8').split('\n');
  const instructions: Instruction[] = [];
  let pending = '';
  for (const raw of lines) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    pending += (pending ? ' ' : '') + line.replace(/\\$/, '').trim();
    if (line.endsWith('\\')) continue;
    const [op, ...rest] = pending.split(/\s+/);
    instructions.push({ op: op!.toUpperCase(), args: rest.join(' ') });
    pending = '';
  }
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const i of instructions) {
    if (i.op === 'FROM') {
      const [from, as, name] = i.args.split(' ');
      stages.push({ from: from!.replace(/\$\{(\w+)\}/g, (_, a: string) => args[a] ?? ''), ...(as?.toUpperCase() === 'AS' ? { name } : {}), steps: [] });
    } else if (stages.length === 0) {
      if (i.op === 'ARG') {
        const [k, v] = i.args.split('=');
        args[k!] = v ?? '';
      }
    } else stages[stages.length - 1]!.steps.push(i);
  }
  return { args, stages };
}

/** Packages of every `apt-get install` in a text (flags and shell variables' suffixes aside). */
function aptPackages(text: string): string[] {
  const out: string[] = [];
  for (const m of text.replace(/\\\n/g, ' ').matchAll(/apt-get install ([^&|;\n]+)/g)) {
    for (const word of m[1]!.split(/\s+/)) if (word && !word.startsWith('-') && !word.startsWith('>')) out.push(word);
  }
  return out;
}

const ci = readFileSync(`${ROOT}.ci/run`, 'utf8');
const ciPackages = aptPackages(ci);
// PostgreSQL, Prometheus and nginx are the services the tests run against (scripts/test-services.sh,
// the promtool lint, the reverse proxy in front), Chromium, curl and Python's gRPC what tests drive
// (the ops page, the docs' commands, a C-core gRPC client); building needs the rest.
const TEST_SERVICES = ['postgresql', 'prometheus', 'chromium', 'curl', 'python3-grpcio', 'python3-grpc-tools', 'nginx-light'];
const ciBuildPackages = ciPackages.filter((p) => !TEST_SERVICES.includes(p));

const runs = (stage: Stage) => stage.steps.filter((s) => s.op === 'RUN').map((s) => s.args).join('\n');

for (const [file, extra] of [['deploy/Dockerfile', [] as RegExp[]], ['deploy/Dockerfile.cuda', [/^cuda-nvcc-\$\{CUDA_PACKAGE_VERSION\}$/, /^cuda-cudart-dev-\$\{CUDA_PACKAGE_VERSION\}$/]]] as const) {
  t.test(`${file}: the build stage is .ci/run's build`, async (t) => {
    const { args, stages } = dockerfile(file);
    t.equal(stages.length, 2, 'build and runtime stages');
    const build = stages[0]!;
    t.equal(build.name, 'build');
    t.equal(args.NODE_VERSION, /(\d+)/.exec(pkg.engines.node)![1], 'the Node major package.json asks for');
    t.match(build.from, /^node:\d+-bookworm$/, 'Debian 12 with Node, as the CI machine');
    t.same(ciPackages.filter((p) => !ciBuildPackages.includes(p)), TEST_SERVICES, '.ci/run installs the build packages and the test services');
    const installed = aptPackages(runs(build));
    t.same(installed.filter((p) => !extra.some((re) => re.test(p))), ciBuildPackages, 'the same build packages as .ci/run');
    t.equal(installed.length, ciBuildPackages.length + extra.length);
    const ciNpm = /^\s*(npm ci [^|\n]*?)\s*(\|\||$)/m.exec(ci)![1]!;
    t.ok(runs(build).includes(ciNpm), `"${ciNpm}" as .ci/run runs it`);
    t.notMatch(runs(build), /npm (install|i|run) /, 'no other build step');
    // What is copied in must exist and cover what npm ci's install and prepare scripts read.
    const copied = build.steps.filter((s) => s.op === 'COPY').flatMap((s) => s.args.split(' ').slice(0, -1));
    for (const source of copied) t.ok(existsSync(`${ROOT}${source}`), `${source} exists`);
    // npm ci's install script, and the build it runs, must be in the image's build stage.
    const installScript = /node (\S+\.js)/.exec(pkg.scripts.install)?.[1];
    t.ok(installScript && copied.includes(installScript), `the install script ${installScript} is copied for npm ci`);
    if (installScript) t.match(readFileSync(`${ROOT}${installScript}`, 'utf8'), /cmake-js compile/, 'and builds the addon with cmake-js');
    t.match(pkg.scripts.prepare, /tsc -p tsconfig.json/);
    for (const needed of ['package.json', 'package-lock.json', '.npmrc', 'CMakeLists.txt', 'binding.gyp', 'tsconfig.json', 'native', 'src', 'bin']) t.ok(copied.includes(needed), `${needed} is copied for npm ci`);
    const tsconfig = JSON.parse(readFileSync(`${ROOT}tsconfig.json`, 'utf8'));
    t.same(tsconfig.include, ['src/**/*.ts'], 'tsc reads only src/');
    t.match(runs(build), /npm prune --omit=dev/, 'the development packages stay behind');
    t.match(runs(build), /listBackends\(\)/, 'the build fails if the addon does not load');
    if (file.endsWith('.cuda')) t.match(runs(build), /includes\('cuda'\)/, 'and if it was built without CUDA');
    const ignore = readFileSync(`${ROOT}${file}.dockerignore`, 'utf8').split('\n');
    for (const local of ['node_modules', 'build', 'dist', '.git']) t.ok(ignore.includes(local), `${local} is not sent to the build`);
  });

  t.test(`${file}: the runtime stage is what the manifests run`, async (t) => {
    const { stages } = dockerfile(file);
    const runtime = stages[1]!;
    t.match(runtime.from, /^node:\d+-bookworm-slim$/);
    const op = (name: string) => runtime.steps.filter((s) => s.op === name).map((s) => s.args);
    const user = op('USER').at(-1)!;
    t.match(user, /^[1-9]\d*:\d+$/, 'a numeric non-root user, so runAsNonRoot can be checked');
    const uid = Number(user.split(':')[0]);
    for (const m of loadManifests(ROOT)) {
      const contexts = JSON.stringify(m.doc).match(/"runAsUser":\d+/g) ?? [];
      for (const c of contexts) t.equal(Number(c.split(':')[1]), uid, `${m.file} runs as the image's user`);
    }
    t.same(JSON.parse(op('ENTRYPOINT')[0]!), ['umbra']);
    t.match(runs(runtime), /ln -s \/app\/bin\/umbra\.js \/usr\/local\/bin\/umbra/);
    t.same(op('EXPOSE')[0]!.split(' ').map(Number), [8000, 8001], 'the Deployment\'s HTTP and gRPC ports');
    const copies = op('COPY').join('\n');
    for (const path of ['node_modules', 'dist', 'bin', 'build/Release/umbra.node', 'models/repository']) t.match(copies, new RegExp(`/src/${path.replace(/\./g, '\\.')}`), `carries ${path}`);
    // Everything the npm package ships for running (package.json "files", less what only builds the
    // addon): without proto/ the default command's gRPC service could not start.
    const buildOnly = ['native/', 'CMakeLists.txt', 'binding.gyp', 'scripts/install-native.js'];
    const carried = runtime.steps.filter((s) => s.op === 'COPY' && s.args.includes('--from=build')).map((s) => s.args.split(' ').at(-2)!.replace(/^\/src\//, '').replace(/\/$/, ''));
    t.same((pkg.files as string[]).filter((f) => !buildOnly.includes(f)).map((f) => f.replace(/\/$/, '')).filter((f) => !carried.includes(f)), [], 'the runtime stage carries every runtime part of the npm package');
    t.match(copies, /--chown=1000:1000 \/src\/models\/repository/, 'the example repository belongs to the runtime user');
    const cmd: string[] = JSON.parse(op('CMD')[0]!);
    const program = await buildProgram();
    let flags: Record<string, unknown> | undefined;
    program.commands.find((c) => c.name() === 'serve')!.action((f: Record<string, unknown>) => { flags = f; });
    await program.parseAsync(['node', 'umbra', ...cmd]);
    const settings = resolveServeSettings(flags!, {});
    t.equal(settings.repository, '/app/models/repository', 'the default command serves the example repository');
    t.equal(settings.host, '0.0.0.0', 'reachable from outside the container');
    if (file.endsWith('.cuda')) t.match(op('ENV').join(' '), /NVIDIA_DRIVER_CAPABILITIES=compute,utility/);
  });
}
