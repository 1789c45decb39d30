// `umbra perf` as a bench runs it: one level in its own process under /usr/bin/time, so the
// generator's CPU is measured beside the level it reports.
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;

/** Runs `umbra perf ARGS --json` (one level); resolves with the level and the generator's CPU seconds. */
export function umbraPerf(args) {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', 'CPU %U %S', process.execPath, join(ROOT, 'bin/umbra.js'), 'perf', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => {
      const cpu = /CPU ([\d.]+) ([\d.]+)/.exec(err);
      if (code !== 0) return reject(new Error(`umbra perf failed: ${err.slice(-400)}`));
      const [level] = JSON.parse(out);
      resolve({ ...level, generatorCpu: cpu ? Number(cpu[1]) + Number(cpu[2]) : NaN });
    });
  });
}
