// Overload on default settings: a model with no max_queue_size gets a queue bound derived from its
// measured batch time; a flood past it is refused at once with 503 + Retry-After while every
// admitted answer is exact; a backlog in front of the queue is refused only once it stands; and a
// client's timeout cancels work that has not started (through I/O threads too).
import t from 'tap';
import http from 'node:http';
import { startTestServer } from './helpers/server.js';
import { tempRepo, slowModel, holdExecution, until } from './helpers/repo.js';
import { deriveQueueBound, describeQueueBound, QUEUE_BUDGET_BATCHES, QUEUE_BUDGET_FLOOR_MS } from '../dist/scheduler/options.js';
import { BacklogDetector, BACKLOG_MIN_US } from '../dist/scheduler/backlog.js';
import { DynamicBatcher, QUEUE_AT_BOUND, QUEUE_STANDS } from '../dist/scheduler/batcher.js';
import { rawSequence, requestBytes } from './helpers/raw-http.js';

// One server for both: 'flood' has no config (its bound is derived); 'gate' runs one batch at a time.
const repo = tempRepo();
t.teardown(() => repo.remove());
repo.addVersion('flood', 1, slowModel(512, 160));
repo.addVersion('gate', 1, slowModel(512, 160));
repo.writeConfig('gate', { max_batch_size: 64, instance_group: [{ count: 1 }], dynamic_batching: { default_queue_policy: { max_queue_size: 16 } } });
// Two versions, one batch at a time each, a queue of one: where a traffic policy routes matters.
repo.addVersion('split', 1, slowModel(512, 160));
repo.addVersion('split', 2, slowModel(512, 160));
repo.writeConfig('split', { version_policy: { all: {} }, max_batch_size: 64, instance_group: [{ count: 1 }], dynamic_batching: { default_queue_policy: { max_queue_size: 1 } } });
const s = await startTestServer(t, { repository: repo.dir, monitoring: false });

t.test('the derived bound: what the slots run within the budget, at least a full batch per slot', async (t) => {
  const heavy = deriveQueueBound({ batchMicros: 20_000, batchRows: 16, slots: 2, maxBatchSize: 64 });
  t.equal(heavy.budgetMs, QUEUE_BUDGET_BATCHES * 20, 'default budget: batch times');
  t.equal(heavy.maxQueueSize, 2 * 64, 'a full batch (4 x 20 ms) takes the whole budget: one full batch per slot');
  const medium = deriveQueueBound({ batchMicros: 5_000, batchRows: 16, slots: 1, maxBatchSize: 32 });
  t.equal(medium.budgetMs, QUEUE_BUDGET_FLOOR_MS);
  t.equal(medium.maxQueueSize, ((QUEUE_BUDGET_FLOOR_MS - 10) / 5) * 16, 'what the slot runs in the budget once the full batch ahead (2 x 5 ms) is done');
  const cheap = deriveQueueBound({ batchMicros: 50, batchRows: 16, slots: 1, maxBatchSize: 64 });
  t.equal(cheap.budgetMs, QUEUE_BUDGET_FLOOR_MS, 'a cheap model gets the floor');
  t.equal(cheap.maxQueueSize, Math.ceil(((QUEUE_BUDGET_FLOOR_MS * 1000 - 4 * 50) / 50) * 16), 'and what runs within it after a full batch');
  const huge = deriveQueueBound({ batchMicros: 2_000_000, batchRows: 16, slots: 2, maxBatchSize: 64, budgetMs: 100 });
  t.equal(huge.maxQueueSize, 128, 'never below one full batch per slot');
  t.equal(huge.budgetSource, 'parameters.queue_budget_ms');
  const alone = deriveQueueBound({ batchMicros: 10_000, batchRows: 1, slots: 3, maxBatchSize: 0, budgetMs: 50 });
  t.equal(alone.maxQueueSize, 12, 'a model that does not batch: one request per run, after the one running on each slot');
  t.match(describeQueueBound(heavy), /queue bound 128 requests, derived from a 16-row batch measured at 20 ms.*80 ms queue budget.*503 with Retry-After/);
});

