// The batch job in-process: CSV and JSON Lines (plain and gzip), column mapping, rejects with
// line numbers, and clear errors for bad stores and inputs.
import t from 'tap';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { runBatchJob, openStore } from '../dist/batch/index.js';
import { allRows, batchFixture, checkAffine } from './helpers/batch.js';
import { pairModel } from './helpers/repo.js';
import { property } from './helpers/property.js';
import { makeRows, writeCsv, writeJsonl, rng } from './fixtures/batch/data.js';

const { umbra, dir, path } = await batchFixture('umbra-batch-test-', (repo) => repo.addVersion('pair', 1, pairModel()));

t.test('CSV: every row stored with its own outputs; bad rows go to the reject file with line and reason', async (t) => {
  const rows = makeRows(700, 4, 11);
  const input = path('in.csv');
  // Data lines start at line 2; the extras are lines 702, 703, 704.
  writeCsv(input, rows, { extraLines: ['bad1,1,2,abc,4', 'bad2,1,2,3', ',1,2,3,4'] });
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const rejects = path('rejects.jsonl');
  const progress: number[] = [];
  // Two reader threads here, each parsing every other segment; one (the default) elsewhere.
  const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, batchSize: 64, parseWorkers: 2, rejectsPath: rejects, onProgress: (p) => progress.push(p.rowsStored) });
  t.equal(summary.rowsStored, 700);
  t.equal(summary.rejected, 3);
  t.equal(summary.version, '1');
  t.ok(progress.length >= 11 && progress.every((v, i) => i === 0 || v >= progress[i - 1]!), 'progress after every batch, never going back');
  checkAffine(t, rows, await allRows(store, 'affine', rows.map((r) => r.key)));
  t.equal(await store.count('affine'), 700);
  const lines = readFileSync(rejects, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.same(lines.map((l) => l.line), [702, 703, 704]);
  t.match(lines[0].reason, /expected a finite number for column 'f2' but received the string "abc"/);
  t.equal(lines[0].key, 'bad1');
  t.match(lines[1].reason, /expected 5 columns but received 4/);
  t.match(lines[2].reason, /missing value for the key column 'id'/);
});

t.test('CSV quoting: delimiters and newlines inside quoted fields, CRLF line ends, a BOM', async (t) => {
  const input = path('quoted.csv');
  writeFileSync(input, '\uFEFFid,f0,f1,f2,f3\r\n"a,1",1,2,3,4\r\n"b\nwith ""newline""",5,6,7,8\r\nplain,"9",10,11,12\r\nafter,1,1,1,1\r\n');
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const rejects = path('r.jsonl');
  const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, rejectsPath: rejects });
  t.equal(summary.rowsStored, 4);
  t.equal(summary.rejected, 0);
  t.same((await store.get('affine', '1', 'a,1'))!.outputs[0]!.data, [3, 5, 7, 9]);
  t.same((await store.get('affine', '1', 'b\nwith "newline"'))!.outputs[0]!.data, [11, 13, 15, 17]);
  t.same((await store.get('affine', '1', 'plain'))!.outputs[0]!.data, [19, 21, 23, 25]);
  t.same((await store.get('affine', '1', 'after'))!.outputs[0]!.data, [3, 3, 3, 3]);
});

t.test('JSON Lines, plain and gzip, give the same stored values as CSV', async (t) => {
  const rows = makeRows(300, 4, 12);
  const results: Map<string, unknown>[] = [];
  for (const [name, write] of [
    ['in.csv.gz', (p: string) => writeCsv(p, rows, { gzip: true })],
    ['in.jsonl', (p: string) => writeJsonl(p, rows, 'x')],
    ['in.jsonl.gz', (p: string) => writeJsonl(p, rows, 'x', { gzip: true })],
    ['in.ndjson', (p: string) => writeFileSync(p, rows.map((r) => JSON.stringify({ id: r.key, x_0: r.x[0], x_1: r.x[1], x_2: r.x[2], x_3: r.x[3] })).join('\n'))],
  ] as const) {
    const input = path(name);
    write(input);
    const store = await openStore(`sqlite:${path('p.db')}`);
    const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, batchSize: 50, parseWorkers: 1 + (results.length % 2), rejectsPath: path('r.jsonl') });
    t.equal(summary.rowsStored, 300, name);
    t.equal(summary.rejected, 0, name);
    results.push(await allRows(store, 'affine', rows.map((r) => r.key)));
    await store.close();
  }
  checkAffine(t, rows, results[0]!);
  for (const r of results.slice(1)) t.same([...r], [...results[0]!]);
});

t.test('INT64 past 2^53: inputs taken as their digits, outputs stored and read back exactly', async (t) => {
  const input = path('wide-ints.csv');
  // n at the edge of what a batch input takes exactly; twice n is past 2^53, where doubles are 4 apart.
  // w3's ids are past 2^53 themselves, taken as their digits; w4's is past INT64 and rejected.
  writeFileSync(input, 'id,a_0,a_1,a_2,first,second\nw1,1,2,3,9007199254740991,-9007199254740991\nw2,0,0,0,4503599627370497,3\nw3,0,0,0,9007199254740993,-123456789012345678\nw4,0,0,0,9223372036854775808,1\n');
  const store = await openStore(`sqlite:${path('wide.db')}`);
  t.teardown(() => store.close());
  const rejects = path('wide-r.jsonl');
  const summary = await runBatchJob({ umbra, model: 'pair', input, keyColumn: 'id', store, mapping: { n: ['first', 'second'] }, rejectsPath: rejects });
  t.same([summary.rowsStored, summary.rejected], [3, 1]);
  const twice = async (key: string) => (await store.get('pair', '1', key))?.outputs.find((o) => o.name === 'twice')?.data;
  t.same([await twice('w1'), await twice('w2'), await twice('w3')], [[18014398509481982n, -18014398509481982n], [9007199254740994, 6], [18014398509481986n, -246913578024691356n]],
    'exact (a double would hold 18014398509481984, and read 9007199254740993 as ...992); within 2^53 plain numbers as before');
  t.match(readFileSync(rejects, 'utf8'), /expected an integer within INT64 \(-2\^63 to 2\^63-1\) for column 'first' but received/, 'past INT64: rejected, saying so');
});

