// Reading and writing rows at the byte level: numbers read straight from CSV lines equal
// Number(), lines across read boundaries, and each stored row's outputs as a response carries them.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { runBatchJob, openStore } from '../dist/batch/index.js';
import { allRows, batchFixture, checkAffine } from './helpers/batch.js';
import { rng, type Row } from './fixtures/batch/data.js';
import { property } from './helpers/property.js';

const { umbra, path } = await batchFixture('umbra-batch-reading-');

t.test('reading numbers straight from CSV lines agrees with Number() bit for bit on decimals', async (t) => {
  // firstBadColumn is a live binding: read it through the module namespace.
  const csvLine = await import('../dist/batch/csv-line.js');
  const { readFloatLine, lineLayout, fieldAt } = csvLine;
  const next = rng(31);
  const samples = ['0', '-0', '+5', '.5', '5.', '007', '0.000123', '-12.5000', '123456789012345', '0.1', '0.2', '16', '3.14159265358979',
    '1e5', '-2.5E-3', ' 7 ', '1234567890123456', '12345678901234567890', '0.00000000000000000000001'];
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
  const notNumbers = property('a field that is not a finite decimal number is the first bad column; the line still counts four columns and its numbers are written');
  // Number() reads 0x10 as 16, 0b1 as 1 and 0o7 as 7; a CSV field like that is no decimal number.
  for (const bad of ['', '-', '.', 'NaN', '1.2.3', 'abc', ' ', 'Infinity', '\u00b5', '0x10', '0X1f', '0b1', '0B1', '0o7', '0O7', ' 0x10 ']) {
    const count = read(`k,1,${bad},2`, lineLayout(4, [{ positions: [1, 2, 3] }]), out, 0);
    notNumbers.same([count, csvLine.firstBadColumn, out[0], out[2]], [4, 2, 1, 2], () => `'${bad}' (columns, first bad column, out[0], out[2])`);
  }
  notNumbers.assert(t);
  // Into FP32: a number past its range would be written as an infinity (and predicted as NaN).
  const fp32 = new Float32Array(4);
  const readFp32 = (field: string) => {
    const bytes = line(`k,1,${field},2`);
    readFloatLine(bytes, 1, bytes.length - 1, 44, lineLayout(4, [{ positions: [1, 2, 3] }])!, [fp32], Int32Array.of(0));
    return csvLine.firstBadColumn;
  };
  const range = property('into FP32, a number is a bad column exactly when FP32 cannot hold it');
  // 2^128 - 2^103 is the smallest magnitude that rounds to infinity; FP32's largest is 2^128 - 2^104.
  const overflow = (2n ** 128n - 2n ** 103n).toString();
  const largest = (2n ** 128n - 2n ** 104n).toString();
  for (const [field, bad] of [['1e39', true], ['3.5e38', true], ['-1e300', true], [overflow, true], [`-${overflow}`, true],
    ['3.4028234e38', false], [largest, false], [`-${largest}`, false], ['1e-50', false], ['123456789012345678', false]] as const) {
    range.same(readFp32(field), bad ? 2 : -1, () => `'${field}' (first bad column)`);
  }
  range.assert(t);
  t.equal(read('k,1,2,3,4,5', lineLayout(4, [{ positions: [1, 2, 3] }]), out, 0), 6, 'extra columns are counted, not written');
  t.equal(read('a,,bc,', lineLayout(1, [{ positions: [0] }]), out, 0), 4, 'empty fields count');
  t.equal(lineLayout(3, [{ positions: [1, 2] }, { positions: [2] }]), undefined, 'a column feeding two inputs has no layout');
  const bytes = line('a,,b\u00e9,');
  t.equal(fieldAt(bytes, 1, bytes.length - 1, 44, 2), 'b\u00e9', 'decoded as UTF-8');
  t.equal(fieldAt(bytes, 1, bytes.length - 1, 44, 3), '');
  t.equal(fieldAt(bytes, 1, bytes.length - 1, 44, 4), undefined);
  t.equal(fieldAt(new Uint8Array(bytes), 1, bytes.length - 1, 44, 2), 'b\u00e9', 'a plain Uint8Array too');
});

