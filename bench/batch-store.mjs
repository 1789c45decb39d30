// The PostgreSQL store's write path alone: the server's CPU per stored row (all its processes,
// the backends that ended included) and the writer's own, for each table layout and write path,
// on the outputs of the batch bench's MLP (10 FP32 scores per row, formatted as the job formats
// them), 1024 rows and their checkpoint per commit, a fresh database per measurement.
//
//   legacy: the table as stores created before hold it (jsonb outputs, the locale's collation)
//   new:    as new stores create it (json outputs, COLLATE "C" names)
//   copy:   batches by COPY (the store's default); upsert: the first key is stored beforehand,
//           so the first batch meets it and the job goes on by upserts (the path of a rerun)
//
// Usage: node bench/batch-store.mjs [--rows N] [--rounds R] [--pg URL]   (needs `npx tsc` first)
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { openStore } from '../dist/batch/index.js';
import { rowsOf } from '../dist/batch/committer.js';
import { seededRandom } from '../dist/random.js';
import { postgresTicks, TICKS_PER_SECOND } from './postgres-cpu.mjs';
import { median } from './rotating-windows.mjs';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const BATCH = 1024;
const rows = Math.ceil(Number(flag('rows', 180000)) / BATCH) * BATCH;
const rounds = Number(flag('rounds', 2));
const pgUrl = flag('pg', process.env.UMBRA_BENCH_PG_URL ?? process.env.UMBRA_TEST_PG_URL);
if (!pgUrl) throw new Error('--pg URL (or UMBRA_TEST_PG_URL) names the PostgreSQL server to measure');

const LEGACY_TABLE = `CREATE TABLE predictions (model text NOT NULL, version text NOT NULL, key text NOT NULL,
  outputs jsonb NOT NULL, computed_at timestamptz NOT NULL, UNIQUE (model, key, version))`;

const random = seededRandom(28);
const batches = Array.from({ length: rows / BATCH }, (_, b) => ({
  seq: b,
  keys: Array.from({ length: BATCH }, (_, i) => `key${b * BATCH + i}`),
  outputs: [{ name: 'scores', datatype: 'FP32', shape: [BATCH, 10], data: Float32Array.from({ length: BATCH * 10 }, () => random() * 20 - 10) }],
  rejects: [],
  recordsDone: (b + 1) * BATCH,
  final: b === rows / BATCH - 1,
}));

async function measure(layout, path) {
  const name = `umbra_bench_store_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(pgUrl);
  url.pathname = `/${name}`;
  try {
    if (layout === 'legacy') {
      const c = new pg.Client({ connectionString: url.toString() });
      await c.connect();
      await c.query(LEGACY_TABLE);
      await c.end();
    }
    const store = await openStore(url.toString());
    if (path === 'upsert') await store.commit('mlp', '1', rowsOf(batches[0]).slice(0, 1), new Date(), checkpoint(0, true));
    const serverBefore = postgresTicks();
    const cpu = process.cpuUsage();
    const start = performance.now();
    for (const batch of batches) await store.commit('mlp', '1', rowsOf(batch), new Date(), checkpoint(batch.recordsDone, batch.final));
    const seconds = (performance.now() - start) / 1000;
    const used = process.cpuUsage(cpu);
    const stored = await store.count('mlp', '1');
    await store.close();
    if (stored !== rows) throw new Error(`stored ${stored} of ${rows} rows`);
    // Background work the rows caused (WAL writer, checkpointer) lands within moments.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const server = ((postgresTicks() - serverBefore) / TICKS_PER_SECOND) * 1e6 / rows;
    return { server, writer: (used.user + used.system) / rows, rowsPerSecond: rows / seconds };
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

function checkpoint(recordsDone, finished) {
  return { job: 'bench', model: 'mlp', version: '1', input: 'bench.csv', shard: '', batchSize: BATCH, recordsDone, rejectBytes: 0, rowsStored: recordsDone, rejected: 0, finished };
}

const contenders = [['legacy', 'upsert'], ['new', 'upsert'], ['legacy', 'copy'], ['new', 'copy']];
const results = Object.fromEntries(contenders.map(([l, p]) => [`${l} ${p}`, []]));
for (let round = 0; round < rounds; round++) {
  const load = loadavg()[0].toFixed(2);
  for (let i = 0; i < contenders.length; i++) {
    const [layout, path] = contenders[(i + round) % contenders.length];
    const r = await measure(layout, path);
    results[`${layout} ${path}`].push(r);
    process.stderr.write(`round ${round + 1} (load ${load}): ${layout} ${path}: server ${r.server.toFixed(1)} µs/row, writer ${r.writer.toFixed(1)} µs/row, ${Math.round(r.rowsPerSecond)} rows/s\n`);
  }
}
process.stdout.write(`| table, path | PostgreSQL server CPU, µs/row | writer CPU (rows formed + store client), µs/row | rows/s |\n|---|---:|---:|---:|\n`);
for (const [key, rs] of Object.entries(results)) {
  process.stdout.write(`| ${key} | ${median(rs.map((r) => r.server)).toFixed(1)} (${rs.map((r) => r.server.toFixed(1)).join(', ')}) | ${median(rs.map((r) => r.writer)).toFixed(1)} | ${Math.round(median(rs.map((r) => r.rowsPerSecond)))} |\n`);
}
