// What a batch job makes of its input: broken CSV quoting costs one row and the job goes on,
// rows without a key column are keyed by row number, and columns the model does not take are
// left out with a note, or the error names the --mapping to pass.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { openInput, openStore, runBatchJob } from '../dist/batch/index.js';
import { MAX_QUOTED_RECORD_BYTES } from '../dist/batch/csv-records.js';
import { batchFixture, readRejects, storedX } from './helpers/batch.js';

const { umbra, path } = await batchFixture('umbra-batch-input-');

/** Runs the job over `text`; returns the summary, the store and the rejects. */
async function job(t: Tap.Test, text: string, extra: Partial<Parameters<typeof runBatchJob>[0]> = {}) {
  const input = path('in.csv');
  writeFileSync(input, text);
  const rejectsPath = path('rejects.jsonl');
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, rejectsPath, batchSize: 16, ...extra });
  return { summary, store, rejects: readRejects(rejectsPath) };
}

const row = (key: string, v: number) => `${key},${v},${v + 1},${v + 2},${v + 3}`;
const rowsFrom = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => row(`k${from + i}`, from + i));

t.test('an unclosed quote rejects its line; every line after it is read as a row of its own', async (t) => {
  // Line 12 opens a quote that nothing closes: 200 rows follow.
  const lines = ['id,f0,f1,f2,f3', ...rowsFrom(2, 11), '"k12,12,13,14,15', ...rowsFrom(13, 212)];
  const { summary, store, rejects } = await job(t, lines.join('\n') + '\n');
  t.equal(summary.rowsStored, 210, 'every other row stored');
  t.equal(summary.rejected, 1);
  t.equal(rejects.length, 1);
  t.equal(rejects[0]!.line, 12, 'the reject says where');
  t.match(rejects[0]!.reason, /malformed CSV quoting: the quoted field opened on line 12 is not closed before the end of the file; line 12 is rejected and reading goes on at line 13/);
  t.same(await storedX(store, 'k13'), [13, 14, 15, 16]);
  t.same(await storedX(store, 'k212'), [212, 213, 214, 215]);
  t.equal(await store.get('affine', '1', 'k12'), undefined);
});

t.test('a quote left open for more than the limit is given up without reading to the end of the file', async (t) => {
  const lines = ['id,f0,f1,f2,f3', '"open,1,2,3,4'];
  let bytes = 0;
  for (let i = 0; bytes <= MAX_QUOTED_RECORD_BYTES + 1000; i++) {
    lines.push(row(`k${i}`, i % 1000));
    bytes += lines[lines.length - 1]!.length + 1;
  }
  const { summary, rejects } = await job(t, lines.join('\n') + '\n', { batchSize: 4096 });
  t.equal(summary.rowsStored, lines.length - 2);
  t.same(rejects.map((r) => r.line), [2]);
  t.match(rejects[0]!.reason, /not closed within 1 MiB/);
});

