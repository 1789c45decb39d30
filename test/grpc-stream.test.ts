// ModelStreamInfer (answers matched by id, errors in-band), the refusals a client should retry
// (UNAVAILABLE with retry info), the client's deadline (DEADLINE_EXCEEDED, and the queued request
// leaves the queue), the canary's routing key, umbra/client's gRPC client, and the drain.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, holdExecution, until } from './helpers/repo.js';
import { generatedClient, grpc } from './helpers/grpc.js';
import { UmbraGrpcClient, UmbraGrpcError } from '../dist/client/index.js';

t.setTimeout(300_000);

const WIDTH = 1024;
const slowRow = (v: number) => ({ name: 'x', datatype: 'FP32', shape: [1, WIDTH], contents: { fp32_contents: new Array(WIDTH).fill(v) } });

t.test('a stream answers each request by id, errors in-band, and umbra/client matches them', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const call = c.raw.ModelStreamInfer();
  const answers = new Map<string, any>();
  const done = new Promise<void>((resolve) => call.on('end', resolve));
  call.on('data', (m: any) => answers.set(m.infer_response.id, m));
  for (let i = 0; i < 5; i++) call.write({ model_name: 'affine', id: `r${i}`, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [i, i, i, i] } }] });
  call.write({ model_name: 'nope', id: 'bad', inputs: [] });
  call.end();
  await done;
  for (let i = 0; i < 5; i++) {
    t.equal(answers.get(`r${i}`)?.error_message, '');
    t.same(answers.get(`r${i}`)?.infer_response.outputs[0].contents.fp32_contents, [2 * i, 2 * i, 2 * i, 2 * i]);
  }
  t.match(answers.get('bad')?.error_message, /unknown model 'nope'/);

  const client = new UmbraGrpcClient(`127.0.0.1:${s.server.grpcPort}`);
  t.teardown(() => client.close());
  const stream = await client.stream();
  const results = await Promise.all([1, 2, 3].map((v) => stream.infer('affine', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: new Float32Array([v, v, v, v]) }] })));
  t.same(results.map((r) => Array.from(r.outputs[0]!.data as Float32Array)), [[2, 2, 2, 2], [4, 4, 4, 4], [6, 6, 6, 6]]);
  await t.rejects(stream.infer('nope', { inputs: [] }), { message: /unknown model/ });
  stream.end();
  t.same(Array.from((await client.infer('affine', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }, { raw: false })).outputs[0]!.data as Float32Array), [2, 4, 6, 8]);
  t.ok(await client.serverReady());
  t.same((await client.modelMetadata('affine')).name, 'affine');
  t.same((await client.modelConfig('affine')).name, 'affine', 'modelConfig: the ModelConfig RPC');
});

t.test('queue full is UNAVAILABLE with retry info; the deadline cancels queued work; timeout is DEADLINE_EXCEEDED', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  // Batches are held (holdExecution) while the test sets up the queue it needs.
  repo.addVersion('slow', 1, affineModel(2, 0, WIDTH));
  // No batch staged on the busy instance: a second request waits in the queue, where it can be cancelled.
  repo.writeConfig('slow', { max_batch_size: 1, dynamic_batching: { max_queue_delay_microseconds: 0, default_queue_policy: { max_queue_size: 1 } }, instance_group: [{ count: 1 }], parameters: { execution: 'worker', stage_batches: 'false', queue_budget_ms: '10000' } });
  // (A long queue budget: requests held behind the slow one on purpose must not make the queue count as standing.)
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const mv = s.server.umbra.manager.get('slow');

  // One running (held), one queued: the other six of a burst of eight are refused.
  let hold = holdExecution(mv);
  t.teardown(() => hold.release());
  const settled: any[] = [];
  const burstCalls = Array.from({ length: 8 }, (_, i) => c.call('ModelInfer', { model_name: 'slow', inputs: [slowRow(i)] }).then((r) => { settled.push(r); return r; }));
  await until(() => settled.length === 6, 'six of the burst answered while two wait');
  hold.release();
  const burst = await Promise.all(burstCalls);
  const refused = burst.filter((r) => !r.ok);
  t.equal(refused.length, 6, 'a queue of one behind one running: six of eight refused');
  for (const r of refused) {
    if (r.ok) continue;
    t.equal(r.error.code, grpc.status.UNAVAILABLE);
    t.match(r.error.details, /queue/);
    t.same(r.error.metadata.get('grpc-retry-pushback-ms'), ['1000']);
    t.ok((r.error.metadata.get('grpc-status-details-bin')[0] as Buffer).includes('google.rpc.RetryInfo'));
  }

  // A request queued behind a running one leaves the queue when its client goes away; the
  // client's deadline ends the call the same way (grpc-js cancels the call when it passes).
  hold = holdExecution(mv);
  const running = c.call('ModelInfer', { model_name: 'slow', inputs: [slowRow(1)] });
  await until(() => mv.inFlight === 1, 'first request executing');
  const before = mv.stats();
  const queued = c.raw.ModelInfer({ model_name: 'slow', inputs: [slowRow(2)] }, (err: grpc.ServiceError | null) => t.equal(err?.code, grpc.status.CANCELLED));
  await until(() => mv.pending === 1, 'second request queued');
  queued.cancel();
  await until(() => mv.stats().aborted === before.aborted + 1, 'the queued request aborted');
  const late = await c.call('ModelInfer', { model_name: 'slow', inputs: [slowRow(3)] }, {}, { deadline: Date.now() + 5 });
  t.equal(!late.ok && late.error.code, grpc.status.DEADLINE_EXCEEDED);
  // The client gives up at its deadline; the server hears of it by the stream's reset, a moment later.
  await until(() => mv.stats().aborted === before.aborted + 2, 'the late request left the queue');
  hold.release();
  t.ok((await running).ok);
  t.equal(mv.stats().executedRequests, before.executedRequests, 'nothing ran after the one executing: the cancelled and the late request never did');

  // The request's own queue timeout (microseconds) is DEADLINE_EXCEEDED too.
  hold = holdExecution(mv);
  const blocker = c.call('ModelInfer', { model_name: 'slow', inputs: [slowRow(1)] });
  await until(() => mv.inFlight === 1, 'blocker executing');
  const timedOut = await c.call('ModelInfer', { model_name: 'slow', parameters: { timeout: { int64_param: 1 } }, inputs: [slowRow(2)] });
  t.equal(!timedOut.ok && timedOut.error.code, grpc.status.DEADLINE_EXCEEDED);
  hold.release();
  t.ok((await blocker).ok);
});