t.test('stored outputs: each row as a one-row response carries it, for every kind of tensor, with the addon\'s number formatter and without', async (t) => {
  const { outputsPerRow } = await import('../dist/batch/output-rows.js');
  const { useNativeJson } = await import('../dist/protocol/native-json.js');
  const next = rng(7);
  for (const [rows, native] of [[1, true], [2, false], [7, true], [300, true], [300, false]] as const) {
    useNativeJson(native);
    const outputs = [
      { name: 'p', datatype: 'FP32' as const, shape: [rows, 3], data: Float32Array.from({ length: rows * 3 }, (_, i) => (i % 5 === 4 ? Number.NaN : next() - 0.5)) },
      { name: 'label', datatype: 'INT64' as const, shape: [rows], data: BigInt64Array.from({ length: rows }, (_, i) => BigInt(i - 3)) },
      { name: 'flag', datatype: 'BOOL' as const, shape: [rows, 2], data: Uint8Array.from({ length: rows * 2 }, (_, i) => i % 3) },
      { name: 'text', datatype: 'BYTES' as const, shape: [rows, 1], data: Array.from({ length: rows }, (_, i) => `a,"b${i}"`) },
      { name: 'none', datatype: 'FP32' as const, shape: [rows, 0], data: new Float32Array(0) },
    ];
    const expected = Array.from({ length: rows }, (_, r) => JSON.stringify([
      // As a response carries them: NaN as the string "NaN".
      { name: 'p', datatype: 'FP32', shape: [1, 3], data: Array.from(outputs[0]!.data.subarray(r * 3, r * 3 + 3), (v) => (Number.isNaN(v) ? 'NaN' : v)) },
      { name: 'label', datatype: 'INT64', shape: [1], data: [r - 3] },
      { name: 'flag', datatype: 'BOOL', shape: [1, 2], data: [(2 * r) % 3 !== 0, (2 * r + 1) % 3 !== 0] },
      { name: 'text', datatype: 'BYTES', shape: [1, 1], data: [`a,"b${r}"`] },
      { name: 'none', datatype: 'FP32', shape: [1, 0], data: [] },
    ]));
    t.same(outputsPerRow(outputs, rows), expected, `${rows} rows, ${native ? 'the addon\'s' : 'V8\'s'} formatting`);
  }
  useNativeJson(true);
});

t.test('stored outputs of one floating-point output (made row by row in the addon): the server\'s formatting, read back to the same values', async (t) => {
  const { outputsPerRow } = await import('../dist/batch/output-rows.js');
  const { nativeJson, useNativeJson } = await import('../dist/protocol/native-json.js');
  const next = rng(11);
  const rows = 257;
  // Every float32 bit pattern class: random bits (subnormals, huge, tiny), and the non-finite ones.
  const bits = Uint32Array.from({ length: rows * 10 }, () => Math.floor(next() * 2 ** 32));
  const scores = new Float32Array(bits.buffer);
  scores.set([Number.NaN, Infinity, -Infinity, 0, 1e-45, 3.4028234663852886e38, 0.1], 0);
  const wide = Float64Array.from({ length: rows * 3 }, () => (next() - 0.5) * 10 ** Math.floor(next() * 40 - 20));
  const cases = [
    { name: 'scores', datatype: 'FP32' as const, shape: [rows, 10], data: scores },
    { name: 'ünïcödé "q"', datatype: 'FP64' as const, shape: [rows, 3], data: wide },
  ];
  for (const output of cases) {
    const perRow = output.shape[1]!;
    const row = (r: number) => output.data.subarray(r * perRow, (r + 1) * perRow);
    const head = `[{"name":${JSON.stringify(output.name)},"datatype":"${output.datatype}","shape":[1,${perRow}],"data":`;
    const values = Array.from({ length: rows }, (_, r) => Array.from(row(r), (v) => (Number.isFinite(v) ? v : String(v))));
    useNativeJson(true);
    const native = outputsPerRow([output], rows);
    t.same(native, Array.from({ length: rows }, (_, r) => `${head}${nativeJson()!.formatNumbersJson(row(r))}}]`),
      `${output.datatype}: each row as the server's formatter writes its values`);
    t.same(native.map((text) => JSON.parse(text)[0].data), values, `${output.datatype}: and reads back to the same values`);
    useNativeJson(false);
    t.same(outputsPerRow([output], rows).map((text) => JSON.parse(text)[0].data), values, `${output.datatype}: V8's formatting reads back the same`);
  }
  useNativeJson(true);
  t.same(outputsPerRow([cases[0]!], 0), [], 'no rows');
  const rowsJson = nativeJson()!.formatRowsJson!;
  t.throws(() => rowsJson(new Float32Array(5), 2, '', ''), /formatRowsJson: values must hold whole rows of perRow values/, 'a partial row is refused');
  t.throws(() => rowsJson(new Int32Array(4) as unknown as Float32Array, 2, '', ''), /formatRowsJson: values must be a Float32Array or Float64Array/, 'integers are refused');
});

t.test('CSV read as bytes: lines across read boundaries, blank lines, no final newline, UTF-8 keys, one reader thread or three alike', async (t) => {
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
  for (const parseWorkers of [1, 3]) {
    const store = await openStore(`sqlite:${path('bytes.db')}`);
    const summary = await runBatchJob({ umbra, model: 'affine', input, keyColumn: 'id', store, batchSize: 700, parseWorkers, rejectsPath: path('bytes.rejects.jsonl') });
    t.equal(summary.rowsStored, rows.length, `${parseWorkers} reader thread(s): every row stored`);
    t.equal(summary.rejected, 0);
    checkAffine(t, rows, await allRows(store, 'affine', rows.map((r) => r.key)));
    await store.close();
  }
});
