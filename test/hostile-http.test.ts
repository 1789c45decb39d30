// The HTTP transport under hostile input: every request split at every byte offset, framing
// headers that two readers could read differently, HEAD, and a seeded fuzz of mutated requests.
// The bundled uWebSockets.js (20.0.8) answers some cut request lines with 505 and its own errors
// with HTML pages; the HTTP guard (src/server/http-guard.ts) stands between it and the socket, so
// these tests hold Umbra to the protocol, not to the library.
import t, { type Test } from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { connect } from 'node:net';
import { parseResponses, rawExchange, rawSequence, requestBytes, type RawResponse } from './helpers/raw-http.js';
import { seededRandom } from '../dist/random.js';

const repo = tempRepo();
t.teardown(() => repo.remove());
repo.addVersion('affine', 1, affineModel(2, 1));

const x = [0.5, -1, 2, 3.25];
const jsonBody = JSON.stringify({ id: 'q', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] });
const binaryHeader = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } }], outputs: [{ name: 'y', parameters: { binary_data: false } }] });
const binaryBody = Buffer.concat([Buffer.from(binaryHeader), Buffer.from(Float32Array.from(x).buffer)]);
const expectedY = x.map((v) => Math.fround(Math.fround(v * 2) + 1));

// One server for every subtest: the cases are independent connections.
const s = await startTestServer(t, { repository: repo.dir, monitoring: false });

/** The body in two chunks, so its framing splits it too. */
function chunked(body: string): string {
  const a = body.slice(0, 20);
  const b = body.slice(20);
  return `${a.length.toString(16)}\r\n${a}\r\n${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`;
}

const REQUESTS: Record<string, Buffer> = {
  'GET health': requestBytes('GET', '/v2/health/live', [['Host', 'umbra']]),
  'POST JSON infer': requestBytes('POST', '/v2/models/affine/infer', [['Host', 'umbra'], ['Content-Type', 'application/json'], ['Content-Length', String(jsonBody.length)]], jsonBody),
  'POST binary infer': requestBytes('POST', '/v2/models/affine/infer', [['Host', 'umbra'], ['Inference-Header-Content-Length', String(binaryHeader.length)], ['Content-Length', String(binaryBody.length)]], binaryBody),
  'POST chunked infer': requestBytes('POST', '/v2/models/affine/infer', [['Host', 'umbra'], ['Transfer-Encoding', 'chunked']], chunked(jsonBody)),
};

/**
 * Offsets at which uWebSockets.js 20.0.8 alone answers a split request line with its own 505:
 * right after the method's space, and from the space before the version to the CR.
 */
function fragileOffsets(request: Buffer): Set<number> {
  const line = request.subarray(0, request.indexOf('\r\n')).toString('latin1');
  const out = new Set<number>([line.indexOf(' ') + 1]);
  for (let i = line.lastIndexOf(' ') + 1; i <= line.length + 1; i++) out.add(i);
  return out;
}

function assertExact(t: Test, name: string, r: RawResponse | undefined): void {
  t.ok(r, `${name}: an answer`);
  if (!r) return;
  t.equal(r.status, 200, `${name}: 200 (${r.body.toString().slice(0, 120)})`);
  if (name.startsWith('GET')) {
    t.same(JSON.parse(r.body.toString()), { live: true }, name);
    return;
  }
  const answer = JSON.parse(r.body.toString());
  t.same(answer.outputs[0].data, expectedY, `${name}: exact outputs`);
}

/** Runs `jobs` with at most `width` at once. */
async function pooled<T>(jobs: (() => Promise<T>)[], width = 8): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  }));
  return out;
}

