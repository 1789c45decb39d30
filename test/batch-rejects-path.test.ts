// The reject file is the one file a job writes as it goes: it must never be the input or the
// store (a usage error, whatever name reaches them), and nothing touches it before the first
// reject or the job's end, so a job that fails first leaves an earlier run's file as it was.
import t from 'tap';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { openStore, runBatchJob } from '../dist/batch/index.js';
import { batchFixture } from './helpers/batch.js';
import { runUmbra, umbraInProcess } from './helpers/cli-process.js';
import { affineModel, tempRepo } from './helpers/repo.js';
import { makeRows, writeCsv } from './fixtures/batch/data.js';

const { umbra, dir, path } = await batchFixture('umbra-batch-rejects-path-');
// The CLI's own repository: the fixture's is open in this process.
const repo = tempRepo();
repo.addVersion('affine', 1, affineModel(2, 1, 4));
t.teardown(() => repo.remove());

const rows = makeRows(30, 4, 3);
const csv = path('in.csv');
writeCsv(csv, rows, { extraLines: ['bad,1,x,3,4'] });

/** `umbra batch` on the affine model in `cwd`, with `args` after the model's. */
function batchCli(cwd: string, args: string[]) {
  return runUmbra(['batch', '--repo', repo.dir, '--model', 'affine', '--key', 'id', '--workers', '1', ...args], { cwd });
}

function workdir(): string {
  return mkdtempSync(join(dir, 'w-'));
}

t.test('--rejects naming the input is a usage error, and the input is left whole', async (t) => {
  const cwd = workdir();
  const input = join(cwd, 'b3.csv.gz');
  const bytes = gzipSync(readFileSync(csv));
  writeFileSync(input, bytes);
  const run = batchCli(cwd, ['--input', 'b3.csv.gz', '--store', 'sqlite:x.db', '--rejects', 'b3.csv.gz']);
  t.equal(run.status, 2, run.stderr);
  t.match(run.stderr, /^umbra: --rejects: b3\.csv\.gz is the input file \(--input b3\.csv\.gz\); rejects written there would overwrite it\. Give the reject file a path of its own, or leave --rejects out \(default b3\.csv\.rejects\.jsonl in the working directory\)\n$/);
  t.same(readFileSync(input), bytes, 'the input is unchanged');
  t.same(readdirSync(cwd), ['b3.csv.gz'], 'no store was created');
});

t.test('--rejects naming the SQLite store is a usage error, and the store keeps its rows', async (t) => {
  const cwd = workdir();
  const first = batchCli(cwd, ['--input', csv, '--store', 'sqlite:s1.db', '--rejects', 'first.jsonl']);
  t.equal(first.status, 0, first.stderr);
  const run = batchCli(cwd, ['--input', csv, '--store', 'sqlite:s1.db', '--rejects', 's1.db', '--run-id', 'again']);
  t.equal(run.status, 2, run.stderr);
  t.match(run.stderr, /--rejects: s1\.db is the SQLite store's file \(--store sqlite:s1\.db\); rejects written there would destroy the store/);
  const store = await openStore(`sqlite:${join(cwd, 's1.db')}`);
  t.teardown(() => store.close());
  t.equal(await store.count('affine'), 30, 'the store still holds the first run\'s rows');
});

t.test('other names for the input or the store are refused too', async (t) => {
  const cwd = workdir();
  const input = join(cwd, 'in.csv');
  copyFileSync(csv, input);
  symlinkSync(input, join(cwd, 'link.csv'));
  // Checked before the model loads: in this process, with paths from the folder.
  const cases: [string, string[], RegExp][] = [
    ['a link to the input', ['--store', `sqlite:${cwd}/p.db`, '--rejects', `${cwd}/link.csv`], /--rejects: .*\/link\.csv is the input file \(--input .*\/in\.csv\)/],
    ['the store before it exists, by another spelling', ['--store', `sqlite:${cwd}/db/p.db`, '--rejects', `${cwd}/db/../db/p.db`], /--rejects: .*\/db\/\.\.\/db\/p\.db is the SQLite store's file/],
    ['the store\'s write-ahead log', ['--store', `sqlite:${cwd}/p.db`, '--rejects', `${cwd}/p.db-wal`], /--rejects: .*\/p\.db-wal is the SQLite store's write-ahead log/],
    ['the default reject file, when the store is named like it', ['--store', 'sqlite:in.csv.rejects.jsonl'], /the default reject file in\.csv\.rejects\.jsonl is the SQLite store's file .*Give the reject file a path of its own with --rejects/],
    ['a folder', ['--store', `sqlite:${cwd}/p.db`, '--rejects', cwd], /--rejects: .* is a folder/],
  ];
  for (const [what, args, message] of cases) {
    const run = await umbraInProcess(['batch', '--repo', repo.dir, '--model', 'affine', '--key', 'id', '--input', input, ...args]);
    t.equal(run.status, 2, `${what}: a usage error`);
    t.match(run.stderr, message, `${what}: says why`);
  }
  t.same(readdirSync(cwd).sort(), ['in.csv', 'link.csv'], 'nothing was created');
});

t.test('an earlier run\'s reject file is left as it was by a job that fails before its first reject', async (t) => {
  const rejectsPath = path('kept.jsonl');
  writeFileSync(rejectsPath, 'an earlier run\'s rejects\n');
  await t.rejects(runBatchJob({ umbra, model: 'affine', input: csv, keyColumn: 'nosuch', storeUrl: `sqlite:${path('p.db')}`, rejectsPath }), /the key column 'nosuch'/);
  t.equal(readFileSync(rejectsPath, 'utf8'), 'an earlier run\'s rejects\n');
});

t.test('a finished job leaves only its own rejects in the file: replaced with its rejects, emptied without any', async (t) => {
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const rejectsPath = path('replaced.jsonl');
  writeFileSync(rejectsPath, 'an earlier run\'s rejects\n');
  await runBatchJob({ umbra, model: 'affine', input: csv, keyColumn: 'id', store, rejectsPath });
  t.same(readFileSync(rejectsPath, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { line: number }).line), [32], 'this run\'s one reject, alone');
  const clean = path('clean.csv');
  writeCsv(clean, rows);
  await runBatchJob({ umbra, model: 'affine', input: clean, keyColumn: 'id', store, rejectsPath });
  t.equal(readFileSync(rejectsPath, 'utf8'), '', 'a run without rejects empties it');
  const none = path('none.jsonl');
  await runBatchJob({ umbra, model: 'affine', input: clean, keyColumn: 'id', store, rejectsPath: none });
  t.notOk(existsSync(none), 'and creates none where there was none');
});

t.test('the job itself refuses a reject file that is its input', async (t) => {
  await t.rejects(runBatchJob({ umbra, model: 'affine', input: csv, keyColumn: 'id', storeUrl: `sqlite:${path('q.db')}`, rejectsPath: csv }), /--rejects: .*in\.csv is the input file/);
  t.equal(readFileSync(csv, 'utf8').split('\n').length, 33, 'the input is unchanged');
});
