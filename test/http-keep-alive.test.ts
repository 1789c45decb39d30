// Idle keep-alive connections: the server says how long it keeps one (`Keep-Alive: timeout=`), so
// pooled clients retire theirs before it closes them instead of sending a request into the close;
// node:http's Agent and `umbra perf`'s connections act on it.
import t from 'tap';
import http from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { KEEP_ALIVE_TIMEOUT_S } from '../dist/server/http.js';
import { HttpConnection, encodeHttpRequest } from '../dist/perf/http-connection.js';

/** Writes `raw` on a fresh connection and reads until the answer's head is in (or the server closes). */
async function rawHead(port: number, raw: string): Promise<{ head: string; closed: boolean }> {
  const socket = connect(port, '127.0.0.1');
  let got = '';
  let closed = false;
  socket.on('data', (d) => { got += d.toString('latin1'); });
  const ended = once(socket, 'close').then(() => { closed = true; });
  socket.write(raw);
  while (!got.includes('\r\n\r\n') && !closed) await Promise.race([once(socket, 'data'), ended]);
  const head = got.slice(0, got.indexOf('\r\n\r\n')).toLowerCase();
  if (!closed) {
    // An answer that closes the connection is followed by the close; one that keeps it is not.
    if (/\r\nconnection: close/.test(head)) await ended;
    else socket.destroy();
  }
  return { head, closed };
}

t.test('answers that keep the connection say how long an idle one is kept; answers that close it do not', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir });
  const port = Number(new URL(s.url).port);
  const hint = `keep-alive: timeout=${KEEP_ALIVE_TIMEOUT_S}`;

  const live = await rawHead(port, 'GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n');
  t.match(live.head, /^http\/1\.1 200/);
  t.ok(live.head.includes(`\r\n${hint}`), 'a 200 carries the hint');
  const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
  const infer = await rawHead(port, `POST /v2/models/affine/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  t.ok(infer.head.includes(`\r\n${hint}`), 'an inference answer carries it');
  const missing = await rawHead(port, 'GET /v2/models/ghost HTTP/1.1\r\nHost: x\r\n\r\n');
  t.match(missing.head, /^http\/1\.1 404/);
  t.ok(missing.head.includes(`\r\n${hint}`), 'an error that keeps the connection carries it');

  // Both framings at once: answered 400 and closed (a request smuggled behind it must not be read).
  const both = await rawHead(port, 'POST /v2/models/affine/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
  t.match(both.head, /^http\/1\.1 400/);
  t.ok(both.closed, 'the connection is closed');
  t.notOk(both.head.includes('keep-alive:'), 'no hint on an answer that closes its connection');
});

t.test("a node:http Agent with a timeout retires an idle connection a second before the server may close it", async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir });
  // A pool that would otherwise keep idle sockets for a minute. Without a timeout at all, Node's
  // Agent would keep them until the server closed them: it reads the hint only to shorten its own.
  const agent = new http.Agent({ keepAlive: true, timeout: 60_000 });
  t.teardown(() => agent.destroy());
  const freed = once(agent, 'free') as Promise<[Socket]>;
  const req = http.get(`${s.url}/v2/health/live`, { agent });
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  res.resume();
  const [socket] = await freed;
  // The agent's own 'free' listener (registered first) has kept the socket and set its idle timeout.
  await new Promise<void>((resolve) => setImmediate(resolve));
  t.equal(socket.timeout, KEEP_ALIVE_TIMEOUT_S * 1000 - 1000, 'idle timeout taken from the hint');
});

t.test("umbra perf's connections are not reused past the server's keep-alive hint", async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir });
  const url = new URL(s.url);
  let deaths = 0;
  const conn = new HttpConnection(url.hostname, Number(url.port), () => { deaths += 1; });
  const body = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }));
  const request = encodeHttpRequest(url.host, '/v2/models/affine/infer', body, { 'content-type': 'application/json' });
  const status = await new Promise<number>((resolve) => conn.send(request, (st) => resolve(st), performance.now()));
  t.equal(status, 200);
  const answeredAt = performance.now();
  t.ok(conn.reusable(answeredAt), 'reusable right after its answer');
  t.ok(conn.reusable(answeredAt + (KEEP_ALIVE_TIMEOUT_S - 1) * 1000 - 50), 'and until a second before the hint');
  t.notOk(conn.reusable(answeredAt + (KEEP_ALIVE_TIMEOUT_S - 1) * 1000 + 50), 'not past it');
  t.notOk(conn.alive, 'closed when found past it');
  t.equal(deaths, 1, 'its pool is told once');
  t.notOk(conn.reusable(answeredAt), 'and never reused after');
});

t.test("umbra perf's connections: no hint, no limit; a server's end of the connection is seen as it comes", async (t) => {
  // A bare server with no hint that answers one request, then ends the connection.
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('data', () => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
      socket.once('data', () => socket.end());
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const port = (server.address() as { port: number }).port;
  let died: () => void = () => undefined;
  const dead = new Promise<void>((resolve) => { died = resolve; });
  const conn = new HttpConnection('127.0.0.1', port, () => died());
  const request = encodeHttpRequest(`127.0.0.1:${port}`, '/x', Buffer.from('{}'), {});
  const status = await new Promise<number>((resolve) => conn.send(request, (st) => resolve(st), performance.now()));
  t.equal(status, 200);
  t.ok(conn.reusable(performance.now() + 3_600_000), 'with no hint an idle connection stays reusable');
  // The second request is answered with the server's end: a transport failure, and the connection dead.
  const failed = await new Promise<[number, string | null]>((resolve) => conn.send(request, (st, e) => resolve([st, e]), performance.now()));
  t.same(failed, [0, 'connection closed']);
  await dead;
  t.notOk(conn.alive);
});
