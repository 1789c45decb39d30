// Feedback joins with predictions and live accuracy; the prediction log in SQLite and in a real
// PostgreSQL, read back by `umbra export-log` with the labels joined.
import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { startTestServer } from './helpers/server.js';
import { property } from './helpers/property.js';
import { createTestDatabase, PG_SKIP_REASON } from './helpers/postgres.js';
import { parseExposition, total } from './helpers/prometheus.js';
import { FeedbackJoin } from '../dist/monitor/feedback.js';
import { decodeTensors } from '../dist/monitor/tensor-blob.js';
import { openLogStore } from '../dist/monitor/log-store.js';

const ROOT = new URL('..', import.meta.url).pathname;
const ROWS = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').trim().split(/\r?\n/).slice(1).map((l) => {
  const c = l.split(',');
  return { x: c.slice(0, 64).map(Number), y: Number(c[64]), split: c[65]! };
}).filter((r) => r.split === 'test').slice(0, 80);

function digitsRepo(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-feedback-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(ROOT, 'models/repository/digits'), join(dir, 'digits'), { recursive: true });
  return dir;
}

/** Sends ROWS in requests of 4 (every other one with the caller's id) and labels them all. */
async function trafficAndFeedback(t: Tap, s: Awaited<ReturnType<typeof startTestServer>>) {
  const sent: { id: string; truth: number[]; predicted: number[] }[] = [];
  const answered = property('every request of 4 rows is answered 200');
  for (let i = 0; i < ROWS.length; i += 4) {
    const chunk = ROWS.slice(i, i + 4);
    const body: Record<string, unknown> = { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [4, 64], data: chunk.flatMap((r) => r.x) }] };
    if (i % 8 === 0) body.id = `caller-${i}`;
    const r = await s.post('/v2/models/digits/versions/1/infer', body);
    answered.check(r.status === 200, () => `rows ${i}-${i + 3}: ${r.status} ${r.text}`);
    const label = r.json.outputs.find((o: { name: string }) => o.name === 'label');
    sent.push({ id: r.json.id, truth: chunk.map((c) => c.y), predicted: label.data });
  }
  answered.assert(t);
  t.equal(sent[0]!.id, 'caller-0');
  const reply = await s.post('/v2/models/digits/feedback', {
    feedback: [...sent.map(({ id, truth }) => ({ id, truth })), { id: 'never-seen', truth: [1, 2, 3, 4] }, { id: sent[0]!.id, truth: [1, 2, 3, 4] }],
  });
  t.equal(reply.status, 200);
  t.equal(reply.json.accepted, sent.length);
  t.same(reply.json.unknown, ['never-seen'], 'unknown ids are reported, not dropped silently');
  t.same(reply.json.rejected, [{ id: 'caller-0', reason: 'already labelled' }]);
  const bad = await s.post('/v2/models/digits/feedback', { feedback: [{ truth: 3 }] });
  t.equal(bad.status, 400);
  let correct = 0;
  for (const x of sent) x.truth.forEach((y, k) => (correct += y === x.predicted[k] ? 1 : 0));
  return { sent, accuracy: correct / ROWS.length };
}
type Tap = Parameters<Parameters<typeof t.test>[1]>[0];

