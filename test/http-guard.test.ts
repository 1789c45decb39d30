// The HTTP guard's reading of a connection (native/src/net/stream_guard.h), run over chunks as
// a socket's successive reads the way recv() runs it: nothing valid is lost, reordered or
// changed; a request line, and a text frame up to the hold limit, is always handed on whole; a
// text frame that is not UTF-8 becomes the client's close frame with 1007, and nothing follows.
// The server-level behaviour is in test/hostile-http.test.ts and test/hostile-ws.test.ts.
import t from 'tap';
import { native } from '../dist/native/addon.js';
import { seededRandom } from '../dist/random.js';
import { describeHttpGuard, installHttpGuard } from '../dist/server/http-guard.js';

type Read = { data: Buffer } | { wait: true } | { end: true };
const reads = (chunks: Buffer[], upgrade: 'switch' | 'refuse' = 'switch', capacity?: number): Read[] =>
  native().streamGuardReads(chunks, upgrade, capacity);
const delivered = (r: Read[]): Buffer[] => r.flatMap((x) => ('data' in x ? [x.data] : []));
const joined = (r: Read[]) => Buffer.concat(delivered(r));

const get = Buffer.from('GET /v2/health/live HTTP/1.1\r\nHost: umbra\r\n\r\n');
const body = '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}';
const post = Buffer.from(`POST /v2/models/m/infer HTTP/1.1\r\nHost: umbra\r\nContent-Type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
// Chunked with an extension on the size line and a trailer field, which the reader mishandles
// (it waits on the one and answers 505 to the other): handed on without them.
const chunk = (ext: string, trailer: string) => Buffer.from(`POST /v2/models/m/infer HTTP/1.1\r\nHost: umbra\r\nTransfer-Encoding: Chunked\r\n\r\n5${ext}\r\n${body.slice(0, 5)}\r\n${(body.length - 5).toString(16)}${ext}\r\n${body.slice(5)}\r\n0${ext}\r\n${trailer}\r\n`);
const chunked = chunk(' ;ext=1', 'X-Trailer: 1\r\nX-Other: 2\r\n');
const chunkedHanded = chunk('', '');
// A target in absolute form, after empty lines: handed on in origin form, without them.
const absolute = Buffer.from('\r\n\r\nGET http://umbra:8000/v2/health/live HTTP/1.1\r\nHost: umbra\r\n\r\n');
const absoluteHanded = get;
// Four requests back to back: which bytes are request lines depends on following each body.
const stream = Buffer.concat([post, chunked, get, absolute]);
const handed = Buffer.concat([post, chunkedHanded, get, absoluteHanded]);
const requestLines = (() => {
  const out: [number, number][] = [];
  let at = 0;
  for (const r of [post, chunkedHanded, get, absoluteHanded]) {
    out.push([at, at + r.indexOf('\r\n') + 2]);
    at += r.length;
  }
  return out;
})();

/** Cuts of `bytes` at the given offsets. */
function cut(bytes: Buffer, at: number[]): Buffer[] {
  const points = [0, ...at.filter((a) => a > 0 && a < bytes.length).sort((a, b) => a - b), bytes.length];
  return points.slice(1).map((end, i) => bytes.subarray(points[i], end)).filter((b) => b.length > 0);
}

/** Whether each [start, end) lies inside one handed-on read. */
function whole(r: Read[], spans: [number, number][]): boolean {
  const bounds: [number, number][] = [];
  let at = 0;
  for (const b of delivered(r)) {
    bounds.push([at, at + b.length]);
    at += b.length;
  }
  return spans.every(([s, e]) => bounds.some(([a, b]) => a <= s && e <= b));
}

t.test('HTTP: every cut of four kept-alive requests hands on the same requests, each request line whole', async (t) => {
  const lost: number[] = [];
  const broken: number[] = [];
  for (let at = 1; at < stream.length; at++) {
    const r = reads(cut(stream, [at]));
    if (!joined(r).equals(handed)) lost.push(at);
    if (!whole(r, requestLines)) broken.push(at);
  }
  t.same(lost, [], `${stream.length - 1} two-piece cuts: the bytes handed on are the bytes sent, less the extensions, trailer fields, empty lines and absolute form`);
  t.same(broken, [], 'and no request line is handed on in two reads');
  const bytewise = reads(cut(stream, Array.from({ length: stream.length }, (_, i) => i)));
  t.ok(joined(bytewise).equals(handed), 'one byte per read: the same bytes');
  t.ok(whole(bytewise, requestLines), 'one byte per read: each request line whole');
  t.ok(bytewise.some((x) => 'wait' in x), 'a read with only part of a request line hands on nothing (the reader waits)');
  const random = seededRandom(29);
  let ok = 0;
  for (let i = 0; i < 200; i++) {
    const points = Array.from({ length: 1 + Math.floor(random() * 8) }, () => 1 + Math.floor(random() * (stream.length - 1)));
    const r = reads(cut(stream, points));
    if (joined(r).equals(handed) && whole(r, requestLines)) ok += 1;
  }
  t.equal(ok, 200, '200 seeded cuts into up to nine pieces');
});

t.test('HTTP: lines ended by LF alone are handed on ended by CRLF, at every cut', async (t) => {
  const crlf = Buffer.concat([post, chunkedHanded, get]);
  const lf = Buffer.from(crlf.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
  const lines: [number, number][] = [];
  let at = 0;
  for (const r of [post, chunkedHanded, get]) {
    lines.push([at, at + r.indexOf('\r\n') + 2]);
    at += r.length;
  }
  // The JSON body has no line ends of its own, so every LF in `lf` ends a line.
  const wrong: number[] = [];
  for (let cutAt = 1; cutAt < lf.length; cutAt++) {
    const r = reads(cut(lf, [cutAt]));
    if (!joined(r).equals(crlf) || !whole(r, lines)) wrong.push(cutAt);
  }
  t.same(wrong, [], `${lf.length - 1} cuts: the requests handed on with CRLF, each request line whole`);
  const mixed = Buffer.from('GET /v2/health/live HTTP/1.1\nHost: umbra\r\nAccept: */*\n\r\n');
  t.equal(joined(reads([mixed])).toString(), 'GET /v2/health/live HTTP/1.1\r\nHost: umbra\r\nAccept: */*\r\n\r\n', 'CRLF and LF mixed');
  const full = Buffer.from('GET / HTTP/1.1\nHost: x\n\n');
  const r = reads([full], 'switch', full.length);
  t.ok(joined(r).equals(full), 'a read that fills the buffer has no room for the CRs: handed on as it came');
});

t.test('HTTP: a held line goes on at the end of the stream; framing the server refuses is not followed', async (t) => {
  const partial = reads([Buffer.from('GET /v2/health/live HT')]);
  t.same(partial.map((x) => Object.keys(x)[0]), ['wait', 'data'], 'a line cut by the end: held, then handed on before the end');
  t.equal(joined(partial).toString(), 'GET /v2/health/live HT', 'and nothing of it lost');
  // Framing two readers could read differently: the head alone goes on (the server refuses the
  // request on it), never what one reader would take for the body and another for a request.
  const smuggled = 'POST /v2/repository/models/m/unload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n';
  const heads = [
    'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 70\r\n\r\n',
    'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n',
    'POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
    'POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
    'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n',
  ];
  for (const head of heads) {
    const bytes = Buffer.from(`${head}{}${smuggled}`);
    for (const at of [head.length - 1, head.length, head.length + 3]) {
      const r = reads(cut(bytes, [at]));
      t.equal(joined(r).toString(), head, `${JSON.stringify(head.split('\r\n').slice(2, 4).join(' | '))} cut at ${at}: the head alone is handed on`);
    }
  }
  const tls = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]);
  t.ok(joined(reads([tls.subarray(0, 2), tls.subarray(2)])).equals(tls), 'bytes that do not start a request (TLS) pass as they come');
  const long = Buffer.from(`GET /${'a'.repeat(20_000)}`);
  const r = reads([long.subarray(0, 17_000), long.subarray(17_000)]);
  t.ok(joined(r).equals(long) && 'data' in r[0]!, 'a request line over 16 KiB is not held (the server refuses it)');
});

t.test('HTTP: a request the reader would never answer is answered 400 here, wherever it is cut', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['no Host', 'GET /v2/health/live HTTP/1.1\r\nAccept: */*\r\n\r\n', /Host header is missing/],
    ['a line with no colon', 'GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n', /no colon/],
    ['a space before the colon', 'GET / HTTP/1.1\r\nHost : x\r\n\r\n', /header name/],
    ['a space in a name', 'GET / HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n', /header name/],
    ['a folded line', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n', /folded/],
    ['a NUL', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\u00002\r\n\r\n', /control character/],
    ['a CR alone', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r2\r\n\r\n', /control character/],
    ['a control character far into a long value', `GET / HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(3000)}\u0001\r\n\r\n`, /control character/],
    ['an empty name', 'GET / HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n', /empty name/],
  ];
  for (const [name, text, reason] of cases) {
    const bad = Buffer.from(text, 'latin1');
    const sent = Buffer.concat([get, bad]);
    const wrong: string[] = [];
    for (let at = 1; at < sent.length; at += at < get.length + 40 ? 1 : 97) {
      const r = reads(cut(sent, [at]));
      const refusals = r.flatMap((x) => ('refused' in x ? [x.refused] : []));
      const handedOn = joined(r);
      // The request before it goes on whole; of the bad one, at most what came before the bad line.
      if (refusals.length !== 1 || !reason.test(refusals[0]!) || !handedOn.subarray(0, get.length).equals(get) || handedOn.length > get.length + text.indexOf('\r\n\r\n') + 2) wrong.push(`${at}: ${JSON.stringify(refusals)} ${handedOn.length}`);
    }
    t.same(wrong, [], `${name}: at every cut, one 400 with the reason, the request before it handed on, the bad one never whole`);
  }
  const fine = Buffer.from('GET / HTTP/1.1\r\nhost: x\r\nX-Text: caf\u00e9 \t ok\r\nX-Tok: !#$%&\'*+-.^_`|~09azAZ\r\n\r\n', 'latin1');
  t.ok(joined(reads([fine])).equals(fine) && !reads([fine]).some((x) => 'refused' in x), 'Host in any case, a tab and obs-text in a value, every token character in a name: handed on as sent');
});

