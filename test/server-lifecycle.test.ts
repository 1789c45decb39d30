// Batching through the server, queue limits, timeouts, priorities, worker crash recovery,
// atomic reload, readiness during warm-up and drain.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, fixedLengthModel, sequenceModel, slowModel, holdExecution, until } from './helpers/repo.js';
import { property } from './helpers/property.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { TaskLostError } from '../dist/workers/pool.js';

// Lets a request ask its worker to crash (honoured only with this variable set).
process.env.UMBRA_FAULT_INJECTION = '1';

// About 40 ms per request on this machine: slow enough that requests really queue up.
const WIDTH = 1024;
const DEPTH = 400;
const row = (v: number) => ({ name: 'x', shape: [1, WIDTH], datatype: 'FP32', data: new Array(WIDTH).fill(v) });

t.test('concurrent requests are batched and each gets its own rows back', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('slow', 1, slowModel(WIDTH, DEPTH));
  repo.writeConfig('slow', { max_batch_size: 8, dynamic_batching: { max_queue_delay_microseconds: 2000 }, instance_group: [{ count: 1 }] });
  const s = await startTestServer(t, { repository: repo.dir });
  const replies = await Promise.all(Array.from({ length: 24 }, (_, i) => s.post('/v2/models/slow/infer', { id: String(i), inputs: [row(i)] })));
  const own = property('each of 24 batched requests is answered 200 with its own id and row');
  for (const [i, r] of replies.entries()) {
    own.same([r.status, r.json?.id, r.json?.outputs?.[0]?.data[0], r.json?.outputs?.[0]?.data[WIDTH - 1]], [200, String(i), i, i], () => `request ${i} (status, id, first and last value)`);
  }
  own.assert(t);
  const stats = s.server.umbra.manager.get('slow').stats();
  t.equal(stats.inferences, 24, 'every row ran exactly once');
  t.ok(stats.executions < 24, `24 requests ran in ${stats.executions} batches`);
  t.ok(stats.executions >= 3, 'no batch exceeded max_batch_size 8');
});

t.test('without an instance_group a model runs batches on every worker at once; with one, as many as it counts', async (t) => {
  for (const [config, expected] of [[{}, 2], [{ instance_group: [{ count: 1 }] }, 1]] as const) {
    const repo = tempRepo();
    t.teardown(() => repo.remove());
    repo.addVersion('slow', 1, slowModel(WIDTH, DEPTH));
    repo.writeConfig('slow', { max_batch_size: 1, dynamic_batching: { max_queue_delay_microseconds: 0 }, ...config });
    const s = await startTestServer(t, { repository: repo.dir, workers: 2 });
    const umbra = s.server.umbra;
    t.equal(umbra.manager.get('slow').placement, 'worker');
    // Count batches handed to the pool at once, and of them those sent to a free worker (the
    // others are staged: full batches waiting on a busy worker). All three requests are submitted
    // before any can finish (a worker's answer arrives on a later turn of the event loop).
    const run = umbra.pool.run.bind(umbra.pool);
    let running = 0;
    let most = 0;
    let executing = 0;
    let mostExecuting = 0;
    umbra.pool.run = async (...args: Parameters<typeof run>) => {
      const staged = args[3]?.staged === true;
      most = Math.max(most, ++running);
      if (!staged) mostExecuting = Math.max(mostExecuting, ++executing);
      try {
        return await run(...args);
      } finally {
        running -= 1;
        if (!staged) executing -= 1;
      }
    };
    const answers = await Promise.all([1, 2, 3].map((v) => umbra.predict('slow', { x: { data: new Float32Array(WIDTH).fill(v), shape: [1, WIDTH] } })));
    t.same(answers.map((a) => (a.outputs[0]!.data as Float32Array)[0]), [1, 2, 3], 'each request got its own row');
    t.equal(mostExecuting, expected, `${JSON.stringify(config)}: at most ${expected} batches sent to free workers at once`);
    t.equal(most, expected + 1, 'and one more, staged on a busy worker');
  }
});

