// WebSocket streams under hostile frames: a text frame that is not UTF-8, frames that cannot be
// read as requests, and a seeded fuzz of mutated frames. Each bad connection ends alone; the
// server and every other connection keep answering exactly.
import t from 'tap';
import { once } from 'node:events';
import { connect } from 'node:net';
import WebSocket from 'ws';
import { startTestServer } from './helpers/server.js';
import { rawExchange } from './helpers/raw-http.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { seededRandom } from '../dist/random.js';

const repo = tempRepo();
t.teardown(() => repo.remove());
repo.addVersion('affine', 1, affineModel(2, 1));
const s = await startTestServer(t, { repository: repo.dir, monitoring: false });
const url = `ws://127.0.0.1:${s.server.port}/v2/models/affine/stream`;

const x = [0.5, -1, 2, 3.25];
const request = (id: string) => JSON.stringify({ id, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] });
const expectedY = x.map((v) => Math.fround(Math.fround(v * 2) + 1));

async function open(): Promise<WebSocket> {
  const ws = new WebSocket(url);
  await once(ws, 'open');
  return ws;
}

/** Sends one valid request and checks its exact answer. */
async function roundTrip(ws: WebSocket, id: string): Promise<boolean> {
  const answer = once(ws, 'message');
  ws.send(request(id));
  const [data] = await answer;
  const parsed = JSON.parse(String(data));
  return parsed.id === id && JSON.stringify(parsed.outputs[0].data) === JSON.stringify(expectedY);
}

/** Writes raw frame bytes under the ws client (masked, as a client must). */
function rawFrame(ws: WebSocket, opcode: number, payload: Buffer): void {
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  const header = payload.length < 126 ? Buffer.from([0x80 | opcode, 0x80 | payload.length]) : Buffer.from([0x80 | opcode, 0x80 | 126, payload.length >> 8, payload.length & 255]);
  (ws as unknown as { _socket: import('node:net').Socket })._socket.write(Buffer.concat([header, mask, masked]));
}

t.test('a text frame that is not UTF-8 ends only its own connection', async (t) => {
  const bystander = await open();
  const ws = await open();
  const closed = once(ws, 'close');
  rawFrame(ws, 0x1, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]));
  const [code] = await closed;
  t.equal(code, 1007, 'closed with 1007 (invalid frame payload), by the HTTP guard ahead of the library');
  t.ok(await roundTrip(bystander, 'after'), 'another connection answers exactly');
  const fresh = await open();
  t.ok(await roundTrip(fresh, 'fresh'), 'a new connection answers exactly');
  bystander.close();
  fresh.close();
});

/** Writes one frame's bytes in pieces cut at `cuts`, `gapMs` apart, so the server reads them separately. */
async function rawFrameCut(ws: WebSocket, opcode: number, payload: Buffer, cuts: number[], fin = true): Promise<void> {
  const mask = Buffer.from([9, 8, 7, 6]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  const header = Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | payload.length]);
  const bytes = Buffer.concat([header, mask, masked]);
  const socket = (ws as unknown as { _socket: import('node:net').Socket })._socket;
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    socket.write(bytes.subarray(at, c));
    at = c;
    if (c < bytes.length) await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('text frames cut across TCP segments: a valid one is answered, one that is not UTF-8 closes with 1007 and the reason', async (t) => {
  const valid = Buffer.from(request('cut'));
  const ws = await open();
  const answer = once(ws, 'message');
  await rawFrameCut(ws, 0x1, valid, [1, 3, 9, 40, 41]);
  const parsed = JSON.parse(String((await answer)[0]));
  t.equal(parsed.id, 'cut', 'a request frame written in six pieces: its answer');
  t.same(parsed.outputs[0].data, expectedY, 'exact');
  const cases: [string, () => Promise<void>][] = [
    ['a bad byte in the second piece', () => rawFrameCut(ws2(), 0x1, Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x7d]), [8])],
    ['a code point the frame ends inside', () => rawFrameCut(ws2(), 0x1, Buffer.from([0x7b, 0xe2, 0x82]), [7])],
    ['a bad continuation fragment', async () => {
      await rawFrameCut(ws2(), 0x1, Buffer.from('{"id":'), [3], false);
      await rawFrameCut(ws2(), 0x0, Buffer.from([0x80, 0x7d]), [2]);
    }],
  ];
  let current: WebSocket | undefined;
  const ws2 = () => current!;
  for (const [name, send] of cases) {
    current = await open();
    const closed = once(current, 'close');
    await send();
    const [code, reason] = await closed;
    t.equal(code, 1007, `${name}: 1007`);
    t.match(String(reason), /not valid UTF-8/, `${name}: the reason says why`);
  }
  t.ok(await roundTrip(ws, 'still'), 'the first connection still answers exactly');
  ws.close();
});

