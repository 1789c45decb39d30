// Batch prediction end to end, as a user runs it: `umbra batch` (the CLI, a child process) reads a
// CSV, infers on the worker pool and stores into SQLite and into PostgreSQL, against the honest
// peer: onnxruntime-node in-process on the same rows, already parsed in memory, at its best
// setting (intra-op threads and batch size: a sweep, then its leading settings again in every
// round, the fastest kept), and a plain script that reads the CSV and infers (no store). Rounds interleave the contenders, in a rotating order,
// so machine noise hits all of them alike; each measurement records how busy the rest of the
// host was meanwhile.
//
// Models: `mlp` (default), a 64-1024-1024-10 MLP exported from PyTorch by bench/export_mlp_torch.py
// (Debian's python3-torch; without it the same widths from Umbra's own builder, and the results
// say so), over 180 000 rows of 64 features; `heavy` (1024-4096-4096-10, built here), `wide` and
// `digits` (models/repository) as before.
//
// Usage: node bench/batch.mjs [--models mlp,heavy,wide,digits] [--rows N] [--rounds R] [--pg URL]
//                             [--parse-workers N] [--also-batch-size B] [--baseline DIR] [--quick] [--json]
// --also-batch-size adds `umbra batch --batch-size B` into SQLite as one more contender (the
// evidence for the default batch size); --baseline DIR adds the `umbra batch` of another build
// (DIR/bin/umbra.js, e.g. `git archive` of an earlier commit, built) into SQLite: before and after
// in the same run.
// Needs `npx tsc -p tsconfig.json` first. PostgreSQL is measured when --pg, UMBRA_BENCH_PG_URL or
// UMBRA_TEST_PG_URL names a server (a scratch database is created and dropped per round).
import * as ort from 'onnxruntime-node';
import pg from 'pg';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { mlpModel } from '../dist/onnx/build-examples.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { seededRandom } from '../dist/random.js';
import { postgresTicks } from './postgres-cpu.mjs';
import { median } from './rotating-windows.mjs';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const quick = args.includes('--quick');
const ROOT = new URL('..', import.meta.url).pathname;
const CLI = join(ROOT, 'bin', 'umbra.js');
const MODELS = {
  mlp: { input: 'features', width: 64, rows: quick ? 20000 : 180000, integers: false, layers: [64, 1024, 1024, 10], torch: true, about: '64-1024-1024-10 MLP exported from PyTorch' },
  heavy: { input: 'features', width: 1024, rows: quick ? 2000 : 12000, integers: false, layers: [1024, 4096, 4096, 10], about: '1024-4096-4096-10 MLP, built at bench time' },
  wide: { input: 'features', width: 256, rows: quick ? 10000 : 40000, integers: false, repository: true, about: '256-512-512-10 MLP' },
  digits: { input: 'pixels', width: 64, rows: quick ? 25000 : 100000, integers: true, repository: true, about: '64-32-10 MLP' },
};
const modelNames = flag('models', 'mlp').split(',');
for (const m of modelNames) if (!MODELS[m]) throw new Error(`--models: each one of ${Object.keys(MODELS).join(', ')}`);
const cores = availableParallelism();
const rounds = Number(flag('rounds', quick ? 1 : 5));
const parseWorkers = flag('parse-workers');
const alsoBatchSize = flag('also-batch-size');
const baseline = flag('baseline');
const pgUrl = flag('pg', process.env.UMBRA_BENCH_PG_URL ?? process.env.UMBRA_TEST_PG_URL);
const sweepSeconds = quick ? 0.15 : 0.6;
const dir = mkdtempSync(join(tmpdir(), 'umbra-bench-batch-'));
const log = (line) => process.stderr.write(`${line}\n`);

/** The model file and where it came from: a PyTorch export when PyTorch is installed. */
function buildModel(name, spec, repository) {
  const target = join(repository, name, '1', 'model.onnx');
  mkdirSync(join(repository, name, '1'), { recursive: true });
  if (spec.torch) {
    const exported = spawnSync('/usr/bin/python3', [join(ROOT, 'bench', 'export_mlp_torch.py'), target, '--widths', spec.layers.join(',')], { encoding: 'utf8' });
    if (exported.status === 0) return 'PyTorch (torch.onnx.export, bench/export_mlp_torch.py)';
    log(`${name}: PyTorch export failed (${(exported.stderr || exported.error?.message || '').trim().split('\n').pop()}); building the same widths with Umbra's builder`);
  }
  writeModel(mlpModel(spec.layers, 4096, `mlp_${spec.layers.join('_')}`), target);
  return "Umbra's ONNX builder (src/onnx/build-examples.ts mlpModel, seeded)";
}