t.test('stray quotes, a record that closes in the wrong width, and valid quoting side by side', async (t) => {
  const text = [
    'id,f0,f1,f2,f3',
    row('a', 1),
    'st"ray,1,2,3,4', // line 3: a quote inside an unquoted field
    '"k""q",1,2,3,4', // line 4: a doubled quote inside a quoted field is fine
    '"multi', // lines 5-6: a key with a newline in it
    'line",5,6,7,8',
    '"wide,1,2,3,4', // line 7: closes on line 9 in a record of 2 columns
    row('b', 2),
    'end",9', // line 9: read again on its own, a quote inside an unquoted field
    '"k2"x,1,2,3,4', // line 10: something after a closing quote
    row('c', 3),
  ].join('\n');
  const { summary, store, rejects } = await job(t, text);
  t.same(rejects.map((r) => r.line), [3, 7, 9, 10]);
  t.match(rejects[0]!.reason, /unexpected quote at column 3 of the line/);
  t.match(rejects[1]!.reason, /the quoted field opened on line 7 closes on line 9 in a record of 2 columns, not the header's 5; line 7 is rejected and reading goes on at line 8 \(lines 8-9 are read again as rows of their own\)/);
  t.equal(summary.rowsStored, 5);
  t.same(await storedX(store, 'k"q'), [1, 2, 3, 4]);
  t.same(await storedX(store, 'multi\nline'), [5, 6, 7, 8]);
  t.same(await storedX(store, 'b'), [2, 3, 4, 5], 'the row swallowed by the broken record is read again');
  t.same(await storedX(store, 'c'), [3, 4, 5, 6]);
});

t.test('a quoted field keeps the line ends inside it as the file has them, CRLF or LF (RFC 4180)', async (t) => {
  const text = [
    'id,f0,f1,f2,f3\r\n',
    '"two\r\nlines",1,2,3,4\r\n',
    '"blank\r\n\r\nbetween",5,6,7,8\r\n',
    '"mixed\nends\r\nhere",9,9,9,9\n',
    'plain,1,1,1,1\r\n',
  ].join('');
  const { summary, store, rejects } = await job(t, text);
  t.same([summary.rowsStored, rejects], [4, []]);
  t.same([await storedX(store, 'two\r\nlines'), await storedX(store, 'blank\r\n\r\nbetween'), await storedX(store, 'mixed\nends\r\nhere'), await storedX(store, 'plain')],
    [[1, 2, 3, 4], [5, 6, 7, 8], [9, 9, 9, 9], [1, 1, 1, 1]], 'each key as written between its quotes; the record\'s own line end is not the field\'s');
});

t.test('quoted rows among plain ones: each split as RFC 4180 says, in the order read', async (t) => {
  // Many quoted records in one read are split together (one csv-parse call): each must still get
  // its own fields, and a plain row between them must keep its place.
  const lines = ['id,f0,f1,f2,f3'];
  const want: { line: number; fields?: string[]; plain?: string }[] = [];
  for (let i = 0; i < 300; i++) {
    const kind = i % 4;
    const text = kind === 0 ? `"k${i}, with a comma",${i},"${i + 1}",${i + 2},${i + 3}`
      : kind === 1 ? `"say ""${i}""",${i},${i + 1},"${i + 2}",${i + 3}`
        : kind === 2 ? row(`p${i}`, i)
          : `"short ${i}",${i}`;
    lines.push(text);
    const line = lines.length;
    if (kind === 0) want.push({ line, fields: [`k${i}, with a comma`, `${i}`, `${i + 1}`, `${i + 2}`, `${i + 3}`] });
    else if (kind === 1) want.push({ line, fields: [`say "${i}"`, `${i}`, `${i + 1}`, `${i + 2}`, `${i + 3}`] });
    else if (kind === 2) want.push({ line, plain: text });
    else want.push({ line, fields: [`short ${i}`, `${i}`] });
  }
  const file = path('quoted-many.csv');
  writeFileSync(file, lines.join('\n'));
  const input = await openInput(file);
  const seen: { line: number; fields?: string[]; plain?: string }[] = [];
  for await (const chunk of input.records) {
    for (const r of chunk) seen.push(r.fields ? { line: r.line, fields: r.fields } : { line: r.line, plain: Buffer.from(r.bytes!.subarray(r.start, r.end)).toString() });
  }
  t.same(seen, want, 'every record, its fields and its place');
  // Through a job: the five-column rows are stored, the two-column ones refused for their width.
  const { summary, store, rejects } = await job(t, lines.join('\n'));
  t.same([summary.rowsStored, rejects.length, rejects[0]?.line], [225, 75, 5]);
  t.same([await storedX(store, 'k0, with a comma'), await storedX(store, 'say "1"'), await storedX(store, 'p2')], [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]]);
});

t.test('records are numbered by content alone, however the file is read', async (t) => {
  const text = ['id,f0,f1,f2,f3', '"a', 'b",1,2,3,4', '', 'x"y,1,2,3,4', '"never,1', ...rowsFrom(1, 30)].join('\n');
  const file = path('numbered.csv');
  writeFileSync(file, text);
  const input = await openInput(file);
  const seen: { line: number; error: boolean }[] = [];
  for await (const chunk of input.records) for (const r of chunk) seen.push({ line: r.line, error: r.error !== undefined });
  t.same(seen.slice(0, 4), [{ line: 2, error: false }, { line: 5, error: true }, { line: 6, error: true }, { line: 7, error: false }]);
  t.equal(seen.length, 33, 'the multi-line record counts once, the blank line not at all');
});