/** A client's frame: masked with a fixed key. */
function frame(opcode: number, payload: Buffer, fin = true): Buffer {
  const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
  const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!));
  const len = payload.length;
  const head = len < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | len])
    : len < 65536 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, len >> 8, len & 255])
      : Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(len)); return b; })()]);
  return Buffer.concat([head, key, masked]);
}

const upgrade = Buffer.from('GET /v2/models/m/stream HTTP/1.1\r\nHost: umbra\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\n\r\n');
const CLOSE_1007 = Buffer.concat([Buffer.from([0x88, 0x80 | 43, 0, 0, 0, 0, 0x03, 0xef]), Buffer.from("a text frame's payload is not valid UTF-8")]);

t.test('HTTP: a Connection value of five bytes other than close gets a comma after it, at every cut', async (t) => {
  // The reader closes after answering any five-byte value as if it were `close`.
  const sent = Buffer.from('GET /v2/health/live HTTP/1.1\r\nHost: umbra\r\nConnection:  Hello \r\n\r\n');
  const expected = 'GET /v2/health/live HTTP/1.1\r\nHost: umbra\r\nConnection:  Hello, \r\n\r\n';
  const wrong: number[] = [];
  for (let at = 0; at < sent.length; at++) {
    if (joined(reads(cut(sent, [at]))).toString('latin1') !== expected) wrong.push(at);
  }
  t.same(wrong, [], `${sent.length} cuts: the value handed on as "Hello,"`);
  const kept = ['close', 'CLOSE', 'keep-alive', 'Upgrade'].map((v) => Buffer.from(`GET / HTTP/1.1\r\nHost: a\r\nConnection: ${v}\r\n\r\n`));
  t.same(kept.map((b) => joined(reads([b])).toString('latin1')), kept.map((b) => b.toString('latin1')), 'close (any case) and values of other lengths: handed on as sent');
});