/** Seeded rows: integers 0..16 (digits) or 4-decimal floats in [-2, 2); the CSV and the same values in memory. */
function writeInput(name, spec, rows) {
  const random = seededRandom(20261126);
  const csv = join(dir, `${name}.csv`);
  const values = new Float32Array(rows * spec.width);
  const lines = [['id', ...Array.from({ length: spec.width }, (_, i) => `f${i}`)].join(',')];
  const row = new Array(spec.width);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < spec.width; i++) row[i] = spec.integers ? Math.floor(random() * 17) : Math.round((random() * 4 - 2) * 1e4) / 1e4;
    values.set(row, r * spec.width);
    lines.push(`key${r},${row.join(',')}`);
  }
  writeFileSync(csv, lines.join('\n') + '\n');
  return { csv, values };
}

/** Busy and total jiffies of the whole host, from /proc/stat (undefined off Linux). */
function hostTicks() {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = fields[3] + (fields[4] ?? 0);
    const total = fields.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}
const TICKS_PER_SECOND = 100;

/**
 * Wall time, the measured work's own CPU time (`ownCpuMicros()`), and how many cores everything
 * else on the host kept busy meanwhile: the noise each measurement ran in.
 */
function startClock() {
  const wall = performance.now();
  const ticks = hostTicks();
  return (rows, ownCpuMicros) => {
    const seconds = (performance.now() - wall) / 1000;
    const after = hostTicks();
    const hostCores = ticks && after ? (after.busy - ticks.busy) / TICKS_PER_SECOND / seconds : null;
    return {
      rowsPerSecond: rows / seconds,
      seconds,
      cpuMicrosPerRow: ownCpuMicros / rows,
      otherCores: hostCores === null ? null : Math.max(0, hostCores - ownCpuMicros / 1e6 / seconds),
    };
  };
}

const ortSession = (modelPath, threads) => ort.InferenceSession.create(modelPath, {
  intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
});

/** The peer at its best: every (intra-op threads, batch size) pair for a fixed time on rows in memory. */
async function sweepOrt(modelPath, spec, values, rows) {
  const results = [];
  for (const threads of [...new Set([1, cores])]) {
    const session = await ortSession(modelPath, threads);
    for (const batch of [64, 256, 1024, 4096]) {
      if (batch > rows) continue;
      const feed = (r) => ({ [spec.input]: new ort.Tensor('float32', values.subarray(r * spec.width, (r + batch) * spec.width), [batch, spec.width]) });
      await session.run(feed(0));
      let done = 0;
      let r = 0;
      const cpu = process.cpuUsage();
      const stop = startClock();
      const start = performance.now();
      while (performance.now() - start < sweepSeconds * 1000 || done < 2 * batch) {
        if (r + batch > rows) r = 0;
        await session.run(feed(r));
        r += batch;
        done += batch;
      }
      const used = process.cpuUsage(cpu);
      results.push({ threads, batch, ...stop(done, used.user + used.system) });
    }
    await session.release();
  }
  results.sort((a, b) => b.rowsPerSecond - a.rowsPerSecond);
  return results;
}

/** onnxruntime-node in-process: rows already parsed in memory, whole batches, one session. */
async function ortInProcess(modelPath, spec, values, rows, best) {
  const session = await ortSession(modelPath, best.threads);
  const warm = Math.min(best.batch, rows);
  await session.run({ [spec.input]: new ort.Tensor('float32', values.slice(0, warm * spec.width), [warm, spec.width]) });
  const cpu = process.cpuUsage();
  const stop = startClock();
  for (let r = 0; r < rows; r += best.batch) {
    const n = Math.min(best.batch, rows - r);
    await session.run({ [spec.input]: new ort.Tensor('float32', values.subarray(r * spec.width, (r + n) * spec.width), [n, spec.width]) });
  }
  const used = process.cpuUsage(cpu);
  const result = stop(rows, used.user + used.system);
  await session.release();
  return result;
}