t.test('a stall is not a backlog: refusals start only once lateness has stood for an interval', async (t) => {
  const d = new BacklogDetector(10_000);
  t.equal(d.budgetUs, BACKLOG_MIN_US, 'lateness is judged against at least BACKLOG_MIN_US');
  const late = BACKLOG_MIN_US + 1;
  t.notOk(d.refuse(late, 0), 'the first late request is served');
  t.notOk(d.refuse(late, BACKLOG_MIN_US / 2), 'late for half an interval: served');
  t.notOk(d.refuse(10, BACKLOG_MIN_US * 0.9), 'one on time clears it');
  t.notOk(d.refuse(late, BACKLOG_MIN_US), 'late again: a new interval starts');
  t.ok(d.refuse(late, BACKLOG_MIN_US * 2), 'late for a whole interval: refused');
  t.ok(d.refuse(late, BACKLOG_MIN_US * 2 + 1), 'and every late one after it');
  t.notOk(d.refuse(0, BACKLOG_MIN_US * 3), 'until one arrives on time');
});

t.test('the batcher: time waited before submit counts toward the timeout and the admission budget', async (t) => {
  let now = 0;
  const timers: { at: number; fn: () => void }[] = [];
  let release: (() => void) | undefined;
  const executed: number[] = [];
  const batcher = new DynamicBatcher<number, number>({
    maxBatchSize: 1, maxQueueDelayUs: 0, preferredBatchSizes: [], maxQueueSize: 0, admissionBudgetUs: 50_000,
    defaultTimeoutUs: 0, priorityLevels: 0, defaultPriorityLevel: 0, maxInFlight: 1,
    now: () => now,
    setTimer: (fn, delayUs) => {
      const timer = { at: now + delayUs, fn };
      timers.push(timer);
      return () => timers.splice(timers.indexOf(timer), 1);
    },
    execute: (items) => {
      executed.push(...items);
      return new Promise((resolve) => { release = () => resolve(items); });
    },
  });
  const first = batcher.submit(1, { rows: 1, shapeKey: '' });
  // Queued behind the running batch; it had waited 4 ms in the transport, with a 5 ms timeout.
  const timed = batcher.submit(2, { rows: 1, shapeKey: '', timeoutUs: 5000, waitedUs: 4000 });
  now = 1500;
  for (const timer of timers.splice(0)) if (timer.at <= now) timer.fn();
  await t.rejects(timed, { code: 'TIMEOUT' }, 'timed out 1.5 ms after submit: its 4 ms before counted');
  release!();
  t.equal(await first, 1);
  t.same(executed, [1], 'the timed-out request never ran');
  // Late by more than the budget for a whole interval: refused; then on time: admitted.
  const lateBy = BACKLOG_MIN_US + 1000;
  const served = batcher.submit(3, { rows: 1, shapeKey: '', waitedUs: lateBy });
  release!();
  t.equal(await served, 3, 'the first late request is served');
  now += BACKLOG_MIN_US + 1;
  await t.rejects(batcher.submit(4, { rows: 1, shapeKey: '', waitedUs: lateBy }), { code: 'QUEUE_FULL', retryAfter: 1 }, 'late for a whole interval: refused with Retry-After');
  const onTime = batcher.submit(5, { rows: 1, shapeKey: '', waitedUs: 10 });
  release!();
  t.equal(await onTime, 5, 'on time again: served');
  t.equal(batcher.stats().rejectedQueueFull, 1);
});


