// Batch prediction end to end (read CSV, infer on the Umbra worker pool, store) against the
// honest peer: onnxruntime-node in-process on the same rows, already parsed in memory, in batches
// of the same size. Rounds interleave the contenders so machine noise hits all of them alike.
//
// Usage: node bench/batch.mjs [--model wide|digits] [--rows N] [--batch-size B] [--workers W]
//                             [--rounds R] [--pg postgres://...] [--json]
// Needs `npx tsc -p tsconfig.json` first (imports dist/). PostgreSQL is measured when --pg,
// UMBRA_BENCH_PG_URL or UMBRA_TEST_PG_URL names a server (a scratch database is created and dropped).
import * as ort from 'onnxruntime-node';
import pg from 'pg';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { createReadStream, mkdtempSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Umbra } from '../dist/core/umbra.js';
import { openStore, runBatchJob } from '../dist/batch/index.js';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const MODELS = { wide: { input: 'features', width: 256, rows: 40000 }, digits: { input: 'pixels', width: 64, rows: 100000 } };
const modelName = flag('model', 'wide');
const spec = MODELS[modelName];
if (!spec) throw new Error(`--model: one of ${Object.keys(MODELS).join(', ')}`);
const rows = Number(flag('rows', spec.rows));
const batchSize = Number(flag('batch-size', 512));
const workers = Number(flag('workers', availableParallelism()));
const rounds = Number(flag('rounds', 3));
const pgUrl = flag('pg', process.env.UMBRA_BENCH_PG_URL ?? process.env.UMBRA_TEST_PG_URL);
const repository = new URL('../models/repository/', import.meta.url).pathname;
const modelPath = join(repository, modelName, '1', 'model.onnx');

// Seeded rows: digits pixels are integers 0..16, wide features 4-decimal floats in [-2, 2).
let seed = 20261126;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const dir = mkdtempSync(join(tmpdir(), 'umbra-bench-batch-'));
const csv = join(dir, 'input.csv');
const values = new Float32Array(rows * spec.width);
{
  const lines = [['id', ...Array.from({ length: spec.width }, (_, i) => `f${i}`)].join(',')];
  for (let r = 0; r < rows; r++) {
    const row = Array.from({ length: spec.width }, () => (modelName === 'digits' ? Math.floor(random() * 17) : Math.round((random() * 4 - 2) * 1e4) / 1e4));
    values.set(row, r * spec.width);
    lines.push(`key${r},${row.join(',')}`);
  }
  writeFileSync(csv, lines.join('\n') + '\n');
}

async function ortInProcess() {
  // Default session options: onnxruntime's own intra-op thread pool over every core.
  const session = await ort.InferenceSession.create(modelPath);
  const warm = new ort.Tensor('float32', values.slice(0, batchSize * spec.width), [batchSize, spec.width]);
  for (let i = 0; i < 5; i++) await session.run({ [spec.input]: warm });
  const start = performance.now();
  for (let r = 0; r < rows; r += batchSize) {
    const n = Math.min(batchSize, rows - r);
    await session.run({ [spec.input]: new ort.Tensor('float32', values.subarray(r * spec.width, (r + n) * spec.width), [n, spec.width]) });
  }
  const seconds = (performance.now() - start) / 1000;
  await session.release();
  return rows / seconds;
}

// The same work minus the store, as a plain script would do it: read the CSV line by line
// (split, Number), fill a batch, run it on one in-process session, next batch.
async function ortReadAndInfer() {
  const session = await ort.InferenceSession.create(modelPath);
  const start = performance.now();
  let batch = new Float32Array(batchSize * spec.width);
  let n = 0;
  let total = 0;
  const flush = async () => {
    await session.run({ [spec.input]: new ort.Tensor('float32', batch.subarray(0, n * spec.width), [n, spec.width]) });
    total += n;
    n = 0;
    batch = new Float32Array(batchSize * spec.width);
  };
  let header = true;
  for await (const line of createInterface({ input: createReadStream(csv, { highWaterMark: 256 * 1024 }), crlfDelay: Infinity })) {
    if (header) {
      header = false;
      continue;
    }
    const fields = line.split(',');
    for (let i = 1; i < fields.length; i++) batch[n * spec.width + i - 1] = Number(fields[i]);
    n += 1;
    if (n === batchSize) await flush();
  }
  if (n > 0) await flush();
  const seconds = (performance.now() - start) / 1000;
  await session.release();
  if (total !== rows) throw new Error(`read ${total} of ${rows} rows`);
  return rows / seconds;
}