// The same work minus the store, as a plain script would do it: read the CSV line by line
// (split, Number), fill a batch, run it on one in-process session, next batch.
async function ortReadAndInfer(modelPath, spec, csv, rows, best) {
  const session = await ortSession(modelPath, best.threads);
  const cpu = process.cpuUsage();
  const stop = startClock();
  let batch = new Float32Array(best.batch * spec.width);
  let n = 0;
  let total = 0;
  const flush = async () => {
    await session.run({ [spec.input]: new ort.Tensor('float32', batch.subarray(0, n * spec.width), [n, spec.width]) });
    total += n;
    n = 0;
    batch = new Float32Array(best.batch * spec.width);
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
    if (n === best.batch) await flush();
  }
  if (n > 0) await flush();
  const used = process.cpuUsage(cpu);
  const result = stop(rows, used.user + used.system);
  await session.release();
  if (total !== rows) throw new Error(`read ${total} of ${rows} rows`);
  return result;
}

/**
 * `umbra batch` exactly as a user runs it, in a child process with the CLI's defaults. The rate
 * is the job's own (its `done:` line: from opening the input to the last commit); the process
 * time (start-up, model load) is recorded beside it. The child's CPU comes from the shell's
 * `times` (all of the child's threads), its per-stage CPU from the job's `cpu per row:` line.
 */
