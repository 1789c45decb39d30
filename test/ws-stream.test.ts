// WebSocket prediction end to end: many requests on one connection, text and binary frames,
// per-request errors, protocol-violation closes, slow readers and drain. Driven both by the raw
// `ws` package (frames built by hand from the documented layout) and by umbra/client.
import t, { type Test } from 'tap';
import { once } from 'node:events';
import { isDeepStrictEqual } from 'node:util';
import WebSocket from 'ws';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, holdExecution, until } from './helpers/repo.js';
import { property } from './helpers/property.js';
import { UmbraStreamClient, UmbraClientError, streamUrl } from '../dist/client/index.js';

// Seeded generator so inputs are random but repeatable.
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 * 4 - 2;
  };
}

function rows(n: number, width: number, seed: number): Float32Array {
  const next = random(seed);
  return Float32Array.from({ length: n * width }, next);
}

function affine(x: Float32Array, scale: number, offset: number): number[] {
  return Array.from(x, (v) => Math.fround(Math.fround(v * scale) + offset));
}

/** fast: y = 2x + 1, answered at once. slow: y = 3x - 1, held 400 ms by its batch delay. */
function repo(t: Test, wide = 0) {
  const r = tempRepo();
  t.teardown(() => r.remove());
  r.addVersion('fast', 1, affineModel(2, 1));
  r.addVersion('slow', 1, affineModel(3, -1));
  r.writeConfig('slow', { max_batch_size: 64, dynamic_batching: { max_queue_delay_microseconds: 400_000 } });
  if (wide > 0) r.addVersion('wide', 1, affineModel(2, 1, wide));
  return r;
}

/** A binary frame exactly as docs/websocket.md describes it, built without the Umbra client. */
function binaryFrame(header: object, tensors: Uint8Array[]): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32LE(json.length, 0);
  return Buffer.concat([prefix, json, ...tensors.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength))]);
}

function readBinaryFrame(frame: Buffer): { header: any; tensors: Buffer } {
  const n = frame.readUInt32LE(0);
  return { header: JSON.parse(frame.subarray(4, 4 + n).toString('utf8')), tensors: frame.subarray(4 + n) };
}

/** Collects messages from a raw ws client, in arrival order. */
function collect(ws: WebSocket) {
  const messages: { data: Buffer; binary: boolean }[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data: Buffer, binary: boolean) => {
    messages.push({ data, binary });
    for (const w of waiters.splice(0)) w();
  });
  return {
    messages,
    async until(n: number) {
      while (messages.length < n) await new Promise<void>((r) => waiters.push(r));
      return messages;
    },
  };
}

// Each case well inside tap's 300 s for the file, so a case that hangs is named in the report (and
// the others still run) instead of the whole file expiring.
const limit = { timeout: 90_000 };

async function open(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  await once(ws, 'open');
  return ws;
}

function closeOf(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.on('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
}

t.test('ws package: interleaved models, text and binary frames, out-of-order answers matched by id', limit, async (t) => {
  const s = await startTestServer(t, { repository: repo(t).dir });
  const ws = await open(streamUrl(s.url));
  t.teardown(() => ws.terminate());
  const inbox = collect(ws);
  const x1 = rows(2, 4, 1);
  const x2 = rows(1, 4, 2);
  const x3 = rows(3, 4, 3);
  // slow first: its 400 ms batch delay lets the later fast requests overtake it.
  ws.send(JSON.stringify({ id: 'a', model_name: 'slow', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: Array.from(x1) }] }));
  ws.send(binaryFrame({ id: 'b', model_name: 'fast', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } }] }, [new Uint8Array(x2.buffer)]));
  ws.send(JSON.stringify({ model_name: 'fast', model_version: '1', inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 4], data: Array.from(x3) }] }));
  const messages = await inbox.until(3);
  const byId = new Map<string, { header: any; tensors?: Buffer; binary: boolean }>();
  for (const m of messages) {
    if (m.binary) {
      const { header, tensors } = readBinaryFrame(m.data);
      byId.set(header.id, { header, tensors, binary: true });
    } else {
      const header = JSON.parse(m.data.toString());
      byId.set(header.id, { header, binary: false });
    }
  }
  const order = messages.map((m) => (m.binary ? readBinaryFrame(m.data).header.id : JSON.parse(m.data.toString()).id));
  t.equal(order[2], 'a', 'the slow model answers last although asked first');

  const a = byId.get('a')!;
  t.equal(a.binary, false);
  t.equal(a.header.model_name, 'slow');
  t.same(a.header.outputs[0].data, affine(x1, 3, -1));

  const b = byId.get('b')!;
  t.equal(b.binary, true, 'a binary request gets a binary answer');
  const out = b.header.outputs[0];
  t.same(out.shape, [1, 4]);
  t.equal(out.parameters.binary_data_size, 16);
  t.same(Array.from(new Float32Array(b.tensors!.buffer.slice(b.tensors!.byteOffset, b.tensors!.byteOffset + 16))), affine(x2, 2, 1));

  const assigned = [...byId.keys()].find((k) => k !== 'a' && k !== 'b');
  t.ok(assigned, 'a request without id gets one');
  t.same(byId.get(assigned!)!.header.outputs[0].data, affine(x3, 2, 1));
  t.equal(byId.get(assigned!)!.header.model_version, '1');
  // The id answered is the prediction's: feedback sent for it joins (as it does over HTTP).
  const feedback = await s.post('/v2/models/fast/feedback', { id: assigned, truth: [0, 0, 0] });
  t.same(feedback.json, { accepted: 1, unknown: [], rejected: [] }, 'feedback for the id a request without one was answered with joins');
});

