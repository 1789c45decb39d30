// HTTP/1.0 clients (curl --http1.0, ApacheBench, HAProxy's httpchk, nginx's default proxy_pass),
// which the bundled uWebSockets.js answers 505: the HTTP guard hands each 1.0 request on as
// HTTP/1.1 with `Connection: close` (native/src/net/http10_head.h), and the answer is one a 1.0
// client reads: delimited by Content-Length, never chunked, the connection closed after it.
// Through a real nginx: test/http10-nginx.test.ts.
import t from 'tap';
import { connect } from 'node:net';
import { native } from '../dist/native/addon.js';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { rawExchange, type RawResponse } from './helpers/raw-http.js';

type Read = { data: Buffer } | { wait: true } | { end: true } | { refused: string; status: number };
const reads = (chunks: Buffer[], capacity?: number): Read[] => native().streamGuardReads(chunks, 'switch', capacity);
const delivered = (r: Read[]): Buffer[] => r.flatMap((x) => ('data' in x ? [x.data] : []));
const joined = (r: Read[]) => Buffer.concat(delivered(r)).toString('latin1');
const refusals = (r: Read[]) => r.flatMap((x) => ('refused' in x ? [x.refused] : []));

/** Cuts of `bytes` at the given offsets. */
function cut(bytes: Buffer, at: number[]): Buffer[] {
  const points = [0, ...at.filter((a) => a > 0 && a < bytes.length).sort((a, b) => a - b), bytes.length];
  return points.slice(1).map((end, i) => bytes.subarray(points[i], end)).filter((b) => b.length > 0);
}

const body = '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[0.5,-1,2,3.25]}]}';

// One server for the server subtests (started first: the guard's subtests need none).
const repo = tempRepo();
t.teardown(() => repo.remove());
repo.addVersion('affine', 1, affineModel(2, 1));
const s = await startTestServer(t, { repository: repo.dir });
const port = s.server.port;
const expectedY = [0.5, -1, 2, 3.25].map((v) => Math.fround(Math.fround(v * 2) + 1));

t.test('guard: a 1.0 head is handed on as HTTP/1.1 with Connection: close', async (t) => {
  const handed = (text: string) => joined(reads([Buffer.from(text, 'latin1')]));
  t.equal(handed('GET /v2/health/ready HTTP/1.0\r\nHost: umbra\r\n\r\n'), 'GET /v2/health/ready HTTP/1.1\r\nHost: umbra\r\nConnection: close\r\n\r\n', 'with Host: the version and Connection: close');
  t.equal(handed('GET /v2/health/ready HTTP/1.0\r\n\r\n'), 'GET /v2/health/ready HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n', 'without Host: an empty Host (RFC 9112 3.2: no authority known)');
  t.equal(handed('GET http://umbra:8000/v2/health/ready HTTP/1.0\r\n\r\n'), 'GET /v2/health/ready HTTP/1.1\r\nHost: umbra:8000\r\nConnection: close\r\n\r\n', 'an absolute-form target without Host: origin form, its authority as Host');
  t.equal(handed('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\nHost: a\r\n\r\n'), 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 'keep-alive asked: its Connection and Keep-Alive give way to Connection: close');
  t.equal(handed('GET /ws HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'), 'GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n', 'an upgrade is ignored (RFC 9110 7.8): Upgrade and the key the library upgrades on taken out');
  t.equal(handed(`POST /i HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n${body}`), `POST /i HTTP/1.1\r\nContent-Length: ${body.length}\r\nHost: \r\nConnection: close\r\n\r\n${body}`, 'Expect taken out (a 1.0 client gets no 100 Continue), the body after the head as sent');
  t.equal(handed('GET / HTTP/1.0\nHost: a\n\n'), 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 'lines ended by LF alone: CRLF, then the same');
});

t.test('guard: other versions are not rewritten', async (t) => {
  for (const line of ['GET / HTTP/2.0', 'GET / HTTP/1.0 ', 'GET / http/1.0', 'GET / HTTP/1.00', 'GET / HTTP/1.1']) {
    const text = `${line}\r\nHost: a\r\n\r\n`;
    t.equal(joined(reads([Buffer.from(text)])), text, `${JSON.stringify(line)}: handed on as sent`);
  }
});

