// Start-up: the CPU a short `umbra` command takes (its --help: loading and parsing, no work) and
// the time from starting `umbra serve --repo models/repository` to /v2/health/ready answering 200,
// for this checkout and any other builds named with --builds, measured in turn round after round
// (paired, so a host whose speed wanders moves every build alike). Medians of the rounds.
//
// Usage: node bench/startup.mjs [--rounds=5] [--builds=LABEL=DIR[;LABEL=DIR]]
// A build is a checkout with dist/ built (a `git worktree` of an earlier commit, say).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freePort } from './harness.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a) => /^--([^=]+)(?:=(.*))?$/s.exec(a) ?? [a, a, 'true']).map(([, k, v]) => [k, v ?? 'true']));
const rounds = Number(args.rounds ?? 5);
const root = resolve(new URL('..', import.meta.url).pathname);
const builds = [['this', root], ...(args.builds && args.builds !== 'true' ? args.builds.split(';').map((b) => b.split('=')) : [])];
for (const [label, dir] of builds) {
  if (!existsSync(join(dir, 'dist', 'cli', 'main.js'))) {
    process.stderr.write(`startup: build ${label} at ${dir} has no dist/ (run npx tsc -p tsconfig.json there)\n`);
    process.exit(2);
  }
}
if (!existsSync('/usr/bin/time')) {
  process.stderr.write('startup: needs /usr/bin/time (Debian package "time") for a command\'s CPU\n');
  process.exit(2);
}
const COMMANDS = [['--help'], ['serve', '--help'], ['perf', '--help'], ['batch', '--help'], ['export-log', '--help']];

/** User + system CPU seconds of `umbra ARGS` in `dir`. */
function commandCpu(dir, argv) {
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', process.execPath, join(dir, 'bin', 'umbra.js'), ...argv], { encoding: 'utf8' });
  const [user, sys] = r.stderr.trim().split('\n').pop().split(' ').map(Number);
  return user + sys;
}

/** Milliseconds from starting `umbra serve` to readiness. */
async function serveReadyMs(dir) {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [join(dir, 'bin', 'umbra.js'), 'serve', '--repo', join(root, 'models', 'repository'), '--port', String(port), '--grpc-port', '0', '--state-dir', join(root, 'bench', 'out', 'startup-state')], { stdio: 'ignore' });
  try {
    for (;;) {
      const res = await fetch(`http://127.0.0.1:${port}/v2/health/ready`).catch(() => undefined);
      if (res?.status === 200) return performance.now() - started;
      if (child.exitCode !== null) throw new Error(`umbra serve (${dir}) exited with ${child.exitCode}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const samples = {};
const add = (key, label, v) => ((samples[key] ??= {})[label] ??= []).push(v);
for (let round = 0; round < rounds; round++) {
  for (const [label, dir] of builds) {
    for (const argv of COMMANDS) add(`umbra ${argv.join(' ')}: CPU s`, label, commandCpu(dir, argv));
    add('umbra serve: ms to ready', label, await serveReadyMs(dir));
  }
}
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const report = {};
for (const [key, byBuild] of Object.entries(samples)) {
  report[key] = Object.fromEntries(Object.entries(byBuild).map(([label, v]) => [label, { median: Number(median(v).toFixed(3)), rounds: v.map((x) => Number(x.toFixed(3))) }]));
}
process.stdout.write(`${JSON.stringify({ rounds, builds: Object.fromEntries(builds), report }, null, 2)}\n`);