t.test('WebSocket: valid frames at every cut pass unchanged, each text frame whole', async (t) => {
  const text = frame(1, Buffer.from('{"id":"é","inputs":"ünïcödé 😀"}'));
  const binary = frame(2, Buffer.from([0xff, 0xfe, 0x00, 0x80]));
  const ping = frame(9, Buffer.from('p'));
  const first = frame(1, Buffer.from([0x61, 0xf0, 0x9f]), false);  // a code point cut between fragments
  const rest = frame(0, Buffer.from([0x98, 0x80, 0x62]));
  const frames = Buffer.concat([text, binary, ping, first, ping, rest]);
  const spans: [number, number][] = [[0, text.length]];
  const lost: number[] = [];
  const split: number[] = [];
  for (let at = 1; at < frames.length; at++) {
    const r = reads([upgrade, ...cut(frames, [at])]);
    if (!joined(r).equals(Buffer.concat([upgrade, frames]))) lost.push(at);
    // The first read is the upgrade request alone.
    if (!whole(r.slice(1), spans)) split.push(at);
  }
  t.same(lost, [], `${frames.length - 1} cuts: every frame handed on unchanged, a fragmented text message with a code point across fragments included`);
  t.same(split, [], 'and a text frame is never handed on in two reads');
  const refused = reads([upgrade, frames], 'refuse');
  t.ok(joined(refused).equals(Buffer.concat([upgrade, frames])), 'an upgrade the server refused: the bytes pass as they come');
});