t.test('every request split at every byte offset gets the same exact answer', async (t) => {
  const port = s.server.port;
  for (const [name, request] of Object.entries(REQUESTS)) {
    const whole = await rawExchange(port, [request], { expect: 1 });
    assertExact(t, `${name} in one write`, whole.responses[0]);
    const fragile = fragileOffsets(request);
    const offsets = Array.from({ length: request.length - 1 }, (_, i) => i + 1);
    const results = await pooled(offsets.map((at) => () => rawExchange(port, [request.subarray(0, at), request.subarray(at)], { expect: 1, gapMs: 5, limitMs: 5000 })));
    let exact = 0;
    const broken: string[] = [];
    for (let i = 0; i < offsets.length; i++) {
      const at = offsets[i]!;
      const r = results[i]!.responses[0];
      const ok = r?.status === 200 && (name.startsWith('GET') ? r.body.toString() === '{"live":true}' : JSON.stringify(JSON.parse(r.body.toString()).outputs[0].data) === JSON.stringify(expectedY));
      if (ok) exact += 1;
      else if (!fragile.has(at)) broken.push(`${at}: ${r ? `${r.status} ${r.body.toString().slice(0, 80)}` : 'no answer'}`);
    }
    t.same(broken, [], `${name}: every split outside the request line's fragile points answered exactly (${exact} of ${offsets.length} exact)`);
    const fragileFailures = [...fragile].filter((at) => {
      const r = results[at - 1]?.responses[0];
      return r?.status !== 200;
    });
    t.same(fragileFailures, [], `${name}: splits where the library alone answers 505 (after the method's space, inside " HTTP/1.1\\r\\n") answered exactly`);
  }
});

t.test('a request written one byte at a time', async (t) => {
  for (const [name, request] of Object.entries(REQUESTS)) {
    const line = request.indexOf('\r\n') + 2;
    // The request line whole, then every other byte alone.
    const parts = [request.subarray(0, line), ...Array.from(request.subarray(line), (b) => Buffer.from([b]))];
    const r = await rawExchange(s.server.port, parts, { expect: 1, gapMs: 1, limitMs: 20_000 });
    assertExact(t, `${name}, headers and body byte by byte`, r.responses[0]);
  }
  const all = await rawExchange(s.server.port, Array.from(REQUESTS['GET health']!, (b) => Buffer.from([b])), { expect: 1, gapMs: 1, limitMs: 20_000 });
  t.equal(all.responses[0]?.status, 200, 'the whole request byte by byte');
  t.equal(all.responses[0]?.body.toString(), '{"live":true}', 'the whole request byte by byte: its answer'); 
});

t.test('on one kept-alive connection, every request after the first split inside its request line too', async (t) => {
  const port = s.server.port;
  const get = REQUESTS['GET health']!;
  const post = REQUESTS['POST chunked infer']!;
  const binary = REQUESTS['POST binary infer']!;
  // The first request whole, then each next one cut at one offset of its request line, written
  // once the previous answer is in.
  const lineEnd = post.indexOf('\r\n') + 2;
  const failures: string[] = [];
  for (let at = 1; at < lineEnd; at++) {
    const answers = await rawSequence(port, [[get], [post.subarray(0, at), post.subarray(at)], [binary.subarray(0, at), binary.subarray(at)]], { gapMs: 5, limitMs: 5000 });
    const statuses = answers.map((x) => x.status);
    if (statuses.join() !== '200,200,200') failures.push(`${at}: ${statuses.join() || 'no answer'}`);
  }
  t.same(failures, [], `a GET, then a chunked POST and a binary POST each cut at every offset of the request line (${lineEnd - 1} cuts): three exact answers`);
});

t.test('the transport\'s own refusals are JSON, and malformed requests it would leave waiting are answered 400', async (t) => {
  const cases: [string, Buffer, number][] = [
    // HTTP/1.0 is served (test/http10.test.ts); a version the library cannot read keeps its 505.
    ['HTTP/2.0 as text', Buffer.from('GET /v2/health/live HTTP/2.0\r\nHost: umbra\r\n\r\n'), 505],
    ['a header over the limit', requestBytes('GET', '/v2/health/live', [['Host', 'umbra'], ['X-Big', 'a'.repeat(20_000)]]), 431],
    // Alone, the library waits on these until its idle timeout; the HTTP guard answers them.
    ['no Host', Buffer.from('GET /v2/health/live HTTP/1.1\r\n\r\n'), 400],
    ['a header line with no colon', Buffer.from('GET /v2/health/live HTTP/1.1\r\nHost: umbra\r\nX-A\r\n\r\n'), 400],
    ['a space before the colon', Buffer.from('GET /v2/health/live HTTP/1.1\r\nHost : umbra\r\n\r\n'), 400],
    ['a folded header', Buffer.from('GET /v2/health/live HTTP/1.1\r\nHost: umbra\r\nX-A: 1\r\n 2\r\n\r\n'), 400],
    ['a NUL in a header', Buffer.from('GET /v2/health/live HTTP/1.1\r\nHost: umbra\r\nX-A: 1\u00002\r\n\r\n'), 400],
  ];
  for (const [name, bytes, status] of cases) {
    const r = await rawExchange(s.server.port, [bytes], { expect: 1, awaitClose: 5000 });
    t.equal(r.responses[0]?.status, status, `${name}: ${status}`);
    t.match(r.responses[0]?.headers['content-type'], /application\/json/, `${name}: JSON`);
    t.type(JSON.parse(r.responses[0]?.body.toString() ?? '{}').error, 'string', `${name}: {"error": ...}`);
    t.ok(r.closedByServer, `${name}: the connection is closed`);
  }
});

