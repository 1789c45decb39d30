// Values a model input's datatype cannot hold are rejects, not rows predicted from something else:
// a number past FP32's (or FP16's) range would be stored as an infinity and predicted as NaN; an
// integer past its type's range as another integer. CSV numbers are decimal: Number() would read
// 0x10 as 16.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { openStore, runBatchJob } from '../dist/batch/index.js';
import { buildModel } from '../dist/onnx/builder.js';
import type { DataType } from '../dist/protocol/types.js';
import { batchFixture, readRejects } from './helpers/batch.js';
import { textScoreModel } from './helpers/repo.js';
import { property } from './helpers/property.js';

/** y = x over [-1, 2] of `datatype`. */
const identity = (datatype: DataType) => buildModel({
  inputs: [{ name: 'x', datatype, dims: ['batch', 2] }],
  outputs: [{ name: 'y', datatype, dims: ['batch', 2] }],
  nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
});

const { umbra, path } = await batchFixture('umbra-batch-values-', (repo) => {
  repo.addVersion('half', 1, identity('FP16'));
  repo.addVersion('int32', 1, identity('INT32'));
  repo.addVersion('int8', 1, identity('INT8'));
  repo.addVersion('uint64', 1, identity('UINT64'));
  repo.addVersion('text', 1, textScoreModel());
});

async function job(t: Tap.Test, model: string, text: string, name = 'in.csv') {
  const input = path(name);
  writeFileSync(input, text);
  const rejectsPath = path('rejects.jsonl');
  const store = await openStore(`sqlite:${path('p.db')}`);
  t.teardown(() => store.close());
  const summary = await runBatchJob({ umbra, model, input, keyColumn: 'id', store, rejectsPath, batchSize: 16 });
  const stored = async (key: string) => (await store.get(model, '1', key))?.outputs[0]?.data;
  return { summary, stored, rejects: readRejects(rejectsPath) };
}

const FP32_RANGE = "expected a number within the FP32 range (at most 3.4028235e38 in magnitude) for column 'f0' but received";

t.test('FP32: a number past its range is a reject, read from a plain CSV line, a quoted one, or JSON Lines', async (t) => {
  // 2^128 - 2^103 is the smallest magnitude FP32 rounds to infinity; FP32's largest (2^128 - 2^104) fits.
  const overflow = (2n ** 128n - 2n ** 103n).toString();
  const largest = (2n ** 128n - 2n ** 104n).toString();
  const csv = await job(t, 'affine', ['id,f0,f1,f2,f3', 'a,1e39,1,1,1', 'b,3.5e38,1,1,1', 'c,-1e300,1,1,1', `d,${overflow},1,1,1`,
    '"e",1e39,1,1,1', `ok,${largest},-3.4028234e38,1e-50,0`].join('\n'));
  t.same(csv.rejects, [
    { line: 2, key: 'a', reason: `${FP32_RANGE} the string "1e39"` },
    { line: 3, key: 'b', reason: `${FP32_RANGE} the string "3.5e38"` },
    { line: 4, key: 'c', reason: `${FP32_RANGE} the string "-1e300"` },
    { line: 5, key: 'd', reason: `${FP32_RANGE} the string "${overflow}"` },
    { line: 6, key: 'e', reason: `${FP32_RANGE} the string "1e39"` },
  ]);
  // y = 2x + 1: FP32's largest doubled is an infinity, which the model made, not the input.
  t.same([csv.summary.rowsStored, await csv.stored('ok')], [1, ['Infinity', '-Infinity', 1, 1]], 'a number FP32 holds is taken');
  const jsonl = await job(t, 'affine', ['{"id":"a","x":[1e39,1,1,1]}', '{"id":"b","x":[1,1,1,1]}', '{"id":"c","x":[1,1,1,-3.5e38]}'].join('\n'), 'in.jsonl');
  t.same(jsonl.rejects.map((r) => [r.line, r.reason]), [[1, "expected a number within the FP32 range (at most 3.4028235e38 in magnitude) for column 'x' but received number 1e+39"],
    [3, "expected a number within the FP32 range (at most 3.4028235e38 in magnitude) for column 'x' but received number -3.5e+38"]]);
});

t.test('FP16: a number past its range is a reject; integer inputs refuse integers past theirs', async (t) => {
  const half = await job(t, 'half', ['id,x_0,x_1', 'a,65520,1', 'b,-1e6,1', 'ok,65504,-65519'].join('\n'));
  t.same(half.rejects.map((r) => [r.line, r.reason]), [
    [2, 'expected a number within the FP16 range (at most 65504 in magnitude) for column \'x_0\' but received the string "65520"'],
    [3, 'expected a number within the FP16 range (at most 65504 in magnitude) for column \'x_0\' but received the string "-1e6"'],
  ]);
  t.same([half.summary.rowsStored, await half.stored('ok')], [1, [65504, -65504]], '65519 rounds to FP16\'s largest');
  const ranges = property('an integer past its type\'s range is a reject; one in range is stored');
  for (const [model, over, within] of [['int32', '2147483648', '-2147483648'], ['int8', '-129', '127'], ['uint64', '18446744073709551616', '18446744073709551615']] as const) {
    const { summary, rejects } = await job(t, model, ['id,x_0,x_1', `a,${over},0`, `b,0,${within}`].join('\n'));
    ranges.same([rejects.map((r) => r.line), summary.rowsStored], [[2], 1], () => model);
  }
  ranges.assert(t);
});

t.test('CSV numbers are decimal: hexadecimal, binary and octal literals are rejects', async (t) => {
  const { summary, rejects, stored } = await job(t, 'affine', ['id,f0,f1,f2,f3', 'a,0x10,1,1,1', 'b,"0b1",1,1,1', 'c,1,1,1, 0o7', 'd,010,1e1,.5,-0'].join('\n'));
  const why = (column: string, text: string) => `expected a finite number for column '${column}' but received the string "${text}" (numbers are read as decimals: hexadecimal, binary and octal literals are not)`;
  t.same(rejects.map((r) => [r.line, r.reason]), [[2, why('f0', '0x10')], [3, why('f0', '0b1')], [4, why('f3', ' 0o7')]]);
  t.same([summary.rowsStored, await stored('d')], [1, [21, 21, 2, 1]], 'decimal forms are read as before (010 is ten)');
});

t.test('BYTES: a NUL or an unpaired surrogate is a reject (the model would see a shortened or replaced string)', async (t) => {
  // JSON Lines carry both; "good\u0000x" reached the LabelEncoder as "good" (0.9) before.
  const lines = [
    { id: 'a', text: 'good' },
    { id: 'nul', text: 'good\u0000x' },
    { id: 'lone', text: 'bad\ud800' },
    { id: 'b', text: 'meh' },
  ].map((r) => JSON.stringify(r));
  const { summary, stored, rejects } = await job(t, 'text', lines.join('\n') + '\n', 'in.jsonl');
  t.same({ stored: summary.rowsStored, rejected: summary.rejected }, { stored: 2, rejected: 2 });
  t.same([await stored('a'), await stored('b')].map((d) => Array.from(d as number[], (v) => Math.round(v * 10) / 10)), [[0.9], [0.5]], 'the clean rows answered as sent');
  t.same(rejects.map((r) => r.line), [2, 3]);
  t.match(rejects[0]!.reason, /column 'text' holds a NUL character at character 4/);
  t.match(rejects[1]!.reason, /column 'text' holds an unpaired surrogate/);
});