t.test('WebSocket: a text frame that is not UTF-8 becomes the client\'s close frame with 1007, wherever it is cut', async (t) => {
  const good = frame(1, Buffer.from('{"id":"1"}'));
  const cases: [string, Buffer][] = [
    ['a byte that never starts UTF-8', frame(1, Buffer.from([0x7b, 0xff, 0x7d]))],
    ['an overlong form', frame(1, Buffer.from([0xc0, 0xaf]))],
    ['a surrogate', frame(1, Buffer.from([0xed, 0xa0, 0x80]))],
    ['a sequence the message ends inside', frame(1, Buffer.from([0x61, 0xe2, 0x82]))],
    ['a bad continuation fragment', Buffer.concat([frame(1, Buffer.from('ab'), false), frame(0, Buffer.from([0x80]))])],
  ];
  for (const [name, bad] of cases) {
    const fragmentStart = name.includes('fragment') ? frame(1, Buffer.from('ab'), false).length : 0;
    const sent = Buffer.concat([good, bad, good]);
    const expected = Buffer.concat([upgrade, good, bad.subarray(0, fragmentStart), CLOSE_1007]);
    const wrong: number[] = [];
    for (let at = 1; at < sent.length; at++) {
      const r = reads([upgrade, ...cut(sent, [at])]);
      if (!joined(r).equals(expected) || !('end' in r[r.length - 1]!)) wrong.push(at);
    }
    t.same(wrong, [], `${name}: at every cut, the frames before it, then a 1007 close frame, then the end`);
  }
});

