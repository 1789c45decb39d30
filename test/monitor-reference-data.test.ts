// `umbra profile --data`: data that holds no features is named as such, with what it takes.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readReferenceData } from '../dist/monitor/reference-data.js';

t.test('reference data with no numeric column is named as such', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-refdata-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'request.json');
  // An inference request saved as a file: one object, no feature columns.
  writeFileSync(file, JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }));
  await t.rejects(readReferenceData(file), { message: `${file}: its first row has no numeric column (columns: inputs[0]); give rows of features: CSV with a header, JSON Lines of flat objects (arrays are flattened), or Parquet` });
});
