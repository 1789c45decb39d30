// Input that is not UTF-8: a line of it (or a Parquet string) is a reject naming the line and the
// byte, never text with U+FFFD in place of its bytes (Latin-1's "José" and "Josè" would both be
// "Jos\uFFFD", one key).
// Valid UTF-8 is read as before, a character split between two reads included.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { openStore, runBatchJob } from '../dist/batch/index.js';
import { firstInvalidUtf8 } from '../dist/batch/utf8.js';
import { batchFixture, readRejects, storedX } from './helpers/batch.js';
import { property } from './helpers/property.js';
import { rng } from './fixtures/batch/data.js';

const { umbra, path } = await batchFixture('umbra-batch-encoding-');

async function job(t: Tap.Test, bytes: Buffer, name = 'in.csv') {
  const input = path(name);
  writeFileSync(input, bytes);
  const rejectsPath = path('rejects.jsonl');
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, rejectsPath, batchSize: 16 });
  return { summary, store, rejects: readRejects(rejectsPath) };
}

const latin1 = (text: string) => Buffer.from(text, 'latin1');
const notUtf8 = (line: number, byte: number, value: string) => `line ${line} is not UTF-8 text (byte ${byte} of the line, 0x${value}, starts no UTF-8 character); input is read as UTF-8: convert the file, e.g. iconv -f latin1 -t utf-8 for Latin-1`;

t.test('a Latin-1 CSV: its lines that are not UTF-8 are rejects, and no two keys become one', async (t) => {
  const { summary, store, rejects } = await job(t, latin1('id,f0,f1,f2,f3\nJos\u00e9,1,2,3,4\nJos\u00e8,5,6,7,8\nplain,9,9,9,9\n"Ren\u00e9e, quoted",1,1,1,1\n'));
  t.same(rejects, [
    { line: 2, reason: notUtf8(2, 4, 'E9') },
    { line: 3, reason: notUtf8(3, 4, 'E8') },
    { line: 5, reason: notUtf8(5, 5, 'E9') },
  ]);
  t.same([summary.rowsStored, await storedX(store, 'plain'), await storedX(store, 'Jos\ufffd')], [1, [9, 9, 9, 9], undefined], 'the UTF-8 line stored, no key with U+FFFD');
});

t.test('a quoted record over several lines is rejected at its first line when any of them is not UTF-8; its extent is what the bytes say', async (t) => {
  const bytes = Buffer.concat([
    Buffer.from('id,f0,f1,f2,f3\n"multi\n'),
    latin1('line \u00e9\n'),
    Buffer.from('end",1,2,3,4\nafter,5,6,7,8\n'),
  ]);
  const { summary, store, rejects } = await job(t, bytes);
  t.same(rejects, [{ line: 2, reason: notUtf8(3, 6, 'E9') }]);
  t.same([summary.rowsStored, await storedX(store, 'after')], [1, [5, 6, 7, 8]], 'the record ends where its quote closes, and the next row is read');
});

t.test('a header that is not UTF-8 stops the job before anything is written, saying so', async (t) => {
  const error = await job(t, latin1('id,f\u00e9,f1,f2,f3\na,1,2,3,4\n')).then(() => undefined, (err: Error) => err);
  t.match(error?.message, /cannot read the header of .*in\.csv: line 1 is not UTF-8 text \(byte 5 of the line, 0xE9/);
});

t.test('JSON Lines: a line that is not UTF-8 is a reject, the others are read', async (t) => {
  const bytes = Buffer.concat([
    Buffer.from('{"id":"a","x":[1,2,3,4]}\n'),
    latin1('{"id":"Jos\u00e9","x":[1,2,3,4]}\n'),
    Buffer.from('{"id":"b","x":[5,6,7,8]}\n'),
    Buffer.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x7d]), // an overlong "/": no final newline
  ]);
  const { summary, store, rejects } = await job(t, bytes, 'in.jsonl');
  t.same(rejects, [{ line: 2, reason: notUtf8(2, 11, 'E9') }, { line: 4, reason: notUtf8(4, 3, 'C0') }]);
  t.same([summary.rowsStored, await storedX(store, 'b')], [2, [5, 6, 7, 8]]);
});

