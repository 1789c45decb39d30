// Metric values after known traffic, promtool's lint, the Triton statistics endpoint and the
// prediction ids every answer carries.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, holdExecution, until } from './helpers/repo.js';
import { parseExposition, promtoolCheck, total } from './helpers/prometheus.js';
import { UmbraMetrics, parseBuckets } from '../dist/monitor/index.js';
import { once } from 'node:events';
import WebSocket from 'ws';
import * as grpc from '@grpc/grpc-js';
import { streamUrl } from '../dist/client/index.js';
import { generatedClient } from './helpers/grpc.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function affineServer(t: Parameters<Parameters<typeof t.test>[1]>[0], options: Record<string, unknown> = {}) {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.writeConfig('affine', { max_batch_size: 16, dynamic_batching: { max_queue_delay_microseconds: 2000 } });
  return startTestServer(t, { repository: repo.dir, ...options });
}

t.test('counters and histograms after known traffic', async (t) => {
  const s = await affineServer(t, { monitoring: { buckets: [0.0005, 0.005, 0.05, 0.5] } });
  const random = rng(7);
  let rows = 0;
  const requests: Promise<unknown>[] = [];
  for (let i = 0; i < 24; i++) {
    const n = 1 + (i % 3);
    rows += n;
    const data = Array.from({ length: n * 4 }, () => random() * 10 - 5);
    requests.push(s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [n, 4], data }] }));
  }
  const replies = (await Promise.all(requests)) as { status: number; json: { id?: string } }[];
  t.ok(replies.every((r) => r.status === 200));
  // Every answer carries an id, unique, for feedback.
  const ids = new Set(replies.map((r) => r.json.id));
  t.equal(ids.size, 24);
  t.ok([...ids].every((id) => typeof id === 'string' && id.length > 8));
  // The caller's id is kept.
  const own = await s.post('/v2/models/affine/infer', { id: 'mine-1', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
  t.equal(own.json.id, 'mine-1');
  rows += 1;
  // Failures by reason: a malformed tensor is invalid; an unknown version is invalid too but has no version label.
  const bad = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] });
  t.equal(bad.status, 400);

  const res = await s.get('/metrics');
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /text\/plain/);
  const m = parseExposition(res.text);
  const labels = { model: 'affine', version: '1', role: 'primary' };
  t.equal(total(m, 'umbra_requests_total', { ...labels, outcome: 'success' }), 25);
  t.equal(total(m, 'umbra_requests_total', { ...labels, outcome: 'invalid' }), 1);
  t.equal(total(m, 'umbra_requests_total', { ...labels, outcome: 'timeout' }), 0);
  t.equal(total(m, 'umbra_inferences_total', labels), rows);
  const executions = total(m, 'umbra_executions_total', labels);
  // With one I/O thread the core's batcher ran every batch; with more, an inline model's batches
  // ran on the I/O threads' replicas, each counted from its request's event.
  if (s.server.ioThreads === 1) {
    const stats = s.server.umbra.manager.get('affine').stats();
    t.equal(executions, stats.executions, 'executions = the batcher\'s');
  }
  // Every batch's requests are answered, so their shares make whole batches, exported as such.
  t.ok(Number.isInteger(executions), `a whole number of executions (${executions})`);
  t.ok(executions >= 1, 'executions counted');
  t.ok(executions <= 25, 'batching merged some requests or at most one execution each');
  t.equal(total(m, 'umbra_request_duration_seconds_count', labels), 26);
  t.equal(total(m, 'umbra_queue_duration_seconds_count', labels), 25);
  t.equal(total(m, 'umbra_compute_duration_seconds_count', labels), 25);
  t.equal(total(m, 'umbra_request_duration_seconds_bucket', { ...labels, le: '+Inf' }), 26);
  t.ok(m.some((x) => x.name === 'umbra_request_duration_seconds_bucket' && x.labels.le === '0.005'), 'configured buckets');
  t.ok(total(m, 'umbra_request_duration_seconds_sum', labels) > 0);
  t.equal(total(m, 'umbra_pending_requests', { model: 'affine', version: '1' }), 0);
  t.ok(m.some((x) => x.name === 'process_cpu_seconds_total'), 'process metrics');

  const lint = promtoolCheck(res.text);
  if (!lint) t.skip('promtool is not installed (apt-get install prometheus)');
  else t.ok(lint.ok, `promtool check metrics: ${lint.output}`);
});

