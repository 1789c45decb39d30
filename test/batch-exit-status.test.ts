// What a scheduler sees of `umbra batch`: a job that stored nothing because every record was
// rejected, or because the input held no record at all, fails (exit 1) with a line that says so;
// an empty input is a success only when asked for (--allow-empty), and is then called empty.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runBatchJob } from '../dist/batch/index.js';
import { batchFixture } from './helpers/batch.js';
import { runUmbra } from './helpers/cli-process.js';
import { affineModel, tempRepo } from './helpers/repo.js';
import { makeRows, writeCsv } from './fixtures/batch/data.js';

// A job that stores some rows and rejects others exits 0: test/batch-cli.test.ts.

const { umbra, dir, path } = await batchFixture('umbra-batch-exit-');
const repo = tempRepo();
repo.addVersion('affine', 1, affineModel(2, 1, 4));
t.teardown(() => repo.remove());

function batchCli(cwd: string, args: string[]) {
  return runUmbra(['batch', '--repo', repo.dir, '--model', 'affine', '--workers', '1', ...args], { cwd });
}

t.test('an input without a record fails before the store is opened, saying it holds none', async (t) => {
  const inputs: [string, string | Buffer][] = [
    ['empty.csv', ''],
    ['blank-lines.csv', '\n\n\n'],
    ['bom-only.csv', Buffer.from([0xef, 0xbb, 0xbf])],
    ['header-only.csv', 'id,f0,f1,f2,f3\n'],
    ['empty.jsonl', '\n'],
  ];
  for (const [name, content] of inputs) {
    const input = path(name);
    writeFileSync(input, content);
    const at = path('store');
    await t.rejects(runBatchJob({ umbra, model: 'affine', input, storeUrl: `sqlite:${join(at, 'p.db')}`, rejectsPath: join(at, 'r.jsonl') }),
      /^the input .* holds no record \(no data row: the file is empty, or holds only a header or blank lines\): nothing to predict, .*Pass --allow-empty where an empty input is expected/, name);
    t.notOk(existsSync(at), `${name}: nothing created`);
  }
});

t.test('the command exits 1 on an empty input, and 0 with --allow-empty, calling it empty', async (t) => {
  const cwd = mkdtempSync(join(dir, 'empty-'));
  writeFileSync(join(cwd, 'in.csv'), '');
  const refused = batchCli(cwd, ['--input', 'in.csv', '--key', 'nosuch', '--store', 'sqlite:p.db']);
  t.equal(refused.status, 1, refused.stderr);
  t.match(refused.stderr, /^umbra: the input in\.csv holds no record/);
  t.same(readdirSync(cwd), ['in.csv'], 'no store');
  const allowed = batchCli(cwd, ['--input', 'in.csv', '--store', 'sqlite:p.db', '--allow-empty']);
  t.equal(allowed.status, 0, allowed.stderr);
  t.match(allowed.stdout, /^columns: none: the input holds no record$/m);
  t.match(allowed.stdout, /^done: 0 rows stored for affine v1, 0 rejected, the input holds no record, /m);
});

t.test('a job whose every record is rejected exits 1, naming the reject file and the first reason; so does its --resume', async (t) => {
  const cwd = mkdtempSync(join(dir, 'rejected-'));
  writeCsv(join(cwd, 'in.csv'), makeRows(40, 4, 2));
  // The key column as a feature: not a number in any row.
  const args = ['--input', 'in.csv', '--key', 'id', '--mapping', '{"x": ["f0", "f1", "f2", "id"]}', '--store', 'sqlite:p.db'];
  const run = batchCli(cwd, args);
  t.equal(run.status, 1, run.stderr);
  t.match(run.stdout, /done: 0 rows stored for affine v1, 40 rejected \(see in\.csv\.rejects\.jsonl\)/);
  t.match(run.stderr, /^umbra: every record was rejected \(40 rejected, none stored; see in\.csv\.rejects\.jsonl\); the first \(line 2\): expected a finite number for column 'id' but received the string "k13-0"\. Check that --input, --key and --mapping fit the model, then run again\n$/);
  const resumed = batchCli(cwd, [...args, '--resume']);
  t.equal(resumed.status, 1, 'a rerun of the finished job does not turn it into a success');
  t.match(resumed.stderr, /every record was rejected \(40 rejected, none stored/);
});