t.test('Parquet: a string value that is not UTF-8 (a binary key) makes its row a reject', async (t) => {
  const keys = [latin1('Jos\u00e9'), latin1('Jos\u00e8'), Buffer.from('plain \u00e9')];
  const input = path('binary.parquet');
  writeFileSync(input, Buffer.from(parquetWriteBuffer({
    columnData: [
      { name: 'id', data: keys.map((k) => Uint8Array.from(k)), type: 'BYTE_ARRAY' },
      { name: 'x', data: keys.map((_, i) => [i, 1, 2, 3]) },
    ],
  })));
  const rejectsPath = path('binary.rejects.jsonl');
  const store = await openStore(`sqlite:${path('binary.db')}`);
  t.teardown(() => store.close());
  const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, rejectsPath });
  const why = (row: number) => `column 'id' of row ${row} is not UTF-8 text (byte 4 of the value, 0x${row === 1 ? 'E9' : 'E8'}, starts no UTF-8 character); a string column is read as UTF-8: write text as UTF-8, and binary values as hex or base64`;
  t.same(readRejects(rejectsPath), [{ line: 1, reason: why(1) }, { line: 2, reason: why(2) }]);
  t.same([summary.rowsStored, await storedX(store, 'plain \u00e9')], [1, [2, 1, 2, 3]]);
});

t.test('a large file, plain and gzip, CSV and JSON Lines: bad lines anywhere are rejected at their lines; multi-byte characters are read whole', async (t) => {
  const next = rng(17);
  // Keys of 2-, 3- and 4-byte characters, so reads (256 KiB; 16 KiB from gunzip) split many of them.
  const alphabet = ['\u00e9', '\u20ac', '\u{1d11e}', 'k', '\u4e2d'];
  const rows: { key: string; x: number[]; bad: boolean }[] = [];
  for (let i = 0; i < 12000; i++) {
    const key = `${i}-${Array.from({ length: 4 + Math.floor(next() * 30) }, () => alphabet[Math.floor(next() * alphabet.length)]).join('')}`;
    rows.push({ key, x: [i % 100, 1, 2, 3], bad: next() < 0.01 });
  }
  const badBytes = [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]];
  // A bad row's key ends in bytes that are not UTF-8 (cut off, a surrogate, past U+10FFFF, never valid).
  const keyBytes = (r: { key: string; bad: boolean }, i: number) => (r.bad ? Buffer.concat([Buffer.from(r.key), Buffer.from(badBytes[i % badBytes.length]!)]) : Buffer.from(r.key));
  const csv = Buffer.concat([Buffer.from('id,f0,f1,f2,f3\n'), ...rows.flatMap((r, i) => [keyBytes(r, i), Buffer.from(`,${r.x.join(',')}\n`)])]);
  const jsonl = Buffer.concat(rows.flatMap((r, i) => [Buffer.from('{"id":"'), keyBytes(r, i), Buffer.from(`","x":[${r.x.join(',')}]}\n`)]));
  const badLines = (first: number) => rows.flatMap((r, i) => (r.bad ? [first + i] : []));
  for (const [name, bytes, firstLine] of [['big.csv', csv, 2], ['big.csv.gz', gzipSync(csv), 2], ['big.jsonl', jsonl, 1], ['big.jsonl.gz', gzipSync(jsonl), 1]] as const) {
    const { summary, store, rejects } = await job(t, bytes, name);
    t.same([rejects.map((r) => r.line), rejects.every((r) => r.reason.includes('is not UTF-8 text'))], [badLines(firstLine), true], `${name}: each bad line rejected, at its line`);
    const good = rows.filter((r) => !r.bad);
    const stored = property(`${name}: every good row stored under its own key`);
    for (const r of good) stored.same(await storedX(store, r.key), r.x, () => r.key);
    stored.assert(t);
    t.equal(summary.rowsStored, good.length);
  }
});

