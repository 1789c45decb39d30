// Exactly once across crashes: the CLI job is SIGKILLed at random points (after a random number
// of stored rows, seen on its progress lines), rerun with --resume, and must end with the same
// table and the same reject file as an uninterrupted run. The input has broken quoting too, whose
// lines are read again after the record is given up: a resume must count records the same way.
// One trial does the same into PostgreSQL, whose rows go in by COPY.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { tempRepo, affineModel, externalWeightsModel } from './helpers/repo.js';
import { property } from './helpers/property.js';
import { makeRows, rng } from './fixtures/batch/data.js';
import { createTestDatabase, PG_SKIP_REASON } from './helpers/postgres.js';
import pg from 'pg';

const CLI = new URL('../bin/umbra.js', import.meta.url).pathname;
const repo = tempRepo();
repo.addVersion('affine', 1, affineModel(3, -2, 4));
const dir = mkdtempSync(join(tmpdir(), 'umbra-resume-'));
t.teardown(() => {
  repo.remove();
  rmSync(dir, { recursive: true, force: true });
});

const ROWS = 3000;
const rows = makeRows(ROWS, 4, 99);
const input = join(dir, 'input.csv');
{
  const lines = ['id,f0,f1,f2,f3'];
  rows.forEach((r, i) => {
    lines.push([r.key, ...r.x].join(','));
    // Bad rows spread through the file, so rejects are written before and after any kill point.
    if (i % 450 === 7) lines.push(`bad${i},1,oops,3,4`);
    // A stray quote; a quote that closes three rows later in a record of the wrong width (two
    // rejects: its first line, and the closing line read again on its own); a quote never closed.
    if (i === 1000) lines.push(`stray"quote${i},1,2,3,4`);
    if (i === 1500) lines.push(`"opens${i},1,2,3,4`);
    if (i === 1503) lines.push('closes",9');
    if (i === 2900) lines.push(`"never-closed${i},1,2,3,4`);
  });
  writeFileSync(input, lines.join('\n') + '\n');
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI into the SQLite file `db` (or the store URL `db`); with `killAt`, SIGKILLs it once a
 * progress line reports at least that many stored rows.
 */
function runCli(db: string, rejects: string, options: { resume?: boolean; killAt?: number; parseWorkers?: number } = {}): Promise<Run> {
  const store = db.startsWith('postgres://') ? db : `sqlite:${db}`;
  const args = [CLI, 'batch', '--repo', repo.dir, '--model', 'affine', '--input', input, '--key', 'id', '--store', store,
    '--batch-size', '20', '--workers', '2', '--progress-interval', '0', '--rejects', rejects];
  if (options.resume) args.push('--resume');
  if (options.parseWorkers !== undefined) args.push('--parse-workers', String(options.parseWorkers));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (options.killAt === undefined || child.killed) return;
    const stored = [...stdout.matchAll(/^stored (\d+) rows/gm)].map((m) => Number(m[1]));
    const reached = options.killAt === 0 ? stdout.includes('columns:') : stored.some((n) => n >= options.killAt!);
    if (reached) child.kill('SIGKILL');
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

/** `umbra batch` with `args`, to its end. */
function batchCli(args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [CLI, 'batch', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

function dump(db: string): { key: string; version: string; outputs: string }[] {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare('SELECT key, version, outputs FROM predictions ORDER BY key').all() as { key: string; version: string; outputs: string }[];
  } finally {
    conn.close();
  }
}

const clean = { db: join(dir, 'clean.db'), rejects: join(dir, 'clean.rejects.jsonl') };
const reference = await runCli(clean.db, clean.rejects);
const expected = dump(clean.db);
const expectedRejects = readFileSync(clean.rejects, 'utf8');

t.test('the uninterrupted run stores every key once with the right values', async (t) => {
  t.equal(reference.code, 0, reference.stderr);
  t.match(reference.stdout, /done: 3000 rows stored for affine v1, 11 rejected/);
  t.equal(expected.length, ROWS);
  const byKey = new Map(expected.map((r) => [r.key, JSON.parse(r.outputs)]));
  const values = property('the first 200 keys hold y = 3x - 2 of their row');
  for (const r of rows.slice(0, 200)) values.same(byKey.get(r.key)?.[0].data, r.x.map((v) => v * 3 - 2), () => `key ${r.key}`);
  values.assert(t);
  const rejected = expectedRejects.trim().split('\n').map((l) => JSON.parse(l) as { line: number; reason: string });
  t.equal(rejected.length, 11);
  t.same(rejected.filter((r) => r.reason.startsWith('malformed CSV quoting')).map((r) => r.line), [1006, 1508, 1512, 2913], 'each quoting error at the line where it is');
});

const random = rng(2024);
for (let trial = 1; trial <= 5; trial++) {
  // Trial 1 dies before anything is stored; trial 5 is killed twice (once while resuming).
  const first = trial === 1 ? 0 : Math.floor(random() * ROWS * 0.5);
  const second = trial === 5 ? first + 200 + Math.floor(random() * ROWS * 0.1) : undefined;
  t.test(`SIGKILL after ${first} stored rows${second ? ` and again after ${second}` : ''}, then --resume`, async (t) => {
    const db = join(dir, `trial${trial}.db`);
    const rejects = join(dir, `trial${trial}.rejects.jsonl`);
    // Odd trials read with two reader threads: the batches, and so the values, must not depend on it.
    const parseWorkers = 1 + (trial % 2);
    const killed = await runCli(db, rejects, { killAt: first, parseWorkers });
    t.equal(killed.signal, 'SIGKILL', 'the job was killed mid-run');
    if (second !== undefined) {
      const again = await runCli(db, rejects, { resume: true, killAt: second, parseWorkers: 3 - parseWorkers });
      t.equal(again.signal, 'SIGKILL', 'killed again while resuming');
    }
    const resumed = await runCli(db, rejects, { resume: true, parseWorkers });
    t.equal(resumed.code, 0, resumed.stderr);
    t.match(resumed.stdout, /done: 3000 rows stored for affine v1, 11 rejected/);
    if (first > 0) t.match(resumed.stdout, /resuming after record \d+/, 'continued from the checkpoint, not from the start');
    const got = dump(db);
    t.equal(got.length, ROWS, 'row count equals the input keys');
    t.equal(new Set(got.map((r) => r.key)).size, ROWS, 'no key twice');
    t.ok(got.every((r, i) => r.key === expected[i]!.key && r.version === expected[i]!.version && r.outputs === expected[i]!.outputs), 'identical values to the clean run');
    t.equal(existsSync(rejects) ? readFileSync(rejects, 'utf8') : '', expectedRejects, 'each reject listed once, as in the clean run');
  });
}

t.test('PostgreSQL (rows by COPY): SIGKILL twice, then --resume, gives the clean run\'s table and rejects', async (t) => {
  const db = await createTestDatabase();
  if (!db) return t.skip(PG_SKIP_REASON);
  t.teardown(() => db.drop());
  const rejects = join(dir, 'pg.rejects.jsonl');
  const first = 300 + Math.floor(random() * ROWS * 0.4);
  const killed = await runCli(db.url, rejects, { killAt: first });
  t.equal(killed.signal, 'SIGKILL', 'the job was killed mid-run');
  const again = await runCli(db.url, rejects, { resume: true, killAt: first + 600, parseWorkers: 2 });
  t.equal(again.signal, 'SIGKILL', 'killed again while resuming');
  const resumed = await runCli(db.url, rejects, { resume: true });
  t.equal(resumed.code, 0, resumed.stderr);
  t.match(resumed.stdout, /resuming after record \d+/, 'continued from the checkpoint, not from the start');
  t.match(resumed.stdout, /done: 3000 rows stored for affine v1, 11 rejected/);
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  const got = (await c.query<{ key: string; version: string; outputs: string }>('SELECT key, version, outputs::text AS outputs FROM predictions ORDER BY key')).rows;
  await c.end();
  t.equal(got.length, ROWS, 'row count equals the input keys');
  t.same(got.map((r) => r.key), expected.map((r) => r.key), 'each key once (bytewise order, as SQLite sorts)');
  t.ok(got.every((r, i) => r.version === expected[i]!.version && r.outputs === expected[i]!.outputs), 'the same JSON text as the clean SQLite run');
  t.equal(readFileSync(rejects, 'utf8'), expectedRejects, 'each reject listed once, as in the clean run');
});

t.test('--resume of a finished job does nothing', async (t) => {
  const run = await runCli(clean.db, clean.rejects, { resume: true });
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /job already finished earlier \(3000 rows stored, 11 rejected\)/);
  t.equal(readFileSync(clean.rejects, 'utf8'), expectedRejects);
});

t.test('CLI errors name the flag and the fix', async (t) => {
  const run = (args: string[]) => new Promise<Run>((resolve) => {
    const child = spawn(process.execPath, [CLI, 'batch', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  const badStore = await run(['--repo', repo.dir, '--model', 'affine', '--input', input, '--key', 'id', '--store', 'redis://x']);
  t.equal(badStore.code, 1);
  t.match(badStore.stderr, /umbra: unsupported store URL scheme 'redis:'/);
  const missing = await run(['--repo', repo.dir, '--model', 'affine', '--input', join(dir, 'nope.csv'), '--key', 'id', '--store', `sqlite:${join(dir, 'e.db')}`]);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /cannot read the input file .*nope\.csv \(--input\): no such file/);
  const shard = await run(['--repo', repo.dir, '--model', 'affine', '--input', input, '--key', 'id', '--shard', '5/4']);
  t.equal(shard.code, 2, 'a bad flag value is a usage error');
  t.match(shard.stderr, /expected I\/N with 1 <= I <= N \(e\.g\. 2\/4\) for --shard but received '5\/4'/);
  const noModel = await run(['--input', input, '--key', 'id']);
  t.equal(noModel.code, 2);
  t.match(noModel.stderr, /give the model with --repo DIR --model NAME, or --model-file FILE\.onnx/);
});

t.test('--model-file serves a single .onnx file from a temporary repository', async (t) => {
  const db = join(dir, 'file.db');
  const run = await batchCli(['--model-file', join(repo.dir, 'affine', '1', 'model.onnx'), '--model', 'affine', '--input', input,
    '--key', 'id', '--store', `sqlite:${db}`, '--rejects', join(dir, 'file.rejects.jsonl'), '--workers', '2']);
  t.equal(run.code, 0, run.stderr);
  const got = dump(db);
  t.same(got.map((r) => r.outputs), expected.map((r) => r.outputs));
});

t.test('--model-file takes the external data beside the file (model.onnx.data) with it', async (t) => {
  const folder = join(dir, 'export');
  mkdirSync(folder);
  const weights = externalWeightsModel(folder, 'exported.onnx', 'exported.onnx.data');
  const csv = join(dir, 'pairs.csv');
  writeFileSync(csv, 'id,x\nk1,"[1,2]"\nk2,"[-3,0.5]"\n');
  const db = join(dir, 'external.db');
  const run = await batchCli(['--model-file', join(folder, 'exported.onnx'), '--input', csv, '--key', 'id', '--store', `sqlite:${db}`, '--rejects', join(dir, 'external.rejects.jsonl')]);
  t.equal(run.code, 0, run.stderr);
  const stored = dump(db);
  const want = (x: number[]) => [0, 1, 2].map((c) => x[0]! * weights[c]! + x[1]! * weights[3 + c]!);
  t.same(stored.map((r) => [r.key, (JSON.parse(r.outputs) as { data: number[] }[])[0]!.data.map((v) => Math.round(v * 1e4) / 1e4)]),
    [['k1', want([1, 2]).map((v) => Math.round(v * 1e4) / 1e4)], ['k2', want([-3, 0.5]).map((v) => Math.round(v * 1e4) / 1e4)]], 'each row times the weights read from the external data');
});
