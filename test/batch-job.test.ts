// The batch job in-process: CSV and JSON Lines (plain and gzip), column mapping, rejects with
// line numbers, shards into one PostgreSQL store equal to a single run, and clear errors.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Umbra } from '../dist/core/umbra.js';
import { runBatchJob, openStore, parseShard, shardFromEnvironment, shardOfKey, type PredictionStore } from '../dist/batch/index.js';
import { tempRepo, affineModel, pairModel } from './helpers/repo.js';
import { property } from './helpers/property.js';
import { createTestDatabase, PG_SKIP_REASON } from './helpers/postgres.js';
import { makeRows, writeCsv, writeJsonl, rng, type Row } from './fixtures/batch/data.js';

const repo = tempRepo();
repo.addVersion('affine', 1, affineModel(2, 1, 4));
repo.addVersion('pair', 1, pairModel());
const dir = mkdtempSync(join(tmpdir(), 'umbra-batch-test-'));
const umbra = await Umbra.open({ repository: repo.dir, workers: 2 });
t.teardown(async () => {
  await umbra.close();
  repo.remove();
  rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
const path = (name: string) => join(dir, `${counter++}-${name}`);

async function allRows(store: PredictionStore, model: string, keys: string[]): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const k of keys) {
    const p = await store.get(model, '1', k);
    if (p) out.set(k, p.outputs);
  }
  return out;
}

function checkAffine(t: Tap.Test, rows: Row[], stored: Map<string, unknown>) {
  t.equal(stored.size, rows.length, 'every key stored');
  let bad = 0;
  for (const r of rows) {
    const outputs = stored.get(r.key) as { name: string; datatype: string; shape: number[]; data: number[] }[];
    const y = outputs?.[0];
    if (!y || y.name !== 'y' || y.datatype !== 'FP32' || y.shape.join() !== '1,4' || y.data.some((v, i) => v !== r.x[i]! * 2 + 1)) bad += 1;
  }
  t.equal(bad, 0, 'every stored value is 2x + 1 of its own row');
}

t.test('CSV: every row stored with its own outputs; bad rows go to the reject file with line and reason', async (t) => {
  const rows = makeRows(700, 4, 11);
  const input = path('in.csv');
  // Data lines start at line 2; the extras are lines 702, 703, 704.
  writeCsv(input, rows, { extraLines: ['bad1,1,2,abc,4', 'bad2,1,2,3', ',1,2,3,4'] });
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const rejects = path('rejects.jsonl');
  const progress: number[] = [];
  // Parsed on a parse worker here; inline (the default on small machines) elsewhere.
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
    const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, batchSize: 50, parseWorkers: results.length % 2, rejectsPath: path('r.jsonl') });
    t.equal(summary.rowsStored, 300, name);
    t.equal(summary.rejected, 0, name);
    results.push(await allRows(store, 'affine', rows.map((r) => r.key)));
    await store.close();
  }
  checkAffine(t, rows, results[0]!);
  for (const r of results.slice(1)) t.same([...r], [...results[0]!]);
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

t.test('shards 1/4..4/4 into one PostgreSQL store equal a single run', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  const single = await createTestDatabase();
  t.teardown(async () => {
    await db.drop();
    await single!.drop();
  });
  const rows = makeRows(2000, 4, 21);
  const input = path('shards.csv');
  writeCsv(input, rows, { extraLines: ['broken,1,2,3'] });
  // The four shards run at once on the same pool, as four machines would against one database.
  const stores = await Promise.all([1, 2, 3, 4].map(() => openStore(db.url)));
  const summaries = await Promise.all(stores.map((store, i) => runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, shard: { index: i + 1, count: 4 }, batchSize: 100, parseWorkers: i % 2, rejectsPath: path(`r${i}.jsonl`) })));
  for (const s of stores) await s.close();
  t.equal(summaries.reduce((a, s) => a + s.rowsStored, 0), 2000, 'the shards partition the keys');
  t.equal(summaries.reduce((a, s) => a + s.rejected, 0), 1, 'a reject is reported by exactly one shard');
  t.ok(summaries.every((s) => s.rowsStored > 350), 'no shard is empty or lopsided');
  const whole = await openStore(single!.url);
  await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store: whole, batchSize: 100, rejectsPath: path('r.jsonl') });
  await whole.close();
  const pg = (await import('pg')).default;
  const dump = async (url: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const r = await c.query('SELECT model, version, key, outputs::text AS outputs FROM predictions ORDER BY key');
    await c.end();
    return r.rows;
  };
  const [sharded, reference] = await Promise.all([dump(db.url), dump(single!.url)]);
  t.equal(sharded.length, 2000);
  t.same(sharded, reference, 'same keys, versions and outputs');
  const check = await openStore(db.url);
  checkAffine(t, rows, await allRows(check, 'affine', rows.map((r) => r.key)));
  await check.close();
});