t.test('at the boundary between two reads: a character split by it is whole, a byte that is not UTF-8 just past it is a reject', async (t) => {
  const READ = 256 * 1024; // reader.ts's read size
  /** `head`, then rows that end just before `at`, then `tail`'s bytes from `at` on; the rows' keys. */
  const around = (head: string, row: (i: number) => string, at: number, tail: Buffer) => {
    const parts = [Buffer.from(head)];
    let length = parts[0]!.length;
    const keys: string[] = [];
    for (let i = 0; length + Buffer.byteLength(row(i)) < at - 40; i++) {
      parts.push(Buffer.from(row(i)));
      length += parts[parts.length - 1]!.length;
      keys.push(`k${i}`);
    }
    // One more row, padded so the next line starts 10 bytes before `at`.
    const pad = 'p'.repeat(at - 10 - length - Buffer.byteLength(row(0)));
    parts.push(Buffer.from(row(0).replace('k0', `k0${pad}`)));
    keys.push(`k0${pad}`);
    return { bytes: Buffer.concat([...parts, tail]), keys };
  };
  // The straddling line's 10th and 11th bytes are the last of one read and the first of the next:
  // 'é' split in two, or 'X' and then 0xE9 (Latin-1's 'é') starting the next read.
  const cases = [
    { name: 'split.csv', head: 'id,f0,f1,f2,f3\n', row: (i: number) => `k${i},1,2,3,4\n`, tail: Buffer.concat([Buffer.from('straddle-\u00e9,1,2,3,4\nafter,5,6,7,8\n')]), bad: false },
    { name: 'bad.csv', head: 'id,f0,f1,f2,f3\n', row: (i: number) => `k${i},1,2,3,4\n`, tail: Buffer.concat([latin1('straddle-X\u00e9,1,2,3,4\n'), Buffer.from('after,5,6,7,8\n')]), bad: true },
    { name: 'split.jsonl', head: '', row: (i: number) => `{"id":"k${i}","x":[1,2,3,4]}\n`, tail: Buffer.from('{"id":"ab\u00e9-straddle","x":[1,2,3,4]}\n{"id":"after","x":[5,6,7,8]}\n'), bad: false },
    { name: 'bad.jsonl', head: '', row: (i: number) => `{"id":"k${i}","x":[1,2,3,4]}\n`, tail: Buffer.concat([latin1('{"id":"abX\u00e9-straddle","x":[1,2,3,4]}\n'), Buffer.from('{"id":"after","x":[5,6,7,8]}\n')]), bad: true },
  ];
  const seen = property('the straddling line is stored or rejected as its bytes say, and every other row is stored');
  for (const c of cases) {
    const { bytes, keys } = around(c.head, c.row, READ, c.tail);
    const boundary = bytes.subarray(READ - 1, READ + 1);
    const { summary, store, rejects } = await job(t, bytes, c.name);
    const line = keys.length + (c.head === '' ? 1 : 2);
    const straddling = c.name.endsWith('csv') ? 'straddle-\u00e9' : 'ab\u00e9-straddle';
    seen.same({
      boundary: boundary.toString('hex'),
      rejects: rejects.map((r) => [r.line, r.reason.includes(`line ${line} is not UTF-8 text`)]),
      stored: summary.rowsStored,
      straddling: c.bad ? undefined : await storedX(store, straddling),
      after: await storedX(store, 'after'),
    }, {
      boundary: c.bad ? '58e9' : 'c3a9',
      rejects: c.bad ? [[line, true]] : [],
      stored: keys.length + (c.bad ? 1 : 2),
      straddling: c.bad ? undefined : [1, 2, 3, 4],
      after: [5, 6, 7, 8],
    }, () => c.name);
  }
  seen.assert(t);
});

t.test('firstInvalidUtf8 finds the first byte where no UTF-8 character starts, as a strict decoder sees it', async (t) => {
  const next = rng(23);
  const strict = new TextDecoder('utf-8', { fatal: true });
  const valid = (bytes: Uint8Array) => {
    try {
      strict.decode(bytes);
      return true;
    } catch {
      return false;
    }
  };
  const agrees = property('the prefix before it decodes, and no character of 1 to 4 bytes starts at it');
  // Bytes around the lead and continuation ranges' edges, mixed with ASCII and valid characters.
  const edges = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff];
  for (let n = 0; n < 20000; n++) {
    const parts: number[] = [];
    const length = 1 + Math.floor(next() * 8);
    for (let i = 0; i < length; i++) {
      if (next() < 0.3) parts.push(...Buffer.from(['\u00e9', '\u20ac', '\u{1f600}', 'a'][Math.floor(next() * 4)]!));
      else parts.push(edges[Math.floor(next() * edges.length)]!);
    }
    const bytes = Uint8Array.from(parts);
    const at = firstInvalidUtf8(bytes, 0, bytes.length);
    const whole = valid(bytes);
    const startsOne = [1, 2, 3, 4].some((k) => at + k <= bytes.length && valid(bytes.subarray(at, at + k)));
    agrees.check(whole ? at === bytes.length : at < bytes.length && valid(bytes.subarray(0, at)) && !startsOne, () => `${Buffer.from(bytes).toString('hex')}: ${at}`);
  }
  agrees.assert(t);
});
