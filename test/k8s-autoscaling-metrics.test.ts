// The series the autoscaling examples (deploy/autoscaling) scale on: umbra_pending_requests (queue
// depth) and umbra_inflight_requests (queued + in executing batches), per model and version.
import t, { type Test } from 'tap';
import { DynamicBatcher } from '../dist/scheduler/batcher.js';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, until } from './helpers/repo.js';
import { parseExposition, total } from './helpers/prometheus.js';
import { UmbraStreamClient, streamUrl } from '../dist/client/index.js';

// The requests go over one WebSocket: one connection is read by one thread, so with several
// reading threads the eight requests that fill a batch still meet in one queue (over HTTP the
// client's connections spread over the threads, and each queue waits out the 60 s delay).
async function oneConnection(t: Test, url: string) {
  const client = await UmbraStreamClient.connect(streamUrl(url));
  t.teardown(() => client.close());
  return () => client.infer('affine', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] })
    .then((r) => { if (JSON.stringify(r.outputs[0]!.data) !== '[2,4,6,8]') throw new Error(`wrong answer ${JSON.stringify(r.outputs[0]!.data)}`); return 200; });
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('the batcher counts the requests of its executing batches', async (t) => {
  const calls: { items: number[]; resolve: (r: number[]) => void; reject: (e: unknown) => void }[] = [];
  const batcher = new DynamicBatcher<number, number>({
    maxBatchSize: 2,
    maxQueueDelayUs: 0,
    preferredBatchSizes: [],
    maxQueueSize: 0,
    defaultTimeoutUs: 0,
    priorityLevels: 0,
    defaultPriorityLevel: 0,
    maxInFlight: 1,
    execute: (items) => new Promise<number[]>((resolve, reject) => { calls.push({ items, resolve, reject }); }),
  });
  const answers = [1, 2, 3, 4, 5].map((x) => batcher.submit(x, { rows: 1, shapeKey: '' }).then((r) => r, (e: unknown) => e));
  await flush();
  const seen = () => { const s = batcher.stats(); return { pending: s.pending, inFlight: s.inFlight, executingRequests: s.executingRequests }; };
  t.same(seen(), { pending: 4, inFlight: 1, executingRequests: 1 }, 'the first request left at once (free slot, no delay); four wait');
  calls[0]!.resolve([10]);
  await flush();
  t.same(seen(), { pending: 2, inFlight: 1, executingRequests: 2 }, 'a batch of two executing, two queued');
  calls[1]!.reject(new Error('worker died'));
  await flush();
  t.same(seen(), { pending: 0, inFlight: 1, executingRequests: 2 }, 'the failed batch left the count; the last two run');
  calls[2]!.resolve([40, 50]);
  const settled = await Promise.all(answers);
  t.equal(settled[0], 10);
  t.match(settled[1], /worker died/);
  t.same(settled.slice(3), [40, 50]);
  t.same(seen(), { pending: 0, inFlight: 0, executingRequests: 0 });
});

t.test('umbra_inflight_requests and umbra_pending_requests through the server', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  // A batch leaves the queue when 8 requests are in or after 60 s, even when every client is
  // waiting on one (dispatch_when_quiet "false"): three requests wait there.
  repo.writeConfig('affine', { max_batch_size: 8, dynamic_batching: { max_queue_delay_microseconds: 60_000_000, preferred_batch_size: [8] }, parameters: { dispatch_when_quiet: 'false' } });
  const s = await startTestServer(t, { repository: repo.dir });
  const gauges = async () => {
    const m = parseExposition((await s.get('/metrics')).text);
    const labels = { model: 'affine', version: '1' };
    return { inflight: total(m, 'umbra_inflight_requests', labels), pending: total(m, 'umbra_pending_requests', labels) };
  };
  t.same(await gauges(), { inflight: 0, pending: 0 });
  const request = await oneConnection(t, s.url);
  const waiting = [request(), request(), request()];
  await until(async () => (await gauges()).inflight === 3, 'three requests admitted');
  t.same(await gauges(), { inflight: 3, pending: 3 }, 'all three wait in the queue');
  const rest = Array.from({ length: 5 }, request);
  const replies = await Promise.all([...waiting, ...rest]);
  t.same(replies, new Array(8).fill(200), 'the eighth request fills the batch, and each gets its own answer');
  t.same(await gauges(), { inflight: 0, pending: 0 });
});

// An inline model's requests read by an I/O thread wait in that thread's replica of the version,
// not in the core's queue: the scrape adds every thread's queue.
t.test('the gauges count requests queued on an I/O thread\'s replica of an inline version', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  repo.writeConfig('affine', { max_batch_size: 8, dynamic_batching: { max_queue_delay_microseconds: 60_000_000, preferred_batch_size: [8] }, parameters: { dispatch_when_quiet: 'false' } });
  // Every request is read by the I/O thread (the core's thread reads none).
  const s = await startTestServer(t, { repository: repo.dir, ioThreads: 2, coreReads: false });
  const mv = s.server.umbra.manager.get('affine');
  t.equal(mv.placement, 'inline');
  const gauges = async () => {
    const m = parseExposition((await s.get('/metrics')).text);
    const labels = { model: 'affine', version: '1' };
    return { inflight: total(m, 'umbra_inflight_requests', labels), pending: total(m, 'umbra_pending_requests', labels) };
  };
  const request = await oneConnection(t, s.url);
  // Until the I/O thread's replica has opened, its requests go to the core: full batches until one
  // runs without the core's queue seeing it.
  await until(async () => {
    const before = mv.stats().submitted;
    await Promise.all(Array.from({ length: 8 }, request));
    return mv.stats().submitted === before;
  }, 'a batch answered by the I/O thread\'s replica');
  t.same(await gauges(), { inflight: 0, pending: 0 });
  const waiting = [request(), request(), request()];
  await until(async () => (await gauges()).inflight === 3, 'three requests admitted on the I/O thread');
  t.same(await gauges(), { inflight: 3, pending: 3 }, 'all three wait in the replica\'s queue, and the scrape counts them');
  t.equal(mv.stats().pending, 0, 'the core\'s own queue holds none of them');
  const replies = await Promise.all([...waiting, ...Array.from({ length: 5 }, request)]);
  t.same(replies, new Array(8).fill(200));
  t.same(await gauges(), { inflight: 0, pending: 0 });
});