t.test('umbra client: many requests in flight over both models and both frame kinds', limit, async (t) => {
  const s = await startTestServer(t, { repository: repo(t).dir });
  const client = await UmbraStreamClient.connect(streamUrl(s.url));
  t.teardown(() => client.close());
  const jobs = Array.from({ length: 40 }, (_, i) => {
    const model = i % 5 === 0 ? 'slow' : 'fast';
    const x = rows(1 + (i % 3), 4, 100 + i);
    return { model, x, binary: i % 2 === 0, scale: model === 'slow' ? 3 : 2, offset: model === 'slow' ? -1 : 1 };
  });
  const answers = await Promise.all(jobs.map((j) => client.infer(j.model, { inputs: [{ name: 'x', datatype: 'FP32', shape: [j.x.length / 4, 4], data: j.x }] }, { binary: j.binary })));
  t.equal(client.inFlight, 0);
  const ownAnswer = property('each of 40 interleaved requests gets its own model\'s answer, binary when asked');
  answers.forEach((answer, i) => {
    const j = jobs[i]!;
    const data = answer.outputs[0]!.data;
    ownAnswer.check(answer.model_name === j.model && (j.binary ? data instanceof Float32Array : Array.isArray(data))
      && isDeepStrictEqual(Array.from(data as ArrayLike<number>), affine(j.x, j.scale, j.offset)),
    () => `request ${i} (${j.model}, binary ${j.binary}): ${answer.model_name} answered ${JSON.stringify(Array.from(data as ArrayLike<number>))}`);
  });
  ownAnswer.assert(t);

  // A stream bound to one model needs no model_name, and refuses another.
  const bound = await UmbraStreamClient.connect(streamUrl(s.url, 'fast'));
  t.teardown(() => bound.close());
  const x = rows(1, 4, 7);
  const one = await bound.infer(undefined, { id: 'q', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] }, { binary: true });
  t.equal(one.id, 'q');
  t.same(Array.from(one.outputs[0]!.data as Float32Array), affine(x, 2, 1));
  const wrong = await bound.infer('slow', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] }).catch((e: unknown) => e);
  t.ok(wrong instanceof UmbraClientError);
  t.equal((wrong as UmbraClientError).status, 400);
});