t.test('guard: a request line with no version (HTTP/0.9) is refused 505 at its line end', async (t) => {
  // A 0.9 client sends the line alone and waits; the library would wait for headers.
  const r = reads([Buffer.from('GET /v2/health/live HTTP/1.1\r\nHost: a\r\n\r\nGET /v2/health/live\r\n')]);
  t.same(r.flatMap((x) => ('refused' in x ? [x.status] : [])), [505], 'one refusal, 505');
  t.equal(joined(r), 'GET /v2/health/live HTTP/1.1\r\nHost: a\r\n\r\n', 'the request before it handed on, nothing of it');
});

t.test('guard: Transfer-Encoding in a 1.0 request is refused 400 (RFC 9112 6.1: its framing is faulty)', async (t) => {
  const r = reads([Buffer.from('POST /i HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')]);
  t.match(refusals(r), [/Transfer-Encoding in an HTTP\/1\.0 request/], 'one refusal, with the reason');
  t.equal(joined(r), '', 'and nothing of the request is handed on');
});

t.test('guard: cut at every byte offset, a 1.0 POST behind a 1.1 request is handed on the same, its head in one read', async (t) => {
  const first = `POST /i HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const old = `POST /i HTTP/1.0\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const headHanded = `POST /i HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nHost: \r\nConnection: close\r\n\r\n`;
  const sent = Buffer.from(first + old);
  const expected = first + headHanded + body;
  const headAt = first.length;
  const wrong: number[] = [];
  const split: number[] = [];
  for (let at = 1; at < sent.length; at++) {
    const r = reads(cut(sent, [at]));
    if (joined(r) !== expected) wrong.push(at);
    // The rewritten head lies inside one read.
    let offset = 0;
    if (!delivered(r).some((b) => {
      const inside = offset <= headAt && headAt + headHanded.length <= offset + b.length;
      offset += b.length;
      return inside;
    })) split.push(at);
  }
  t.same(wrong, [], `${sent.length - 1} two-piece cuts: the same bytes handed on`);
  t.same(split, [], 'and the rewritten head in one read at every cut');
  const bytewise = reads(cut(sent, Array.from({ length: sent.length }, (_, i) => i)));
  t.equal(joined(bytewise), expected, 'one byte per read: the same bytes');
});

t.test('guard: where the rewrite cannot be made, no 1.1 request that keeps its connection is handed on', async (t) => {
  // The server's reads leave room for it; these reads, in a buffer the size of what they hold, do not.
  const head = 'POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 60\r\n\r\n';
  const full = reads([Buffer.from(head + 'x'.repeat(60))], head.length + 60);
  t.match(refusals(full), [/does not fit/], 'a head with no room after it in the buffer: refused with the reason');
  const big = 'GET / HTTP/1.0\r\nHost: a\r\n\r\n';
  const over = reads([Buffer.from(big)], big.length + 4);
  t.same(over.flatMap((x) => ('refused' in x ? [x.status] : [])), [431], 'a head larger than the guard holds: refused 431, as the library refuses a 1.1 head too large');
  t.equal(joined(over), '', 'and nothing of it is handed on');
});

t.test('guard: a 1.0 head over 64 KiB is refused 431, wherever it is cut', async (t) => {
  const big = Buffer.from(`GET / HTTP/1.0\r\nHost: a\r\nX-Big: ${'x'.repeat(70 * 1024)}\r\n\r\n`);
  const statuses = [1, 40, 30_000, big.length - 3].map((at) => reads(cut(big, [at])).flatMap((x) => ('refused' in x ? [x.status] : [])));
  t.same(statuses, [[431], [431], [431], [431]], 'each cut: one refusal, 431');
});


/** One request's bytes on a new connection; the answer, and whether the server then closed. */
async function exchange(parts: (string | Buffer)[], gapMs?: number): Promise<{ answer: RawResponse | undefined; closed: boolean }> {
  const r = await rawExchange(port, parts, { expect: 1, awaitClose: 5000, limitMs: 5000, ...(gapMs ? { gapMs } : {}) });
  return { answer: r.responses[0], closed: r.closedByServer };
}

/** What about `a` a 1.0 client could not read: a chunked body, no length, a keep-alive hint. */
function unreadable(a: RawResponse | undefined): string[] {
  if (!a) return ['no answer'];
  const wrong: string[] = [];
  if (a.headers['transfer-encoding'] !== undefined) wrong.push(`Transfer-Encoding: ${a.headers['transfer-encoding']}`);
  if (a.headers['content-length'] === undefined) wrong.push('no Content-Length');
  if (a.headers['keep-alive'] !== undefined) wrong.push(`Keep-Alive: ${a.headers['keep-alive']}`);
  if (!/^close$/i.test(a.headers.connection ?? '')) wrong.push(`Connection: ${a.headers.connection}`);
  return wrong;
}