t.test('valid forms the library mishandles are served: empty lines before a request, chunk extensions, trailer fields, an absolute-form target, LF line ends', async (t) => {
  const port = s.server.port;
  const withExtensions = `${(20).toString(16)};name=value\r\n${jsonBody.slice(0, 20)}\r\n${(jsonBody.length - 20).toString(16)} ; a=1;b="two"\r\n${jsonBody.slice(20)}\r\n0;last=1\r\n\r\n`;
  const withTrailers = `${chunked(jsonBody).slice(0, -2)}X-Checksum: 1\r\nX-Other: 2\r\n\r\n`;
  const cases: [string, Buffer][] = [
    ['empty lines before the request', Buffer.concat([Buffer.from('\r\n\r\n'), REQUESTS['POST JSON infer']!])],
    ['chunk extensions', requestBytes('POST', '/v2/models/affine/infer', [['Host', 'umbra'], ['Transfer-Encoding', 'chunked']], withExtensions)],
    ['trailer fields', requestBytes('POST', '/v2/models/affine/infer', [['Host', 'umbra'], ['Transfer-Encoding', 'chunked']], withTrailers)],
    ['an absolute-form target', requestBytes('POST', 'http://umbra:8000/v2/models/affine/infer', [['Host', 'umbra'], ['Content-Length', String(jsonBody.length)]], jsonBody)],
    ['lines ended by LF alone', Buffer.from(REQUESTS['POST chunked infer']!.toString('latin1').replace(/\r\n/g, '\n'), 'latin1')],
  ];
  for (const [name, bytes] of cases) {
    const whole = await rawExchange(port, [bytes], { expect: 1, limitMs: 5000 });
    assertExact(t, name, whole.responses[0]);
    const cutAt = bytes.length - 9;
    const split = await rawExchange(port, [bytes.subarray(0, cutAt), bytes.subarray(cutAt)], { expect: 1, gapMs: 5, limitMs: 5000 });
    assertExact(t, `${name}, its end in a second segment`, split.responses[0]);
  }
  // On one kept-alive connection, one after another.
  const answers = await rawSequence(port, cases.map(([, bytes]) => [bytes]), { limitMs: 5000 });
  t.same(answers.map((a) => a.status), [200, 200, 200, 200, 200], 'the five on one kept-alive connection');
});