t.test('frames that cannot be read as requests close with 1007; bad requests get errors and the connection stays', async (t) => {
  const cases: [string, string | Buffer, boolean][] = [
    ['malformed JSON text', '{"inputs": [', false],
    ['JSON that is not an object', '[1, 2]', false],
    ['binary frame with a length prefix past its end', Buffer.from([0xff, 0xff, 0, 0, 0x7b, 0x7d]), true],
    ['binary frame too short for a prefix', Buffer.from([1, 0]), true],
  ];
  for (const [name, frame, binary] of cases) {
    const ws = await open();
    const closed = once(ws, 'close');
    ws.send(frame, { binary });
    const [code] = await closed;
    t.equal(code, 1007, `${name}: 1007`);
  }
  const ws = await open();
  const answer = once(ws, 'message');
  ws.send(JSON.stringify({ id: 'bad', inputs: [{ name: 'z', datatype: 'FP32', shape: [1, 4], data: x }] }));
  const [data] = await answer;
  const parsed = JSON.parse(String(data));
  t.equal(parsed.status, 400, 'a request naming no such input: a 400 error message');
  t.equal(parsed.id, 'bad', 'with its id');
  t.ok(await roundTrip(ws, 'same'), 'and the same connection answers the next request exactly');
  ws.close();
});

t.test('seeded fuzz of mutated frames: each connection ends or answers, the server keeps answering exactly', async (t) => {
  const random = seededRandom(1007);
  const pick = (n: number) => Math.floor(random() * n);
  const valid = Buffer.from(request('f'));
  const outcomes: Record<string, number> = {};
  for (let i = 0; i < 60; i++) {
    const frame = Buffer.from(valid);
    for (let k = 0; k < 1 + pick(6); k++) frame[pick(frame.length)] = pick(128);
    const cut = random() < 0.3 ? frame.subarray(0, pick(frame.length)) : frame;
    const ws = await open();
    const ended = once(ws, 'close').then(([code]) => `close ${code}`);
    const answered = once(ws, 'message').then(([data]) => {
      const parsed = JSON.parse(String(data));
      return parsed.error ? `error ${parsed.status}` : 'answer';
    });
    ws.send(cut.toString('latin1').replace(/[\u0080-\u00ff]/g, '?'));
    const outcome = await Promise.race([ended, answered]);
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    ws.terminate();
  }
  const unexpected = Object.keys(outcomes).filter((o) => !/^(answer|error 4\d\d|close 1007)$/.test(o));
  t.same(unexpected, [], `60 mutated text frames: answers, 4xx errors or 1007 closes only (${JSON.stringify(outcomes)})`);
  const ws = await open();
  t.ok(await roundTrip(ws, 'after-fuzz'), 'a valid request after the fuzz answers exactly');
  ws.close();
});

t.test('what the HTTP guard does shows on /metrics', async (t) => {
  const monitored = await startTestServer(t, { repository: repo.dir });
  const port = monitored.server.port;
  const scrape = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const count = (text: string, event: string) => Number(new RegExp(`^umbra_http_guard_events_total\\{event="${event}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? Number.NaN);
  const before = await scrape();
  t.match(before, /^umbra_http_guard_installed 1$/m, 'umbra_http_guard_installed 1');
  // An HTTP/2.0 request line as text: the library's own 505, answered as JSON.
  await new Promise<void>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('GET /v2/health/live HTTP/2.0\r\nHost: umbra\r\n\r\n'));
    socket.on('data', () => undefined);
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v2/models/affine/stream`);
  await once(ws, 'open');
  const closed = once(ws, 'close');
  rawFrame(ws, 0x1, Buffer.from([0x7b, 0xff, 0x7d]));
  t.equal((await closed)[0], 1007, 'a text frame that is not UTF-8: 1007');
  // Three requests in one write: the second and third are held, each until the answer before it.
  const live = 'GET /v2/health/live HTTP/1.1\r\nHost: umbra\r\n\r\n';
  const piped = await rawExchange(port, [live.repeat(3)], { expect: 3 });
  t.equal(piped.responses.length, 3, 'three pipelined requests: three answers');
  const after = await scrape();
  for (const event of ['request_line_held', 'text_frame_held', 'text_frame_refused', 'error_page_json', 'pipelined_held']) {
    t.ok(count(after, event) >= count(before, event), `${event}: counted (${count(before, event)} -> ${count(after, event)})`);
  }
  // The counts are the process's: other tests' servers in it count too, never less.
  t.ok(count(after, 'error_page_json') >= count(before, 'error_page_json') + 1, 'the 505 page answered as JSON is counted');
  t.ok(count(after, 'text_frame_refused') >= count(before, 'text_frame_refused') + 1, 'the refused text frame is counted');
  t.ok(count(after, 'pipelined_held') >= count(before, 'pipelined_held') + 2, 'the two held pipelined requests are counted');
});
