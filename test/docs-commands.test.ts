// Every shell command the docs give runs as written, so the docs cannot drift from the code.
//
// The pages (README.md, docs/*.md, models/README.md) are followed in that order, in one temporary
// copy of this checkout, as a new user would: `umbra` on the PATH (what `npm link` gives), the
// working directory the copy's root. Each command of a fenced ```sh block runs with bash and must
// exit 0; curl fails on an HTTP error status (a `.curlrc` with --fail-with-body), so a 404 or a
// 400 answer fails the doc. Commands that call `localhost:8000` get a server: `npm start`'s (the
// package.json start script) unless the page started its own with `umbra serve`, which the test
// runs in the background until the page ends. Only the port changes: servers get UMBRA_PORT and
// commands have `:8000` rewritten to it, so the test never collides with a real server.
//
// A block that cannot run here is marked in the doc's fence, ```sh no-test, and listed below in
// NOT_RUN with the reason; an unlisted no-test block, or a listing that no longer matches a
// block, fails. To check a docs edit: `npx tap test/docs-commands.test.ts`; a failure names the
// doc and line of the command, with its output.
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { BIN, ROOT, startServing, type ServeProcess } from './helpers/cli-process.js';
import { freePort } from './helpers/prometheus.js';

t.setTimeout(1_200_000);

/** Blocks marked `sh no-test`, by doc and a piece of their text, and why they cannot run in a test. */
const NOT_RUN: { doc: string; contains: string; why: string }[] = [
  { doc: 'README.md', contains: 'npm install && npm start', why: 'installs from the network and compiles the addon; this test runs in a checkout that is already installed, and starts `npm start`\'s server itself on a free port' },
  { doc: 'README.md', contains: 'npm test', why: 'the whole suite, of which this test is part' },
  { doc: 'README.md', contains: 'npm link', why: 'writes into npm\'s global prefix; the test puts an `umbra` command on the PATH itself' },
  { doc: 'README.md', contains: 'systemsharedmemory/region/images/register', why: 'needs a server started with --shared-memory on, an image model and a client that made the shared-memory object; test/shared-memory.test.ts makes the same calls' },
  { doc: 'README.md', contains: 'npm pack', why: 'installs into another project from the network; test/install-package.test.ts does the same offline' },
  { doc: 'docs/kubernetes.md', contains: 'kubectl ', why: 'needs a Kubernetes cluster (with KServe, Argo Rollouts or Flagger); test/k8s-manifests.test.ts validates the manifests and test/k8s-umbra-contract.test.ts runs what they ask of Umbra' },
  { doc: 'docs/kubernetes.md', contains: '--model-dir=/mnt/models', why: 'the container command as KServe runs it, on its mounted model dir; test/cli-kserve.test.ts runs the same flags on a temporary folder' },
  { doc: 'docs/monitoring.md', contains: 'postgres://', why: 'needs a PostgreSQL server; test/monitor-feedback.test.ts exports from one' },
  { doc: 'docs/monitoring.md', contains: 'kubectl apply', why: 'needs a Kubernetes cluster with prometheus-operator; test/k8s-manifests.test.ts validates the PrometheusRule against its CRD and test/monitor-alert-rules.test.ts runs promtool on its rules' },
];

