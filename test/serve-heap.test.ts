// `umbra serve` starts itself again with a floor under V8's old-generation limit (bin/serve-heap.js)
// and the first process only relays: a signal to it reaches the server, the server's end is its
// end, and a first process killed outright takes the server with it. Where the flag is given, or
// UMBRA_SERVE_HEAP=as-is, there is one process. A preload hook given to node loads on the serving
// thread only: the threads Umbra starts run its compiled modules without it.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BIN, ROOT } from './helpers/cli-process.js';
import { MALLOC_TUNING, SERVE_HEAP_FLAG } from '../bin/serve-heap.js';

const REPO = new URL('../models/repository', import.meta.url).pathname;

interface Started {
  child: ChildProcess;
  /** The pid answering requests (the child of `child`, or `child` itself). */
  serverPid: number;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it holds (a process appearing or going); fails after `ms`. */
async function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await wait(20);
  }
}

/** The live processes whose parent is `pid`, from /proc/N/stat (every kernel has it; /proc/N/task/N/children needs CONFIG_PROC_CHILDREN). */
function childrenOf(pid: number): number[] {
  const kids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readOrGone(`/proc/${entry}/stat`);
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'.
    const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields && fields[0] !== 'Z' && Number(fields[1]) === pid) kids.push(Number(entry));
  }
  return kids;
}

/** A /proc file's text, or undefined where the process has gone meanwhile. */
function readOrGone(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

const cmdline = (pid: number) => (readOrGone(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean);
const alive = (pid: number) => {
  const status = readOrGone(`/proc/${pid}/status`);
  return status !== undefined && !/^State:\s+Z/m.test(status);
};

async function serve(nodeArgs: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Started> {
  const child = spawn(process.execPath, [...nodeArgs, BIN, 'serve', '--repo', REPO, '--port', '0', '--grpc-port', '0', '--log-db', 'off'], {
    cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  await until(() => /listening on http/.test(out) || child.exitCode !== null, 'the listen line');
  if (!/listening on http/.test(out)) throw new Error(`serve exited: ${out}`);
  const kids = childrenOf(child.pid!);
  return { child, serverPid: kids.length === 1 ? kids[0]! : child.pid!, exit, output: () => out };
}

t.test('the server runs in a child with the heap floor; SIGTERM to the first process drains it', async (t) => {
  const s = await serve();
  t.not(s.serverPid, s.child.pid, 'a second process serves');
  t.ok(cmdline(s.serverPid).includes(SERVE_HEAP_FLAG), `started with ${SERVE_HEAP_FLAG}`);
  t.notOk(cmdline(s.child.pid!).includes(SERVE_HEAP_FLAG), 'the first process without it');
  const port = Number(/listening on http:\/\/[^:\s]+:(\d+)/.exec(s.output())![1]);
  const res = await fetch(`http://127.0.0.1:${port}/v2/models/digits/infer`, {
    method: 'POST', body: JSON.stringify({ inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: new Array(64).fill(1) }] }),
  });
  t.equal(res.status, 200, 'and answers');
  s.child.kill('SIGTERM');
  t.same(await s.exit, { code: 0, signal: null }, 'the drain\'s exit status, relayed');
  t.match(s.output(), /SIGTERM: draining/);
  t.notOk(alive(s.serverPid), 'the server is gone');
});

t.test('the server starts with malloc tuned for large tensors, unless the user set malloc variables', async (t) => {
  const environ = (pid: number) => Object.fromEntries((readOrGone(`/proc/${pid}/environ`) ?? '').split('\0').filter(Boolean).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  const noMalloc = Object.fromEntries(Object.keys(process.env).filter((k) => k.startsWith('MALLOC_')).map((k) => [k, undefined]));
  const tuned = await serve([], noMalloc);
  const env = environ(tuned.serverPid);
  for (const [k, v] of Object.entries(MALLOC_TUNING)) t.equal(env[k], v, `the server has ${k}=${v}`);
  t.equal(environ(tuned.child.pid!)['MALLOC_MMAP_THRESHOLD_'], undefined, 'the first process is left as it was');
  tuned.child.kill('SIGTERM');
  await tuned.exit;

  const own = await serve([], { ...noMalloc, MALLOC_ARENA_MAX: '2' });
  const ownEnv = environ(own.serverPid);
  t.equal(ownEnv['MALLOC_ARENA_MAX'], '2', 'the user\'s setting reaches the server');
  t.equal(ownEnv['MALLOC_MMAP_THRESHOLD_'], undefined, 'and Umbra adds none of its own');
  own.child.kill('SIGTERM');
  await own.exit;
});

t.test('SIGINT is relayed too, and a server ended by a signal ends the first process the same way', async (t) => {
  const a = await serve();
  a.child.kill('SIGINT');
  t.same(await a.exit, { code: 0, signal: null }, 'SIGINT drains');
  t.match(a.output(), /SIGINT: draining/);

  const b = await serve();
  process.kill(b.serverPid, 'SIGKILL');
  t.same(await b.exit, { code: null, signal: 'SIGKILL' }, 'the server killed: the first process reports SIGKILL');
});

t.test('a first process killed outright takes the server with it', async (t) => {
  const s = await serve();
  t.ok(alive(s.serverPid));
  s.child.kill('SIGKILL');
  await s.exit;
  await until(() => !alive(s.serverPid), 'the server to go');
  t.pass('nothing is left holding the port');
});

t.test('one process where the flag is given or UMBRA_SERVE_HEAP=as-is', async (t) => {
  for (const [nodeArgs, env, what] of [[['--initial-old-space-size=64'], {}, 'the flag given'], [[], { UMBRA_SERVE_HEAP: 'as-is' }, 'UMBRA_SERVE_HEAP=as-is']] as const) {
    const s = await serve([...nodeArgs], { ...env });
    t.same(childrenOf(s.child.pid!), [], `${what}: no second process`);
    s.child.kill('SIGTERM');
    if (!t.same(await s.exit, { code: 0, signal: null }, `${what}: drains as before`)) t.comment(s.output());
  }
});

t.test('a preload hook (--import) runs on the serving thread, not in the threads Umbra starts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-hook-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const hook = join(dir, 'hook.mjs');
  const log = join(dir, 'hook.log');
  // Every thread that loads the hook writes its process and thread id.
  writeFileSync(hook, `import { appendFileSync } from 'node:fs';\nimport { threadId } from 'node:worker_threads';\nappendFileSync(${JSON.stringify(log)}, process.pid + ' ' + threadId + '\\n');\n`);
  const s = await serve([`--import=${pathToFileURL(hook).href}`], { UMBRA_STATE_DIR: join(dir, 'state') });
  const threads = readdirSync(`/proc/${s.serverPid}/task`).length;
  s.child.kill('SIGTERM');
  t.same(await s.exit, { code: 0, signal: null });
  const loaded = readFileSync(log, 'utf8').trim().split('\n').map((line) => line.split(' ').map(Number));
  t.same(loaded.map(([, thread]) => thread), [0, 0], 'loaded once in each process, on its main thread');
  t.same(new Set(loaded.map(([pid]) => pid)), new Set([s.child.pid, s.serverPid]), 'the relaying process and the server');
  t.ok(threads > 8, `while the server ran ${threads} threads (I/O threads, model workers, V8's and libuv's)`);
});