t.test('column mapping file and indexed names feed a two-input model', async (t) => {
  const next = rng(5);
  const input = path('pair.csv');
  const data = Array.from({ length: 120 }, (_, i) => ({ id: `p${i}`, a: [1, 2, 3].map(() => Math.round(next() * 100) / 4), n: [Math.floor(next() * 1000) - 500, Math.floor(next() * 1000)] }));
  // Columns in a deliberately shuffled order; 'a' by its indexed names, 'n' by the mapping.
  writeFileSync(input, ['second,a_2,id,a_0,first,a_1,unused', ...data.map((d) => [d.n[1], d.a[2], d.id, d.a[0], d.n[0], d.a[1], 'x'].join(','))].join('\n'));
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const summary = await runBatchJob({ umbra, model: 'pair', input, keyColumn: 'id', store, mapping: { n: ['first', 'second'] }, rejectsPath: path('r.jsonl') });
  t.equal(summary.rowsStored, 120);
  const pairs = property('the first 40 keys hold sum = 2a and twice = 2n (INT64) of their own row');
  for (const d of data.slice(0, 40)) {
    const p = await store.get('pair', '1', d.id);
    const sum = p?.outputs.find((o) => o.name === 'sum');
    const twice = p?.outputs.find((o) => o.name === 'twice');
    pairs.same([sum?.data, twice?.data, twice?.datatype], [d.a.map((v) => v * 2), d.n.map((v) => v * 2), 'INT64'], () => `key ${d.id}`);
  }
  pairs.assert(t);
  const range = await runBatchJob({ umbra, model: 'affine', input: (() => {
    const p = path('range.csv');
    writeFileSync(p, 'id,skip,c0,c1,c2,c3,label\nr1,9,1,2,3,4,7\n');
    return p;
  })(), keyColumn: 'id', store, mapping: { x: 'c0..c3' }, rejectsPath: path('r.jsonl') });
  t.equal(range.rowsStored, 1);
  t.same((await store.get('affine', '1', 'r1'))!.outputs[0]!.data, [3, 5, 7, 9]);
  await t.rejects(runBatchJob({ umbra, model: 'pair', input, keyColumn: 'id', store, mapping: { n: ['first', 'nope'] } }), /mapping names column 'nope' for input 'n'/);
  await t.rejects(runBatchJob({ umbra, model: 'pair', input, keyColumn: 'id', store, mapping: { zz: ['first'] } }), /mapping names input 'zz'/);
  await t.rejects(runBatchJob({ umbra, model: 'pair', input, keyColumn: 'id', store }), /no columns for input 'n' of model 'pair'/);
});

t.test('bad store URLs and unreadable inputs give clear errors', async (t) => {
  await t.rejects(openStore('mysql://db/x'), /unsupported store URL scheme 'mysql:'.*expected sqlite:PATH or postgres:\/\//);
  await t.rejects(openStore('sqlite:'), /expected sqlite:PATH for --store but received 'sqlite:' \(no file path\)/);
  await t.rejects(openStore(`sqlite:${join(dir, 'no', 'such', 'dir', 'p.db')}`), /cannot open the SQLite store sqlite:.*p\.db: .*directory does not exist/);
  await t.rejects(openStore('just-a-name'), /expected a store URL/);
  const pgError = await openStore('postgres://umbra:secret@127.0.0.1:1/nowhere').then(() => undefined, (err: Error) => err);
  t.match(pgError?.message, /cannot open the PostgreSQL store postgres:\/\/umbra:\*\*\*@127\.0\.0\.1:1\/nowhere: .*ECONNREFUSED/);
  t.notOk(pgError?.message.includes('secret'), 'the password is not echoed');
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const job = (input: string, extra: object = {}) => runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, rejectsPath: path('r.jsonl'), ...extra });
  await t.rejects(job(join(dir, 'missing.csv')), /cannot read the input file .*missing\.csv \(--input\): no such file/);
  const sub = path('a-dir.csv');
  mkdirSync(sub);
  await t.rejects(job(sub), /cannot read the input file .*a-dir\.csv \(--input\): it is a directory/);
  const fakeGz = path('fake.csv.gz');
  writeFileSync(fakeGz, Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.from('not really gzip at all')]));
  await t.rejects(job(fakeGz), /cannot read the input file .*fake\.csv\.gz/);
  const noKey = path('nokey.csv');
  writeFileSync(noKey, 'name,f0,f1,f2,f3\na,1,2,3,4\n');
  await t.rejects(job(noKey), /the key column 'id' \(--key\) is not in the input; its columns are: name, f0, f1, f2, f3/);
  const odd = path('data.xlsx');
  writeFileSync(odd, 'x');
  await t.rejects(job(odd), /cannot tell the format of .*data\.xlsx.*--format csv\|jsonl\|parquet/);
  const notParquet = path('data.parquet');
  writeFileSync(notParquet, 'x');
  await t.rejects(job(notParquet), /data\.parquet is not a Parquet file \(it does not start with PAR1\)/);
  await t.rejects(runBatchJob({ umbra, model: 'nope', input: noKey, keyColumn: 'id', store }), /nope/);
});