t.test('server: 1.0 with and without Host is answered, and the connection closed', async (t) => {
  const withHost = await exchange(['GET /v2/health/ready HTTP/1.0\r\nHost: umbra\r\n\r\n']);
  t.equal(withHost.answer?.status, 200, 'with Host: 200');
  t.equal(withHost.answer?.body.toString(), '{"ready":true}', 'with Host: the answer');
  t.ok(withHost.closed, 'with Host: closed after the answer');
  t.same(unreadable(withHost.answer), [], 'with Host: Content-Length and Connection: close, no chunks, no keep-alive hint');
  const without = await exchange(['GET /v2/health/ready HTTP/1.0\r\n\r\n']);
  t.equal(without.answer?.status, 200, 'without Host: 200');
  t.ok(without.closed, 'without Host: closed after the answer');
});

t.test('server: a 1.0 client that asks for keep-alive is answered with Connection: close and the connection closed', async (t) => {
  const r = await exchange(['GET /v2/models/affine HTTP/1.0\r\nConnection: keep-alive\r\n\r\n']);
  t.equal(r.answer?.status, 200, '200');
  t.equal(JSON.parse(r.answer?.body.toString() ?? '{}').name, 'affine', 'the model metadata');
  t.same(unreadable(r.answer), [], 'Connection: close, no keep-alive hint');
  t.ok(r.closed, 'closed after the answer');
});

