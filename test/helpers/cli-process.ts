// `umbra` as a user runs it: a command to completion, or `umbra serve` in the background until it
// is ready, then stopped with SIGTERM; or a command parsed and run in this process, where what is
// checked (flags, exit status) comes before anything that needs a process of its own.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = fileURLToPath(new URL('../../bin/umbra.js', import.meta.url));

// Servers started side by side must not all claim the CLI's default gRPC port (8001).
const SIDE_BY_SIDE = { UMBRA_GRPC_PORT: process.env.UMBRA_GRPC_PORT ?? '0' };

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** `umbra ARGS` to completion. */
export function runUmbra(args: string[], options: RunOptions = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8', cwd: options.cwd ?? ROOT, env: { ...process.env, ...SIDE_BY_SIDE, ...options.env }, timeout: options.timeoutMs ?? 60_000,
  });
}

/** `umbra ARGS` in this process (a process per case is slow): the exit status and what it printed. */
export async function umbraInProcess(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  // Loaded here, not with this module: the tests that only spawn `umbra` need none of it.
  const [{ buildProgram }, { CommanderError }] = await Promise.all([import('../../dist/cli/main.js'), import('commander')]);
  const program = await buildProgram();
  let stdout = '';
  let stderr = '';
  for (const c of [program, ...program.commands]) c.configureOutput({ writeOut: (s) => { stdout += s; }, writeErr: (s) => { stderr += s; } });
  try {
    await program.parseAsync(['node', 'umbra', ...args]);
    return { status: 0, stdout, stderr };
  } catch (err) {
    // What bin/umbra.js does with an error: its exitCode (2 for usage errors), else 1, message on stderr.
    const e = err as { exitCode?: number; message: string };
    if (!(err instanceof CommanderError)) stderr += `umbra: ${e.message}\n`;
    return { status: typeof e.exitCode === 'number' ? e.exitCode : 1, stdout, stderr };
  }
}

export interface ServeProcess {
  port: number;
  url: string;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** SIGTERM, then the exit code once the drain is over. */
  stop(): Promise<number | null>;
}

/**
 * Starts a serving process (`file args`) and resolves once its listen line has appeared and
 * /v2/health/ready answers 200; rejects with its output if it exits first or is not ready in time.
 */
export async function startServing(file: string, args: string[], options: RunOptions = {}): Promise<ServeProcess> {
  const child = spawn(file, args, { cwd: options.cwd ?? ROOT, env: { ...process.env, ...SIDE_BY_SIDE, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d: string) => { out += d; });
  child.stderr.on('data', (d: string) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const limit = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + limit;
  const fail = (why: string) => {
    child.kill('SIGKILL');
    return new Error(`${why}: ${[file, ...args].join(' ')}\n${out}`);
  };
  let port = 0;
  let gone = false;
  void exited.then(() => { gone = true; });
  while (port === 0) {
    if (gone) throw fail('the server exited before listening');
    if (Date.now() > deadline) throw fail(`no listen line within ${limit} ms`);
    const m = /listening on http:\/\/[^:\s]+:(\d+)/.exec(out);
    if (m) port = Number(m[1]);
    else await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    if (gone) throw fail('the server exited before it was ready');
    const ready = await fetch(`${url}/v2/health/ready`).then((r) => r.status === 200, () => false);
    if (ready) break;
    if (Date.now() > deadline) throw fail(`not ready within ${limit} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    port,
    url,
    output: () => out,
    stop: async () => {
      if (!gone) child.kill('SIGTERM');
      return exited;
    },
  };
}