/** POSTs on at most `sockets` connections at once, so a flood is many requests, not many sockets. */
function postAll(bodies: unknown[], sockets: number): Promise<{ status: number; retryAfter: string | undefined; json: any }[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: sockets });
  return Promise.all(bodies.map((b) => new Promise<{ status: number; retryAfter: string | undefined; json: any }>((resolve, reject) => {
    const text = JSON.stringify(b);
    const req = http.request({ host: '127.0.0.1', port: s.server.port, method: 'POST', path: '/v2/models/flood/infer', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, json: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.on('error', reject);
    req.end(text);
  }))).finally(() => agent.destroy());
}

t.test('through the server: a flood past the derived bound is refused with 503 + Retry-After, every admitted answer exact', async (t) => {
  const meta = (await s.get('/v2/models/flood')).json;
  t.equal(meta.queue.source, 'derived', 'no max_queue_size in any config: the bound is derived');
  t.ok(meta.queue.max_queue_size >= 64, `bound ${meta.queue.max_queue_size} from a ${meta.queue.measured_batch_rows}-row batch of ${meta.queue.measured_batch_ms} ms, budget ${meta.queue.budget_ms} ms`);
  const mv = s.server.umbra.manager.get('flood');
  const bound = mv.queueBound.maxQueueSize;
  let peak = 0;
  let flooding = true;
  const sampler = (async () => {
    while (flooding) {
      peak = Math.max(peak, mv.pending);
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  // Far more at once than the bound plus what the two workers hold (a running and a staged batch each).
  const inFlight = bound + 4 * 64 + 256;
  const inputs = Array.from({ length: 2 * inFlight }, (_, i) => Array.from({ length: 512 }, (_, j) => ((i * 7 + j) % 13) - 6));
  const replies = await postAll(inputs.map((data) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 512], data }] })), inFlight);
  flooding = false;
  await sampler;
  const statuses: Record<number, number> = {};
  let exact = 0;
  let refusalsWithoutRetryAfter = 0;
  replies.forEach((r, i) => {
    statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    if (r.status === 200 && JSON.stringify(r.json.outputs[0].data) === JSON.stringify(inputs[i])) exact += 1;
    if (r.status === 503 && (r.retryAfter !== '1' || typeof r.json?.error !== 'string')) refusalsWithoutRetryAfter += 1;
  });
  t.ok((statuses[503] ?? 0) > 0, `some of ${inputs.length} were refused (${JSON.stringify(statuses)})`);
  t.equal(refusalsWithoutRetryAfter, 0, 'every refusal has Retry-After: 1 and a JSON error');
  t.equal(exact, statuses[200], 'every admitted answer is exact (the model is an identity)');
  t.same(Object.keys(statuses).filter((k) => k !== '200' && k !== '503'), [], 'nothing but 200 and 503');
  t.ok(peak <= bound, `the queue never held more than its bound (peak ${peak}, bound ${bound})`);
  const after = await s.post('/v2/models/flood/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 512], data: inputs[0] }] });
  t.equal(after.status, 200, 'after the flood a request is served');
});

t.test('a client timeout cancels work that has not started', async (t) => {
  const mv = s.server.umbra.manager.get('gate');
  const rows = (n: number, timeout?: number) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [n, 512], data: new Array(n * 512).fill(1) }], ...(timeout ? { parameters: { timeout } } : {}) });
  const before = mv.stats().executedRequests;
  // Full 64-row batches, one at a time on the one instance: the later ones queue.
  const hold = holdExecution(mv);
  t.teardown(() => hold.release());
  const blockers = Array.from({ length: 3 }, () => s.post('/v2/models/gate/infer', rows(64)));
  await until(() => mv.inFlight > 0 && mv.pending > 0, 'a batch running and one queued', 60_000);
  const timed = await s.post('/v2/models/gate/infer', rows(1, 1000));
  t.equal(timed.status, 504, `a 1 ms timeout behind a running batch: 504 (${timed.json?.error})`);
  hold.release();
  const done = await Promise.all(blockers);
  t.same(done.map((r) => r.status), [200, 200, 200], 'the others are served');
  t.equal(mv.stats().executedRequests - before, 3, 'the timed-out request never ran');
  t.ok(mv.stats().timeouts >= 1);
});