t.test('a bad request through predict() or infer() is counted invalid, as the same request over HTTP is', async (t) => {
  const s = await affineServer(t);
  const umbra = s.server.umbra;
  const invalidCount = async () => {
    // The hooks have seen every request refused before this call, on any thread.
    await umbra.settleEvents();
    return total(parseExposition((await s.get('/metrics')).text), 'umbra_requests_total', { model: 'affine', version: '1', role: 'primary', outcome: 'invalid' });
  };
  const bad = { name: 'x', datatype: 'FP32' as const, shape: [1, 3], data: [1, 2, 3] };
  t.equal((await s.post('/v2/models/affine/infer', { inputs: [bad] })).status, 400, 'refused over HTTP');
  t.equal(await invalidCount(), 1, 'counted over HTTP');
  await t.rejects(umbra.predict('affine', { x: { data: [1, 2, 3], shape: [1, 3] } }), { code: 'INVALID_INPUT' }, 'refused by predict()');
  t.equal(await invalidCount(), 2, 'counted from predict()');
  await t.rejects(umbra.infer('affine', undefined, { parameters: {}, inputs: [{ ...bad, data: new Float32Array(3) }] }), { code: 'INVALID_INPUT' }, 'refused by infer()');
  t.equal(await invalidCount(), 3, 'counted from infer()');
  await t.rejects(umbra.infer('affine', undefined, null as never), { code: 'INVALID_INPUT' }, 'a request that is not an object refused by infer()');
  t.equal(await invalidCount(), 4, 'counted from infer() as a body that is not an object is over HTTP');
  t.equal((await s.post('/v2/models/affine/infer', 'null')).status, 400, 'a body that is not an object refused over HTTP');
  t.equal(await invalidCount(), 5, 'counted over HTTP');
});

t.test('Triton statistics endpoint', async (t) => {
  const s = await affineServer(t);
  for (let i = 0; i < 5; i++) await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8.5] }] });
  const r = await s.get('/v2/models/affine/stats');
  t.equal(r.status, 200);
  const [st] = r.json.model_stats;
  t.equal(st.name, 'affine');
  t.equal(st.version, '1');
  t.equal(st.inference_count, 10);
  t.equal(st.execution_count, 5);
  t.equal(st.inference_stats.success.count, 5);
  t.ok(st.inference_stats.success.ns > 0);
  t.ok(st.inference_stats.compute_infer.ns > 0);
  t.ok(st.last_inference > 0);
  t.equal((await s.get('/v2/models/affine/versions/1/stats')).json.model_stats.length, 1);
  t.equal((await s.get('/v2/models/nope/stats')).status, 404);
  // Triton's form without a model: every model's statistics.
  t.same((await s.get('/v2/models/stats')).json, r.json, 'GET /v2/models/stats: every model\'s (here the one)');
});