t.test('a batch that finds workers idle is split across them and reassembled in order; under load, with an instance_group or shards under shard_min_rows it runs whole', async (t) => {
  const width = 256;
  const rowsOf = (n: number, from: number) => {
    const data = new Float32Array(n * width);
    for (let r = 0; r < n; r++) data.fill(from + r, r * width, (r + 1) * width);
    return { x: { data, shape: [n, width] } };
  };
  const cases = [
    ['no instance_group', {}],
    ['instance_group', { instance_group: [{ count: 2 }] }],
    ['shard_min_rows 0', { parameters: { execution: 'worker', shard_min_rows: '0' } }],
    ['shard_min_rows 16', { parameters: { execution: 'worker', shard_min_rows: '16' } }],
  ] as const;
  for (const [label, config] of cases) {
    const repo = tempRepo();
    t.teardown(() => repo.remove());
    repo.addVersion('slow', 1, slowModel(width, 60));
    repo.addVersion('bad', 1, slowModel(width, 2));
    repo.writeConfig('bad', { parameters: { shard_min_rows: 'many' } });
    repo.writeConfig('slow', { max_batch_size: 16, dynamic_batching: { max_queue_delay_microseconds: 0 }, parameters: { execution: 'worker' }, ...config });
    const s = await startTestServer(t, { repository: repo.dir, workers: 2 });
    const umbra = s.server.umbra;
    // Every task handed to the pool, by its rows.
    const run = umbra.pool.run.bind(umbra.pool);
    const tasks: number[] = [];
    umbra.pool.run = (...args: Parameters<typeof run>) => {
      tasks.push(args[1][0]!.shape[0]!);
      return run(...args);
    };
    const idle = await umbra.predict('slow', rowsOf(16, 100));
    const sharded = label === 'no instance_group';
    t.same(tasks, sharded ? [8, 8] : [16], `${label}: 16 rows on an idle pool ran as ${JSON.stringify(tasks)}`);
    const out = idle.outputs[0]!.data as Float32Array;
    t.same([out[0], out[8 * width - 1], out[8 * width], out[16 * width - 1]], [100, 107, 108, 115], `${label}: rows come back in order`);
    // One worker busy with a 1-row batch (submitted first, and it cannot finish before the second
    // is submitted): the 16-row batch finds one idle worker and runs whole.
    tasks.length = 0;
    const busy = await Promise.all([umbra.predict('slow', rowsOf(1, 7)), umbra.predict('slow', rowsOf(16, 200))]);
    t.same(tasks, [1, 16], `${label}: with one worker busy the batch ran whole`);
    t.equal((busy[1].outputs[0]!.data as Float32Array)[15 * width], 215);
    if (sharded) {
      const index = await s.post('/v2/repository/index');
      t.match(index.json.find((e: { name: string }) => e.name === 'bad').reason, /parameters.shard_min_rows/);
    }
  }
});