t.test('the batcher: a queue that stands (batches leave it late for an interval) refuses arrivals until it drains', async (t) => {
  let now = 0;
  const releases: (() => void)[] = [];
  const published: number[] = [];
  const batcher = new DynamicBatcher<number, number>({
    maxBatchSize: 1, maxQueueDelayUs: 0, preferredBatchSizes: [], maxQueueSize: 0, admissionBudgetUs: 50_000,
    defaultTimeoutUs: 0, priorityLevels: 0, defaultPriorityLevel: 0, maxInFlight: 1,
    now: () => now,
    setTimer: () => () => undefined,
    execute: (items) => new Promise((resolve) => { releases.push(() => resolve(items)); }),
    onAdmission: (state) => published.push(state),
  });
  // Runs the batch in flight to its end at `at` (µs); the next one leaves the queue then.
  const finishAt = async (at: number) => {
    now = at;
    releases.shift()!();
    await new Promise((resolve) => setImmediate(resolve));
  };
  // Ten arrive on time; each batch takes 150 ms, four times what the bound was derived for.
  const admitted = Array.from({ length: 10 }, (_, i) => batcher.submit(i, { rows: 1, shapeKey: '' }));
  await finishAt(150_000);
  const late = batcher.submit(10, { rows: 1, shapeKey: '' });
  t.equal(batcher.pending, 9, 'one batch left late: no refusal yet (a stall is not a standing queue)');
  await finishAt(300_000);
  t.same(published, [QUEUE_STANDS], 'the standing queue is published for transports that refuse before reading');
  const early = batcher.refuseEarly();
  t.match(early, { code: 'QUEUE_FULL', retryAfter: 1, message: /the queue stands/ }, 'and refuseEarly gives the same refusal');
  await t.rejects(batcher.submit(11, { rows: 1, shapeKey: '' }), { code: 'QUEUE_FULL', retryAfter: 1, message: /the queue stands/ }, 'late for a whole interval: arrivals are refused');
  for (let k = 3; k <= 10; k++) await finishAt(300_000 + k);
  t.equal(batcher.pending, 0, 'the queue drained');
  const fresh = batcher.submit(12, { rows: 1, shapeKey: '' });
  t.equal(batcher.pending, 1, 'an empty queue takes a request whatever the last batch waited');
  await finishAt(300_011);
  const next = batcher.submit(13, { rows: 1, shapeKey: '' });
  t.equal(batcher.pending, 1, 'a batch that left on time: the queue admits again');
  await finishAt(300_012);
  await finishAt(300_013);
  t.same(await Promise.all([...admitted, late, fresh, next]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13]);
  t.equal(batcher.stats().rejectedQueueFull, 2, 'the early refusal and the submit');
  // Drained, it admits; the one request it then takes left behind a late batch, so for a moment
  // the queue stands again (submit would refuse the next), until that request leaves on time.
  t.same(published, [QUEUE_STANDS, 0, QUEUE_STANDS, 0], 'each change is published, as submit would decide it');
});

t.test('the batcher: whether it refuses every request now is published as it changes, and refuseEarly counts', async (t) => {
  const releases: (() => void)[] = [];
  const published: number[] = [];
  const batcher = new DynamicBatcher<number, number>({
    maxBatchSize: 4, maxQueueDelayUs: 0, preferredBatchSizes: [], maxQueueSize: 3,
    defaultTimeoutUs: 0, priorityLevels: 0, defaultPriorityLevel: 0, maxInFlight: 1, maxStaged: 1,
    execute: (items) => new Promise((resolve) => { releases.push(() => resolve(items)); }),
    onAdmission: (state) => published.push(state),
  });
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  const all: Promise<number>[] = [batcher.submit(0, { rows: 4, shapeKey: '' })];
  t.equal(batcher.refuseEarly(), undefined, 'a batch running, nothing queued: admits');
  all.push(batcher.submit(1, { rows: 4, shapeKey: '' }));
  t.equal(batcher.pending, 0, 'a full batch is staged on the busy slot');
  t.same(published, [], 'the staged batch is one request of the bound of 3: nothing to publish');
  all.push(batcher.submit(2, { rows: 1, shapeKey: '' }), batcher.submit(3, { rows: 1, shapeKey: '' }));
  t.same(published, [QUEUE_AT_BOUND], 'one staged and two queued: the bound of 3 is reached and published');
  const early = batcher.refuseEarly();
  t.match(early, { code: 'QUEUE_FULL', retryAfter: 1, message: /holds its limit of 3 requests/ }, 'refuseEarly gives the QUEUE_FULL submit gives');
  await t.rejects(batcher.submit(4, { rows: 1, shapeKey: '' }), { code: 'QUEUE_FULL', message: early!.message });
  t.equal(batcher.stats().rejectedQueueFull, 2, 'both counted');
  batcher.countRefused();
  t.equal(batcher.stats().rejectedQueueFull, 3, 'and one made elsewhere on the published state');
  releases.shift()!();
  await settle();
  t.same(published, [QUEUE_AT_BOUND, 0], 'the staged batch starts, the queue takes the slot: admitting is published');
  t.equal(batcher.refuseEarly(), undefined);
  while (releases.length > 0) {
    releases.shift()!();
    await settle();
  }
  t.same(await Promise.all(all), [0, 1, 2, 3]);
  t.same(published, [QUEUE_AT_BOUND, 0], 'nothing more to publish');
  batcher.close();
  t.equal(batcher.refuseEarly(), undefined, 'closed: the usual path answers (NOT_READY), not an early QUEUE_FULL');
});

