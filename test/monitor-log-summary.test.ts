// Tensors over the prediction log's value cap (--log-tensor-max-values) are logged as their type,
// shape and exact statistics instead of every value; the log says so at start, counts them, and a
// label for a prediction whose scored output was summarized is refused with the reason.
import t from 'tap';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startTestServer } from './helpers/server.js';
import { parseExposition, total } from './helpers/prometheus.js';
import { packPredictions } from '../dist/monitor/log-packing.js';
import { decodeTensors, encodePackedTensors, encodeTensors } from '../dist/monitor/tensor-blob.js';
import { summarizeTensor } from '../dist/monitor/tensor-summary.js';
import { LOG_DEFAULTS, PredictionLog } from '../dist/monitor/prediction-log.js';
import { predictedValues } from '../dist/monitor/feedback.js';
import { float32ToHalf } from '../dist/protocol/half.js';
import { resolveServeSettings } from '../dist/cli/settings.js';
import { seededRandom } from '../dist/random.js';
import { tempRepo, pairModel } from './helpers/repo.js';

const ROOT = new URL('..', import.meta.url).pathname;
const random = seededRandom(28);

/** The statistics a summary must report, computed the plain way. */
function reference(values: number[]) {
  const finite = values.filter((v) => Number.isFinite(v));
  return {
    values: values.length,
    min: finite.length ? Math.min(...finite) : null,
    max: finite.length ? Math.max(...finite) : null,
    mean: finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : null,
    non_finite: values.length - finite.length,
  };
}

t.test('a summary is exact: min, max, mean over the finite values, and the non-finite ones counted', async (t) => {
  const plain = Array.from({ length: 1000 }, () => random() * 200 - 100);
  const f32 = Float32Array.from(plain);
  t.same(summarizeTensor('FP32', f32), { summarized: true, datatype: 'FP32', ...reference(Array.from(f32)) });
  t.same(summarizeTensor('FP64', Float64Array.from(plain)), { summarized: true, datatype: 'FP64', ...reference(plain) });

  const holes = Float32Array.from(plain);
  holes[3] = NaN;
  holes[500] = Infinity;
  holes[999] = -Infinity;
  const withHoles = summarizeTensor('FP32', holes);
  t.same(withHoles, { summarized: true, datatype: 'FP32', ...reference(Array.from(holes)) });
  t.equal(withHoles.non_finite, 3);
  t.same(summarizeTensor('FP32', Float32Array.of(NaN, NaN)), { summarized: true, datatype: 'FP32', values: 2, min: null, max: null, mean: null, non_finite: 2 });

  const halves = [0.5, -2, 1024, 3.25];
  t.same(summarizeTensor('FP16', Uint16Array.from(halves, float32ToHalf)), { summarized: true, datatype: 'FP16', ...reference(halves) }, 'FP16 bits are read as the numbers they encode');
  t.same(summarizeTensor('INT64', BigInt64Array.of(-5n, 7n, 1n)), { summarized: true, datatype: 'INT64', ...reference([-5, 7, 1]) });
  t.same(summarizeTensor('BYTES', ['a', 'b']), { summarized: true, datatype: 'BYTES', values: 2, min: null, max: null, mean: null, non_finite: 0 });
});

t.test('over the cap a tensor is logged as its summary; at the cap and under it, whole; cap 0 keeps every value', async (t) => {
  const big = Float32Array.from({ length: 12 }, () => random());
  const exact = Float32Array.from({ length: 8 }, () => random());
  const record = {
    id: 'r1', model: 'm', version: '1', role: 'primary', timeMs: 1, latencyMs: 1,
    inputs: [{ name: 'x', datatype: 'FP32' as const, shape: [3, 4], data: big }],
    outputs: [
      { name: 'scores', datatype: 'FP32' as const, shape: [2, 4], data: exact },
      { name: 'embedding', datatype: 'FP64' as const, shape: [3, 4], data: Float64Array.from(big) },
    ],
  };
  const capped = encodePackedTensors(packPredictions([record, record], 8));
  const outputs = decodeTensors(capped.outputs[1]!)!;
  t.same(outputs.scores, { shape: [2, 4], data: Array.from(exact) }, 'exactly at the cap: every value');
  t.same(outputs.embedding, { shape: [3, 4], summary: summarizeTensor('FP64', Float64Array.from(big)) }, 'over the cap: the summary, no values');
  t.same(decodeTensors(capped.inputs[0]!)!.x, { shape: [3, 4], summary: summarizeTensor('FP32', big) }, 'inputs are capped the same way');
  t.same(capped.outputs[0], encodeTensors([
    { name: 'scores', shape: [2, 4], data: exact },
    { name: 'embedding', shape: [3, 4], summary: summarizeTensor('FP64', Float64Array.from(big)) },
  ]), 'the packed encoding of a summary is byte for byte the per-record one');

  const whole = decodeTensors(encodePackedTensors(packPredictions([record], 0)).outputs[0]!)!;
  t.same(whole.embedding, { shape: [3, 4], data: Array.from(big) }, 'cap 0: every value');
});