t.test('shadow API, buckets parsing and monitoring off', async (t) => {
  const metrics = new UmbraMetrics({ processMetrics: false });
  metrics.shadowDropped.inc({ model: 'm', version: '2' });
  metrics.shadowDropped.inc({ model: 'm', version: '2' }, 2);
  metrics.shadowAgreement.set({ model: 'm', version: '2' }, 0.75);
  const m = parseExposition((await metrics.exposition()).body);
  t.equal(total(m, 'umbra_shadow_dropped_total', { model: 'm', version: '2' }), 3);
  t.equal(total(m, 'umbra_shadow_agreement', { model: 'm', version: '2' }), 0.75);
  t.same(parseBuckets('0.001, 0.01,1'), [0.001, 0.01, 1]);
  t.throws(() => parseBuckets('0.1,0.01'), /ascending/);
  t.throws(() => parseBuckets('x'), /positive seconds/);

  const s = await affineServer(t, { monitoring: false });
  t.equal((await s.get('/metrics')).status, 404);
  const r = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
  t.equal(r.json.id, undefined, 'no id is assigned when monitoring is off');
});

t.test('umbra_executions_total sums requests\' shares into whole batches, without float residue', async (t) => {
  const metrics = new UmbraMetrics({ processMetrics: false });
  const labels = { model: 'm', version: '1', role: 'primary' as const };
  const event = (rows: number, batchRows: number) => ({ ...labels, outcome: 'success' as const, context: {} as never, durationMs: 1, timing: { queueMs: 0, computeMs: 1, rows, batchRows } });
  // 2,554 batches of three one-row requests: the float sum of the thirds is 2553.999999999991.
  for (let b = 0; b < 2554; b++) for (let r = 0; r < 3; r++) metrics.observe(event(1, 3));
  // One batch of 7 rows split 2 + 5, and one request of a batch whose others are not counted yet.
  metrics.observe(event(2, 7));
  metrics.observe(event(5, 7));
  metrics.observe(event(1, 3));
  const m = parseExposition((await metrics.exposition()).body);
  t.equal(total(m, 'umbra_executions_total', labels), 2555.333333);
  t.equal(total(m, 'umbra_inferences_total', labels), 2554 * 3 + 8);
});

t.test('a model unloaded stops reporting drift and accuracy: no stale verdict keeps an alert firing', async (t) => {
  const s = await affineServer(t, { monitoring: { drift: { captureRows: 10, minSamples: 5 } } });
  for (let i = 0; i < 4; i++) {
    const r = await s.post('/v2/models/affine/infer', { id: `u${i}`, inputs: [{ name: 'x', datatype: 'FP32', shape: [8, 4], data: Array.from({ length: 32 }, (_, k) => k + i) }] });
    t.equal(r.status, 200);
  }
  const gauges = ['umbra_drift_detected', 'umbra_drift_window_rows'];
  const present = (text: string) => parseExposition(text).filter((x) => gauges.includes(x.name) && x.labels.model === 'affine').map((x) => x.name).sort();
  t.same(present((await s.get('/metrics')).text), gauges, 'reported while it serves');
  t.equal((await s.post('/v2/repository/models/affine/unload', {})).status, 200);
  t.same(present((await s.get('/metrics')).text), [], 'gone once it is unloaded');
});

t.test('a model unloaded leaves no series behind: loaded, served and unloaded again and again, /metrics holds none of it', async (t) => {
  const s = await affineServer(t);
  const series = async () => parseExposition((await s.get('/metrics')).text).filter((x) => x.labels.model === 'affine');
  const x = { name: 'x', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] };
  const labelled: number[] = [];
  for (let cycle = 0; cycle < 5; cycle++) {
    if (cycle > 0) t.equal((await s.post('/v2/repository/models/affine/load', {})).status, 200);
    for (let i = 0; i < 3; i++) t.equal((await s.post('/v2/models/affine/infer', { id: `c${cycle}-${i}`, inputs: [x] })).status, 200);
    const labels = await s.post('/v2/models/affine/feedback', { feedback: [{ id: `c${cycle}-0`, truth: [1, 2] }, { id: 'never-answered', truth: 1 }] });
    t.same([labels.status, labels.json.accepted, labels.json.unknown], [200, 1, ['never-answered']]);
    const served = await series();
    t.same(['accepted', 'unknown'].map((result) => total(served, 'umbra_feedback_total', { model: 'affine', result })), [1, 1], `cycle ${cycle}: feedback counted`);
    t.equal(total(served, 'umbra_requests_total', { model: 'affine', version: '1', role: 'primary', outcome: 'success' }), 3, `cycle ${cycle}: counted while it serves`);
    labelled.push((await s.get('/v2/models/affine/drift')).json.accuracy.labelled);
    t.equal((await s.post('/v2/repository/models/affine/unload', {})).status, 200);
    t.same((await series()).map((m) => m.name), [], `cycle ${cycle}: nothing of it once it is unloaded`);
  }
  // Its accuracy window went with it: each load starts its evidence afresh, and nothing piles up.
  t.same(labelled, labelled.map(() => labelled[0]), 'each load\'s live accuracy counts only its own labels');
});