t.test('a full queue rejects at once with 503 and Retry-After; timeouts and priorities', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('slow', 1, slowModel(WIDTH, DEPTH));
  repo.writeConfig('slow', {
    max_batch_size: 1,
    dynamic_batching: { max_queue_delay_microseconds: 0, priority_levels: 2, default_priority_level: 2, default_queue_policy: { max_queue_size: 2 } },
    instance_group: [{ count: 1 }],
  });
  const s = await startTestServer(t, { repository: repo.dir });
  const mv = s.server.umbra.manager.get('slow');

  // The first batch is held until all twelve have been admitted or refused.
  let hold = holdExecution(mv);
  t.teardown(() => hold.release());
  const burstCalls = Array.from({ length: 12 }, (_, i) => s.post('/v2/models/slow/infer', { inputs: [row(i)] }));
  await until(() => mv.stats().submitted + mv.stats().rejectedQueueFull === 12, 'all twelve admitted or refused');
  hold.release();
  const burst = await Promise.all(burstCalls);
  const rejected = burst.filter((r) => r.status === 503);
  const served = burst.filter((r) => r.status === 200);
  t.equal(rejected.length + served.length, 12, 'only 200 or 503');
  t.ok(rejected.length >= 1, `${rejected.length} rejected`);
  t.ok(served.length >= 3, `${served.length} served (one running + a queue of two)`);
  t.equal(rejected[0]!.headers.get('retry-after'), '1');
  t.match(rejected[0]!.json.error, /queue/);

  // Timeout: a request that waits behind a running one longer than its own timeout.
  hold = holdExecution(mv);
  const running = s.post('/v2/models/slow/infer', { inputs: [row(1)] });
  await until(() => mv.inFlight === 1, 'first request executing');
  const timedOut = await s.post('/v2/models/slow/infer', { parameters: { timeout: 1 }, inputs: [row(2)] });
  t.equal(timedOut.status, 504);
  t.match(timedOut.json.error, /time/i);
  hold.release();
  t.equal((await running).status, 200);

  // Priority: with the instance busy, a level-1 request overtakes an earlier level-2 one.
  const order: string[] = [];
  hold = holdExecution(mv);
  const blocker = s.post('/v2/models/slow/infer', { inputs: [row(1)] });
  await until(() => mv.inFlight === 1, 'blocker executing');
  const low = s.post('/v2/models/slow/infer', { id: 'low', parameters: { priority: 2 }, inputs: [row(2)] }).then((r) => order.push(r.json.id));
  await until(() => mv.pending === 1, 'low-priority request queued');
  const high = s.post('/v2/models/slow/infer', { id: 'high', parameters: { priority: 1 }, inputs: [row(3)] }).then((r) => order.push(r.json.id));
  await until(() => mv.pending === 2, 'high-priority request queued behind it');
  hold.release();
  await Promise.all([blocker, low, high]);
  t.same(order, ['high', 'low']);
});

t.test('a crashed worker fails only its own request and is replaced', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  // A model this small would run inline on the event loop; pin it to the workers.
  repo.writeConfig('affine', { parameters: { execution: 'worker' } });
  const s = await startTestServer(t, { repository: repo.dir, workers: 2 });
  t.equal(s.server.umbra.manager.get('affine').placement, 'worker');
  const x = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] };
  const crash = await s.post('/v2/models/affine/infer', { parameters: { umbra_fault: 'crash' }, inputs: [x] });
  t.equal(crash.status, 500);
  t.type(crash.json.error, 'string');
  const after = await Promise.all(Array.from({ length: 20 }, () => s.post('/v2/models/affine/infer', { inputs: [x] })));
  t.ok(after.every((r) => r.status === 200), 'every later request succeeds');
  t.same(after[0]!.json.outputs[0].data, [2, 4, 6, 8]);
});