t.test('the log writes summaries above its default cap, counts them, and says what it keeps', async (t) => {
  t.equal(LOG_DEFAULTS.tensorMaxValues, 65_536);
  const dir = mkdtempSync(join(tmpdir(), 'umbra-log-summary-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const counted = { written: 0, summarized: 0 };
  const counters = { written: (n: number) => { counted.written += n; }, dropped: () => undefined, failed: () => undefined, summarized: (n: number) => { counted.summarized += n; } };
  const path = join(dir, 'log.sqlite');
  const log = new PredictionLog({ url: `sqlite:${path}` }, counters);
  t.equal(log.describeKept(), 'outputs of every prediction, inputs of 10% (--log-inputs-sample; a model\'s parameters.log_inputs_sample wins); tensors over 65,536 values as type, shape, min, max and mean only (--log-tensor-max-values 0 keeps every value)');
  const wide = Float32Array.from({ length: 64 * 4096 }, () => random());
  const narrow = Float32Array.from({ length: 64 * 1024 }, () => random());
  log.push({ id: 'a', model: 'm', version: '1', role: 'primary', timeMs: Date.now(), latencyMs: 1, outputs: [{ name: 'y', datatype: 'FP32', shape: [64, 4096], data: wide }] }, 0);
  log.push({ id: 'b', model: 'm', version: '1', role: 'primary', timeMs: Date.now(), latencyMs: 1, outputs: [{ name: 'y', datatype: 'FP32', shape: [64, 1024], data: narrow }] }, 0);
  await log.close();
  t.equal(log.lastError, undefined);
  t.same(counted, { written: 2, summarized: 1 });
  const db = new Database(path, { readonly: true });
  const rows = db.prepare('SELECT id, outputs FROM umbra_predictions ORDER BY seq').all() as { id: string; outputs: Buffer }[];
  db.close();
  t.same(decodeTensors(rows[0]!.outputs)!.y, { shape: [64, 4096], summary: summarizeTensor('FP32', wide) });
  t.ok(rows[0]!.outputs.byteLength < 1024, `the summarized row is small (${rows[0]!.outputs.byteLength} bytes)`);
  t.same(decodeTensors(rows[1]!.outputs)!.y, { shape: [64, 1024], data: Array.from(narrow) });

  const all = new PredictionLog({ url: `sqlite:${join(dir, 'all.sqlite')}`, tensorMaxValues: 0, inputs: false, sample: 0.5 }, counters);
  t.equal(all.describeKept(), 'outputs of 50% of predictions, no inputs (--log-inputs off); every tensor value (--log-tensor-max-values 0)');
  await all.close();
});

t.test('--log-tensor-max-values and UMBRA_LOG_TENSOR_MAX_VALUES set the cap; a bad value names the flag', async (t) => {
  t.match(resolveServeSettings({ repo: 'r', logTensorMaxValues: '0' }, {}).monitoring, { log: { tensorMaxValues: 0 } });
  t.match(resolveServeSettings({ repo: 'r' }, { UMBRA_LOG_TENSOR_MAX_VALUES: '1000000' }).monitoring, { log: { tensorMaxValues: 1_000_000 } });
  const defaults = resolveServeSettings({ repo: 'r' }, {}).monitoring;
  t.equal(defaults && defaults.log && defaults.log.tensorMaxValues, undefined, 'unset: the log\'s default applies');
  t.throws(() => resolveServeSettings({ repo: 'r', logTensorMaxValues: '-1' }, {}), /--log-tensor-max-values/);
  t.throws(() => resolveServeSettings({ repo: 'r', logTensorMaxValues: 'all' }, {}), /--log-tensor-max-values/);
});

t.test('argmax of float scores picks what the general loop picks, ties and NaN included', async (t) => {
  const width = 7;
  const rows = [
    [0.1, 0.9, 0.3, 0.9, 0.2, 0.0, -1],
    [NaN, 5, 6, 7, 1, 2, 3],
    [1, NaN, 3, NaN, 2, 3, 0],
    [-Infinity, -3, -2, -2, -5, -9, -1e30],
    [4, 4, 4, 4, 4, 4, 4],
  ];
  const flat = rows.flat();
  const reader = { task: 'classification' as const, output: 'y', argmax: true, width };
  // The rule, written out: the first column whose value is greater than every one before it.
  const expected = rows.map((row) => row.reduce((best, v, c) => (v > row[best]! ? c : best), 0));
  t.same(expected, [1, 0, 2, 2, 0]);
  for (const [name, data] of [['FP32', Float32Array.from(flat)], ['FP64', Float64Array.from(flat)]] as const) {
    const got = predictedValues(reader, { model_name: 'm', outputs: [{ name: 'y', datatype: name, shape: [rows.length, width], data }] });
    t.same(Array.from(got!), expected, `${name}: first largest per row; a row that starts with NaN keeps column 0`);
  }
});

t.test('served: a label for a prediction whose scored output the log summarized is refused with the reason', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-log-summary-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(ROOT, 'models/repository/digits'), join(dir, 'digits'), { recursive: true });
  const db = join(dir, 'predictions.sqlite');
  // A cap of 3 values summarizes the 4-row label output the join scores; one waiting prediction
  // in memory means the first three are looked up in the log.
  const s = await startTestServer(t, { repository: dir, monitoring: { log: { url: `sqlite:${db}`, flushMs: 20, tensorMaxValues: 3, inputs: false }, feedback: { maxPending: 1 } } });
  const x = Array.from({ length: 4 * 64 }, () => Math.round(random() * 16));
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await s.post('/v2/models/digits/versions/1/infer', { id: `p-${i}`, inputs: [{ name: 'pixels', datatype: 'FP32', shape: [4, 64], data: x }] });
    t.equal(r.status, 200);
    ids.push(r.json.id);
  }
  const reply = await s.post('/v2/models/digits/feedback', { feedback: ids.map((id) => ({ id, truth: [1, 2, 3, 4] })) });
  t.equal(reply.status, 200);
  // Which one is still in memory depends on the order the answering threads' events arrived in.
  t.equal(reply.json.accepted, 1, 'the prediction still in memory joins');
  t.equal(reply.json.rejected.length, 3, 'the three looked up in the log are refused');
  t.ok(reply.json.rejected.every((r: { reason: string }) => /summary of output 'label' \(4 values, over --log-tensor-max-values\)/.test(r.reason)), JSON.stringify(reply.json.rejected));
  const m = parseExposition((await s.get('/metrics')).text);
  t.equal(total(m, 'umbra_prediction_log_tensors_summarized_total', {}), 4 * 2, 'label and probabilities of every request');

  await s.server.stop();
  const out = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'export-log', '--log-db', `sqlite:${db}`], { encoding: 'utf8' });
  t.equal(out.status, 0, out.stderr);
  const first = JSON.parse(out.stdout.trim().split('\n')[0]!);
  t.match(first.outputs.label, { shape: [4], summary: { summarized: true, datatype: 'INT64', values: 4, non_finite: 0 } });
  t.notOk('data' in first.outputs.label, 'no values where none were kept');
});

