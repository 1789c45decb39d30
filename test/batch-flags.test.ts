// `umbra batch --batch-size`: a value past its cap is a usage error (exit 2) that names the flag
// and what it takes, found before anything is loaded or written; the cap on a batch's bytes,
// which depends on the model, is found once it is loaded, still before anything is written.
import t from 'tap';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BatchOptionError, runBatchJob } from '../dist/batch/index.js';
import { batchFixture } from './helpers/batch.js';
import { umbraInProcess } from './helpers/cli-process.js';
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

t.test('a batch size past the cap is a usage error naming the flag and what it takes', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--batch-size', '100000000'], /^umbra: expected an integer in 1\.\.1048576 for --batch-size but received "100000000"\n$/],
    [['--batch-size', '4294967296'], /expected an integer in 1\.\.1048576 for --batch-size but received "4294967296"/],
    [['--batch-size', '0'], /for --batch-size but received "0"/],
  ];
  for (const [args, message] of cases) {
    const run = await batch(args);
    t.equal(run.status, 2, `${args.join(' ')}: exit 2`);
    t.match(run.stderr, message, `${args.join(' ')}: says why`);
  }
  t.notOk(existsSync(join(dir, 'never')), 'no store was created');
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