t.test('a staged batch lost with its crashed worker before it began runs again on the next one', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  repo.writeConfig('affine', { max_batch_size: 1, parameters: { execution: 'worker' } });
  repo.addVersion('strict', 1, affineModel(2, 0));
  repo.writeConfig('strict', { parameters: { stage_batches: 'sometimes' } });
  const s = await startTestServer(t, { repository: repo.dir, workers: 1 });
  const umbra = s.server.umbra;
  const mv = umbra.manager.get('affine');
  const x = () => [{ name: 'x', datatype: 'FP32' as const, shape: [1, 4], data: new Float32Array([1, 2, 3, 4]) }];
  // One worker: the second task is posted behind the first, which kills the worker on arrival.
  const crashing = umbra.pool.run(mv.session, x(), [], { fault: 'crash' });
  const waiting = umbra.pool.run(mv.session, x(), [], { staged: true });
  const [crashed, lost] = await Promise.allSettled([crashing, waiting]);
  t.equal(crashed.status, 'rejected');
  t.notOk((crashed as PromiseRejectedResult).reason instanceof TaskLostError, 'the task that was running failed for real');
  t.ok((lost as PromiseRejectedResult).reason instanceof TaskLostError, 'the staged one is known never to have begun');
  t.match((lost as PromiseRejectedResult).reason.message, /worker ended before the task began: worker exited with code: 70/);
  // Again on the worker that replaced it, whose first task opens the session: the staged task
  // arrives while the crashing one awaits that open, and still has run nothing when the worker goes.
  const [crashedAgain, lostAgain] = await Promise.allSettled([
    umbra.pool.run(mv.session, x(), [], { fault: 'crash' }),
    umbra.pool.run(mv.session, x(), [], { staged: true }),
  ]);
  t.equal(crashedAgain.status, 'rejected');
  t.ok((lostAgain as PromiseRejectedResult).reason instanceof TaskLostError, 'on a fresh worker too, the staged one is known never to have begun');
  // A worker that ends with the answer in hand (its exit can reach the pool before the answer it
  // posted): the task ran to its end, so it may run again elsewhere; it did not fail.
  const answeredThenLost = await umbra.pool.run(mv.session, x(), [], { fault: 'lose-answer' }).then(() => undefined, (err: unknown) => err);
  t.ok(answeredThenLost instanceof TaskLostError && answeredThenLost.answered, 'a task answered on a worker that then ended is lost, not failed');
  t.match((answeredThenLost as Error).message, /worker ended after the task answered, before its answer arrived: worker exited with code: 70/);
  // Through the server: whether the second request was staged behind the crash or not, it is answered.
  const [crash, ok] = await Promise.all([
    s.post('/v2/models/affine/infer', { parameters: { umbra_fault: 'crash' }, inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }),
    s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }),
  ]);
  t.equal(crash.status, 500);
  t.equal(ok.status, 200);
  t.same(ok.json.outputs[0].data, [2, 4, 6, 8]);
  const index = await s.post('/v2/repository/index');
  t.match(index.json.find((e: { name: string }) => e.name === 'strict').reason, /parameters.stage_batches/);
});

t.test('placement: tiny models run inline, heavy ones in workers, and config can choose', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('tiny', 1, affineModel(2, 0));
  repo.addVersion('heavy', 1, slowModel(WIDTH, DEPTH));
  repo.addVersion('forced', 1, affineModel(3, 0));
  repo.writeConfig('forced', { parameters: { execution: 'inline' } });
  repo.addVersion('bad', 1, affineModel(3, 0));
  repo.writeConfig('bad', { parameters: { execution: 'gpu-please' } });
  // Each request chooses its length: timed at length 64, not 1.
  repo.addVersion('sequence', 1, sequenceModel(2));
  repo.addVersion('fixed_length', 1, fixedLengthModel());
  repo.addVersion('sequence_inline', 1, sequenceModel(3));
  repo.writeConfig('sequence_inline', { parameters: { execution: 'inline' } });
  const s = await startTestServer(t, { repository: repo.dir });
  const m = s.server.umbra.manager;
  t.equal(m.get('tiny').placement, 'inline', `tiny model probe ${m.get('tiny').placementCostUs?.toFixed(1)} µs`);
  t.equal(m.get('heavy').placement, 'worker', `heavy model probe ${m.get('heavy').placementCostUs?.toFixed(0)} µs`);
  t.equal(m.get('forced').placement, 'inline');
  t.same([m.get('tiny').placementReason, m.get('forced').placementReason], [undefined, 'parameters.execution: inline'], 'the reason, where the probe did not decide');

  t.same([m.get('sequence').placementLength, m.get('tiny').placementLength], [64, undefined], 'a dynamic dim besides the batch is timed at length 64');
  t.equal((await s.get('/v2/models/sequence')).json.queue.measured_batch_length, 64, 'and the queue bound says so');
  t.equal(m.get('sequence').placement, 'inline', 'cheap at that length: inline');
  t.equal(m.get('fixed_length').placement, 'worker', 'a model that refuses length 64: its cost is not known, so the workers');
  t.match((await s.get('/v2/models/fixed_length')).json.execution, {
    placement: 'worker',
    placement_reason: /^its inputs' dynamic dims besides the batch could not be timed at length 64 \(.+\), so what a request costs is not known$/,
  });
  const fixed = await s.post('/v2/models/fixed_length/infer', { inputs: [{ name: 'x', shape: [2, 3], datatype: 'FP32', data: [0, 0, 0, 1, 1, 1] }] });
  t.same(fixed.json.outputs[0].data, [1, 2, 3, 2, 3, 4], 'and it serves the lengths it takes');
  t.equal(m.get('sequence_inline').placement, 'inline', 'the config still chooses');
  const lengths = [1, 3, 7, 3, 12, 1];
  const mixed = await Promise.all(lengths.map((n, i) => s.post(`/v2/models/${i % 2 ? 'sequence_inline' : 'sequence'}/infer`,
    { inputs: [{ name: 'x', shape: [2, n], datatype: 'FP32', data: Array.from({ length: 2 * n }, (_, j) => j) }] })));
  t.same(mixed.map((r) => r.json.outputs[0]), lengths.map((n, i) => ({ name: 'y', datatype: 'FP32', shape: [2, n], data: Array.from({ length: 2 * n }, (_, j) => j * (i % 2 ? 3 : 2)) })),
    'requests of different lengths, together, each answered at its own length');
  const index = await s.post('/v2/repository/index');
  t.match(index.json.find((e: { name: string }) => e.name === 'bad').reason, /parameters.execution/);
  const x = { name: 'x', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6, 7, 8] };
  const answers = await Promise.all(Array.from({ length: 20 }, () => s.post('/v2/models/tiny/infer', { inputs: [x] })));
  t.ok(answers.every((r) => r.status === 200 && r.json.outputs[0].data[7] === 16), 'inline answers are right');
});