t.test('join and accuracy bookkeeping', async (t) => {
  const f = new FeedbackJoin({ maxPending: 3, ttlSeconds: 10, accuracyWindow: 4 });
  for (let i = 0; i < 5; i++) f.remember(`p${i}`, 'm', '1', 'classification', Float64Array.of(i % 2), 1000);
  t.equal(f.pendingCount, 3, 'the oldest predictions are forgotten first');
  let r = f.accept('m', [{ id: 'p0', truth: 0 }, { id: 'p4', truth: 0 }, { id: 'p3', truth: 1 }], 2000);
  t.same(r.unknown, ['p0']);
  t.equal(r.accepted, 2);
  t.same(f.report('m', '1'), { model: 'm', version: '1', task: 'classification', labelled: 2, window: 2, accuracy: 1 });
  r = f.accept('m', [{ id: 'p2', truth: 1 }], 1000 + 10_001);
  t.same(r.unknown, ['p2'], 'expired');
  r = f.accept('other', [{ id: 'p2', truth: 1 }], 2000);
  t.same(r.unknown, ['p2'], 'ids are per model');
  // A shadow copy answers under the same id: one label scores both versions.
  const h = new FeedbackJoin();
  h.remember('q', 'm', '1', 'classification', Float64Array.of(3, 4), 0);
  h.remember('q', 'm', '2', 'classification', Float64Array.of(3, 5), 0, true);
  const both = h.accept('m', [{ id: 'q', truth: [3, 4] }], 1);
  t.same(both.joined[0]!.versions, ['1', '2']);
  t.equal(h.report('m', '1')!.accuracy, 1);
  t.equal(h.report('m', '2')!.accuracy, 0.5);
  const g = new FeedbackJoin({ accuracyWindow: 2 });
  g.remember('a', 'reg', '3', 'regression', Float64Array.of(1.5, 2), 0);
  g.remember('b', 'reg', '3', 'regression', Float64Array.of(4), 0);
  t.same(g.accept('reg', [{ id: 'a', truth: 2 }], 1).rejected, [{ id: 'a', reason: 'expected an array of 2 numbers for truth' }]);
  g.accept('reg', [{ id: 'a', truth: [1, 2] }, { id: 'b', truth: 3 }], 1);
  t.same(g.report('reg', '3'), { model: 'reg', version: '3', task: 'regression', labelled: 3, window: 2, meanAbsoluteError: 0.5 }, 'window of the latest 2 rows');
});

t.test('a caller id re-used by another request: the label is for the newest prediction alone', async (t) => {
  const f = new FeedbackJoin();
  f.remember('dup', 'm', '1', 'classification', Float64Array.of(2), 1000);
  f.remember('dup', 'm', '2', 'classification', Float64Array.of(8), 2000);
  f.remember('dup', 'm', '3', 'classification', Float64Array.of(5), 2005, true);
  const r = f.accept('m', [{ id: 'dup', truth: 8 }], 3000);
  t.same(r.joined.map((j) => [j.versions, j.fromMs, j.toMs]), [[['2', '3'], 2000, 2005]], 'the newest request and its shadow copy, with their times');
  t.equal(f.report('m', '1'), undefined, 'the earlier request is not scored');
  f.remember('dup', 'm', '2', 'classification', Float64Array.of(4), 4000);
  const again = f.accept('m', [{ id: 'dup', truth: 4 }], 5000);
  t.same(again.joined.map((j) => [j.fromMs, j.toMs, j.truth]), [[4000, 4000, 4]], 'a re-use after the label gets a label of its own');
});

t.test('a request of more rows than are kept takes a truth per row; its first 64 rows are scored', async (t) => {
  const predicted = Float64Array.from({ length: 64 }, (_, i) => i % 3);
  const truth = Array.from({ length: 100 }, (_, i) => i % 3);
  const f = new FeedbackJoin();
  f.remember('big', 'm', '1', 'classification', predicted, 0, false, 100);
  f.remember('short', 'm', '1', 'classification', predicted, 0, false, 100);
  const r = f.accept('m', [{ id: 'big', truth }, { id: 'short', truth: truth.slice(0, 64) }], 1);
  t.equal(r.accepted, 1);
  t.same(r.rejected, [{ id: 'short', reason: 'expected an array of 100 numbers for truth' }], 'the row count asked for is the request\'s');
  t.match(f.report('m', '1'), { labelled: 64, accuracy: 1 });
  const logged = new FeedbackJoin();
  t.equal(logged.scoreLogged('m', '1', 'classification', predicted, truth, 0, 3, 100), undefined, 'from the log too');
  t.match(logged.report('m', '1'), { labelled: 64, accuracy: 1 });
});

t.test('over HTTP: a 100-row request of a model that batches 128 is labelled with 100 truths', async (t) => {
  const dir = digitsRepo(t);
  const config = join(dir, 'digits', 'config.json');
  writeFileSync(config, readFileSync(config, 'utf8').replace('"max_batch_size": 32', '"max_batch_size": 128'));
  const s = await startTestServer(t, { repository: dir });
  const rows = ROWS.slice(0, 80);
  const answer = await s.post('/v2/models/digits/versions/1/infer', { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [80, 64], data: rows.flatMap((r) => r.x) }] });
  t.equal(answer.status, 200, answer.text);
  const reply = await s.post('/v2/models/digits/feedback', { id: answer.json.id, truth: rows.map((r) => r.y) });
  t.same(reply.json, { accepted: 1, unknown: [], rejected: [] });
  t.equal(s.server.monitor!.liveAccuracy('digits', '1')!.labelled, 64, 'the first 64 rows scored');
});