t.test('requests are counted by the transport that carried them: HTTP, WebSocket, gRPC and predict()', async (t) => {
  const s = await affineServer(t, { grpcPort: 'any' });
  const x = { name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] };
  t.equal((await s.post('/v2/models/affine/infer', { inputs: [x] })).status, 200, 'HTTP');
  t.equal((await s.post('/v2/models/affine/infer', { inputs: [x] })).status, 200, 'HTTP again');
  const ws = new WebSocket(streamUrl(s.url));
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  ws.send(JSON.stringify({ id: 'w', model_name: 'affine', inputs: [x] }));
  const [frame] = await once(ws, 'message');
  t.notOk(JSON.parse(String(frame)).error, 'WebSocket');
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const g = await c.call('ModelInfer', { model_name: 'affine', inputs: [{ ...x, contents: { fp32_contents: x.data } }] });
  t.ok(g.ok, 'gRPC');
  await s.server.umbra.predict('affine', { x: { data: [1, 2, 3, 4], shape: [1, 4] } });
  const bad = await c.call('ModelInfer', { model_name: 'affine', inputs: [{ name: 'nope', datatype: 'FP32', shape: [1, 1], contents: { fp32_contents: [1] } }] });
  t.notOk(bad.ok, 'an invalid gRPC request');
  await s.server.umbra.settleEvents();
  const m = parseExposition((await s.get('/metrics')).text);
  const labels = { model: 'affine', version: '1', role: 'primary' };
  const count = (name: string, outcome?: string) => Object.fromEntries(['http', 'ws', 'grpc', 'in-process'].map((transport) => [transport, total(m, name, { ...labels, transport, ...(outcome ? { outcome } : {}) })]));
  t.same(count('umbra_requests_total', 'success'), { http: 2, ws: 1, grpc: 1, 'in-process': 1 }, 'successes by transport');
  t.same(count('umbra_requests_total', 'invalid'), { http: 0, ws: 0, grpc: 1, 'in-process': 0 }, 'the invalid request under its own transport');
  t.same(count('umbra_request_duration_seconds_count'), { http: 2, ws: 1, grpc: 2, 'in-process': 1 }, 'latency histograms by transport (every outcome)');
  t.equal(total(m, 'umbra_requests_total', { ...labels, outcome: 'success' }), 5, 'summed over transports: every request once');
});

/**
 * A server whose model `held` runs one batch at a time, with its first request's batch held
 * running: the next request waits in the queue until `finish` releases it. `finish` then checks
 * the held request was served and returns the model's request counts by outcome.
 */