t.test('without a key column each row is keyed by its row number, rejects and all', async (t) => {
  const text = ['f0,f1,f2,f3', '1,2,3,4', '5,6,x,8', '"9",10,11,12', '', '13,14,15,16'].join('\n');
  const starts: string[] = [];
  const { summary, store, rejects } = await job(t, text, { keyColumn: undefined, onStart: (info) => starts.push(info.plan) });
  t.match(starts[0], /keys: row numbers \(no --key\)/);
  t.equal(summary.rowsStored, 3);
  t.same(rejects, [{ line: 3, key: '2', reason: "expected a finite number for column 'f2' but received the string \"x\"" }]);
  t.same(await storedX(store, '1'), [1, 2, 3, 4]);
  t.same(await storedX(store, '3'), [9, 10, 11, 12]);
  t.same(await storedX(store, '4'), [13, 14, 15, 16], 'a blank line is not a row');
});

t.test('columns the model does not take: left out with a note when the choice is clear, else the error says which --mapping to pass', async (t) => {
  const starts: string[] = [];
  const labelled = ['id,f0,f1,f2,f3,label,split', 'a,1,2,3,4,7,train', 'b,5,6,7,8,3,test'].join('\n');
  const { summary, store } = await job(t, labelled, { onStart: (info) => starts.push(info.plan) });
  t.equal(summary.rowsStored, 2);
  t.equal(starts[0], 'x <- f0, f1, f2, f3; keys <- id; not used: label, split (--mapping chooses otherwise)');
  t.same(await storedX(store, 'b'), [5, 6, 7, 8]);

  const ambiguous = ['id,a,b,c,d,e', 'r,1,2,3,4,5'].join('\n');
  const error = await job(t, ambiguous).then(() => undefined, (err: Error) => err);
  t.match(error?.message, /input 'x' takes 4 values per row but the input has 5 columns besides the key \(a, b, c, d, e\), and Umbra cannot tell which 4 to use/);
  t.match(error?.message, /--mapping '\{"x":"a\.\.d"\}'/);
  const fixed = await job(t, ambiguous, { mapping: { x: 'a..d' } });
  t.equal(fixed.summary.rowsStored, 1, 'the suggested mapping works as given');

  const short = await job(t, ['id,a,b,c', 'r,1,2,3'].join('\n')).then(() => undefined, (err: Error) => err);
  t.match(short?.message, /input 'x' takes 4 values per row but the input has only 3 columns besides the key: a, b, c/);
  const mapped = await job(t, labelled, { mapping: { x: ['f0', 'f1', 'f2'] } }).then(() => undefined, (err: Error) => err);
  t.match(mapped?.message, /input 'x' takes 4 values per row \(dims \[4\]\) but 3 columns are mapped to it \(f0, f1, f2\); name its columns with --mapping/);
  const noKey = await job(t, labelled, { keyColumn: 'customer_id' }).then(() => undefined, (err: Error) => err);
  t.match(noKey?.message, /the key column 'customer_id' \(--key\) is not in the input; its columns are: id, f0, f1, f2, f3, label, split\. Name one of them with --key, or leave --key out to key each row by its row number/);
});

t.test('JSON Lines are parsed where the rows are, with the same rejects', async (t) => {
  const input = path('in.jsonl');
  writeFileSync(input, ['not json', '{"id":"a","x":[1,2,3,4]}', '[1]', '{"id":"b","x":[5,6,7,8]}', '{"id":"c","x":[1,2]}', '{bad'].join('\n'));
  const rejectsPath = path('r.jsonl');
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, rejectsPath, parseWorkers: 2, batchSize: 1 });
  t.equal(summary.rowsStored, 2);
  t.same(readRejects(rejectsPath).map((r) => [r.line, r.reason.split(':')[0]]), [
    [1, 'malformed JSON'], [3, 'expected a JSON object per line'], [5, 'expected an array of 4 values for column \'x\' but received an array of length 2'], [6, 'malformed JSON'],
  ]);
  t.same(await storedX(store, 'b'), [5, 6, 7, 8]);
});
