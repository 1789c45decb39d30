// Requests still unanswered when the drain's deadline passes: HTTP gets 503 with Retry-After, a
// JSON error and Connection: close; WebSocket requests get their error message before the close
// frame; gRPC calls end UNAVAILABLE. A connection closed with no answer looks like a crash. The
// model's batches are held (the test's own gate) for longer than the drain allows, so the deadline
// always finds them waiting; the answer that comes once the gate opens is never written.
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, until } from './helpers/repo.js';
import { rawExchange, requestBytes } from './helpers/raw-http.js';
import { generatedClient, grpc } from './helpers/grpc.js';

const DRAIN_SECONDS = 0.2;
const row = (v: number) => ({ name: 'x', shape: [1, 4], datatype: 'FP32', data: [v, v, v, v] });

/**
 * A server whose one model runs in the workers (every request goes through the core's batcher,
 * whichever thread read it), one batch of one request at a time, with every batch held until
 * `release`; `settled` counts held batches that have since finished, answered or failed.
 */
async function heldServer(t: Test, options: { grpc?: boolean } = {}) {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('slow', 1, affineModel(2, 0));
  // A long queue budget and room in the queue: requests held on purpose must not be shed.
  repo.writeConfig('slow', { max_batch_size: 1, instance_group: [{ count: 1 }], dynamic_batching: { max_queue_size: 16 }, parameters: { execution: 'worker', stage_batches: 'false', queue_budget_ms: '10000' } });
  const s = await startTestServer(t, { repository: repo.dir, drainSeconds: DRAIN_SECONDS, ...(options.grpc ? { grpcPort: 'any' as const } : {}) });
  const mv = s.server.umbra.manager.get('slow');
  const executor = mv.execution as unknown as { execute: (...args: unknown[]) => Promise<unknown> };
  const original = executor.execute;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => { open = resolve; });
  const gated = { held: 0, settled: 0 };
  executor.execute = async function (this: unknown, ...args: unknown[]) {
    gated.held++;
    await gate;
    try {
      return await original.apply(this, args);
    } finally {
      gated.settled++;
    }
  };
  const release = () => open();
  t.teardown(release);
  return { s, mv, gated, release };
}

t.test('HTTP: requests cut off by the deadline get 503, Retry-After, a JSON error and Connection: close, on every reading thread', async (t) => {
  const { s, mv, gated, release } = await heldServer(t);
  const body = JSON.stringify({ inputs: [row(1)] });
  // One connection each: the kernel spreads them over the reading threads.
  const exchanges = Array.from({ length: 6 }, () => rawExchange(s.server.port, [requestBytes('POST', '/v2/models/slow/infer', [['host', 'x'], ['content-type', 'application/json'], ['content-length', String(Buffer.byteLength(body))]], body)], { expect: 1, awaitClose: 10_000, limitMs: 20_000 }));
  await until(() => mv.pending + mv.inFlight === 6 && gated.held === 1, 'one request running, five queued');
  const stopping = s.server.stop();
  const answers = await Promise.all(exchanges);
  // The held batch goes on now, after the 503s: its answer must not be written, nor fail the server.
  release();
  await stopping;
  const responses = answers.flatMap((a) => a.responses);
  t.same(responses.map((r) => r.status), [503, 503, 503, 503, 503, 503], 'each request is answered 503');
  t.same([...new Set(responses.map((r) => r.headers['retry-after']))], ['1'], 'with Retry-After');
  t.same([...new Set(responses.map((r) => r.headers.connection?.toLowerCase()))], ['close'], 'with Connection: close');
  const errors = responses.map((r) => JSON.parse(r.body.toString()).error as string);
  t.match(errors[0], /the server stopped before it could answer: it was draining and its drain deadline \(--drain-seconds 0\.2\) passed/, 'the error says why');
  t.equal(new Set(errors).size, 1, 'every request gets the same error');
  t.ok(answers.every((a) => a.closedByServer && a.rest.length === 0), 'nothing follows the 503: the server closes each connection');
  await until(() => gated.settled === gated.held, 'the batch let go after the 503s to settle');
  t.pass('its late answer was dropped: no second answer, no failure');
});

t.test('WebSocket: requests cut off by the deadline get their error message, then the close frame', async (t) => {
  const { s, mv, gated, release } = await heldServer(t);
  const ws = new WebSocket(`${s.url.replace('http', 'ws')}/v2/stream`);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const events: { message?: any; close?: { code: number; reason: string } }[] = [];
  ws.on('message', (data) => events.push({ message: JSON.parse(data.toString()) }));
  const closed = new Promise<void>((resolve) => ws.once('close', (code, reason) => {
    events.push({ close: { code, reason: reason.toString() } });
    resolve();
  }));
  for (const id of ['running', 'queued']) ws.send(JSON.stringify({ id, model_name: 'slow', inputs: [row(1)] }));
  await until(() => mv.pending + mv.inFlight === 2 && gated.held === 1, 'one request running, one queued');
  const stopping = s.server.stop();
  await closed;
  release();
  await stopping;
  const messages = events.filter((e) => e.message).map((e) => e.message);
  t.same(messages.map((m) => [m.id, m.status, m.retry_after]).sort(), [['queued', 503, 1], ['running', 503, 1]], 'each request gets a 503 error with retry_after');
  t.match(messages[0]?.error, /drain deadline \(--drain-seconds 0\.2\) passed/, 'the error says why');
  t.same(events.map((e) => (e.close ? e.close.code : 'message')), ['message', 'message', 1001], 'the close frame (1001) comes after both');
});

t.test('gRPC: calls still open at the deadline end UNAVAILABLE saying why; a stream answers its requests first', async (t) => {
  const { s, mv, gated, release } = await heldServer(t, { grpc: true });
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const wire = (v: number) => ({ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [v, v, v, v] } });
  const unary = c.call('ModelInfer', { model_name: 'slow', inputs: [wire(1)] });
  const call = c.raw.ModelStreamInfer();
  const answers: any[] = [];
  call.on('data', (m: any) => answers.push(m));
  const ended = new Promise<{ code: number; details: string; metadata: grpc.Metadata }>((resolve) => {
    call.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details, metadata: err.metadata }));
    call.on('end', () => resolve({ code: 0, details: '', metadata: new grpc.Metadata() }));
  });
  call.write({ model_name: 'slow', id: 'streamed', inputs: [wire(2)] });
  await until(() => mv.pending + mv.inFlight === 2 && gated.held === 1, 'one call running, one queued');
  const stopping = s.server.stop();
  const [outcome, end] = await Promise.all([unary, ended]);
  release();
  await stopping;
  t.equal(!outcome.ok && outcome.error.code, grpc.status.UNAVAILABLE, 'the unary call ends UNAVAILABLE');
  t.match(!outcome.ok && outcome.error.details, /drain deadline \(--drain-seconds 0\.2\) passed/, 'saying why');
  t.same(answers.map((a) => a.infer_response.id), ['streamed'], 'the stream answers its request');
  t.match(answers[0]?.error_message, /drain deadline/, 'with the same error');
  t.same([end.code, end.metadata.get('grpc-retry-pushback-ms')], [grpc.status.UNAVAILABLE, ['1000']], 'then ends UNAVAILABLE with when to retry');
});