async function heldQueue(t: Parameters<Parameters<typeof t.test>[1]>[0], grpcPort?: 'any') {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('held', 1, affineModel(2, 0));
  repo.writeConfig('held', { max_batch_size: 4, instance_group: [{ count: 1 }], parameters: { execution: 'worker' } });
  const s = await startTestServer(t, { repository: repo.dir, ...(grpcPort ? { grpcPort } : {}) });
  const mv = s.server.umbra.manager.get('held');
  const hold = holdExecution(mv);
  t.teardown(() => hold.release());
  const first = s.post('/v2/models/held/infer', { inputs: [HELD_X] });
  await until(() => hold.held === 1, 'the first request running');
  let client: ReturnType<typeof generatedClient> | undefined;
  if (grpcPort) {
    client = generatedClient(s.server.grpcPort);
    t.teardown(() => client!.close());
    // The channel connected first, so a deadline runs out on the server, not while connecting.
    t.ok((await client.call('ServerLive', {})).ok, 'the channel is up');
  }
  return {
    s, mv, client: client!,
    async finish(transport: string, outcomes: string[]): Promise<number[]> {
      await until(() => mv.pending === 0, 'the waiting request left the queue');
      hold.release();
      t.equal((await first).status, 200, 'the held request is served');
      await s.server.umbra.settleEvents();
      const m = parseExposition((await s.get('/metrics')).text);
      const labels = { model: 'held', version: '1', role: 'primary', transport };
      return outcomes.map((outcome) => total(m, 'umbra_requests_total', { ...labels, outcome }));
    },
  };
}

const HELD_X = { name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] };
const HELD_GRPC = { model_name: 'held', inputs: [{ ...HELD_X, contents: { fp32_contents: HELD_X.data } }] };

t.test('a request whose client went away while it waited is counted cancelled, not internal', async (t) => {
  const { s, mv, finish } = await heldQueue(t);
  const client = new AbortController();
  const gone = fetch(`${s.url}/v2/models/held/infer`, { method: 'POST', body: JSON.stringify({ inputs: [HELD_X] }), signal: client.signal }).catch(() => undefined);
  await until(() => mv.pending === 1, 'the second request queued');
  client.abort();
  await gone;
  t.same(await finish('http', ['success', 'cancelled', 'internal']), [1, 1, 0], 'one success, one cancelled, no internal error');
});

t.test('a gRPC call whose deadline passes while it waits is counted timeout, as an HTTP request past its timeout is', async (t) => {
  const { mv, client, finish } = await heldQueue(t, 'any');
  // Held behind the running batch until released, so its deadline always passes first.
  const call = client.call('ModelInfer', HELD_GRPC, {}, { deadline: Date.now() + 1000 });
  await until(() => mv.pending === 1, 'the call queued');
  const late = await call;
  t.equal(late.ok ? 0 : late.error.code, 4, 'DEADLINE_EXCEEDED');
  t.same(await finish('grpc', ['timeout', 'cancelled', 'internal']), [1, 0, 0], 'counted timeout');
});

t.test('a streaming gRPC call whose deadline passes times out the requests it still waits for', async (t) => {
  const { client, finish } = await heldQueue(t, 'any');
  const call = client.raw.ModelStreamInfer(new grpc.Metadata(), { deadline: Date.now() + 1000 });
  const ended = new Promise<number>((resolve) => call.on('error', (err: grpc.ServiceError) => resolve(err.code)));
  call.on('data', () => undefined);
  call.write({ ...HELD_GRPC, id: 's1' });
  t.equal(await ended, grpc.status.DEADLINE_EXCEEDED, 'DEADLINE_EXCEEDED');
  t.same(await finish('grpc', ['timeout', 'cancelled', 'internal']), [1, 0, 0], 'counted timeout');
});

t.test('a gRPC call its client cancels long before its deadline is counted cancelled', async (t) => {
  const { mv, client, finish } = await heldQueue(t, 'any');
  const ended = new Promise<number>((resolve) => {
    const call = client.raw.ModelInfer(HELD_GRPC, new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (err: grpc.ServiceError | null) => resolve(err ? err.code : 0));
    void until(() => mv.pending === 1, 'the call queued').then(() => call.cancel());
  });
  t.equal(await ended, grpc.status.CANCELLED, 'CANCELLED');
  t.same(await finish('grpc', ['timeout', 'cancelled', 'internal']), [0, 1, 0], 'counted cancelled');
});