t.test('WebSocket: a text frame over the hold limit is checked as it goes on', async (t) => {
  const big = Buffer.alloc(300 * 1024, 0x61);
  const valid = frame(1, big);
  const pieces = cut(valid, [100_000, 200_000, 250_000]);
  const r = reads([upgrade, ...pieces]);
  t.ok(joined(r).equals(Buffer.concat([upgrade, valid])), 'valid: handed on unchanged');
  t.ok(delivered(r).length >= pieces.length, 'and piece by piece, not held');
  const bad = Buffer.from(big);
  bad[250_000] = 0xff;
  const invalid = frame(1, bad);
  const r2 = reads([upgrade, ...cut(invalid, [100_000, 200_000, 260_000])]);
  const handed = joined(r2);
  t.ok(handed.length < upgrade.length + 260_000 && handed.equals(Buffer.concat([upgrade, invalid]).subarray(0, handed.length)), 'not UTF-8: the stream ends before the piece with the bad byte (a frame partly handed on cannot be taken back)');
  t.ok('end' in r2[r2.length - 1]!, 'and ends');
});

t.test('installing: off when asked, and a reason wherever it cannot be installed', async (t) => {
  const off = installHttpGuard(false);
  t.same([off.enabled, off.installed], [false, false], '--http-guard off: not installed');
  t.match(describeHttpGuard(off), /^HTTP guard: off, turned off \(--http-guard off\): a request line cut across TCP segments may get 505/, 'and the log line says what that means');
  // This test's process never loaded uWebSockets.js: nothing to guard, and it says so.
  const none = installHttpGuard(true);
  t.equal(none.installed, false, 'no uWebSockets.js in the process: not installed');
  t.match(none.reason, /uWebSockets\.js is not loaded/, 'with the reason');
});

t.test('the answers the server writes are followed to their end, however the writes cut them', async (t) => {
  const ended = (chunks: (string | Buffer)[], head = false) => native().answersEnded(chunks.map((c) => Buffer.from(c)), head);
  const json = '{"live":true}';
  const ok = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: ${json.length}\r\n\r\n${json}`;
  // Every cut of one answer: it ends in the write that holds its last byte, and only there.
  const wrong = Array.from({ length: ok.length - 1 }, (_, i) => i + 1).filter((at) => {
    const r = ended([ok.slice(0, at), ok.slice(at)]);
    return r[0] !== 0 || r[1] !== 1;
  });
  t.same(wrong, [], `an answer with a length, cut at each of its ${ok.length - 1} offsets, ends with its last byte`);
  t.same(ended([ok + ok + ok.slice(0, 10), ok.slice(10)]), [2, 1], 'answers back to back in one write each count');
  // Interim answers are not the answer: 100 Continue (the library may send it twice), then the final one.
  t.same(ended(['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 100 Continue\r\n\r\n', ok]), [0, 0, 1], '100 Continue is not an answer');
  // No body: HEAD (the library writes no length), 204, 304.
  t.same(ended(['HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n'], true), [1], 'an answer to HEAD ends with its head');
  t.same(ended(['HTTP/1.1 204 No Content\r\n\r\n', 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n']), [1, 1], '204 and 304 end with their head');
  // Chunked (a streamed answer), cut inside a size line, inside data and inside the last chunk.
  const streamed = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n';
  const cuts = [streamed.indexOf('1a') + 1, streamed.indexOf('klm'), streamed.length - 3];
  t.same(ended([streamed.slice(0, cuts[0]), streamed.slice(cuts[0], cuts[1]), streamed.slice(cuts[1], cuts[2]), streamed.slice(cuts[2]) + ok]), [0, 0, 0, 2], 'a chunked answer ends with its last chunk, and the next is followed');
  // What cannot be followed stops the following (held requests then go on, as the library reads them).
  t.same(ended(['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', ok]), [-1, -1], '101: frames follow, not answers');
  t.same(ended(['HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody to the end']), [-1], 'no length and not chunked: the answer runs to the close');
  t.same(ended([`HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`]), [-1], 'two different lengths: not followed');
});