t.test('the canary routing key from metadata or parameters picks the same version every time', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(1, 0));
  repo.addVersion('affine', 2, affineModel(10, 0));
  repo.writeConfig('affine', { version_policy: { all: {} }, traffic: { primary: '1', canary: { version: '2', weight: 0.5 } } });
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const request = { model_name: 'affine', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 1, 1, 1] } }] };
  const seen = new Set<string>();
  for (let k = 0; k < 24; k++) {
    const viaMetadata = await c.call('ModelInfer', request, { 'x-umbra-key': `user-${k}` });
    const viaParameter = await c.call('ModelInfer', { ...request, parameters: { routing_key: { string_param: `user-${k}` } } });
    const viaRest = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }, { 'x-umbra-key': `user-${k}` });
    t.ok(viaMetadata.ok && viaParameter.ok);
    if (!viaMetadata.ok || !viaParameter.ok) continue;
    t.equal(viaMetadata.value.model_version, viaParameter.value.model_version, `key user-${k}: metadata and parameter agree`);
    t.equal(viaMetadata.value.model_version, viaRest.json.model_version, `key user-${k}: as REST routes it`);
    seen.add(viaMetadata.value.model_version);
  }
  t.same([...seen].sort(), ['1', '2'], 'both versions serve some keys');
});

t.test('drain: in-flight answered, the stream refuses new requests and ends UNAVAILABLE, then the port closes', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('slow', 1, affineModel(2, 0, WIDTH));
  repo.writeConfig('slow', { max_batch_size: 1, instance_group: [{ count: 1 }], parameters: { execution: 'worker', stage_batches: 'false', queue_budget_ms: '10000' } });
  // (A long queue budget: requests held behind the slow one on purpose must not make the queue count as standing.)
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const port = s.server.grpcPort;
  const c = generatedClient(port);
  t.teardown(() => c.close());
  const mv = s.server.umbra.manager.get('slow');
  const hold = holdExecution(mv);
  t.teardown(() => hold.release());
  const call = c.raw.ModelStreamInfer();
  const answers: any[] = [];
  call.on('data', (m: any) => answers.push(m));
  const ended = new Promise<{ code: number; metadata: grpc.Metadata }>((resolve) => {
    call.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, metadata: err.metadata }));
    call.on('end', () => resolve({ code: 0, metadata: new grpc.Metadata() }));
  });
  for (let i = 0; i < 3; i++) call.write({ model_name: 'slow', id: `in-flight-${i}`, inputs: [slowRow(i)] });
  const unary = c.call('ModelInfer', { model_name: 'slow', inputs: [slowRow(9)] });
  await until(() => mv.stats().submitted >= 4 && mv.inFlight === 1, 'requests submitted, one executing');
  const stopping = s.server.stop();
  await until(() => s.server.isDraining, 'draining');
  call.write({ model_name: 'slow', id: 'too-late', inputs: [slowRow(1)] });
  await until(() => answers.some((a) => a.infer_response.id === 'too-late'), 'the late request refused while the others wait');
  hold.release();
  const end = await ended;
  t.ok((await unary).ok, 'the unary request in flight is answered');
  for (let i = 0; i < 3; i++) t.equal(answers.find((a) => a.infer_response.id === `in-flight-${i}`)?.error_message, '', `in-flight-${i} answered`);
  const refused = answers.find((a) => a.infer_response.id === 'too-late');
  t.match(refused?.error_message ?? 'not answered', /shutting down/);
  t.equal(end.code, grpc.status.UNAVAILABLE, 'the stream ends UNAVAILABLE');
  t.same(end.metadata.get('grpc-retry-pushback-ms'), ['1000']);
  await stopping;
  const after = generatedClient(port);
  const refusedCall = await after.call('ServerLive', {}, {}, { deadline: Date.now() + 2000 });
  after.close();
  t.equal(!refusedCall.ok && refusedCall.error.code, grpc.status.UNAVAILABLE, 'nothing listens after the drain');
  t.type(UmbraGrpcError, 'function');
});
