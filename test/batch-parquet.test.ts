// Parquet input for batch jobs: columns of features (as pandas writes them, int64 keys among them),
// one list column holding each row's features, several row groups, and compressed pages; the
// predictions stored equal those of the same rows as CSV. Bad Parquet files and wrong --format
// choices get errors that name the file and the fix.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { runBatchJob, openStore } from '../dist/batch/index.js';
import { allRows, batchFixture, checkAffine } from './helpers/batch.js';
import { makeRows, writeCsv } from './fixtures/batch/data.js';
import { spawn } from 'node:child_process';
import { BIN } from './helpers/cli-process.js';
import { affineModel } from './helpers/repo.js';
import { writeModel } from '../dist/onnx/model-io.js';

const { umbra, path } = await batchFixture('umbra-batch-parquet-');
const rows = makeRows(2500, 4, 21);
// The fixture's model (y = 2x + 1 over 4 floats) as a file, for the CLI.
const modelFile = path('affine.onnx');
writeModel(affineModel(2, 1, 4), modelFile);

/** Runs `umbra ARGS`; with `killAt`, SIGKILLs it once a progress line reports that many stored rows. */
function runCli(args: string[], killAt?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (killAt !== undefined && !child.killed && [...stdout.matchAll(/^stored (\d+) rows/gm)].some((m) => Number(m[1]) >= killAt)) child.kill('SIGKILL');
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

t.test('Parquet: feature columns or a list column, several row groups, the same stored values as CSV', async (t) => {
  const csv = path('in.csv');
  writeCsv(csv, rows);
  const byCsv = await openStore(`sqlite:${path('csv.db')}`);
  t.teardown(() => byCsv.close());
  await runBatchJob({ umbra, model: 'affine', input: csv, keyColumn: 'id', store: byCsv, rejectsPath: path('r.jsonl') });
  const expected = await allRows(byCsv, 'affine', rows.map((r) => r.key));
  checkAffine(t, rows, expected);

  const columns = parquetWriteBuffer({
    columnData: [
      { name: 'id', data: rows.map((r) => r.key), type: 'STRING' },
      ...[0, 1, 2, 3].map((i) => ({ name: `f${i}`, data: rows.map((r) => r.x[i]!), type: 'DOUBLE' as const })),
      // An int64 column the job does not use (pandas writes integers as int64).
      { name: 'row', data: rows.map((_, i) => BigInt(i) + 10n ** 15n), type: 'INT64' as const },
    ],
    rowGroupSize: 1000,
  });
  const list = parquetWriteBuffer({
    columnData: [
      { name: 'id', data: rows.map((r) => r.key), type: 'STRING' },
      { name: 'x', data: rows.map((r) => r.x) },
    ],
    rowGroupSize: [700, 1100],
  });
  // Named .parquet, and named otherwise: Parquet is told by its first bytes.
  for (const [name, bytes, parseWorkers] of [['columns.parquet', columns, 1], ['list.parquet', list, 2], ['export-0001', columns, 2]] as const) {
    const input = path(name);
    writeFileSync(input, Buffer.from(bytes));
    const store = await openStore(`sqlite:${path('p.db')}`);
    const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, batchSize: 300, parseWorkers, rejectsPath: path('r.jsonl') });
    t.same([summary.rowsStored, summary.rejected], [rows.length, 0], `${name}: every row stored`);
    t.same([...(await allRows(store, 'affine', rows.map((r) => r.key)))], [...expected], `${name}: the values CSV stored`);
    await store.close();
  }
});

t.test('Parquet: int64 keys, a null feature rejected with its row number, --resume', async (t) => {
  const n = 1200;
  const input = path('keys.parquet');
  writeFileSync(input, Buffer.from(parquetWriteBuffer({
    columnData: [
      { name: 'user_id', data: rows.slice(0, n).map((_, i) => BigInt(9_000_000_000 + i)), type: 'INT64' },
      { name: 'x', data: rows.slice(0, n).map((r, i) => (i === 77 ? null : r.x)) },
    ],
    rowGroupSize: 500,
  })));
  const store = await openStore(`sqlite:${path('k.db')}`);
  t.teardown(() => store.close());
  const rejects = path('rejects.jsonl');
  const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'user_id', store, batchSize: 100, rejectsPath: rejects });
  t.same([summary.rowsStored, summary.rejected], [n - 1, 1]);
  t.same((await store.get('affine', '1', '9000000001'))!.outputs[0]!.data, rows[1]!.x.map((v) => 2 * v + 1), 'an int64 key is stored as its digits');
  const reject = JSON.parse(readFileSync(rejects, 'utf8').trim());
  t.same([reject.line, reject.key], [78, 9_000_000_077], 'the null row is rejected with its row number (1-based) and key');
  const again = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'user_id', store, batchSize: 100, resume: true, rejectsPath: path('r2.jsonl') });
  t.same([again.alreadyFinished, await store.count('affine')], [true, n - 1], 'a resumed finished job runs nothing');

  // umbra batch killed part-way through the second row group, then --resume: the clean run's table.
  const db = path('killed.db');
  const args = ['batch', '--model-file', modelFile, '--model', 'affine', '--input', input, '--key', 'user_id', '--store', `sqlite:${db}`, '--batch-size', '50', '--progress-interval', '0', '--rejects', path('k.rejects.jsonl')];
  const killed = await runCli(args, 650);
  t.equal(killed.signal, 'SIGKILL', 'killed after 650 rows were stored');
  const resumed = await runCli([...args, '--resume']);
  t.equal(resumed.code, 0, resumed.stderr);
  t.match(resumed.stdout, /resum/i);
  const after = await openStore(`sqlite:${db}`);
  t.teardown(() => after.close());
  const keys = Array.from({ length: n }, (_, i) => String(9_000_000_000 + i));
  t.same([...(await allRows(after, 'affine', keys))], [...(await allRows(store, 'affine', keys))], 'after the kill and --resume, every row stored once with its values');
});

t.test('Parquet: files that are not Parquet, and --format mistakes, are clear errors', async (t) => {
  const csv = path('looks.csv');
  writeCsv(csv, rows.slice(0, 5));
  const store = await openStore(`sqlite:${path('e.db')}`);
  t.teardown(() => store.close());
  await t.rejects(runBatchJob({ umbra, model: 'affine', input: csv, keyColumn: 'id', store, format: 'parquet' }), /looks\.csv is not a Parquet file \(it does not start with PAR1\); pass --format csv or jsonl/);
  const gz = path('data.parquet');
  writeFileSync(gz, gzipSync(Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'id', data: ['a'], type: 'STRING' }] }))));
  await t.rejects(runBatchJob({ umbra, model: 'affine', input: gz, keyColumn: 'id', store }), /it is gzip data: Parquet compresses its pages itself/);
  const cut = path('cut.parquet');
  const whole = Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'id', data: ['a', 'b'], type: 'STRING' }] }));
  writeFileSync(cut, whole.subarray(0, whole.length - 12));
  await t.rejects(runBatchJob({ umbra, model: 'affine', input: cut, keyColumn: 'id', store }), /cannot read the input file .*cut\.parquet as Parquet/);
});