t.test('framing two readers could read differently is refused with 400 and the connection closed', async (t) => {
  const port = s.server.port;
  const post = (headers: [string, string][], body: string) => requestBytes('POST', '/v2/models/affine/infer', [['Host', 'umbra'], ...headers], body);
  // The smuggled request rides in what one reader takes for the first request's body.
  // Host 127.0.0.1: the admin gate would let it through, so only the guard stops it.
  const smuggled = 'POST /v2/repository/models/affine/unload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n';
  // Without the HTTP guard, uWS reads the short length and parses the rest as a second request in
  // the same read, and closes the connection before Umbra's refusal goes out; the guard hands on
  // the head alone, so the refusal is answered and the smuggled request is never read.
  const smuggling = await rawExchange(port, [post([['Content-Length', '2'], ['Content-Length', String(2 + smuggled.length)]], `{}${smuggled}`)], { expect: 1, awaitClose: 5000, limitMs: 5000 });
  t.equal(smuggling.responses.length, 1, 'Content-Length twice with a request hidden in the longer body: one answer');
  t.equal(smuggling.responses[0]?.status, 400, 'and that answer is the 400 (the HTTP guard hands on the head alone)');
  t.ok(smuggling.closedByServer, 'the connection is closed');
  const cases: [string, Buffer, number][] = [
    ['Content-Length twice, different (long first)', post([['Content-Length', String(jsonBody.length)], ['Content-Length', '2']], jsonBody), 400],
    ['Content-Length twice, equal', post([['Content-Length', String(jsonBody.length)], ['Content-Length', String(jsonBody.length)]], jsonBody), 400],
    ['Transfer-Encoding twice', post([['Transfer-Encoding', 'chunked'], ['Transfer-Encoding', 'chunked']], chunked(jsonBody)), 400],
    ['Transfer-Encoding not ending in chunked', post([['Transfer-Encoding', 'chunked, identity']], chunked(jsonBody)), 400],
    ['Transfer-Encoding with another coding', post([['Transfer-Encoding', 'gzip, chunked']], chunked(jsonBody)), 501],
    ['Host twice', requestBytes('GET', '/v2/health/live', [['Host', 'a'], ['Host', 'b']]), 400],
  ];
  for (const [name, bytes, status] of cases) {
    const r = await rawExchange(port, [bytes], { expect: 1, awaitClose: 5000 });
    t.equal(r.responses.length, 1, `${name}: one answer, nothing smuggled`);
    t.equal(r.responses[0]?.status, status, `${name}: ${status}`);
    t.match(r.responses[0]?.headers['content-type'], /application\/json/, `${name}: JSON`);
    t.type(JSON.parse(r.responses[0]?.body.toString() ?? '{}').error, 'string', `${name}: {"error": ...}`);
    t.ok(r.closedByServer, `${name}: the connection is closed`);
  }
  // Content-Length with Transfer-Encoding never reaches Umbra: the library refuses it itself.
  const both = await rawExchange(port, [post([['Content-Length', '2'], ['Transfer-Encoding', 'chunked']], '2\r\n{}\r\n0\r\n\r\n')], { expect: 1, awaitClose: 5000 });
  t.equal(both.responses[0]?.status, 400, 'Content-Length with Transfer-Encoding: 400');
  t.match(both.responses[0]?.headers['content-type'], /application\/json/, 'Content-Length with Transfer-Encoding: JSON, though the library answers it');
  t.type(JSON.parse(both.responses[0]?.body.toString() ?? '{}').error, 'string', 'Content-Length with Transfer-Encoding: {"error": ...}');
  t.ok(both.closedByServer, 'Content-Length with Transfer-Encoding: closed');
  // The model is still loaded: the smuggled unload never ran.
  const after = await rawExchange(port, [REQUESTS['POST JSON infer']!], { expect: 1 });
  assertExact(t, 'a request after the refusals', after.responses[0]);
});

t.test('HEAD answers like GET without a body, and the connection stays usable', async (t) => {
  for (const path of ['/v2/health/live', '/v2/models/affine', '/v2/nowhere']) {
    const head = requestBytes('HEAD', path, [['Host', 'umbra']]);
    const get = requestBytes('GET', '/v2/health/live', [['Host', 'umbra']]);
    // Pipelined: the answer to HEAD ends with its head, and the GET behind it waits for it.
    const r = await rawExchange(s.server.port, [Buffer.concat([head, get])], { expect: 2 });
    t.equal(r.responses.length, 2, `HEAD ${path}: then GET on the same connection`);
    t.equal(r.responses[0]?.body.length, 0, `HEAD ${path}: no body`);
    t.equal(r.responses[1]?.body.toString(), '{"live":true}', `HEAD ${path}: the next answer is intact`);
  }
});

/** A JSON infer request whose input is x + shift, with its own id: its answer says whose it is. */
function inferShifted(shift: number): Buffer {
  const body = JSON.stringify({ id: `p${shift}`, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x.map((v) => v + shift) }] });
  return requestBytes('POST', '/v2/models/affine/infer', [['Host', 'umbra'], ['Content-Type', 'application/json'], ['Content-Length', String(body.length)]], body);
}

/** What each pipelined request must get back, in order. */
type Expectation = { kind: 'infer'; shift: number } | { kind: 'live' } | { kind: 'head' } | { kind: 'exact' };