t.test('a request the queue would refuse is refused before its body is read, and the connection goes on', async (t) => {
  const mv = s.server.umbra.manager.get('gate');
  const rows = (n: number) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [n, 512], data: new Array(n * 512).fill(1) }] });
  const refusedBefore = mv.stats().rejectedQueueFull;
  const hold = holdExecution(mv);
  t.teardown(() => hold.release());
  // One 64-row batch held on the one instance, then the queue filled to its bound of 16.
  const running = s.post('/v2/models/gate/infer', rows(64));
  await until(() => mv.inFlight > 0, 'a batch running', 60_000);
  const queued = Array.from({ length: 16 }, () => s.post('/v2/models/gate/infer', rows(1)));
  await until(() => mv.pending === 16, 'the queue at its bound of 16', 60_000);
  const body = Buffer.from(JSON.stringify(rows(1)));
  const half = Math.floor(body.length / 2);
  const head = requestBytes('POST', '/v2/models/gate/infer', [['Host', 'x'], ['Content-Type', 'application/json'], ['Content-Length', String(body.length)]]);
  // The first answer must come with half the body unsent: the server cannot have read it.
  const answers = await rawSequence(s.server.port, [[Buffer.concat([head, body.subarray(0, half)])], [body.subarray(half), requestBytes('GET', '/v2/health/live', [['Host', 'x']])]], { gapMs: 20 });
  t.equal(answers.length, 2, 'answered with half its body unsent, then the next request on the connection');
  const refusal = answers[0];
  t.equal(refusal?.status, 503);
  t.equal(refusal?.headers['retry-after'], '1');
  t.match(refusal && JSON.parse(refusal.body.toString()), { error: /queue holds its limit of 16 requests/ });
  t.equal(answers[1]?.status, 200, 'the rest of the refused body was read and dropped: the next request is served');
  // KServe V1's predict the same way.
  const v1 = Buffer.from(JSON.stringify({ instances: [new Array(512).fill(1)] }));
  const v1Head = requestBytes('POST', '/v1/models/gate:predict', [['Host', 'x'], ['Content-Type', 'application/json'], ['Content-Length', String(v1.length)]]);
  const v1Answers = await rawSequence(s.server.port, [[Buffer.concat([v1Head, v1.subarray(0, 100)])], [v1.subarray(100), requestBytes('GET', '/v2/health/live', [['Host', 'x']])]], { gapMs: 20 });
  t.same(v1Answers.map((a) => a.status), [503, 200], 'V1 predict: refused with most of its body unsent, the connection goes on');
  await s.server.umbra.settleEvents();
  t.equal(mv.stats().rejectedQueueFull - refusedBefore, 2, 'each counted once, as a refusal of the version');
  hold.release();
  const done = await Promise.all([running, ...queued]);
  t.same([...new Set(done.map((r) => r.status))], [200], 'everything admitted is served');
  const after = await s.post('/v2/models/gate/infer', rows(1));
  t.equal(after.status, 200, 'the queue drained: admitting again (the published state follows)');
});

t.test('no early refusal where a traffic policy may route the request elsewhere', async (t) => {
  const row = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 512], data: new Array(512).fill(1) }] };
  const v2 = s.server.umbra.manager.get('split', '2');
  const hold = holdExecution(v2);
  t.teardown(() => hold.release());
  // Version 2, the newest and so the default, refuses every request: one batch held, one queued.
  const held = [s.post('/v2/models/split/versions/2/infer', row)];
  await until(() => v2.inFlight > 0, 'a batch of version 2 running', 60_000);
  held.push(s.post('/v2/models/split/versions/2/infer', row));
  await until(() => v2.pending === 1, 'version 2 queue at its bound of 1', 60_000);
  t.equal((await s.post('/v2/models/split/infer', row)).status, 503, 'unversioned, no policy: the default version refuses');
  const policy = await s.request('PUT', '/v2/models/split/traffic', JSON.stringify({ primary: '1' }), { 'content-type': 'application/json' });
  t.equal(policy.status, 200, `the policy sends unversioned requests to version 1 (${JSON.stringify(policy.json)})`);
  const routed = await s.post('/v2/models/split/infer', row);
  t.equal(routed.status, 200, 'not refused for the default version it will not run on');
  t.equal(routed.headers.get('x-umbra-version'), '1', 'served by version 1, where the policy routes it');
  const named = await s.post('/v2/models/split/versions/2/infer', row);
  t.equal(named.status, 503, 'a request naming version 2 is still refused');
  t.equal(named.headers.get('retry-after'), '1');
  hold.release();
  t.same((await Promise.all(held)).map((r) => r.status), [200, 200]);
});