function umbraBatch(name, repository, csv, rows, storeUrl, extra = [], cliPath = CLI) {
  const cli = ['batch', '--repo', repository, '--model', name, '--input', csv, '--key', 'id', '--store', storeUrl,
    '--rejects', join(dir, 'rejects.jsonl'), '--progress-interval', '60', ...extra];
  if (parseWorkers) cli.push('--parse-workers', parseWorkers);
  const stop = startClock();
  const child = spawn('bash', ['-c', '"$@"; rc=$?; times >&2; exit $rc', 'bash', process.execPath, cliPath, ...cli], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
  child.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
  return new Promise((resolve, reject) => child.on('close', (code) => {
    if (code !== 0) return reject(new Error(`umbra batch exited with ${code}: ${stderr}`));
    const done = /done: (\d+) rows stored .* rows in ([\d.]+)s \((\d+) rows\/s\)/.exec(stdout);
    if (!done || Number(done[1]) !== rows) return reject(new Error(`umbra batch stored ${done?.[1]} of ${rows} rows: ${stdout}`));
    const times = [...stderr.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
    const childCpu = times.length >= 4 ? (times[2] + times[3]) * 1e6 : Number.NaN;
    const process_ = stop(rows, childCpu);
    const stage = /cpu per row: read\+parse ([\d.]+) µs, dispatch ([\d.]+) µs, store ([\d.]+) µs, model workers and runtime ([\d.]+) µs \(total ([\d.]+) µs\)/.exec(stdout);
    resolve({
      rowsPerSecond: Number(done[3]),
      jobSeconds: Number(done[2]),
      processSeconds: process_.seconds,
      cpuMicrosPerRow: process_.cpuMicrosPerRow,
      otherCores: process_.otherCores,
      stages: stage ? { read: Number(stage[1]), dispatch: Number(stage[2]), store: Number(stage[3]), workers: Number(stage[4]), total: Number(stage[5]) } : null,
      command: `umbra ${cli.join(' ')}`,
    });
  }));
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

const TARGETS = { sqlite: 0.55, postgres: 0.5 };

async function benchModel(name) {
  const spec = MODELS[name];
  const rows = Number(flag('rows', spec.rows));
  let repository = join(ROOT, 'models', 'repository');
  let source = 'models/repository';
  if (!spec.repository) {
    repository = join(dir, 'repository');
    source = buildModel(name, spec, repository);
  }
  const modelPath = join(repository, name, '1', 'model.onnx');
  const { csv, values } = writeInput(name, spec, rows);
  const csvMiB = Number((statSync(csv).size / 2 ** 20).toFixed(1));
  log(`${name}: ${rows} rows, ${csvMiB} MiB of CSV, model from ${source}; sweeping onnxruntime's settings`);
  const sweep = await sweepOrt(modelPath, spec, values, rows);
  const best = sweep[0];
  const ortCandidates = sweep.filter((s, i) => i < 3 || (s.threads === cores && s.batch >= 256));
  log(`${name}: best in-process setting ${best.threads} intra-op thread(s), batch ${best.batch} (${sweep.map((s) => `${s.threads}t/${s.batch}: ${s.rowsPerSecond.toFixed(0)} rows/s ${s.cpuMicrosPerRow.toFixed(1)} us`).join(', ')})`);
  const contenders = {
    // The peer at its best in each round: a burst of other load during the short sweep can rank a
    // poor setting first (it once chose batch 64, 20% below batch 1024 on a quiet host), so every
    // round runs the sweep's top three and every all-core setting of batch 256 and up, and keeps
    // the fastest.
    ort: async () => {
      let fastest;
      for (const setting of ortCandidates) {
        const result = await ortInProcess(modelPath, spec, values, rows, setting);
        if (!fastest || result.rowsPerSecond > fastest.rowsPerSecond) fastest = { ...result, setting: `${setting.threads}t/${setting.batch}` };
      }
      return fastest;
    },
    ortScript: () => ortReadAndInfer(modelPath, spec, csv, rows, best),
    sqlite: () => umbraBatch(name, repository, csv, rows, `sqlite:${join(dir, `${name}-${randomBytes(3).toString('hex')}.db`)}`),
  };
  if (alsoBatchSize) contenders[`sqliteBatch${alsoBatchSize}`] = () => umbraBatch(name, repository, csv, rows, `sqlite:${join(dir, `${name}-${randomBytes(3).toString('hex')}.db`)}`, ['--batch-size', alsoBatchSize]);
  if (baseline) contenders.baseline = () => umbraBatch(name, repository, csv, rows, `sqlite:${join(dir, `${name}-${randomBytes(3).toString('hex')}.db`)}`, [], join(baseline, 'bin', 'umbra.js'));
  // The server's CPU per stored row is measured across the job (its backends and background
  // processes; the scratch database is created before and dropped after the clock).
  const intoPostgres = (cliPath) => async () => {
    const db = await scratchDatabase();
    try {
      const before = postgresTicks();
      const result = await umbraBatch(name, repository, csv, rows, db.url, [], cliPath);
      const after = postgresTicks();
      const serverCpuMicrosPerRow = before === undefined || after === undefined ? null : ((after - before) / TICKS_PER_SECOND) * 1e6 / rows;
      return { ...result, serverCpuMicrosPerRow };
    } finally {
      await db.drop();
    }
  };
  if (pgUrl) contenders.postgres = intoPostgres(CLI);
  if (pgUrl && baseline) contenders.baselinePostgres = intoPostgres(join(baseline, 'bin', 'umbra.js'));
  const names = Object.keys(contenders);
  const all = Object.fromEntries(names.map((k) => [k, []]));
  for (let round = 0; round < rounds; round++) {
    // A rotating order: no contender always runs first (cold caches) or last.
    const order = names.map((_, i) => names[(i + round) % names.length]);
    const load = loadavg()[0];
    for (const contender of order) {
      const result = await contenders[contender]();
      all[contender].push({ ...result, round, loadAverage: Number(load.toFixed(2)) });
      rmSync(join(dir, 'rejects.jsonl'), { force: true });
    }
    log(`${name} round ${round + 1}/${rounds} (load ${load.toFixed(1)}): ${names.map((k) => `${k}${all[k][round].setting ? ` (${all[k][round].setting})` : ''} ${Math.round(all[k][round].rowsPerSecond)} rows/s (others ${all[k][round].otherCores?.toFixed(2) ?? '?'} cores${all[k][round].serverCpuMicrosPerRow != null ? `, PostgreSQL server ${all[k][round].serverCpuMicrosPerRow.toFixed(1)} µs/row` : ''})`).join(', ')}`);
  }
  // Shares are medians of each round's ratio: both sides of a ratio ran seconds apart, so a burst
  // of load from elsewhere moves a round's pair together more than the medians of each.
  const shareOf = (what) => (all[what] ? median(all[what].map((v, i) => v.rowsPerSecond / all.ort[i].rowsPerSecond)) : null);
  const medianOf = (what, pick) => (all[what] ? median(all[what].map(pick)) : null);
  const stageMedians = (what) => (all[what]?.[0]?.stages ? Object.fromEntries(Object.keys(all[what][0].stages).map((k) => [k, median(all[what].map((v) => v.stages[k]))])) : null);
  const shares = Object.fromEntries(names.filter((k) => k !== 'ort').map((k) => [k, shareOf(k)]));
  return {
    model: name, about: spec.about, source, rows, csvMiB, ortBest: best, ortSweep: sweep, ortWinners: all.ort.map((v) => v.setting),
    rowsPerSecond: Object.fromEntries(names.map((k) => [k, medianOf(k, (v) => v.rowsPerSecond)])),
    cpuMicrosPerRow: Object.fromEntries(names.map((k) => [k, medianOf(k, (v) => v.cpuMicrosPerRow)])),
    otherCores: Object.fromEntries(names.map((k) => [k, medianOf(k, (v) => v.otherCores)])),
    processSeconds: { sqlite: medianOf('sqlite', (v) => v.processSeconds), postgres: medianOf('postgres', (v) => v.processSeconds) },
    postgresServerCpuMicrosPerRow: Object.fromEntries(names.filter((k) => all[k][0]?.serverCpuMicrosPerRow != null).map((k) => [k, medianOf(k, (v) => v.serverCpuMicrosPerRow)])),
    stages: Object.fromEntries(names.filter((k) => all[k][0]?.stages).map((k) => [k, stageMedians(k)])),
    shares,
    verdicts: Object.fromEntries(Object.entries(TARGETS).map(([k, target]) => [k, shares[k] === undefined || shares[k] === null ? 'not run' : shares[k] >= target ? `met (>= ${target})` : `missed (< ${target})`])),
    command: all.sqlite[0]?.command,
    all,
  };
}

const results = [];
try {
  for (const name of modelNames) results.push(await benchModel(name));
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const summary = {
  date: new Date().toISOString(),
  command: `node bench/batch.mjs ${args.join(' ')}`.trim(),
  machine: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, onnxruntime-node ${ort.env.versions?.common ?? ''}`,
  loadAverageAtEnd: loadavg().map((x) => Number(x.toFixed(2))),
  rounds, targets: TARGETS, results,
};
if (args.includes('--json')) {
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
} else {
  const n = (v) => (v === null || v === undefined ? 'not run' : Math.round(v).toLocaleString('en-US').replace(/,/g, ' '));
  const pct = (v) => (v === null || v === undefined ? '' : ` (${v.toFixed(2)})`);
  const us = (v) => (v === null || v === undefined ? '' : `, ${v.toFixed(1)} µs CPU/row`);
  process.stdout.write('| model | rows | ORT in-process, rows in memory (best setting) | ORT script: read CSV + infer | **umbra batch -> SQLite** | umbra batch -> PostgreSQL |\n|---|---:|---:|---:|---:|---:|\n');
  for (const r of results) {
    const m = r.rowsPerSecond;
    const c = r.cpuMicrosPerRow;
    process.stdout.write(`| ${r.model} (${r.about}) | ${r.rows} | ${n(m.ort)} (fastest setting per round: ${r.ortWinners.join(', ')}${us(c.ort)}) | ${n(m.ortScript)}${pct(r.shares.ortScript)}${us(c.ortScript)} | **${n(m.sqlite)}${pct(r.shares.sqlite)}**${us(c.sqlite)} | ${n(m.postgres)}${pct(r.shares.postgres)}${us(c.postgres)} |\n`);
  }
  process.stdout.write('\n| model | store | read+parse | dispatch | store | model workers and runtime | total (job) | whole process (times) |\n|---|---|---:|---:|---:|---:|---:|---:|\n');
  for (const r of results) {
    for (const store of Object.keys(r.stages)) {
      const s = r.stages[store];
      if (s) process.stdout.write(`| ${r.model} | ${store} | ${s.read} | ${s.dispatch} | ${s.store} | ${s.workers} | ${s.total} | ${r.cpuMicrosPerRow[store].toFixed(1)} |\n`);
    }
  }
  for (const r of results) {
    for (const [store, us] of Object.entries(r.postgresServerCpuMicrosPerRow)) process.stdout.write(`\n${r.model} ${store}: PostgreSQL server CPU ${us.toFixed(1)} µs per stored row (all its processes, median of rounds)\n`);
  }
  for (const r of results) log(`${r.model}: SQLite ${r.verdicts.sqlite}, PostgreSQL ${r.verdicts.postgres}; all rounds: ${JSON.stringify(Object.fromEntries(Object.entries(r.all).map(([k, v]) => [k, v.map((x) => Math.round(x.rowsPerSecond))])))}`);
  log(`load average at the end ${summary.loadAverageAtEnd.join(', ')}`);
}