/** What is wrong with `got` as the answers to `expected`, in order (nothing when each is its own). */
function pipelineErrors(label: string, expected: Expectation[], got: RawResponse[]): string[] {
  const wrong = got.length === expected.length ? [] : [`${label}: ${got.length} answers to ${expected.length} requests`];
  return wrong.concat(expected.flatMap((e, i) => {
    const r = got[i];
    const says = `${label} #${i}`;
    if (!r) return [];
    if (r.status !== 200) return [`${says}: ${r.status} ${r.body.toString().slice(0, 100)}`];
    if (e.kind === 'head') return r.body.length === 0 ? [] : [`${says}: HEAD with a body`];
    const body = JSON.parse(r.body.toString());
    if (e.kind === 'live') return body.live === true ? [] : [`${says}: ${r.body.toString()}`];
    if (e.kind === 'exact') return JSON.stringify(body.outputs[0].data) === JSON.stringify(expectedY) ? [] : [`${says}: ${r.body.toString().slice(0, 100)}`];
    const want = x.map((v) => Math.fround(Math.fround(Math.fround(v + e.shift) * 2) + 1));
    return body.id === `p${e.shift}` && JSON.stringify(body.outputs[0].data) === JSON.stringify(want) ? [] : [`${says}: ${r.body.toString().slice(0, 100)}`];
  }));
}

t.test('pipelined requests are answered in order on the same connection, however the bytes are cut', async (t) => {
  const mix: [Buffer, Expectation][] = [
    [inferShifted(0), { kind: 'infer', shift: 0 }],
    [REQUESTS['GET health']!, { kind: 'live' }],
    [inferShifted(1), { kind: 'infer', shift: 1 }],
    [requestBytes('HEAD', '/v2/health/live', [['Host', 'umbra']]), { kind: 'head' }],
    [REQUESTS['POST binary infer']!, { kind: 'exact' }],
    [REQUESTS['POST chunked infer']!, { kind: 'exact' }],
    [inferShifted(2), { kind: 'infer', shift: 2 }],
    [REQUESTS['GET health']!, { kind: 'live' }],
  ];
  const all = Buffer.concat(mix.map(([b]) => b));
  const expected = mix.map(([, e]) => e);
  const port = s.server.port;
  // All in one write, then one more request on the same connection once they are answered.
  const one = await rawExchange(port, [all, REQUESTS['GET health']!], { expect: mix.length + 1, gapMs: 100 });
  t.same(pipelineErrors('one write', [...expected, { kind: 'live' }], one.responses), [], 'one write: each answer is its own request\'s, in order, and one more after them');
  t.notOk(one.closedByServer, 'one write: the connection stays open');
  // Cut into two writes at offsets spread over the whole sequence (each request's end and the next
  // one's start fall in one read, or the next one's line is cut).
  const cuts = Array.from({ length: 24 }, (_, i) => Math.floor(((i + 1) * all.length) / 25));
  const split = await pooled(cuts.map((at) => () => rawExchange(port, [all.subarray(0, at), all.subarray(at)], { expect: mix.length, gapMs: 5 })));
  const bad = split.flatMap((r, i) => pipelineErrors(`cut at ${cuts[i]}`, expected, r.responses).concat(r.closedByServer ? [`cut at ${cuts[i]}: closed`] : []));
  t.same(bad, [], `${cuts.length} cuts: each answer is its own request's, in order, the connection open`);
  // Many at once: the held requests are read one answer at a time, and still batch with others.
  const many = Array.from({ length: 64 }, (_, i) => i);
  const r64 = await rawExchange(port, [Buffer.concat(many.map((i) => inferShifted(i)))], { expect: many.length, limitMs: 30_000 });
  t.same(pipelineErrors('64 infers in one write', many.map((shift) => ({ kind: 'infer', shift })), r64.responses), [], '64 infers in one write: each answer its own, in order');
});