t.test('with a feedback token, labels need it; inference does not', async (t) => {
  const dir = digitsRepo(t);
  const s = await startTestServer(t, { repository: dir, monitoring: { feedbackToken: 'l4bels' } });
  const row = ROWS[0]!;
  const answer = await s.post('/v2/models/digits/versions/1/infer', { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: row.x }] });
  t.equal(answer.status, 200, 'inference needs no token');
  const label = { id: answer.json.id, truth: [row.y] };
  const refused = await Promise.all([{}, { authorization: 'Bearer wrong' }, { authorization: 'l4bels' }].map((h) => s.post('/v2/models/digits/feedback', label, h)));
  t.same(refused.map((r) => r.status), [401, 401, 401], 'no token, a wrong one, or one without the Bearer scheme: 401');
  t.match(refused[0]!.json.error, /--feedback-token-file/, 'the error names the flag');
  t.equal(s.server.monitor!.liveAccuracy('digits', '1')?.labelled ?? 0, 0, 'a refused label scores nothing');
  const accepted = await s.post('/v2/models/digits/feedback', label, { authorization: 'bearer l4bels' });
  t.same(accepted.json, { accepted: 1, unknown: [], rejected: [] }, 'with the token (any case of the scheme): accepted');
  t.equal(s.server.monitor!.liveAccuracy('digits', '1')!.labelled, 1, 'and scored');
});

