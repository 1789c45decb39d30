// What /metrics says of the server's own state, each value after the event that changes it:
// readiness and each model version's state (loaded, loading, failed, unloaded), threads replaced
// after a crash, each version's queue bound, traffic weights and rollout states, and the
// prediction log's backlog. None is touched on the request path; each is read at scrape time,
// and an unloaded model leaves no series.
import { sumQueues } from '../dist/server/io/wire.js';
import { queueFill } from '../dist/scheduler/options.js';
import t from 'tap';
import { once } from 'node:events';
import { connect } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, type TestServer } from './helpers/server.js';
import { affineModel, holdExecution, tempRepo, until } from './helpers/repo.js';
import { parseExposition, promtoolCheck, total, type Sample } from './helpers/prometheus.js';

// The worker crash and the I/O thread crash below are injected faults (tests only).
process.env.UMBRA_FAULT_INJECTION = '1';

const TOKEN = 'serving-token';
const ADMIN = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const x = (v: number) => ({ name: 'x', datatype: 'FP32', shape: [1, 4], data: [v, v + 1, v + 2, v + 3] });

async function scrape(s: TestServer): Promise<Sample[]> {
  return parseExposition((await s.get('/metrics')).text);
}

/** The samples of one metric, as "label=value,..." -> value, for exact comparisons. */
function series(m: Sample[], name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of m.filter((x) => x.name === name)) out[Object.entries(s.labels).sort().map(([k, v]) => `${k}=${v}`).join(',')] = s.value;
  return out;
}

t.test('umbra_ready and umbra_model_state: loaded, loading, failed, unloaded', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, adminToken: TOKEN });
  let m = await scrape(s);
  t.equal(total(m, 'umbra_ready'), 1, 'ready with its one model loaded');
  t.same(series(m, 'umbra_model_state'), { 'model=affine,state=ready,version=1': 1, 'model=affine,state=loading,version=1': 0, 'model=affine,state=unavailable,version=1': 0 }, 'the loaded version is ready');

  // A model whose file is not ONNX: its load fails, and the server is not ready.
  mkdirSync(join(repo.dir, 'broken', '1'), { recursive: true });
  writeFileSync(join(repo.dir, 'broken', '1', 'model.onnx'), 'not a model');
  t.not((await s.post('/v2/repository/models/broken/load', undefined, ADMIN)).status, 200, 'the broken model does not load');
  m = await scrape(s);
  t.equal(total(m, 'umbra_ready'), 0, 'not ready while a model failed to load');
  t.equal(total(m, 'umbra_model_state', { model: 'broken', version: '', state: 'unavailable' }), 1, 'the failed model is unavailable, with no version');

  // A load under way: the entry is LOADING from the call on, and opening takes file reads and a warm-up.
  repo.addVersion('late', 1, affineModel(3, 0));
  const loading = s.server.umbra.manager.load('late');
  const during = parseExposition(await s.server.monitor!.metrics.registry.metrics());
  await loading;
  t.equal(total(during, 'umbra_model_state', { model: 'late', version: '', state: 'loading' }), 1, 'a model loading for the first time is loading, with no version');
  t.equal(total(await scrape(s), 'umbra_model_state', { model: 'late', version: '1', state: 'ready' }), 1, 'loaded, its version is ready');

  t.equal((await s.post('/v2/repository/models/broken/unload', undefined, ADMIN)).status, 200);
  t.equal((await s.post('/v2/repository/models/late/unload', undefined, ADMIN)).status, 200);
  m = await scrape(s);
  t.equal(total(m, 'umbra_ready'), 1, 'ready again once the broken model is unloaded');
  t.same(Object.keys(series(m, 'umbra_model_state')).filter((k) => !k.startsWith('model=affine,')), [], 'unloaded models leave no series');
});

t.test('umbra_threads_replaced_total: a crashed model worker', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  repo.writeConfig('affine', { parameters: { execution: 'worker' } });
  const s = await startTestServer(t, { repository: repo.dir, workers: 2 });
  t.same(series(await scrape(s), 'umbra_threads_replaced_total'), { 'kind=io': 0, 'kind=model': 0 }, 'both kinds from the start, at 0');
  t.equal((await s.post('/v2/models/affine/infer', { parameters: { umbra_fault: 'crash' }, inputs: [x(1)] })).status, 500, 'the crash fails its request');
  t.equal((await s.post('/v2/models/affine/infer', { inputs: [x(1)] })).status, 200, 'the next is served');
  t.same(series(await scrape(s), 'umbra_threads_replaced_total'), { 'kind=io': 0, 'kind=model': 1 }, 'one model worker replaced');
});