t.test('reload swaps atomically, a failed reload keeps the old version serving, polling picks up changes', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  const s = await startTestServer(t, { repository: repo.dir, adminToken: 'tok' });
  const auth = { authorization: 'Bearer tok' };
  const x = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 1, 1, 1] };
  const value = async () => (await s.post('/v2/models/affine/infer', { inputs: [x] })).json.outputs[0].data[0];
  t.equal(await value(), 2);

  // Reload under load: every request succeeds, on the old or the new model.
  writeModel(affineModel(3, 0), join(repo.dir, 'affine', '1', 'model.onnx'));
  const load = Array.from({ length: 40 }, () => s.post('/v2/models/affine/infer', { inputs: [x] }));
  const reload = await s.post('/v2/repository/models/affine/load', undefined, auth);
  t.equal(reload.status, 200);
  const results = await Promise.all(load);
  t.ok(results.every((r) => r.status === 200), 'no request failed during the swap');
  t.ok(results.every((r) => [2, 3].includes(r.json.outputs[0].data[0])), 'each answer came from one whole version');
  t.equal(await value(), 3, 'the new version serves after the swap');

  // A broken file: the reload fails with a clear error and version 3x keeps serving.
  writeFileSync(join(repo.dir, 'affine', '1', 'model.onnx'), 'not an onnx model');
  const bad = await s.post('/v2/repository/models/affine/load', undefined, auth);
  t.equal(bad.status, 400);
  t.match(bad.json.error, /affine/);
  t.equal(await value(), 3, 'old version still serves');
  t.equal((await s.get('/v2/health/ready')).status, 200, 'still ready');

  // Polling: a new version directory is noticed and served.
  writeModel(affineModel(3, 0), join(repo.dir, 'affine', '1', 'model.onnx'));
  repo.addVersion('affine', 2, affineModel(5, 0));
  await s.server.umbra.manager.pollOnce();
  t.equal(await value(), 5, 'version 2 serves after a poll');
  t.same((await s.get('/v2/models/affine')).json.versions, ['2'], 'default policy: latest one version');
});