t.test('--feedback-token-file: the token read from a file, a bad file named', async (t) => {
  const { resolveServeSettings } = await import('../dist/cli/settings.js');
  const dir = mkdtempSync(join(tmpdir(), 'umbra-feedback-token-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'token');
  writeFileSync(file, 'from-a-file\n');
  const monitoring = (settings: { monitoring?: unknown }) => settings.monitoring as { feedbackToken?: string };
  t.equal(monitoring(resolveServeSettings({ repo: '/models', feedbackTokenFile: file }, {})).feedbackToken, 'from-a-file', 'the flag, without the trailing line break');
  t.equal(monitoring(resolveServeSettings({ repo: '/models' }, { UMBRA_FEEDBACK_TOKEN_FILE: file })).feedbackToken, 'from-a-file', 'UMBRA_FEEDBACK_TOKEN_FILE');
  t.equal(monitoring(resolveServeSettings({ repo: '/models' }, {})).feedbackToken, undefined, 'none by default');
  writeFileSync(join(dir, 'empty'), '\n');
  t.throws(() => resolveServeSettings({ repo: '/models', feedbackTokenFile: join(dir, 'empty') }, {}), /--feedback-token-file: .* is empty; put the feedback token in it/);
  t.throws(() => resolveServeSettings({ repo: '/models', feedbackTokenFile: join(dir, 'missing') }, {}), /--feedback-token-file: cannot read/);
});

t.test('accuracy over the predictions made since a moment, and labels that cannot name a class', async (t) => {
  const f = new FeedbackJoin();
  // Before a rollout: the candidate answered 10 rows wrong; after it began (t = 5000), 4 right.
  for (let i = 0; i < 10; i++) f.remember(`old${i}`, 'm', '2', 'classification', Float64Array.of(1), 1000 + i);
  for (let i = 0; i < 4; i++) f.remember(`new${i}`, 'm', '2', 'classification', Float64Array.of(2), 5000 + i);
  const classes = () => 3;
  f.accept('m', [...Array.from({ length: 10 }, (_, i) => ({ id: `old${i}`, truth: 0 })), ...Array.from({ length: 4 }, (_, i) => ({ id: `new${i}`, truth: 2 }))], 6000, classes);
  t.match(f.report('m', '2'), { labelled: 14, window: 14, accuracy: 4 / 14 }, 'the live figure: every label in the window');
  t.match(f.report('m', '2', 5000), { labelled: 14, window: 4, accuracy: 1 }, 'since the rollout began: only its own predictions');
  t.equal(f.report('m', '2', 9000)!.window, 0, 'none since a later moment');
  t.equal(f.report('m', '2', 9000)!.accuracy, undefined);

  for (let i = 0; i < 4; i++) f.remember(`bad${i}`, 'm', '2', 'classification', Float64Array.of(1), 7000);
  const bad = f.accept('m', [99, 3, -1, 1.5].map((truth, i) => ({ id: `bad${i}`, truth })), 7001, classes);
  t.same(bad.rejected.map((r) => r.reason), [99, 3, -1, 1.5].map((v) => `expected a class for truth (an integer from 0 to 2: the model scores 3 classes) but received ${v}`), 'a label past the classes, negative or fractional is refused');
  t.equal(bad.accepted, 0);
  t.equal(f.report('m', '2')!.labelled, 14, 'and not scored as a wrong answer');
  // A model whose output is the class itself may use any integers as classes.
  const g = new FeedbackJoin();
  g.remember('s', 'svm', '1', 'classification', Float64Array.of(-1), 0);
  g.remember('u', 'svm', '1', 'classification', Float64Array.of(1), 0);
  const signs = g.accept('svm', [{ id: 's', truth: -1 }, { id: 'u', truth: 0.5 }], 1);
  t.equal(signs.accepted, 1, 'class -1 of a model that outputs its class');
  t.same(signs.rejected, [{ id: 'u', reason: 'expected a class for truth (an integer) but received 0.5' }]);
});

t.test('SQLite store: lookup by id, retention, export', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openLogStore(`sqlite:${join(dir, 'log.sqlite')}`);
  const row = (id: string, timeMs: number, label: number) => ({ id, model: 'm', version: '1', role: 'primary', timeMs, latencyMs: 0.5, outputs: [{ name: 'y', shape: [1], data: Float64Array.of(label) }] });
  await store.insert([row('a', 1000, 1), row('b', 2000, 2), row('c', 3000, 3), row('b', 3500, 4)], [{ id: 'c', model: 'm', version: '1', timeMs: 3000, fromMs: 3000, toMs: 3000, truth: 3 }]);
  const found = await store.lookup('m', ['b', 'c', 'zz']);
  t.same(found.map((f: { id: string; labelled: boolean }) => [f.id, f.labelled]), [['b', false], ['c', true]]);
  t.equal(found[0]!.timeMs, 3500, 'the newest prediction of a re-used id');
  t.equal(await store.prune(2500), 2, 'rows before the cutoff go');
  const rows = [];
  for await (const r of store.exportRows({})) rows.push(r);
  t.same(rows.map((r: { id: string; truth: unknown; outputs: { y: { data: number[] } } }) => [r.id, r.truth, r.outputs.y.data[0]]), [['c', 3, 3], ['b', null, 4]]);
  t.equal(await store.prune(10_000), 2, 'everything older than the cutoff, even the newest row');
  await store.close();
});

/** Two requests under one id, a label for the newer (and its shadow copy), then a third request and its own label. */
async function reusedIdLabels(store: Awaited<ReturnType<typeof openLogStore>>) {
  const row = (id: string, role: string, timeMs: number, label: number) => ({ id, model: 'm', version: role === 'shadow' ? '2' : '1', role, timeMs, latencyMs: 0.5, outputs: [{ name: 'y', shape: [1], data: Float64Array.of(label) }] });
  await store.insert([row('r', 'primary', 1000, 2), row('r', 'primary', 2000, 8), row('r', 'shadow', 2004, 8)], [{ id: 'r', model: 'm', version: '1', timeMs: 2500, fromMs: 2000, toMs: 2004, truth: 8 }]);
  await store.insert([row('r', 'primary', 3000, 4)], []);
  const unlabelled = (await store.lookup('m', ['r']))[0]!;
  await store.insert([], [{ id: 'r', model: 'm', version: '1', timeMs: 3500, fromMs: 3000, toMs: 3000, truth: 4 }]);
  const all = [];
  for await (const r of store.exportRows({})) all.push([r.role, r.outputs.y.data[0], r.truth]);
  const labelled = [];
  for await (const r of store.exportRows({ labelledOnly: true })) labelled.push(r.outputs.y.data[0]);
  return { all, labelled, unlabelled };
}

t.test('SQLite store: a label joins only the predictions it scored, when a caller re-used the id', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openLogStore(`sqlite:${join(dir, 'log.sqlite')}`);
  const { all, labelled, unlabelled } = await reusedIdLabels(store);
  await store.close();
  t.same(all, [['primary', 2, null], ['primary', 8, 8], ['shadow', 8, 8], ['primary', 4, 4]], 'each row with its own label or none');
  t.same(labelled, [8, 8, 4], '--labelled keeps only the labelled rows');
  t.same([unlabelled.timeMs, unlabelled.labelled], [3000, false], 'the newest request under a labelled id is not labelled yet');
});