t.test('umbra_threads_replaced_total: a crashed I/O thread', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  // Every connection on an I/O thread: the core's thread reads nothing.
  const s = await startTestServer(t, { repository: repo.dir, ioThreads: 2, coreReads: false });
  const replaced = once(s.server.events, 'replaced');
  const doomed = connect(s.server.port, '127.0.0.1');
  doomed.on('error', () => undefined);
  t.teardown(() => doomed.destroy());
  await once(doomed, 'connect');
  const body = JSON.stringify({ inputs: [x(1)] });
  doomed.write(`POST /v2/models/affine/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-umbra-fault: io-crash\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  await replaced;
  t.same(series(await scrape(s), 'umbra_threads_replaced_total'), { 'kind=io': 1, 'kind=model': 0 }, 'one I/O thread replaced');
});

t.test('umbra_queue_bound_requests: the bound in force, over every queue, gone with its model', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('pinned', 1, affineModel(2, 0));
  repo.writeConfig('pinned', { max_batch_size: 4, dynamic_batching: { max_queue_size: 16 }, parameters: { execution: 'worker' } });
  repo.addVersion('derived', 1, affineModel(2, 0));
  repo.writeConfig('derived', { parameters: { execution: 'worker' } });
  repo.addVersion('inline', 1, affineModel(2, 0));
  repo.writeConfig('inline', { max_batch_size: 4, dynamic_batching: { max_queue_size: 16 }, parameters: { execution: 'inline' } });
  // Two I/O threads, each with its replica of the inline version, beside the core's own queue.
  const s = await startTestServer(t, { repository: repo.dir, adminToken: TOKEN, ioThreads: 2, coreReads: false });
  const derived = (await s.get('/v2/models/derived/config')).json.dynamic_batching.default_queue_policy.max_queue_size as number;
  t.ok(derived > 0, `a derived bound (${derived})`);
  // The replicas report once they are open on their threads.
  await until(async () => total(await scrape(s), 'umbra_queue_bound_requests', { model: 'inline', version: '1' }) === 48, 'both replicas of the inline version to report');
  const m = await scrape(s);
  t.equal(total(m, 'umbra_queue_bound_requests', { model: 'pinned', version: '1' }), 16, 'max_queue_size of the config');
  t.equal(total(m, 'umbra_queue_bound_requests', { model: 'derived', version: '1' }), derived, 'the derived bound, as GET .../config says it');
  t.equal(total(m, 'umbra_queue_bound_requests', { model: 'inline', version: '1' }), 48, 'an inline version: 16 on the core and on each I/O thread');
  t.same(['pinned', 'derived', 'inline'].map((model) => m.filter((x) => x.name === 'umbra_queue_fill_ratio' && x.labels.model === model).map((x) => x.value)), [[0], [0], [0]], 'one fill series per bounded version, empty while idle');
  t.equal((await s.post('/v2/repository/models/pinned/unload', undefined, ADMIN)).status, 200);
  t.notOk((await scrape(s)).some((x) => (x.name === 'umbra_queue_bound_requests' || x.name === 'umbra_queue_fill_ratio') && x.labels.model === 'pinned'), 'no series once unloaded');
});

t.test('umbra_queue_fill_ratio is the fullest queue\'s, not the average over the threads\' queues', async (t) => {
  // One I/O thread's queue of an inline version full (4 of 4), the other's empty: the sums say
  // half full, but the full one refuses every request it reads.
  const q = (pending: number, maxQueueSize: number) => ({ pending, inFlight: 0, executingRequests: 0, maxQueueSize, fullest: queueFill(pending, maxQueueSize) });
  const summed = sumQueues([{ 'm/1': q(4, 4), 'n/1': q(1, 10) }, { 'm/1': q(0, 4) }]);
  t.same(summed, { 'm/1': { pending: 4, inFlight: 0, executingRequests: 0, maxQueueSize: 8, fullest: 1 }, 'n/1': { pending: 1, inFlight: 0, executingRequests: 0, maxQueueSize: 10, fullest: 0.1 } });
  t.equal(queueFill(7, 0), 0, 'an unbounded queue is never full');
});

t.test('umbra_queue_fill_ratio counts what the bound counts: a batch staged on a busy slot fills the queue too', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('staged', 1, affineModel(2, 0));
  // One slot, which stages one full batch of 4 behind the running one; a bound of 8.
  repo.writeConfig('staged', { max_batch_size: 4, instance_group: [{ count: 1 }], dynamic_batching: { max_queue_size: 8 }, parameters: { execution: 'worker' } });
  const s = await startTestServer(t, { repository: repo.dir });
  const mv = s.server.umbra.manager.get('staged');
  const hold = holdExecution(mv);
  t.teardown(() => hold.release());
  const send = () => s.post('/v2/models/staged/infer', { inputs: [x(1)] });
  // One request runs (held), a full batch of 4 is staged behind it, 4 more wait in the queue.
  const admitted = [send()];
  await until(() => hold.held === 1, 'the first request running');
  admitted.push(send(), send(), send(), send());
  await until(() => hold.held === 2, 'a full batch staged on the busy slot');
  admitted.push(send(), send(), send(), send());
  await until(() => mv.pending === 4, 'four requests queued');
  t.equal((await send()).status, 503, 'the queue refuses: 4 queued and 4 staged hold its bound of 8');
  t.equal(total(await scrape(s), 'umbra_queue_fill_ratio', { model: 'staged', version: '1' }), 1, 'and reads full');
  hold.release();
  t.same((await Promise.all(admitted)).map((r) => r.status), new Array(9).fill(200), 'every admitted request served');
});

t.test('umbra_traffic_weight and umbra_rollout_state: policy, rollout started, paused, rolled back, unloaded', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.writeConfig('affine', { version_policy: { all: {} } });
  for (const v of [1, 2, 3]) repo.addVersion('affine', v, affineModel(2, v));
  const s = await startTestServer(t, { repository: repo.dir, adminToken: TOKEN });
  const weights = async () => series(await scrape(s), 'umbra_traffic_weight');
  const rollout = async () => series(await scrape(s), 'umbra_rollout_state');
  t.same(await weights(), { 'model=affine,role=primary,version=3': 1 }, 'no policy: the newest version takes everything');

  t.equal((await s.request('PUT', '/v2/models/affine/traffic', JSON.stringify({ primary: '1', canary: { version: '2', weight: 0.25 }, shadows: [{ version: '3', sample: 0.5 }] }), ADMIN)).status, 200);
  t.same(await weights(), { 'model=affine,role=primary,version=1': 0.75, 'model=affine,role=canary,version=2': 0.25, 'model=affine,role=shadow,version=3': 0.5 }, 'the weights set');

  t.equal((await s.request('PUT', '/v2/models/affine/traffic', JSON.stringify({ primary: '1' }), ADMIN)).status, 200);
  // Its one step waits for traffic that never comes: inconclusive at max_seconds, again, then paused.
  const starved = { candidate: '2', steps: [{ weight: 0.1, min_requests: 1_000_000, max_seconds: 0.05 }] };
  t.equal((await s.post('/v2/models/affine/rollout', starved, ADMIN)).status, 201);
  t.same(await rollout(), { 'model=affine,state=running,version=2': 1, 'model=affine,state=paused,version=2': 0, 'model=affine,state=promoted,version=2': 0, 'model=affine,state=rolled_back,version=2': 0 }, 'a rollout started is running');
  // A canary step below weight 1 also shadows the candidate (the rollout's shadow_sample, 1 by default).
  t.same(await weights(), { 'model=affine,role=primary,version=1': 0.9, 'model=affine,role=canary,version=2': 0.1, 'model=affine,role=shadow,version=2': 1 }, 'the rollout\'s step weight');
  await until(async () => (await rollout())['model=affine,state=paused,version=2'] === 1, 'the starved rollout to pause');
  t.equal((await rollout())['model=affine,state=running,version=2'], 0, 'paused, no longer running');

  t.equal((await s.post('/v2/models/affine/rollout/abort', undefined, ADMIN)).json.state, 'rolled_back');
  t.equal((await rollout())['model=affine,state=rolled_back,version=2'], 1, 'rolled back');
  t.same(await weights(), { 'model=affine,role=primary,version=1': 1 }, 'all traffic back on the primary');

  t.equal((await s.post('/v2/repository/models/affine/unload', undefined, ADMIN)).status, 200);
  const m = await scrape(s);
  t.notOk(m.some((x) => x.name === 'umbra_traffic_weight' || x.name === 'umbra_rollout_state'), 'no series once the model is unloaded');
});

t.test('umbra_prediction_log_backlog_rows: rows waiting, then written', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const state = mkdtempSync(join(tmpdir(), 'umbra-backlog-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  // No timed flush: rows wait until the test flushes them.
  const s = await startTestServer(t, { repository: repo.dir, monitoring: { log: { url: `sqlite:${join(state, 'log.sqlite')}`, flushMs: 3_600_000 } } });
  for (let i = 0; i < 3; i++) t.equal((await s.post('/v2/models/affine/infer', { inputs: [x(i)] })).status, 200);
  t.equal(total(await scrape(s), 'umbra_prediction_log_backlog_rows'), 3, 'three rows wait');
  await s.server.monitor!.log!.flush();
  t.equal(total(await scrape(s), 'umbra_prediction_log_backlog_rows'), 0, 'none once written');
});

t.test('promtool check metrics accepts every new series with samples', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.writeConfig('affine', { version_policy: { all: {} } });
  for (const v of [1, 2]) repo.addVersion('affine', v, affineModel(2, v));
  const s = await startTestServer(t, { repository: repo.dir, adminToken: TOKEN });
  t.equal((await s.post('/v2/models/affine/rollout', { candidate: '1', steps: [{ shadow: true, min_requests: 100000 }] }, ADMIN)).status, 201, 'version 1 shadows the newest');
  const text = (await s.get('/metrics')).text;
  const names = new Set(parseExposition(text).map((x) => x.name));
  for (const name of ['umbra_ready', 'umbra_model_state', 'umbra_threads_replaced_total', 'umbra_queue_bound_requests', 'umbra_traffic_weight', 'umbra_rollout_state', 'umbra_prediction_log_backlog_rows']) t.ok(names.has(name), `${name} has samples`);
  const lint = promtoolCheck(text);
  if (!lint) t.skip('promtool is not installed (apt-get install prometheus)');
  else t.ok(lint.ok, `promtool check metrics: ${lint.output}`);
});