t.test('per-request errors carry the id and status and keep the connection', limit, async (t) => {
  const s = await startTestServer(t, { repository: repo(t).dir });
  const ws = await open(streamUrl(s.url));
  t.teardown(() => ws.terminate());
  const inbox = collect(ws);
  const good = { name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] };
  ws.send(JSON.stringify({ id: 'no-model', model_name: 'nope', inputs: [good] }));
  ws.send(JSON.stringify({ id: 'no-name', inputs: [good] }));
  ws.send(JSON.stringify({ id: 'bad-shape', model_name: 'fast', inputs: [{ ...good, shape: [1, 5] }] }));
  ws.send(JSON.stringify({ id: 'bad-input', model_name: 'fast', inputs: [{ ...good, name: 'z' }] }));
  ws.send(JSON.stringify({ id: 'bad-version', model_name: 'fast', model_version: '9', inputs: [good] }));
  ws.send(binaryFrame({ id: 'short', model_name: 'fast', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } }] }, [new Uint8Array(8)]));
  ws.send(JSON.stringify({ id: 7, model_name: 'fast', inputs: [good] }));
  ws.send(JSON.stringify({ id: 'ok', model_name: 'fast', inputs: [good] }));
  const messages = await inbox.until(8);
  const byId = new Map<unknown, any>(messages.map((m) => {
    const header = m.binary ? readBinaryFrame(m.data).header : JSON.parse(m.data.toString());
    return [header.id, { ...header, binary: m.binary }];
  }));
  t.equal(byId.get('no-model').status, 404);
  t.match(byId.get('no-model').error, /nope/);
  t.equal(byId.get('no-name').status, 400);
  t.match(byId.get('no-name').error, /model_name/);
  t.equal(byId.get('bad-shape').status, 400);
  t.equal(byId.get('bad-input').status, 400);
  t.equal(byId.get('bad-version').status, 404);
  t.equal(byId.get('short').status, 400);
  t.equal(byId.get('short').binary, true, 'an error to a binary request is a binary frame');
  t.equal(byId.get(7).status, 400, 'a non-string id is echoed as sent');
  t.same(byId.get('ok').outputs[0].data, [3, 5, 7, 9]);
  t.equal(ws.readyState, WebSocket.OPEN);
});

t.test('protocol violations close the connection with a code and reason', limit, async (t) => {
  const s = await startTestServer(t, { repository: repo(t).dir, wsMaxPayloadBytes: 4096, wsMaxInFlight: 3 });
  const url = streamUrl(s.url);

  const big = await open(url);
  const bigClosed = closeOf(big);
  big.send(Buffer.alloc(8192, 1), { binary: true });
  t.equal((await bigClosed).code, 1009, 'oversized frame');

  const garbage = await open(url);
  const garbageClosed = closeOf(garbage);
  garbage.send(Buffer.from([0xff, 0xff, 0, 0, 1, 2, 3]), { binary: true });
  const g = await garbageClosed;
  t.equal(g.code, 1007, 'a length prefix past the frame');
  t.match(g.reason, /length prefix/);

  const text = await open(url);
  const textClosed = closeOf(text);
  text.send('{"model_name": "fast", inputs');
  t.equal((await textClosed).code, 1007, 'malformed JSON');

  const busy = await open(url);
  const busyClosed = closeOf(busy);
  for (let i = 0; i < 4; i++) busy.send(JSON.stringify({ id: `s${i}`, model_name: 'slow', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }));
  const b = await busyClosed;
  t.equal(b.code, 1008, 'more requests in flight than allowed');
  t.match(b.reason, /more than 3 requests in flight/);

  // The server keeps serving other connections.
  const client = await UmbraStreamClient.connect(url);
  t.teardown(() => client.close());
  const answer = await client.infer('fast', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [0, 1, 2, 3] }] });
  t.same(answer.outputs[0]!.data, [1, 3, 5, 7]);
});

t.test('a client that never reads is held back and closed, and never delays another client', limit, async (t) => {
  const width = 262144; // 1 MiB per FP32 row, so sixteen answers overflow the kernel's socket buffers
  const maxInFlight = 16;
  const s = await startTestServer(t, { repository: repo(t, width).dir, wsMaxInFlight: maxInFlight, wsBackpressureBytes: 256 * 1024 });
  const url = streamUrl(s.url, 'wide');
  // Connection events and counts over every I/O thread.
  const events = s.server.events;
  const stats = () => s.server.streamStats();

  const stuck = await open(url);
  t.teardown(() => stuck.terminate());
  // Stop reading at the TCP level: the kernel buffers fill, then uWS's, then the session pauses.
  // ws's own pause: pausing its socket directly would be undone by ws's receiver when it drains.
  stuck.pause();
  const x = rows(1, width, 42);
  const frame = binaryFrame({ model_name: 'wide', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, width], parameters: { binary_data_size: width * 4 } }] }, [new Uint8Array(x.buffer)]);
  const paused = once(events, 'pause');
  for (let i = 0; i < maxInFlight; i++) stuck.send(frame);
  await paused;

  // Another client is answered at once while the stuck one waits.
  const other = await UmbraStreamClient.connect(streamUrl(s.url));
  t.teardown(() => other.close());
  const y = rows(2, 4, 9);
  const answer = await other.infer('fast', { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: y }] }, { binary: true });
  t.same(Array.from(answer.outputs[0]!.data as Float32Array), affine(y, 2, 1));

  // New requests from the stuck client are held, not run, and past the cap it is closed.
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    const onClose = (event: { code: number; reason: string }) => {
      if (event.code !== 1000) {
        events.off('close', onClose);
        resolve(event);
      }
    };
    events.on('close', onClose);
  });
  // The requests that started before the pause finish (their answers wait unread in the buffers);
  // the paused session holds the rest, and every new one, instead of running them.
  await until(async () => { const now = await stats(); return now.outstanding === now.held; }, 'the requests started before the pause answered');
  for (let i = 0; i < 2 * maxInFlight; i++) {
    stuck.send(frame);
  }
  const event = await closed;
  t.equal(event.code, 1008);
  // The sessions keep their peaks after every frame they take in (a poll could miss them all:
  // the frames may arrive, be held and close the connection within one turn of the loop).
  const after = await stats();
  t.ok(after.peakOutstanding <= maxInFlight, `outstanding stayed bounded (max ${after.peakOutstanding})`);
  t.ok(after.peakHeld > 0, "requests were held back while the client did not read");
  t.equal(after.connections, 1, 'only the well-behaved client is left');
  t.equal(after.held, 0);

  const again = await other.infer('fast', { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: y }] });
  t.same(again.outputs[0]!.data, affine(y, 2, 1));
});