t.test('a client that pipelines and ends its side is taken as gone, as the library takes any end', async (t) => {
  const requests = [inferShifted(5), REQUESTS['GET health']!, inferShifted(6)];
  const expected: Expectation[] = [{ kind: 'infer', shift: 5 }, { kind: 'live' }, { kind: 'infer', shift: 6 }];
  const data = await new Promise<Buffer>((resolve) => {
    const socket = connect(s.server.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.on('connect', () => socket.end(Buffer.concat(requests)));
  });
  // The server closes (this would hang otherwise); what was answered before is its own, in order.
  const got = parseResponses(data).responses;
  t.same(pipelineErrors('half-closed', expected.slice(0, got.length), got), [], `the server closed; the ${got.length} answers before it are each their own, in order`);
  const after = await rawExchange(s.server.port, [REQUESTS['POST JSON infer']!], { expect: 1 });
  assertExact(t, 'a request on a new connection', after.responses[0]);
});

/** Mutations a hostile client sends: the request with a byte flipped, cut, doubled, or a header changed. */
function mutate(request: Buffer, random: () => number): Buffer {
  const pick = (n: number) => Math.floor(random() * n);
  const text = request.toString('latin1');
  switch (pick(9)) {
    case 0: {
      const b = Buffer.from(request);
      for (let i = 0; i < 1 + pick(4); i++) b[pick(b.length)] = pick(256);
      return b;
    }
    case 1: return request.subarray(0, pick(request.length));
    case 2: return Buffer.from(text.replace('HTTP/1.1', ['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 x', 'http/1.1'][pick(4)]!), 'latin1');
    case 3: return Buffer.from(text.replace(/Content-Length: \d+/i, `Content-Length: ${['-1', '1e3', '0x10', '99999999999999999999', '', ' 5'][pick(6)]}`), 'latin1');
    case 4: return Buffer.from(text.replace('\r\n', `\r\nX-Junk: ${'a'.repeat(pick(20000))}\r\n`), 'latin1');
    case 5: return Buffer.from(text.replace(/^[A-Z]+/, ['get', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'X'.repeat(300)][pick(7)]!), 'latin1');
    case 6: return Buffer.from(text.replace(/ \/[^ ]*/, [' /v2/models/%ZZ/infer', ' /v2/models/affine/versions/x/infer', ' *', ' /' + 'a/'.repeat(2000), ' /v2/models/affine/infer?' + '&'.repeat(100)][pick(5)]!), 'latin1');
    case 7: {
      const cut = text.indexOf('\r\n\r\n') + 4;
      return Buffer.concat([Buffer.from(text.slice(0, cut), 'latin1'), Buffer.from(['{', '{"inputs": 5}', '[]', '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2]}]}', 'null', '\u0000'][pick(6)]!)]);
    }
    default: return Buffer.concat([request, request.subarray(0, pick(request.length))]);
  }
}

t.test('seeded fuzz: every answer Umbra writes is JSON, nothing is a 500, and the server keeps answering exactly', async (t) => {
  const random = seededRandom(23);
  const bases = Object.values(REQUESTS);
  const inputs = Array.from({ length: 240 }, (_, i) => mutate(bases[i % bases.length]!, random));
  const results = await pooled(inputs.map((bytes) => () => rawExchange(s.server.port, [bytes], { expect: 1, limitMs: 3000 })), 16);
  const byStatus: Record<string, number> = {};
  const problems: string[] = [];
  results.forEach((r, i) => {
    for (const answer of r.responses) {
      if (answer.status >= 500 && answer.status !== 501 && answer.status !== 503 && answer.status !== 505) problems.push(`#${i}: ${answer.status} ${answer.body.toString().slice(0, 100)}`);
      if (answer.status < 400) continue;
      const body = answer.body.toString();
      byStatus[answer.status] = (byStatus[answer.status] ?? 0) + 1;
      if (/application\/json/.test(answer.headers['content-type'] ?? '')) {
        if (typeof JSON.parse(body).error !== 'string') problems.push(`#${i}: ${answer.status} JSON without "error": ${body.slice(0, 100)}`);
      } else {
        problems.push(`#${i}: ${answer.status} not JSON: ${body.slice(0, 100)}`);
      }
    }
  });
  t.same(problems, [], `${inputs.length} mutated requests: no 500, every error {"error": ...} JSON, the transport's own included (errors by status: ${JSON.stringify(byStatus)})`);
  const after = await rawExchange(s.server.port, [REQUESTS['POST binary infer']!], { expect: 1 });
  assertExact(t, 'a valid request after the fuzz', after.responses[0]);
});
