// `umbra batch` stopped by SIGTERM (Kubernetes, systemd) or SIGINT (Ctrl-C): it says so and how to
// go on, exits as a shell expects (128 + the signal: 143, 130), leaves no temporary repository of
// a --model-file behind, and --resume then ends with every key stored once and each reject
// listed once.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../dist/batch/index.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { BIN } from './helpers/cli-process.js';
import { slowModel } from './helpers/repo.js';

const dir = mkdtempSync(join(tmpdir(), 'umbra-batch-interrupt-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
// Each row really costs the model 512 x 512 x 120 multiply-adds (its answer is the row itself):
// after the first stored batch of 10 there are 199 more, far more than a signal takes to arrive.
const WIDTH = 512;
const ROWS = 2000;
const model = join(dir, 'slow.onnx');
writeModel(slowModel(WIDTH, 120), model);
const input = join(dir, 'in.csv');
const valuesOf = (r: number) => Array.from({ length: WIDTH }, (_, i) => (r * 7 + i) % 13);
const lines = [['id', ...Array.from({ length: WIDTH }, (_, i) => `f${i}`)].join(',')];
for (let r = 0; r < ROWS; r++) {
  lines.push([`k${r}`, ...valuesOf(r)].join(','));
  if (r === ROWS / 2) lines.push(['bad', 'x', ...valuesOf(0).slice(1)].join(','));
}
writeFileSync(input, `${lines.join('\n')}\n`);
// The temporary repositories go here, where nothing else makes any.
const temporary = join(dir, 'tmp');
mkdirSync(temporary);
const db = join(dir, 'p.db');
const rejects = join(dir, 'r.jsonl');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The job on the slow model; with `signal`, sent once the first batch is stored. */
function batch(extra: string[], signal?: NodeJS.Signals): Promise<Run> {
  const args = ['batch', '--model-file', model, '--input', input, '--key', 'id', '--store', `sqlite:${db}`, '--rejects', rejects,
    '--batch-size', '10', '--workers', '1', '--progress-interval', '0', ...extra];
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, TMPDIR: temporary }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let sent = false;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (signal && !sent && /^stored \d+ rows/m.test(stdout)) {
      sent = true;
      child.kill(signal);
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

const leftovers = () => readdirSync(temporary).filter((f) => f.startsWith('umbra-batch-'));

t.test('SIGTERM, then SIGINT on the resumed run, then --resume: each stop is clean and the end is exactly once', async (t) => {
  const terminated = await batch([], 'SIGTERM');
  t.equal(terminated.code, 143, 'SIGTERM: exit 143');
  t.equal(terminated.stderr, 'umbra: interrupted (SIGTERM); what is stored stays stored: rerun with --resume to continue after the last stored batch\n');
  t.same(leftovers(), [], 'SIGTERM: no temporary repository left');

  const interrupted = await batch(['--resume'], 'SIGINT');
  t.equal(interrupted.code, 130, 'SIGINT: exit 130');
  t.match(interrupted.stdout, /resuming after record \d+/, 'the second run resumed');
  t.match(interrupted.stderr, /^umbra: interrupted \(SIGINT\); .*rerun with --resume/);
  t.same(leftovers(), [], 'SIGINT: no temporary repository left');

  const finished = await batch(['--resume']);
  t.equal(finished.code, 0, finished.stderr);
  t.match(finished.stdout, new RegExp(`done: ${ROWS} rows stored for slow v1, 1 rejected`));
  t.same(leftovers(), [], 'a finished run: no temporary repository left');

  const store = await openStore(`sqlite:${db}`);
  t.teardown(() => store.close());
  t.equal(await store.count('slow'), ROWS, 'every key stored once');
  let wrong = 0;
  for (let r = 0; r < ROWS; r++) {
    const y = (await store.get('slow', '1', `k${r}`))?.outputs[0]?.data;
    if (y?.join() !== valuesOf(r).join()) wrong += 1;
  }
  t.equal(wrong, 0, 'every stored row is the model\'s answer to its own row');
  const listed = readFileSync(rejects, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { key: string }).key);
  t.same(listed, ['bad'], 'the reject listed once');
});