const umbra = await Umbra.open({ repository, workers, loadAll: false });
await umbra.manager.load(modelName);

async function umbraBatch(storeUrl) {
  const store = await openStore(storeUrl);
  try {
    const start = performance.now();
    const summary = await runBatchJob({ umbra, model: modelName, version: '1', input: csv, keyColumn: 'id', store, batchSize, rejectsPath: join(dir, 'rejects.jsonl') });
    const seconds = (performance.now() - start) / 1000;
    if (summary.rowsStored !== rows) throw new Error(`stored ${summary.rowsStored} of ${rows} rows`);
    return rows / seconds;
  } finally {
    await store.close();
  }
}

async function scratchDatabase() {
  const name = `umbra_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(pgUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: pgUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

const results = { ort: [], ortRead: [], sqlite: [], postgres: [] };
try {
  for (let round = 0; round < rounds; round++) {
    results.ort.push(await ortInProcess());
    results.ortRead.push(await ortReadAndInfer());
    const db = join(dir, `round${round}.db`);
    results.sqlite.push(await umbraBatch(`sqlite:${db}`));
    rmSync(db, { force: true });
    if (pgUrl) {
      const scratch = await scratchDatabase();
      try {
        results.postgres.push(await umbraBatch(scratch.url));
      } finally {
        await scratch.drop();
      }
    }
    process.stderr.write(`round ${round + 1}/${rounds}: ort ${results.ort.at(-1).toFixed(0)}, ort+read ${results.ortRead.at(-1).toFixed(0)}, sqlite ${results.sqlite.at(-1).toFixed(0)}${pgUrl ? `, postgres ${results.postgres.at(-1).toFixed(0)}` : ''} rows/s\n`);
  }
} finally {
  await umbra.close();
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = {
  date: new Date().toISOString(),
  command: `node bench/batch.mjs ${args.join(' ')}`.trim(),
  machine: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`,
  loadAverageAtEnd: loadavg().map((x) => Number(x.toFixed(2))),
  model: modelName, rows, batchSize, workers, rounds, inputMiB: statSync(csv, { throwIfNoEntry: false })?.size,
  rowsPerSecond: {
    ortInProcess: median(results.ort),
    ortReadAndInfer: median(results.ortRead),
    umbraSqlite: median(results.sqlite),
    umbraPostgres: pgUrl ? median(results.postgres) : null,
  },
  all: results,
};
summary.sqliteShareOfOrt = summary.rowsPerSecond.umbraSqlite / summary.rowsPerSecond.ortInProcess;
if (args.includes('--json')) {
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
} else {
  const r = summary.rowsPerSecond;
  process.stderr.write(`load average ${summary.loadAverageAtEnd.join(', ')}; all rounds ${JSON.stringify(results)}\n`);
  process.stdout.write(`| ${modelName} | ${rows} | ${batchSize} | ${workers} | ${r.ortInProcess.toFixed(0)} | ${r.ortReadAndInfer.toFixed(0)} | ${r.umbraSqlite.toFixed(0)} (${(100 * summary.sqliteShareOfOrt).toFixed(0)}%) | ${r.umbraPostgres ? `${r.umbraPostgres.toFixed(0)} (${(100 * r.umbraPostgres / r.ortInProcess).toFixed(0)}%)` : 'not run'} |\n`);
}