t.test('SQLite store: labels of a log written before labels had spans still join by id', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'log.sqlite');
  const old = new Database(path);
  old.exec(`CREATE TABLE umbra_predictions (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, role TEXT NOT NULL, time_ms INTEGER NOT NULL, latency_ms REAL NOT NULL, inputs BLOB, outputs BLOB NOT NULL, id_hash INTEGER NOT NULL);
    CREATE TABLE umbra_labels (id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, time_ms INTEGER NOT NULL, truth TEXT NOT NULL, PRIMARY KEY (model, id));
    INSERT INTO umbra_labels VALUES ('a', 'm', '1', 5000, '7');`);
  old.close();
  const store = await openLogStore(`sqlite:${path}`);
  await store.insert([{ id: 'a', model: 'm', version: '1', role: 'primary', timeMs: 1000, latencyMs: 0.5, outputs: [{ name: 'y', shape: [1], data: Float64Array.of(7) }] }], []);
  const rows = [];
  for await (const r of store.exportRows({})) rows.push(r.truth);
  await store.close();
  t.same(rows, [7]);
});

t.test('feedback over HTTP, live accuracy, SQLite log and export-log', async (t) => {
  const dir = digitsRepo(t);
  const db = join(dir, '.umbra', 'predictions.sqlite');
  // 12 of the 20 requests are forgotten in memory before their labels come: the log answers for them.
  const s = await startTestServer(t, { repository: dir, monitoring: { log: { url: `sqlite:${db}`, flushMs: 20, inputsSample: 1 }, feedback: { maxPending: 8 } } });
  const { sent, accuracy } = await trafficAndFeedback(t, s);
  t.ok(accuracy > 0.8, `digits v1 is accurate on the test rows (${accuracy})`);
  const acc = s.server.monitor!.liveAccuracy('digits', '1');
  t.equal(acc?.labelled, ROWS.length);
  t.ok(Math.abs(acc!.accuracy! - accuracy) < 1e-12);
  const drift = await s.get('/v2/models/digits/versions/1/drift');
  t.ok(Math.abs(drift.json.accuracy.accuracy - accuracy) < 1e-12, 'accuracy shown beside drift');
  const m = parseExposition((await s.get('/metrics')).text);
  t.ok(Math.abs(total(m, 'umbra_live_accuracy', { model: 'digits', version: '1' }) - accuracy) < 1e-9);
  t.equal(total(m, 'umbra_feedback_total', { model: 'digits', result: 'accepted' }), sent.length);
  t.equal(total(m, 'umbra_feedback_total', { model: 'digits', result: 'unknown' }), 1);

  await s.server.stop(); // flushes the log
  const conn = new Database(db, { readonly: true });
  const rows = conn.prepare('SELECT id, version, role, inputs, outputs, latency_ms FROM umbra_predictions ORDER BY seq').all() as { id: string; version: string; role: string; inputs: Buffer; outputs: Buffer; latency_ms: number }[];
  t.equal(rows.length, sent.length);
  // By id, not by position: requests answered on different threads reach the one log writer in
  // the order their threads hand them over, which need not be the order they were sent in.
  t.same(rows.map((r) => r.id).sort(), sent.map((x) => x.id).sort(), 'every request logged once, under its id');
  const first = rows.find((r) => r.id === 'caller-0')!;
  t.equal(first.role, 'direct');
  t.same(decodeTensors(first.inputs)!.pixels!.shape, [4, 64]);
  t.same(decodeTensors(first.inputs)!.pixels!.data.slice(0, 64), ROWS[0]!.x);
  t.same(decodeTensors(first.outputs)!.label!.data, sent[0]!.predicted);
  t.same(decodeTensors(first.outputs)!.probabilities!.shape, [4, 10]);
  t.ok(rows.every((r) => r.latency_ms > 0));
  t.equal((conn.prepare('SELECT count(*) AS n FROM umbra_labels').get() as { n: number }).n, sent.length);
  conn.close();

  const out = join(dir, 'export.jsonl');
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'export-log', '--log-db', `sqlite:${db}`, '--out', out, '--labelled'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const exported = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.equal(exported.length, sent.length);
  const second = exported.find((e) => e.id === sent[1]!.id);
  t.same(second?.truth, sent[1]!.truth, 'labels joined');
  t.same(second?.outputs.label.data, sent[1]!.predicted);
  t.equal(second?.inputs.pixels.data.length, 4 * 64);
  const csv = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'export-log', '--log-db', `sqlite:${db}`, '--format', 'csv', '--model', 'digits'], { encoding: 'utf8' });
  t.equal(csv.status, 0, csv.stderr);
  const lines = csv.stdout.trim().split('\n');
  t.equal(lines[0], 'id,model,version,role,time,latency_ms,inputs,outputs,truth');
  t.equal(lines.length, sent.length + 1);
  const none = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'export-log', '--log-db', `sqlite:${db}`, '--format', 'csv', '--since', '2100-01-01'], { encoding: 'utf8' });
  t.equal(none.stdout, 'id,model,version,role,time,latency_ms,inputs,outputs,truth\n', 'no row matches: still a CSV with its header, which readers can open');
});

