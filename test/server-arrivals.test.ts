// Whether a thread's clients can still send a request (scheduler/arrivals.ts), as the HTTP and
// WebSocket transport report it from a real uWebSockets.js app on loopback: the question an
// inline model's waiting batch asks before it waits out its delay.
import t from 'tap';
import { connect, type Socket } from 'node:net';
import { Agent, request as httpRequest } from 'node:http';
import * as uws from 'uWebSockets.js';
import { attachHttp, InFlight, watchArrivals } from '../dist/server/http.js';
import { attachWebSocket } from '../dist/server/ws.js';
import { threadArrivals } from '../dist/scheduler/arrivals.js';
import type { ApiReply, ApiRequest } from '../dist/api/api.js';
import { affineModel, tempRepo, until } from './helpers/repo.js';
import { startTestServer } from './helpers/server.js';

/** An API whose every request waits until the test answers it. */
function heldApi() {
  const held: { path: string; answer: () => void }[] = [];
  return {
    held,
    handle(req: ApiRequest): Promise<ApiReply> {
      return new Promise((resolve) => {
        held.push({ path: req.path, answer: () => resolve({ status: 200, headers: { 'content-type': 'application/json' }, body: '{}' }) });
      });
    },
  };
}

async function open(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  return socket;
}

const request = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;

t.test('quiet while every client taking part has a request in progress; not while one may send', async (t) => {
  t.equal(threadArrivals.quiet(), false, 'no transport on the thread: never quiet (an embedded caller may submit at any time)');
  const app = uws.App();
  const api = heldApi();
  const inFlight = new InFlight();
  const streams = attachWebSocket(app, { inferBody: () => Promise.reject(new Error('unused')) } as never, { maxPayloadBytes: 1024, idleSeconds: 60, maxInFlight: 4, backpressureBytes: 65536 }, () => true);
  attachHttp(app, api, { maxBodyBytes: 1024 }, inFlight, () => false);
  const unwatch = watchArrivals(app, inFlight, streams);
  const port = await new Promise<number>((resolve) => app.listen('127.0.0.1', 0, (s) => resolve(uws.us_socket_local_port(s as unknown as uws.us_socket))));
  const sockets: Socket[] = [];
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    unwatch();
    app.close();
  });
  t.equal(threadArrivals.quiet(), true, 'no client at all');

  const a = await open(port);
  const b = await open(port);
  sockets.push(a, b);
  a.write(request('/a1'));
  await until(() => api.held.length === 1, 'the first request is in');
  t.equal(threadArrivals.quiet(), true, 'A waits; B has never sent, so it is not counted as taking part');
  b.write(request('/b1'));
  await until(() => api.held.length === 2, 'the second request is in');
  t.equal(threadArrivals.quiet(), true, 'both wait');
  api.held.shift()!.answer();
  await new Promise((resolve) => a.once('data', resolve));
  t.equal(threadArrivals.quiet(), false, 'A has its answer and took part lately: it may send again');
  a.write(request('/a2'));
  await until(() => api.held.length === 2, 'A sends again');
  t.equal(threadArrivals.quiet(), true);

  // A body still arriving will reach a batcher: not quiet until it is in.
  const c = await open(port);
  sockets.push(c);
  c.write('POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345');
  await until(() => inFlight.reading === 1, 'the body is being read');
  t.equal(threadArrivals.quiet(), false, 'a body is arriving');
  c.write('67890');
  await until(() => api.held.length === 3, 'the body is in');
  t.equal(threadArrivals.quiet(), true);

  // A WebSocket connection may send at any moment.
  const w = await open(port);
  sockets.push(w);
  w.write('GET /v2/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  await until(() => streams.size === 1, 'the WebSocket is open');
  t.equal(threadArrivals.quiet(), false, 'a WebSocket connection is open');
  w.destroy();
  await until(() => streams.size === 0, 'the WebSocket has closed');
  t.equal(threadArrivals.quiet(), true, 'its socket no longer counts, though uWS reports no HTTP close for it');

  // A client that leaves with its request in progress takes its request and its socket away.
  c.destroy();
  await until(() => inFlight.size === 2, 'C has gone');
  t.equal(threadArrivals.quiet(), true);
  for (const held of api.held.splice(0)) held.answer();
});

// One thread, and two with the core's thread reading: a version's requests are answered by the
// thread that read them (until an I/O thread's replica is open, by the core's thread, which then
// asks its own clients). With two I/O threads of their own the core's thread reads nothing and
// cannot tell, so what it runs waits as configured.
for (const threads of [{ ioThreads: 1 }, { ioThreads: 2, coreReads: true }]) {
  t.test(`through the server (${JSON.stringify(threads)}): an inline model answers a lone client at once, not after its batching delay`, async (t) => {
    const repo = tempRepo();
    t.teardown(() => repo.remove());
    repo.addVersion('quick', 1, affineModel(2, 0));
    repo.addVersion('patient', 1, affineModel(2, 0));
    // A minute's delay and no preferred size: only a full batch of 8 or a quiet thread sends it.
    repo.writeConfig('quick', { max_batch_size: 8, dynamic_batching: { max_queue_delay_microseconds: 60_000_000 } });
    repo.writeConfig('patient', { max_batch_size: 8, dynamic_batching: { max_queue_delay_microseconds: 60_000_000 }, parameters: { dispatch_when_quiet: 'false' } });
    const s = await startTestServer(t, { repository: repo.dir, ...threads });
    // Every request on one keep-alive connection: the only client there is.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    t.teardown(() => agent.destroy());
    const call = (method: string, path: string, body?: unknown) => new Promise<{ status: number; json: any }>((resolve, reject) => {
      const req = httpRequest(s.url + path, { method, agent, headers: { 'content-type': 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
    for (const name of ['quick', 'patient']) t.match((await call('GET', `/v2/models/${name}`)).json, { execution: { placement: 'inline' } }, `${name} runs inline`);
    // parameters.timeout (µs) ends a request still queued: a request that waits for its batch to
    // fill times out, one sent at once is answered.
    const infer = (name: string, x: number) => call('POST', `/v2/models/${name}/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [x, x, x, x] }], parameters: { timeout: 300_000 } });
    const answers = [];
    for (let i = 1; i <= 3; i++) answers.push(await infer('quick', i));
    t.same(answers.map((r) => r.status), [200, 200, 200], 'one client, one request at a time: each goes alone, at once');
    t.same(answers.map((r) => r.json?.outputs?.[0]?.data?.[0]), [2, 4, 6]);
    const waited = await infer('patient', 1);
    t.equal(waited.status, 504, 'with dispatch_when_quiet "false" the same request waits for its batch until its timeout');
    t.match(waited.json?.error, /timeout/);
  });
}