t.test('shard selection: flags, the Indexed Job environment, and a stable partition', async (t) => {
  t.same(parseShard('2/4'), { index: 2, count: 4 });
  t.throws(() => parseShard('0/4'), /expected I\/N with 1 <= I <= N/);
  t.throws(() => parseShard('5/4'), /expected I\/N/);
  t.throws(() => parseShard('x'), /expected I\/N/);
  t.same(shardFromEnvironment({ JOB_COMPLETION_INDEX: '3', JOB_COMPLETIONS: '4' }), { index: 4, count: 4 });
  t.equal(shardFromEnvironment({}), undefined);
  t.throws(() => shardFromEnvironment({ JOB_COMPLETION_INDEX: '0' }), /JOB_COMPLETIONS is not/);
  t.equal(shardOfKey('customer-42', 8), shardOfKey('customer-42', 8));
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 4000; i++) counts[shardOfKey(`user${i}`, 4)]! += 1;
  t.ok(counts.every((c) => c > 850 && c < 1150), `balanced: ${counts.join(', ')}`);
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
  const odd = path('data.parquet');
  writeFileSync(odd, 'x');
  await t.rejects(job(odd), /cannot tell the format of .*data\.parquet.*--format csv\|jsonl/);
  const quote = path('quote.csv');
  writeFileSync(quote, 'id,f0,f1,f2,f3\na,1,2,3,4\n"b,1,2,3,4\n');
  await t.rejects(job(quote), /malformed CSV in .*quote\.csv/);
  await t.rejects(runBatchJob({ umbra, model: 'nope', input: noKey, keyColumn: 'id', store }), /nope/);
});

t.test('reading numbers straight from CSV lines agrees with Number() bit for bit', async (t) => {
  // firstBadColumn is a live binding: read it through the module namespace.
  const csvLine = await import('../dist/batch/csv-line.js');
  const { readFloatLine, lineLayout, fieldAt } = csvLine;
  const next = rng(31);
  const samples = ['0', '-0', '+5', '.5', '5.', '007', '0.000123', '-12.5000', '123456789012345', '0.1', '0.2', '16', '3.14159265358979',
    '1e5', '-2.5E-3', ' 7 ', '0x10', '1234567890123456', '12345678901234567890', '0.00000000000000000000001'];
  for (let i = 0; i < 20000; i++) {
    const digits = 1 + Math.floor(next() * 15);
    let s = '';
    for (let d = 0; d < digits; d++) s += String(Math.floor(next() * 10));
    const dot = Math.floor(next() * (digits + 1));
    s = `${next() < 0.3 ? '-' : ''}${s.slice(0, dot)}.${s.slice(dot)}`;
    samples.push(s, s.replace(/\.$/, ''));
  }
  // Lines of 8 numbers after a key, read into a Float64Array so every bit of the double shows.
  const line = (text: string) => Buffer.from(`#${text}#`);
  const read = (text: string, layout: ReturnType<typeof lineLayout>, out: Float64Array, base: number) => {
    const bytes = line(text);
    return readFloatLine(bytes, 1, bytes.length - 1, 44, layout!, [out], Int32Array.of(base));
  };
  const layout = lineLayout(9, [{ positions: [1, 2, 3, 4, 5, 6, 7, 8] }]);
  const out = new Float64Array(16);
  let mismatches = 0;
  for (let at = 0; at < samples.length; at += 8) {
    const fields = samples.slice(at, at + 8);
    while (fields.length < 8) fields.push('1');
    const count = read(`k${at},${fields.join(',')}`, layout, out, 8);
    if (count !== 9 || csvLine.firstBadColumn !== -1) mismatches += 1;
    fields.forEach((s, i) => {
      if (!Object.is(out[8 + i], Number(s))) mismatches += 1;
    });
  }
  t.equal(mismatches, 0, `${samples.length} numbers`);
  const notNumbers = property('a field that is not a finite number is the first bad column; the line still counts four columns and its numbers are written');
  for (const bad of ['', '-', '.', 'NaN', '1.2.3', 'abc', ' ', 'Infinity', '\u00b5']) {
    const count = read(`k,1,${bad},2`, lineLayout(4, [{ positions: [1, 2, 3] }]), out, 0);
    notNumbers.same([count, csvLine.firstBadColumn, out[0], out[2]], [4, 2, 1, 2], () => `'${bad}' (columns, first bad column, out[0], out[2])`);
  }
  notNumbers.assert(t);
  t.equal(read('k,1,2,3,4,5', lineLayout(4, [{ positions: [1, 2, 3] }]), out, 0), 6, 'extra columns are counted, not written');
  t.equal(read('a,,bc,', lineLayout(1, [{ positions: [0] }]), out, 0), 4, 'empty fields count');
  t.equal(lineLayout(3, [{ positions: [1, 2] }, { positions: [2] }]), undefined, 'a column feeding two inputs has no layout');
  const bytes = line('a,,b\u00e9,');
  t.equal(fieldAt(bytes, 1, bytes.length - 1, 44, 2), 'b\u00e9', 'decoded as UTF-8');
  t.equal(fieldAt(bytes, 1, bytes.length - 1, 44, 3), '');
  t.equal(fieldAt(bytes, 1, bytes.length - 1, 44, 4), undefined);
  t.equal(fieldAt(new Uint8Array(bytes), 1, bytes.length - 1, 44, 2), 'b\u00e9', 'a plain Uint8Array (as a parse worker receives it) too');
});