t.test('umbra export-log writes INT64 ids past 2^53 as they were sent, in JSON Lines and in CSV', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('pair', 1, pairModel());
  const db = join(repo.dir, 'predictions.sqlite');
  const s = await startTestServer(t, { repository: repo.dir, monitoring: { log: { url: `sqlite:${db}`, flushMs: 20, inputsSample: 1 } } });
  // JSON spelling the integers exactly: the server reads them as spelled, and twice them is exact too.
  const r = await s.request('POST', '/v2/models/pair/infer', '{"id":"big","inputs":[{"name":"a","datatype":"FP32","shape":[1,3],"data":[1,2,3]},{"name":"n","datatype":"INT64","shape":[1,2],"data":[9007199254740993,-123456789012345678]}]}');
  t.equal(r.status, 200, r.text);
  await s.server.stop();
  const jsonl = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'export-log', '--log-db', `sqlite:${db}`], { encoding: 'utf8' });
  const csv = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'export-log', '--log-db', `sqlite:${db}`, '--format', 'csv'], { encoding: 'utf8' });
  t.same([jsonl.status, csv.status], [0, 0], jsonl.stderr + csv.stderr);
  const spelled = (text: string) => [text.includes('"data":[9007199254740993,-123456789012345678]'), text.includes('"data":[18014398509481986,-246913578024691356]')];
  t.same([spelled(jsonl.stdout), spelled(csv.stdout.replace(/""/g, '"'))], [[true, true], [true, true]], 'inputs and outputs: the exact integers, not 9007199254740992 and -123456789012345680');
});
