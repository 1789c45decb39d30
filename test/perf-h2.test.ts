// The lean HTTP/2 client `umbra perf --protocol grpc` sends unary calls with: answers judged by
// grpc-status, flow control both ways (bodies larger than the server's windows), the server's
// stream limit, PING, and calls failed (never left hanging) by GOAWAY, a closed socket or expiry.
import t from 'tap';
import { createServer, constants, type ServerHttp2Stream } from 'node:http2';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { H2GrpcConnection, grpcHeaderBlock } from '../dist/perf/h2-connection.js';
import { frameMessage } from '../dist/client/grpc-channel.js';
import { encodeInferRequest } from '../dist/protocol/proto/infer-messages.js';

const INFER = '/inference.GRPCInferenceService/ModelInfer';

function inferFrame(model: string, width: number, value: number): Buffer {
  const data = Buffer.from(new Float32Array(width).fill(value).buffer);
  return frameMessage(encodeInferRequest({ modelName: model, modelVersion: '', id: '', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, width] }], outputs: [], rawInputContents: [data] }));
}

function call(c: H2GrpcConnection, body: Buffer): Promise<string | null> {
  return new Promise((resolve) => c.send(body, resolve, performance.now()));
}

t.test('against umbra serve: calls succeed, a body larger than every window arrives, errors carry their status', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  const wide = 100_000; // 400 kB raw: six times the server's default 64 KiB windows
  repo.addVersion('wide', 1, affineModel(2, 0, wide));
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const authority = `127.0.0.1:${s.server.grpcPort}`;
  const c = new H2GrpcConnection('127.0.0.1', s.server.grpcPort, grpcHeaderBlock(INFER, authority));
  t.teardown(() => c.close());
  await c.opened;
  const many = await Promise.all(Array.from({ length: 200 }, (_, i) => call(c, inferFrame('affine', 4, i))));
  t.same(many.filter((r) => r !== null), [], '200 concurrent calls on one connection, all grpc-status 0');
  const wideCalls = await Promise.all(Array.from({ length: 3 }, (_, i) => call(c, inferFrame('wide', wide, i))));
  t.same(wideCalls, [null, null, null], 'three 400 kB requests at once wait for the server\'s WINDOW_UPDATEs');
  t.equal(await call(c, inferFrame('nope', 4, 1)), 'grpc-5', 'an unknown model: NOT_FOUND');
  t.equal(await call(c, inferFrame('affine', 5, 1)), 'grpc-3', 'a wrong shape: INVALID_ARGUMENT');
  t.equal(await call(c, Buffer.from([0, 0, 0, 0, 3, 0xff, 0xff, 0xff])), 'grpc-3', 'a message that does not decode: INVALID_ARGUMENT');
  t.equal(await call(c, inferFrame('affine', 4, 1)), null, 'the connection goes on after errors');
  t.equal(c.inFlight, 0);
});

t.test('against a strict server: its stream limit and small windows are kept, bodies arrive whole, PING is answered', async (t) => {
  let open = 0;
  let peak = 0;
  const bodies: Buffer[] = [];
  const server = createServer({ settings: { maxConcurrentStreams: 2, initialWindowSize: 1000 } });
  server.on('stream', (stream: ServerHttp2Stream) => {
    open++;
    peak = Math.max(peak, open);
    const parts: Buffer[] = [];
    stream.on('data', (d: Buffer) => parts.push(d));
    stream.on('end', () => {
      bodies.push(Buffer.concat(parts));
      stream.session?.ping(() => undefined);
      // Answer on a later turn, so calls overlap and the stream limit is tested.
      setImmediate(() => {
        open--;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const c = new H2GrpcConnection('127.0.0.1', port, grpcHeaderBlock(INFER, `127.0.0.1:${port}`));
  t.teardown(() => c.close());
  await c.opened;
  const sent = Array.from({ length: 12 }, (_, i) => Buffer.alloc(5000 + i * 700, i + 1));
  const results = await Promise.all(sent.map((b) => call(c, b)));
  t.same(results, Array(12).fill(null), 'every call answered');
  t.ok(peak <= 2, `never more than the server's two streams open (peak ${peak})`);
  const key = (b: Buffer) => `${b.length}:${b[0]}`;
  t.same(bodies.map(key).sort(), sent.map(key).sort(), 'each body arrived whole, through a 1000-byte stream window');
  t.ok(bodies.every((b) => b.every((v) => v === b[0])), 'and unchanged');
});

t.test('calls fail, never hang: a server that answers without grpc-status, goes away, or never answers', async (t) => {
  let mode: 'no-status' | 'silent' | 'goaway' = 'no-status';
  const server = createServer();
  server.on('stream', (stream: ServerHttp2Stream) => {
    stream.resume();
    if (mode === 'no-status') stream.respond({ ':status': 404 }, { endStream: true });
    else if (mode === 'goaway') stream.session?.goaway(constants.NGHTTP2_NO_ERROR, 0);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const open = async () => {
    const c = new H2GrpcConnection('127.0.0.1', port, grpcHeaderBlock(INFER, `127.0.0.1:${port}`));
    t.teardown(() => c.close());
    await c.opened;
    return c;
  };
  const a = await open();
  t.equal(await call(a, Buffer.alloc(5)), 'http-404', 'an HTTP error without grpc-status');
  mode = 'silent';
  const b = await open();
  const pending = call(b, Buffer.alloc(5));
  b.expire(performance.now() + 1);
  t.equal(await pending, 'timeout', 'expired');
  mode = 'goaway';
  const c = await open();
  t.match(await call(c, Buffer.alloc(5)), /goaway|closed|reset/, 'GOAWAY fails the call');
  t.notOk(c.alive);
  t.match(await call(c, Buffer.alloc(5)), /goaway|closed/, 'a call on a dead connection fails at once');
  await t.rejects(new H2GrpcConnection('127.0.0.1', 1, grpcHeaderBlock(INFER, '127.0.0.1:1')).opened, 'a refused connection rejects opened');
});

t.test('umbra perf --protocol grpc end to end: every call counted by the generator is one the model answered', async (t) => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  // (A version appears in the statistics once it has answered something.)
  const stats = async () => (await s.get('/v2/models/affine/stats')).json.model_stats[0]?.inference_stats ?? { success: { count: 0 }, fail: { count: 0 } };
  const before = await stats();
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/umbra.js', 'perf', '--url', `127.0.0.1:${s.server.grpcPort}`, '-m', 'affine', '--protocol', 'grpc', '--concurrency', '8', '--duration', '1', '--warmup-ms', '200', '--json']);
  const [level] = JSON.parse(stdout);
  const after = await stats();
  t.equal(level.errors, 0, 'no call failed');
  t.ok(level.completed > 0, `${level.completed} calls in the window`);
  t.equal(after.fail.count - before.fail.count, 0, 'the server failed none');
  t.ok(after.success.count - before.success.count >= level.completed, `the model answered every call the generator counted (${after.success.count - before.success.count} >= ${level.completed})`);
});