t.test('stored outputs: each row as a one-row response carries it, for every kind of tensor', async (t) => {
  const { outputsPerRow } = await import('../dist/batch/output-rows.js');
  const next = rng(7);
  for (const rows of [1, 2, 7, 300]) {
    const outputs = [
      { name: 'p', datatype: 'FP32' as const, shape: [rows, 3], data: Float32Array.from({ length: rows * 3 }, (_, i) => (i % 5 === 4 ? Number.NaN : next() - 0.5)) },
      { name: 'label', datatype: 'INT64' as const, shape: [rows], data: BigInt64Array.from({ length: rows }, (_, i) => BigInt(i - 3)) },
      { name: 'flag', datatype: 'BOOL' as const, shape: [rows, 2], data: Uint8Array.from({ length: rows * 2 }, (_, i) => i % 3) },
      { name: 'text', datatype: 'BYTES' as const, shape: [rows, 1], data: Array.from({ length: rows }, (_, i) => `a,"b${i}"`) },
      { name: 'none', datatype: 'FP32' as const, shape: [rows, 0], data: new Float32Array(0) },
    ];
    const expected = Array.from({ length: rows }, (_, r) => JSON.stringify([
      { name: 'p', datatype: 'FP32', shape: [1, 3], data: Array.from(outputs[0]!.data.subarray(r * 3, r * 3 + 3)) },
      { name: 'label', datatype: 'INT64', shape: [1], data: [r - 3] },
      { name: 'flag', datatype: 'BOOL', shape: [1, 2], data: [(2 * r) % 3 !== 0, (2 * r + 1) % 3 !== 0] },
      { name: 'text', datatype: 'BYTES', shape: [1, 1], data: [`a,"b${r}"`] },
      { name: 'none', datatype: 'FP32', shape: [1, 0], data: [] },
    ]));
    t.same(outputsPerRow(outputs, rows), expected, `${rows} rows`);
  }
});

t.test('CSV read as bytes: lines across read boundaries, blank lines, no final newline, UTF-8 keys, parse workers alike', async (t) => {
  const next = rng(5);
  // ~600 KiB of lines of varying length, so lines straddle the 256 KiB reads.
  const rows: Row[] = [];
  const lines = ['id,f0,f1,f2,f3'];
  const expectedLines: number[] = [];
  for (let i = 0; i < 9000; i++) {
    const key = i % 97 === 0 ? `clé-${i}-ü` : `k${i}`;
    // Multiples of 1/8 (exact in FP32), written with 3 to 7 decimals.
    const x = Array.from({ length: 4 }, () => Math.round((next() * 200 - 100) * 8) / 8);
    rows.push({ key, x });
    lines.push([key, ...x.map((v) => v.toFixed(3 + (i % 5)))].join(','));
    expectedLines.push(lines.length);
    if (i % 1000 === 500) lines.push('');
  }
  const input = path('bytes.csv');
  writeFileSync(input, lines.join('\n'));
  const { openInput } = await import('../dist/batch/reader.js');
  const stream = await openInput(input);
  const seen: number[] = [];
  for await (const chunk of stream.records) for (const r of chunk) seen.push(r.line);
  t.same(seen, expectedLines, 'every data line once, with its line number, the last one without a newline');
  for (const parseWorkers of [0, 1]) {
    const store = await openStore(`sqlite:${path('bytes.db')}`);
    const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, batchSize: 700, parseWorkers, rejectsPath: path('bytes.rejects.jsonl') });
    t.equal(summary.rowsStored, rows.length, `parse workers ${parseWorkers}: every row stored`);
    t.equal(summary.rejected, 0);
    checkAffine(t, rows, await allRows(store, 'affine', rows.map((r) => r.key)));
    await store.close();
  }
});