t.test('prediction log in PostgreSQL', async (t) => {
  const database = await createTestDatabase();
  if (!database) {
    t.skip(PG_SKIP_REASON);
    return;
  }
  t.teardown(() => database.drop());
  const dir = digitsRepo(t);
  // Only 4 predictions wait in memory: the rest of the labels are joined from the log itself.
  const s = await startTestServer(t, { repository: dir, monitoring: { log: { url: database.url, flushMs: 20, inputs: false }, feedback: { maxPending: 4 } } });
  const log = s.server.monitor!.log!;
  await log.whenReady();
  const { sent, accuracy } = await trafficAndFeedback(t, s);
  t.ok(Math.abs(s.server.monitor!.liveAccuracy('digits', '1')!.accuracy! - accuracy) < 1e-12, 'accuracy from labels joined in the log');
  await s.server.stop();
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  t.teardown(() => client.end());
  const p = await client.query('SELECT id, inputs, outputs FROM umbra_predictions ORDER BY seq');
  t.equal(p.rows.length, sent.length);
  t.equal(p.rows[0].inputs, null, 'inputs off');
  // By id, not by position: requests answered on different threads reach the one log writer in
  // the order their threads hand them over, which need not be the order they were sent in.
  t.same(decodeTensors(p.rows.find((row: { id: string }) => row.id === sent[2]!.id).outputs)!.label!.data, sent[2]!.predicted);
  const joined = await client.query('SELECT p.id, l.truth FROM umbra_predictions p JOIN umbra_labels l USING (model, id) ORDER BY p.seq');
  t.equal(joined.rows.length, sent.length);
  t.same(JSON.parse(joined.rows.find((row: { id: string }) => row.id === sent[3]!.id).truth), sent[3]!.truth);
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'export-log', '--log-db', database.url, '--labelled'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim().split('\n').length, sent.length);
});

t.test('PostgreSQL store: a label joins only the predictions it scored, when a caller re-used the id', async (t) => {
  const database = await createTestDatabase();
  if (!database) {
    t.skip(PG_SKIP_REASON);
    return;
  }
  t.teardown(() => database.drop());
  const store = await openLogStore(database.url);
  const { all, labelled, unlabelled } = await reusedIdLabels(store);
  await store.close();
  t.same(all, [['primary', 2, null], ['primary', 8, 8], ['shadow', 8, 8], ['primary', 4, 4]], 'each row with its own label or none');
  t.same(labelled, [8, 8, 4], '--labelled keeps only the labelled rows');
  t.same([unlabelled.timeMs, unlabelled.labelled], [3000, false], 'the newest request under a labelled id is not labelled yet');
});

t.test('PostgreSQL store: labels of a log written before labels had spans still join by id', async (t) => {
  const database = await createTestDatabase();
  if (!database) {
    t.skip(PG_SKIP_REASON);
    return;
  }
  t.teardown(() => database.drop());
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  await client.query(`CREATE TABLE umbra_labels (id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, time_ms BIGINT NOT NULL, truth TEXT NOT NULL, PRIMARY KEY (model, id));
    INSERT INTO umbra_labels VALUES ('a', 'm', '1', 5000, '7')`);
  await client.end();
  const store = await openLogStore(database.url);
  await store.insert([{ id: 'a', model: 'm', version: '1', role: 'primary', timeMs: 1000, latencyMs: 0.5, outputs: [{ name: 'y', shape: [1], data: Float64Array.of(7) }] }], [{ id: 'a', model: 'm', version: '1', timeMs: 6000, fromMs: 2000, toMs: 2000, truth: 3 }]);
  const rows = [];
  for await (const r of store.exportRows({})) rows.push(r.truth);
  await store.close();
  t.same(rows, [7], 'the old label still covers its row; a new one with a span sits beside it');
});