t.test('readiness is false during warm-up and during drain; drain finishes queued work', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('slow', 1, slowModel(WIDTH, DEPTH));
  // A queue bound of its own: the derived one rests on the batch time measured at warm-up, and
  // this test needs room for six whatever the host's speed.
  repo.writeConfig('slow', { max_batch_size: 1, instance_group: [{ count: 1 }], dynamic_batching: { max_queue_size: 8 } });
  const s = await startTestServer(t, { repository: repo.dir, loadAll: false });
  const ready = async () => (await s.server.api.handle({ method: 'GET', path: '/v2/health/ready', query: '', headers: {}, body: new Uint8Array() })).status;
  t.equal(await ready(), 503, 'no model loaded yet');
  const loading = s.server.umbra.manager.load('slow');
  t.equal(await ready(), 503, 'not ready while warming up');
  const early = await s.get('/v2/models/slow/ready');
  t.equal(early.status, 503, 'model not ready while loading');
  await loading;
  t.equal(await ready(), 200, 'ready once warm');

  const mv = s.server.umbra.manager.get('slow');
  const hold = holdExecution(mv);
  t.teardown(() => hold.release());
  const inflight = Array.from({ length: 6 }, (_, i) => s.post('/v2/models/slow/infer', { inputs: [row(i)] }));
  await until(() => mv.pending + mv.inFlight === 6, 'all six requests accepted');
  const stopping = s.server.stop();
  t.equal(await ready(), 503, 'readiness turns false at once');
  hold.release();
  const results = await Promise.all(inflight);
  t.same(results.map((r) => r.status), [200, 200, 200, 200, 200, 200], 'queued and running requests finish');
  await stopping;
  await t.rejects(fetch(`${s.url}/v2/health/live`), 'the listener is closed');
});

t.test('a batch still running past the drain deadline does not hold the stop', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, drainSeconds: 0.2 });
  const mv = s.server.umbra.manager.get('affine');
  // A batch that never ends on its own: a model far slower than the drain allows.
  const hold = holdExecution(mv);
  const answer = s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }).then((r) => r.status, () => 'no answer');
  await until(() => hold.held === 1, 'the batch to be running');
  await s.server.stop();
  t.pass('the stop returned with the batch still running (its worker ends with the process)');
  t.not(await answer, 200, 'the request cut off by the deadline was not answered as if it had run');
  hold.release();
});

t.test('an I/O thread that has not ended does not hold the stop past the grace; the log names it and its inline replicas', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, drainSeconds: 0.2 });
  if (s.server.ioThreads === 1) {
    t.skip('no I/O threads with one thread (UMBRA_TEST_IO_THREADS=1)');
    return;
  }
  t.equal(s.server.umbra.manager.get('affine').execution.placement, 'inline', 'the model runs inline, so each I/O thread holds a replica of it');
  type Thread = { tid: number; ended: boolean; exited: Promise<number>; send: (msg: { t: string }) => void };
  const transport = (s.server as unknown as { transport: { hub?: unknown } }).transport;
  const thread = ((transport.hub ?? transport) as { threads: Thread[] }).threads[0]!;
  // The thread is left as a batch of its replica running past the drain leaves it: it does not
  // take its stop (which it had waited for with no time limit). The test hands it over at the end.
  const send = thread.send.bind(thread);
  let withheld: (() => void) | undefined;
  thread.send = (msg) => {
    if (msg.t === 'stop') withheld = () => send(msg);
    else send(msg);
  };
  t.teardown(async () => {
    withheld?.();
    await thread.exited;
  });
  const logged: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    logged.push(String(chunk));
    return write.call(process.stderr, chunk, ...rest);
  }) as typeof process.stderr.write;
  try {
    await s.server.stop();
  } finally {
    process.stderr.write = write;
  }
  t.equal(thread.ended, false, 'the stop returned with the thread still running');
  t.match(logged.join(''), `umbra: drain: I/O thread ${thread.tid} had not ended when the drain's time was up (its inline model replicas: affine/1`, 'the log names the thread and its replicas');
});