t.test('drain: in-flight requests are answered, new ones refused, then a 1001 close', limit, async (t) => {
  const r = repo(t);
  // Run in the workers and held there (holdExecution) until the late request has been refused: the
  // drain cannot close the connection while this answer is owed, so the late frame is read, not
  // raced by the close.
  r.writeConfig('slow', { max_batch_size: 64, parameters: { execution: 'worker' } });
  const s = await startTestServer(t, { repository: r.dir });
  const hold = holdExecution(s.server.umbra.manager.get('slow'));
  t.teardown(() => hold.release());
  const client = await UmbraStreamClient.connect(streamUrl(s.url));
  const x = rows(1, 4, 11);
  const slow = client.infer('slow', { id: 'slow', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] }, { binary: true });
  await until(() => hold.held === 1, 'the request is running');
  const stopped = s.server.stop();
  const refused = await client.infer('fast', { id: 'late', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] }).catch((e: unknown) => e);
  t.ok(refused instanceof UmbraClientError);
  t.equal((refused as UmbraClientError).status, 503);
  hold.release();
  const answer = await slow;
  t.same(Array.from(answer.outputs[0]!.data as Float32Array), affine(x, 3, -1));
  const closeEvent = await client.closed;
  t.equal(closeEvent.code, 1001);
  await stopped;
  t.equal((await s.server.streamStats()).connections, 0);
});

t.test('a batch of answers leaves in one corked write before the hooks see the batch', limit, async (t) => {
  const r = repo(t);
  const { Umbra } = await import('../dist/index.js');
  const { StreamSession } = await import('../dist/server/ws-session.js');
  const umbra = await Umbra.open({ repository: r.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const sent: string[] = [];
  let corks = 0;
  const socket = {
    send: (data: Uint8Array | string) => { sent.push(String(data)); },
    bufferedAmount: () => 0,
    end: () => undefined,
    cork: (fn: () => void) => { corks += 1; fn(); },
  };
  // What a monitoring hook would see: how many answers were already written when it ran.
  const writtenAtHook: number[] = [];
  umbra.hooks.use({ onResult: () => { writtenAtHook.push(sent.length); } });
  const session = new StreamSession(socket, umbra, { maxInFlight: 64, backpressureBytes: 1 << 20, headers: {}, isAccepting: () => true });
  const encoder = new TextEncoder();
  // Frames arriving in one turn form one batch on the fast model (it runs on the event loop).
  for (let i = 0; i < 8; i++) {
    session.receive(encoder.encode(JSON.stringify({ id: `q${i}`, model_name: 'fast', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [i, 1, 2, 3] }] })), false);
  }
  await until(() => writtenAtHook.length === 8, 'the hooks to see eight answers');
  t.equal(sent.length, 8, 'eight answers');
  t.same(sent.map((s) => JSON.parse(s).id).sort(), ['q0', 'q1', 'q2', 'q3', 'q4', 'q5', 'q6', 'q7']);
  t.equal(corks, 1, 'one corked write for the batch');
  t.same(writtenAtHook, Array(8).fill(8), 'every answer was written before the hooks saw the batch');
});
