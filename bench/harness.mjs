// What every suite of `npm run bench` shares: the run's mode and measurement settings, starting and
// stopping server processes, child processes, the load generator, and the small arithmetic the
// suites and the report both use. No suite logic and no report text here.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runPerf } from '../dist/perf/index.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = join(ROOT, 'models', 'repository');
export const DIGITS_FILE = join(REPO, 'digits', '2', 'model.onnx');

/** The run's settings: quick (npm run bench) or full (npm run bench:full). */
export function settings(full) {
  return {
    full,
    mode: full ? 'full' : 'quick',
    perf: full
      ? { warmupMs: 2000, windowMs: 2000, maxWindows: 10, stabilityPct: 10 }
      : { warmupMs: 400, windowMs: 600, maxWindows: 5, stabilityPct: 15 },
    levels: full ? [1, 4, 16, 64] : [1, 64],
    // This machine is shared: its speed wanders within minutes, so the servers a target compares
    // are measured in turn, round after round, and a target is the median round's ratio. Five
    // rounds even in quick mode: with three, one round in which the host stalled was enough to
    // move a target across its line between two runs of the same code.
    rounds: full ? 7 : 5,
    wrkSeconds: full ? 4 : 2,
  };
}

const started = Date.now();
export const elapsedSeconds = () => (Date.now() - started) / 1000;
export const log = (line) => process.stderr.write(`[bench ${elapsedSeconds().toFixed(0)}s] ${line}\n`);

export async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The line of a failure worth showing in a table cell. */
export function oneLine(text) {
  const lines = String(text).split('\n').map((l) => l.trim()).filter(Boolean);
  const line = lines.find((l) => /error|cannot|not /i.test(l)) ?? lines[lines.length - 1] ?? '';
  return line.replace(/\|/g, '/').slice(0, 200);
}

function stopProcess(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

/** Starts a server process and waits until GET /v2/health/ready answers 200: { url, stop }. */
export async function startProcess(name, command, args, port, timeoutMs = 60_000) {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited: ${stderr.slice(-400)}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/health/ready`);
      if (res.ok) return { url: `http://127.0.0.1:${port}`, stop: () => stopProcess(child) };
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stopProcess(child);
  throw new Error(`${name} was not ready within ${timeoutMs / 1000}s: ${stderr.slice(-400)}`);
}

/** Runs a child to completion (killed at `timeoutMs`): { code, signal, stdout, stderr }. */
export function runChild(command, args, timeoutMs, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** `umbra perf` against one server at the run's windows: one result per level. */
export function measure(run, url, model, payloads, levels, protocol = 'http') {
  return runPerf({ url, model, payloads, concurrency: levels, protocol, serverStats: true, ...run.perf, log });
}

/** A copy of one model of the example repository, with an optional config.json override. */
export function repoWith(model, config) {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-bench-'));
  cpSync(join(REPO, model), join(dir, model), { recursive: true });
  if (config) {
    const file = join(dir, model, 'config.json');
    const base = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
    writeFileSync(file, JSON.stringify({ ...base, ...config }, null, 2));
  }
  return dir;
}

/** Starts `contender` (see contenders.mjs) and runs `fn(url)`; a start or run failure becomes { skipped }. */
export async function withServer(contender, context, fn) {
  const port = await freePort();
  const { command, args } = contender.start(port, context);
  log(`start ${contender.label}`);
  let server;
  try {
    server = await startProcess(contender.label, command, args, port);
  } catch (err) {
    log(`skip ${contender.label}: ${err.message}`);
    return { skipped: oneLine(err.message) };
  }
  try {
    return await fn(server.url);
  } catch (err) {
    log(`${contender.label} failed: ${err.message}`);
    return { skipped: `failed: ${oneLine(err.message)}` };
  } finally {
    await server.stop();
  }
}

export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
}

export const ratio = (a, b) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
export const at = (results, concurrency) => results?.find((r) => r.concurrency === concurrency);

/** Median, range and count of the finite values, or undefined when there are none. */
export function spread(values) {
  const sorted = values.filter((v) => v !== undefined && Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  return { median: sorted[Math.floor(sorted.length / 2)], min: sorted[0], max: sorted[sorted.length - 1], n: sorted.length };
}

/** utime + stime, in seconds, of a process and every process under it (`umbra serve` runs the server in a child). */
export function processTreeCpu(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let cpu = (Number(fields[11]) + Number(fields[12])) / 100;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) cpu += processTreeCpu(Number(child));
  }
  return cpu;
}
