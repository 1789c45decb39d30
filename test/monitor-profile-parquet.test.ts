// `umbra profile --data` on Parquet: the training data as pandas or Spark would hand it over gives
// the same reference profile as the same rows in CSV, both as 64 pixel columns and as one list
// column of 64 (flattened in order, as JSON Lines arrays are).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { BIN, ROOT } from './helpers/cli-process.js';

const dir = mkdtempSync(join(tmpdir(), 'umbra-profile-parquet-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const lines = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').trim().split(/\r?\n/);
const header = lines[0]!.split(',');
const rows = lines.slice(1).map((l) => l.split(','));
const pixels = header.filter((h) => /^f\d+$/.test(h));
const column = (name: string) => rows.map((r) => r[header.indexOf(name)]!);

/** `umbra profile` of the digits model from `data`: the profile written, without the source it names. */
function profile(data: string, extra: string[] = []): Record<string, unknown> {
  const out = join(dir, `${Math.random().toString(36).slice(2)}.json`);
  const r = spawnSync(process.execPath, [BIN, 'profile', '--repo', join(ROOT, 'models/repository'), '--model', 'digits', '--data', data, '--where', 'split=train', '--out', out, ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`umbra profile --data ${data} failed: ${r.stderr}`);
  const { source: _source, createdAt: _created, created_at: _created2, ...rest } = JSON.parse(readFileSync(out, 'utf8'));
  return rest;
}

t.test('a Parquet file gives the profile its CSV gives', async (t) => {
  const fromCsv = profile(join(ROOT, 'models/digits.csv'));
  const wide = join(dir, 'digits.parquet');
  writeFileSync(wide, Buffer.from(parquetWriteBuffer({
    columnData: [
      ...pixels.map((p) => ({ name: p, data: column(p).map((v) => BigInt(v)), type: 'INT64' as const })),
      { name: 'label', data: column('label').map(Number), type: 'INT32' as const },
      { name: 'split', data: column('split'), type: 'STRING' as const },
    ],
    rowGroupSize: 500,
  })));
  t.same(profile(wide), fromCsv, '64 int64 pixel columns (pandas\' integer columns), several row groups');
  const list = join(dir, 'digits-list.data');
  writeFileSync(list, Buffer.from(parquetWriteBuffer({
    columnData: [
      { name: 'pixels', data: rows.map((r) => pixels.map((p) => Number(r[header.indexOf(p)]))) },
      { name: 'label', data: column('label').map(Number), type: 'INT32' as const },
      { name: 'split', data: column('split'), type: 'STRING' as const },
    ],
  })));
  const byList = profile(list) as { inputs: { name: string }[] };
  t.same(byList.inputs.map((c) => ({ ...c, name: undefined })), (fromCsv as typeof byList).inputs.map((c) => ({ ...c, name: undefined })), 'one list column, whatever the file is called: the same columns, named pixels[i]');
  t.same(byList.inputs.slice(0, 2).map((c) => c.name), ['pixels[0]', 'pixels[1]']);
});
