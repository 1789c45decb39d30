// `umbra batch` as a user runs it: the documented example on the bundled data, nothing written
// before the job is known to be valid, and the folders of its outputs created by the job.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';

const ROOT = new URL('..', import.meta.url).pathname;
const CLI = join(ROOT, 'bin', 'umbra.js');
const dir = mkdtempSync(join(tmpdir(), 'umbra-batch-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function umbra(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let counter = 0;
/** An empty working directory. */
function workdir(): string {
  const d = join(dir, `w${counter++}`);
  rmSync(d, { recursive: true, force: true });
  return mkdtempSync(`${d}-`);
}

t.test('the documented example runs on the bundled data: row numbers as keys, label and split left out', async (t) => {
  const cwd = workdir();
  const run = await umbra(['batch', '--repo', join(ROOT, 'models/repository'), '--model', 'digits', '--input', join(ROOT, 'models/digits.csv'), '--store', 'sqlite:predictions.db', '--workers', '2'], cwd);
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /columns: pixels <- f0 \.\. f63 \(64 columns\); keys: row numbers \(no --key\); not used: label, split/);
  t.match(run.stdout, /done: 1797 rows stored for digits v2, 0 rejected/);
  t.match(run.stdout, /cpu per row: /);
  const db = new Database(join(cwd, 'predictions.db'), { readonly: true });
  t.teardown(() => db.close());
  const rows = db.prepare("SELECT key, outputs FROM predictions WHERE model = 'digits' ORDER BY CAST(key AS INTEGER)").all() as { key: string; outputs: string }[];
  t.equal(rows.length, 1797);
  t.equal(rows[0]!.key, '1');
  t.equal(rows[1796]!.key, '1797');
  // Row N's prediction is for line N+1 of the file: the model agrees with the label column there
  // as often as its measured accuracy says (a shifted key would agree one time in ten).
  const labels = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').trim().split('\n').slice(1).map((line) => Number(line.split(',')[64]));
  let agree = 0;
  for (const r of rows) {
    const outputs = JSON.parse(r.outputs) as { name: string; data: number[] }[];
    if (outputs.find((o) => o.name === 'label')?.data[0] === labels[Number(r.key) - 1]) agree += 1;
  }
  t.ok(agree / rows.length > 0.95, `predictions agree with the labels of their rows: ${agree} of ${rows.length}`);
  t.same(readdirSync(cwd).sort(), ['predictions.db', 'predictions.db-shm', 'predictions.db-wal'].filter((f) => existsSync(join(cwd, f))).sort(), 'no reject file: no row was rejected');
});

t.test('nothing is created before the job is valid', async (t) => {
  const input = join(dir, 'keyed.csv');
  writeFileSync(input, ['id,f0,f1,label', 'a,1,2,3'].join('\n'));
  const cases: [string, string[], RegExp][] = [
    ['unknown model', ['--model', 'nope', '--key', 'id'], /nope/],
    ['a key column the input lacks', ['--model', 'digits', '--key', 'customer_id'], /the key column 'customer_id' \(--key\) is not in the input; its columns are: id, f0, f1, label\. Name one of them with --key, or leave --key out/],
    ['a mapping naming a missing column', ['--model', 'digits', '--key', 'id', '--mapping', '{"pixels": ["f0", "nope"]}'], /the mapping names column 'nope' for input 'pixels'/],
    ['columns that do not fit', ['--model', 'digits', '--key', 'id'], /input 'pixels' takes 64 values per row but the input has only 3 columns besides the key/],
  ];
  for (const [what, args, message] of cases) {
    const cwd = workdir();
    const run = await umbra(['batch', '--repo', join(ROOT, 'models/repository'), '--input', input, '--store', 'sqlite:out/p.db', '--rejects', 'out/rejects.jsonl', ...args], cwd);
    t.equal(run.code, 1, what);
    t.match(run.stderr, message, what);
    t.same(readdirSync(cwd), [], `${what}: no store, no reject file, no folder`);
  }
});

t.test('the job creates the folders of its store and reject file', async (t) => {
  const cwd = workdir();
  const input = join(dir, 'one-bad.csv');
  writeFileSync(input, ['id,a,b,c,d', 'r1,1,2,3,4', 'r2,1,x,3,4', '"r3,1,2,3,4'].join('\n'));
  const { tempRepo, affineModel } = await import('./helpers/repo.js');
  const repo = tempRepo();
  repo.addVersion('affine', 1, affineModel(1, 0, 4));
  t.teardown(() => repo.remove());
  const run = await umbra(['batch', '--repo', repo.dir, '--model', 'affine', '--input', input, '--key', 'id', '--mapping', '{"x": "a..d"}',
    '--store', `sqlite:${join(cwd, 'db', 'nightly', 'p.db')}`, '--rejects', join(cwd, 'rejects', 'deep', 'r.jsonl'), '--workers', '1'], cwd);
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /done: 1 rows stored for affine v1, 2 rejected/);
  const rejects = readFileSync(join(cwd, 'rejects', 'deep', 'r.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { line: number });
  t.same(rejects.map((r) => r.line), [3, 4]);
  t.ok(existsSync(join(cwd, 'db', 'nightly', 'p.db')));
});