t.test('server: a JSON infer over 1.0 is answered exactly', async (t) => {
  const request = `POST /v2/models/affine/infer HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const r = await exchange([request]);
  t.equal(r.answer?.status, 200, '200');
  t.same(JSON.parse(r.answer?.body.toString() ?? '{}').outputs?.[0]?.data, expectedY, 'exact outputs');
  t.same(unreadable(r.answer), [], 'an answer a 1.0 client frames');
  const expect = await exchange([request.replace('\r\n\r\n', '\r\nExpect: 100-continue\r\n\r\n')]);
  t.equal(expect.answer?.status, 200, 'with Expect: 100-continue, no interim 100 (a 1.0 client gets none): the answer first');
});

t.test('server: HEAD, a streamed route and an upgrade over 1.0', async (t) => {
  const head = await exchange(['HEAD /v2/health/ready HTTP/1.0\r\n\r\n']);
  t.equal(head.answer?.status, 200, 'HEAD: 200');
  t.equal(head.answer?.body.length, 0, 'HEAD: no body');
  t.ok(head.closed, 'HEAD: closed after the answer');
  // The ops page's event stream is chunked to a 1.1 client; a 1.0 client gets its greeting, by length.
  const events = await exchange(['GET /v2/ops/events HTTP/1.0\r\n\r\n']);
  t.equal(events.answer?.status, 200, 'the event stream: 200');
  t.same(unreadable(events.answer), [], 'the event stream: by Content-Length, not chunked, then closed');
  t.match(events.answer?.body.toString(), /^retry: 2000\n/, 'the event stream: its greeting');
  const upgrade = await exchange(['GET /v2/models/affine/stream HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n']);
  t.not(upgrade.answer?.status, 101, `an upgrade is not switched (RFC 9110 7.8): ${upgrade.answer?.status}`);
});

t.test('server: a 1.0 request cut at every byte offset is answered', async (t) => {
  const request = Buffer.from('GET /v2/health/live HTTP/1.0\r\nUser-Agent: ab\r\n\r\n');
  const wrong: string[] = [];
  for (let at = 1; at < request.length; at++) {
    const r = await exchange([request.subarray(0, at), request.subarray(at)], 5);
    if (r.answer?.status !== 200 || r.answer.body.toString() !== '{"live":true}' || !r.closed) wrong.push(`${at}: ${r.answer?.status ?? 'no answer'} closed=${r.closed}`);
  }
  t.same(wrong, [], `${request.length - 1} cuts: 200, the answer, the connection closed`);
});

t.test('server: a 1.0 head over 64 KiB gets 431 JSON, as a 1.1 head of the same size', async (t) => {
  const big = 'x'.repeat(70 * 1024);
  const old = await exchange([`GET /v2/health/ready HTTP/1.0\r\nHost: a\r\nX-Big: ${big}\r\n\r\n`]);
  const current = await exchange([`GET /v2/health/ready HTTP/1.1\r\nHost: a\r\nX-Big: ${big}\r\n\r\n`]);
  t.same([old.answer?.status, current.answer?.status], [431, 431], '1.0 and 1.1: 431');
  t.equal(JSON.parse(old.answer?.body.toString() ?? '{}').error, JSON.parse(current.answer?.body.toString() ?? '{}').error, '1.0: the same JSON error as 1.1');
  t.ok(old.closed, '1.0: the connection closed');
});

t.test('server: other versions (2.0 as text, 0.9) get a 505 JSON answer; Transfer-Encoding in 1.0 is 400', async (t) => {
  const two = await exchange(['GET /v2/health/live HTTP/2.0\r\nHost: umbra\r\n\r\n']);
  t.equal(two.answer?.status, 505, 'HTTP/2.0 as text: 505');
  t.type(JSON.parse(two.answer?.body.toString() ?? '{}').error, 'string', 'HTTP/2.0: {"error": ...}');
  for (const [name, text] of [['HTTP/0.9, the line alone', 'GET /v2/health/live\r\n'], ['no version, with headers', 'GET /v2/health/live\r\nHost: umbra\r\n\r\n']]) {
    const r = await exchange([text!]);
    t.equal(r.answer?.status, 505, `${name}: 505`);
    t.match(JSON.parse(r.answer?.body.toString() ?? '{}').error, /names no HTTP version/, `${name}: {"error": ...} with the reason`);
    t.ok(r.closed, `${name}: closed`);
  }
  const coded = await exchange(['POST /v2/models/affine/infer HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n']);
  t.equal(coded.answer?.status, 400, 'Transfer-Encoding in 1.0: 400');
  t.match(JSON.parse(coded.answer?.body.toString() ?? '{}').error, /Transfer-Encoding in an HTTP\/1\.0 request/, 'with the reason');
  t.ok(coded.closed, 'and the connection closed');
});

t.test('server: a 1.1 request with Connection: close is answered with Connection: close, no keep-alive hint, and closed', async (t) => {
  for (const value of ['close', 'keep-alive, close']) {
    const r = await exchange([`GET /v2/health/live HTTP/1.1\r\nHost: umbra\r\nConnection: ${value}\r\n\r\n`]);
    t.same(unreadable(r.answer), [], `Connection: ${value}: the answer says close`);
    t.ok(r.closed, `Connection: ${value}: closed`);
  }
  const kept = await rawExchange(port, ['GET /v2/health/live HTTP/1.1\r\nHost: umbra\r\n\r\n'], { expect: 1 });
  t.equal(kept.responses[0]?.headers['keep-alive'], 'timeout=8', 'without it, the keep-alive hint as before');
});

t.test('server: the rewrite is counted in umbra_http_guard_events_total', async (t) => {
  const count = async () => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    return Number(/^umbra_http_guard_events_total\{event="http10_rewritten"\} (\d+)/m.exec(text)?.[1] ?? Number.NaN);
  };
  const before = await count();
  await exchange(['GET /v2/health/live HTTP/1.0\r\n\r\n']);
  await exchange(['GET /v2/health/live HTTP/1.0\r\n\r\n']);
  // The counts are the process's: nothing else in this test sends 1.0 meanwhile.
  const after = await count();
  t.equal(after, before + 2, `two 1.0 requests: counted (${before} -> ${after})`);
});

t.test('server: a 1.0 client on a socket sees the end of the answer as the end of the connection', async (t) => {
  // What a 1.0 client does: send, read to the end of the connection, take that as the answer.
  const whole = await new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`POST /v2/models/affine/infer HTTP/1.0\r\nContent-Length: ${body.length}\r\n\r\n${body}`));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
  });
  const [head, answer] = [whole.slice(0, whole.indexOf('\r\n\r\n')), whole.slice(whole.indexOf('\r\n\r\n') + 4)];
  t.match(head, /^HTTP\/1\.1 200 OK\r\n/, 'the status line (HTTP/1.1 to a 1.0 client: RFC 9110 6.2)');
  t.same(JSON.parse(answer).outputs[0].data, expectedY, 'everything after the head is the JSON answer, nothing more');
});
