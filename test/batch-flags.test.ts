// `umbra batch`'s flags: every bad value is a usage error (exit 2) that names the flag and what it
// takes, found before anything is loaded or written; limits that depend on the model (a batch's
// bytes) are found once it is loaded, still before anything is written.
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BatchOptionError, runBatchJob } from '../dist/batch/index.js';
import { usableCores } from '../dist/cores.js';
import { batchFixture } from './helpers/batch.js';
import { runUmbra, umbraInProcess } from './helpers/cli-process.js';
import { affineModel, tempRepo } from './helpers/repo.js';
import { makeRows, writeCsv } from './fixtures/batch/data.js';

const { umbra, dir, path } = await batchFixture('umbra-batch-flags-', (repo) => repo.addVersion('wide', 1, affineModel(1, 0, 1000)));
const repo = tempRepo();
repo.addVersion('affine', 1, affineModel(2, 1, 4));
t.teardown(() => repo.remove());
const csv = path('in.csv');
writeCsv(csv, makeRows(5, 4, 1));
const store = `sqlite:${join(dir, 'never', 'p.db')}`;

/** `umbra batch` on the affine model, in this process: the flags are checked before the model loads. */
function batch(args: string[]) {
  return umbraInProcess(['batch', '--repo', repo.dir, '--model', 'affine', '--key', 'id', '--input', csv, '--store', store, ...args]);
}

t.test('bad values are usage errors naming the flag and what it takes', async (t) => {
  const most = 4 * usableCores();
  const cases: [string[], RegExp][] = [
    [['--batch-size', '100000000'], /^umbra: expected an integer in 1\.\.1048576 for --batch-size but received "100000000"\n$/],
    [['--batch-size', '4294967296'], /expected an integer in 1\.\.1048576 for --batch-size but received "4294967296"/],
    [['--batch-size', '0'], /for --batch-size but received "0"/],
    [['--shard', '0/2'], /^umbra: expected I\/N with 1 <= I <= N \(e\.g\. 2\/4\) for --shard but received '0\/2'\n$/],
    [['--model-version', 'abc'], /^umbra: expected a model version \(a positive integer: 1, 2, \.\.\.\) for --model-version but received "abc"\n$/],
    [['--model-version', '01'], /for --model-version but received "01"/],
    [['--workers', '1000'], new RegExp(`^umbra: expected an integer in 1\\.\\.${most} for --workers but received "1000" \\(at most 4 per core this process may use, ${most / 4} here: more only contend for them\\)\\n$`)],
    [['--workers', '1.5'], /for --workers but received "1\.5"/],
    [['--parse-workers', '1000'], new RegExp(`expected an integer in 1\\.\\.${most} for --parse-workers`)],
    [['--intra-op-threads', '5000'], /expected an integer in 1\.\.1024 for --intra-op-threads but received "5000"/],
    [['--input', dir], /^umbra: --input: .* is not a regular file \(a folder\); the job reads its input more than once/],
    [['--input', '/dev/null'], /--input: \/dev\/null is not a regular file \(a pipe, terminal or device\)/],
  ];
  for (const [args, message] of cases) {
    const run = await batch(args);
    t.equal(run.status, 2, `${args.join(' ')}: exit 2`);
    t.match(run.stderr, message, `${args.join(' ')}: says why`);
  }
  t.notOk(existsSync(join(dir, 'never')), 'no store was created');
});

t.test('the environment\'s settings are checked as the flags are, and named', async (t) => {
  const saved = { UMBRA_WORKERS: process.env.UMBRA_WORKERS, JOB_COMPLETION_INDEX: process.env.JOB_COMPLETION_INDEX, JOB_COMPLETIONS: process.env.JOB_COMPLETIONS };
  t.teardown(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
  process.env.UMBRA_WORKERS = '1000';
  const workers = await batch([]);
  t.equal(workers.status, 2);
  t.match(workers.stderr, /for UMBRA_WORKERS \(environment\) but received "1000"/);
  delete process.env.UMBRA_WORKERS;
  process.env.JOB_COMPLETION_INDEX = '1';
  delete process.env.JOB_COMPLETIONS;
  const shard = await batch([]);
  t.equal(shard.status, 2);
  t.match(shard.stderr, /JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not/);
});

t.test('the help gives the limits', async (t) => {
  const help = await umbraInProcess(['batch', '--help']);
  t.match(help.stdout, /--batch-size <n>[^-]*at most\s+1048576\s+and\s+256\s+MiB/);
});

t.test('a batch past 256 MiB of the model\'s input is refused before anything is written', async (t) => {
  const wide = path('wide.jsonl');
  writeFileSync(wide, `${JSON.stringify({ id: 'w', x: new Array(1000).fill(1) })}\n`);
  const at = path('wide-store');
  const job = runBatchJob({ umbra, model: 'wide', input: wide, keyColumn: 'id', storeUrl: `sqlite:${join(at, 'p.db')}`, rejectsPath: join(at, 'r.jsonl'), batchSize: 100000 });
  const err = await job.then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof BatchOptionError, 'a usage error to the CLI');
  t.match((err as Error).message, /^expected at most 67108 for --batch-size with this model but received 100000: a row's input is 4000 bytes, and a batch may hold at most 256 MiB of input/);
  t.notOk(existsSync(at), 'no store, no reject file');
});

t.test('--input /dev/stdin from a pipe is refused, naming --input', async (t) => {
  const run = runUmbra(['batch', '--repo', repo.dir, '--model', 'affine', '--key', 'id', '--input', '/dev/stdin', '--store', store], { env: {} });
  // spawnSync gives the child a pipe for stdin.
  t.equal(run.status, 2, run.stderr);
  t.match(run.stderr, /^umbra: --input: \/dev\/stdin is not a regular file \(a pipe, terminal or device\); .*save a stream first/);
});

t.test('--model-file that is not ONNX names the user\'s file, and leaves no temporary repository', async (t) => {
  const scratch = path('tmp');
  mkdirSync(scratch);
  const run = runUmbra(['batch', '--model-file', csv, '--key', 'id', '--input', csv, '--store', store], { env: { TMPDIR: scratch } });
  t.equal(run.status, 2, run.stderr);
  t.match(run.stderr, new RegExp(`^umbra: --model-file: ${csv.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a valid ONNX model: .*; give the path of an \\.onnx file\\n$`));
  t.same(readdirSync(scratch).filter((f) => f.startsWith('umbra-batch-')), [], 'the temporary repository is gone');
});
