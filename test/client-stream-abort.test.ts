// UmbraStreamClient with an AbortSignal, as UmbraHttpClient takes one: a peer that never finishes
// the upgrade, or an answer that never comes, left connect() and infer() waiting for good.
import t from 'tap';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { UmbraStreamClient, UmbraClientError, streamUrl } from '../dist/client/index.js';

const x = { name: 'x', datatype: 'FP32' as const, shape: [1, 4], data: [1, 2, 3, 4] };

t.test('connect() gives up when its signal aborts, on a peer that never answers the upgrade', async (t) => {
  const sockets: Socket[] = [];
  const silent = createServer((socket) => {
    sockets.push(socket);
    silent.emit('held');
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const port = (silent.address() as { port: number }).port;
  const controller = new AbortController();
  const held = once(silent, 'held');
  const connecting = UmbraStreamClient.connect(`ws://127.0.0.1:${port}/v2/stream`, { signal: controller.signal });
  await held;
  const closed = once(sockets[0]!, 'close');
  controller.abort(new Error('gave up'));
  await t.rejects(connecting, { message: 'gave up' }, 'rejects with the signal\'s reason');
  await closed;
  t.pass('and closes the socket it opened');
  await t.rejects(UmbraStreamClient.connect(`ws://127.0.0.1:${port}/v2/stream`, { signal: AbortSignal.abort(new Error('before')) }), { message: 'before' }, 'an aborted signal opens nothing');
});

t.test('infer() stops waiting when its signal aborts; the stream and its other requests go on', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('fast', 1, affineModel(2, 1));
  repo.addVersion('slow', 1, affineModel(3, -1));
  // A batch window far longer than the test: its answer comes only when the stream closes it.
  repo.writeConfig('slow', { max_batch_size: 64, dynamic_batching: { max_queue_delay_microseconds: 30_000_000 } });
  const s = await startTestServer(t, { repository: repo.dir });
  const client = await UmbraStreamClient.connect(streamUrl(s.url));
  t.teardown(() => client.close());
  const controller = new AbortController();
  const waiting = client.infer('slow', { id: 'held', inputs: [x] }, { signal: controller.signal });
  controller.abort(new Error('deadline'));
  await t.rejects(waiting, { message: 'deadline' }, 'rejects with the signal\'s reason');
  t.equal(client.inFlight, 0, 'no longer waited for');
  await t.rejects(client.infer('fast', { id: 'held', inputs: [x] }), UmbraClientError, 'its id stays taken while its answer may still come');
  const answer = await client.infer('fast', { id: 'next', inputs: [x] }, { signal: new AbortController().signal });
  t.same(Array.from(answer.outputs[0]!.data as ArrayLike<number>), [3, 5, 7, 9], 'the stream still answers');
  await t.rejects(client.infer('fast', { inputs: [x] }, { signal: AbortSignal.abort(new Error('already')) }), { message: 'already' }, 'an aborted signal sends nothing');
});