const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`), 'models/README.md'];
const RUNNABLE = new Set(['sh', 'bash', 'shell']);

interface Block { doc: string; line: number; lang: string; flags: string[]; lines: string[] }
interface DocCommand { doc: string; line: number; text: string }

/** The fenced code blocks of a Markdown page, with the line each starts on (1-based, its first content line). */
function fencedBlocks(doc: string, text: string): Block[] {
  const blocks: Block[] = [];
  let open: Block | undefined;
  text.split('\n').forEach((line, i) => {
    const fence = /^```(.*)$/.exec(line);
    if (!open && fence) {
      const [lang = '', ...flags] = fence[1]!.trim().split(/\s+/);
      open = { doc, line: i + 2, lang, flags, lines: [] };
    } else if (open && /^```\s*$/.test(line)) {
      blocks.push(open);
      open = undefined;
    } else if (open) {
      open.lines.push(line);
    }
  });
  if (open) throw new Error(`${doc}:${open.line - 1}: a code fence that is never closed`);
  return blocks;
}

/**
 * A block's commands: a command runs on while a quote is open or a line ends with a backslash.
 * Blank lines and comment lines between commands (expected output, say) are not commands.
 */
function commandsOf(block: Block): DocCommand[] {
  const out: DocCommand[] = [];
  let current: string[] = [];
  let start = 0;
  let quote: string | null = null;
  block.lines.forEach((raw, i) => {
    if (current.length === 0) {
      if (raw.trim() === '' || raw.trim().startsWith('#')) return;
      start = block.line + i;
    }
    current.push(raw);
    let continued = false;
    for (let k = 0; k < raw.length; k++) {
      const c = raw[k]!;
      if (quote === "'") {
        if (c === "'") quote = null;
      } else if (c === '\\') {
        if (k === raw.length - 1) continued = true;
        k++;
      } else if (quote === '"') {
        if (c === '"') quote = null;
      } else if (c === "'" || c === '"') {
        quote = c;
      } else if (c === '#' && (k === 0 || /\s/.test(raw[k - 1]!))) {
        break;
      }
    }
    if (quote === null && !continued) {
      out.push({ doc: block.doc, line: start, text: current.join('\n') });
      current = [];
    }
  });
  if (current.length > 0) throw new Error(`${block.doc}:${start}: an unterminated command (an open quote or a trailing backslash)`);
  return out;
}

const DOC_PORT = /\b(localhost|127\.0\.0\.1):8000\b/;
const isServe = (text: string) => /^umbra\s+serve\b/.test(text.trim());
const shortly = (text: string) => (text.split('\n')[0]!.length > 100 || text.includes('\n') ? `${text.split('\n')[0]!.slice(0, 100)} ...` : text);

/** A temporary copy of the checkout; node_modules and the native build are linked, not copied. */
function copyCheckout(): string {
  const copy = mkdtempSync(join(tmpdir(), 'umbra-docs-'));
  const skip = new Set(['node_modules', 'build', '.git', '.tap', '.umbra-state', 'bench/out', 'coverage']);
  cpSync(ROOT, copy, {
    recursive: true,
    filter: (source) => {
      const rel = relative(ROOT, source);
      return !skip.has(rel) && !rel.startsWith('build-') && !/(^|\/)\.umbra-state$/.test(rel);
    },
  });
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
  symlinkSync(join(ROOT, 'build'), join(copy, 'build'));
  return copy;
}

interface Outcome { status: number | null; output: string }

function run(command: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', `set -o pipefail\n${command}`], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString('utf8'); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString('utf8'); });
    const timer = setTimeout(() => {
      output += `\n(killed after ${timeoutMs} ms)`;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
  });
}

const tail = (text: string, lines = 30) => text.trimEnd().split('\n').slice(-lines).join('\n');

t.test('every ```sh block in the docs is run or listed as not runnable, with the reason', async (t) => {
  const listed = new Set<(typeof NOT_RUN)[number]>();
  for (const doc of DOCS) {
    for (const block of fencedBlocks(doc, readFileSync(join(ROOT, doc), 'utf8'))) {
      if (!RUNNABLE.has(block.lang)) continue;
      commandsOf(block); // a malformed block fails here, naming its line
      if (!block.flags.includes('no-test')) continue;
      const entry = NOT_RUN.find((n) => n.doc === doc && block.lines.join('\n').includes(n.contains));
      t.ok(entry, `${doc}:${block.line}: this \`sh no-test\` block is listed in NOT_RUN (test/docs-commands.test.ts) with the reason it cannot run`);
      if (entry) listed.add(entry);
    }
  }
  for (const n of NOT_RUN) t.ok(listed.has(n), `NOT_RUN's entry for ${n.doc} ${JSON.stringify(n.contains)} matches a \`sh no-test\` block there (else drop the entry)`);
});

t.test('every command in the docs runs as written on the bundled models and data', async (t) => {
  const copy = copyCheckout();
  const bin = mkdtempSync(join(tmpdir(), 'umbra-docs-bin-'));
  const curlHome = mkdtempSync(join(tmpdir(), 'umbra-docs-curl-'));
  t.teardown(() => {
    for (const dir of [copy, bin, curlHome]) rmSync(dir, { recursive: true, force: true });
  });
  // `umbra` as `npm link` installs it: the copy's bin/umbra.js.
  writeFileSync(join(bin, 'umbra'), `#!/bin/sh\nexec "${process.execPath}" "${join(copy, relative(ROOT, BIN))}" "$@"\n`);
  chmodSync(join(bin, 'umbra'), 0o755);
  writeFileSync(join(curlHome, '.curlrc'), 'fail-with-body\nmax-time = 60\n');
  mkdirSync(join(copy, '.tmp'), { recursive: true });
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, CURL_HOME: curlHome, TMPDIR: join(copy, '.tmp') };
  const start = JSON.parse(readFileSync(join(copy, 'package.json'), 'utf8')).scripts.start as string;

  let defaultServer: ServeProcess | undefined;
  let pageServer: ServeProcess | undefined;
  const serve = async (command: string): Promise<ServeProcess> => {
    const port = await freePort();
    return startServing('bash', ['-c', `exec ${command}`], { cwd: copy, env: { ...env, UMBRA_PORT: String(port) }, timeoutMs: 120_000 });
  };
  const stopDefault = async () => {
    await defaultServer?.stop();
    defaultServer = undefined;
  };
  t.teardown(async () => {
    await pageServer?.stop();
    await stopDefault();
  });

  for (const doc of DOCS) {
    const blocks = fencedBlocks(doc, readFileSync(join(copy, doc), 'utf8')).filter((b) => RUNNABLE.has(b.lang) && !b.flags.includes('no-test'));
    const commands = blocks.flatMap(commandsOf);
    if (commands.length === 0) continue;
    await t.test(doc, async (t) => {
      try {
        for (const c of commands) {
          const where = `${c.doc}:${c.line}`;
          if (isServe(c.text)) {
            // A server the page starts itself replaces any other, as on a machine with one port 8000.
            await pageServer?.stop();
            await stopDefault();
            pageServer = await serve(c.text).catch((err: Error) => {
              t.fail(`${where}: \`${shortly(c.text)}\` did not start serving:\n${tail(err.message)}`);
              return undefined;
            });
            continue;
          }
          let command = c.text;
          if (DOC_PORT.test(command)) {
            if (!pageServer && !defaultServer) defaultServer = await serve(start);
            const port = (pageServer ?? defaultServer)!.port;
            command = command.replace(new RegExp(DOC_PORT.source, 'g'), (_, host: string) => `${host}:${port}`);
          }
          const outcome = await run(command, copy, env, 300_000);
          t.equal(outcome.status, 0, `${where}: \`${shortly(c.text)}\` exited ${outcome.status}`, { output: tail(outcome.output) });
        }
      } finally {
        await pageServer?.stop();
        pageServer = undefined;
      }
    });
  }
});
