// The binary form of the messages between I/O threads and the core: what goes in comes out, for
// every shape the hot messages take, numbers exact; a link's dictionary sends each name once and
// stays bounded; strings a client chooses never enter it; other messages keep their place.
import t from 'tap';
import { isDeepStrictEqual } from 'node:util';
import { DICTIONARY_LIMIT, WireDecoder, WireEncoder, type EncodedTurn } from '../dist/server/io/codec.js';
import { Inbox, Outbox, type Envelope } from '../dist/server/io/wire.js';

/** The messages as the receiver should see them: a header holding undefined is no header. */
const expected = (msgs: unknown[]) => JSON.parse(JSON.stringify(msgs)) as unknown[];
const hot = () => true;
const link = (limit?: number) => {
  const encoder = new WireEncoder(limit);
  const decoder = new WireDecoder();
  return { send: (msgs: unknown[]) => { const turn = encoder.encode(msgs, hot); return { turn, back: decoder.decode(turn) }; } };
};

const tensor = (name: string, at: number, length: number) => ({ name, datatype: 'FP32', shape: [1, length], at, length });
const timing = { queueMs: 0.1 + 0.2, computeMs: 1 / 3, rows: 1, batchRows: 7 };
const fullEvent = {
  t: 'event',
  event: {
    model: 'digits', version: '2', role: 'primary', outcome: 'success',
    context: { routingKey: 'user-7', headers: { host: '127.0.0.1:8000', 'content-type': 'application/json', 'x-skip': undefined }, transport: 'http' },
    request: { parameters: { priority: 1, tag: 'a' }, inputs: [tensor('pixels', 0, 64)], id: 'p-1', outputs: [{ name: 'label', binaryData: true }], binaryDataOutput: false },
    response: { model_name: 'digits', model_version: '2', id: 'p-1', parameters: { note: 'x' }, outputs: [tensor('probabilities', 256, 10), { name: 'label', datatype: 'INT64', shape: [1], at: 296, length: 1 }] },
    timing,
    durationMs: Math.PI,
  },
};
const bareEvent = { t: 'event', event: { model: 'm', version: '1', role: 'shadow', outcome: 'rejected', context: {}, error: { code: 'QUEUE_FULL', message: 'full', retryAfter: 1 }, durationMs: 0 } };
const stringsEvent = {
  t: 'event',
  event: {
    model: 'm', version: '1', role: 'direct', outcome: 'success', context: { transport: 'ws' }, durationMs: 2e-9,
    request: { parameters: {}, inputs: [{ name: 'text', datatype: 'BYTES', shape: [2], at: 0, length: 2, strings: ['a', 'b'] }, { ...tensor('x', 8, 4), parameters: { binary_data_size: 16 } }] },
    response: { model_name: 'm', model_version: '1', outputs: [] },
    timing: { ...timing, extra: 5 },
  },
};
const infer = { t: 'infer', id: 2 ** 40 + 1, model: 'mlp', fp: 'sig-1', request: { parameters: {}, inputs: [tensor('features', 0, 64)], binaryDataOutput: true }, context: { headers: {} }, receivedAt: 1733400000123.4567 };
const inferVersioned = { t: 'infer', id: 42, model: 'mlp', version: '3', fp: 'sig-1', request: { parameters: {}, inputs: [] }, context: {} };
const ok = { t: 'ok', id: 41, response: { model_name: 'mlp', model_version: '3', outputs: [tensor('y', 0, 10)] }, timing };
const okAll = { ...ok, id: 42, binaryOutputs: 'all' };
const others = [{ t: 'cancel', id: 3 }, { t: 'ids', id: 4, count: 16384 }, { t: 'err', id: 5, error: { code: 'TIMEOUT', message: 'late' } }, { t: 'reply', id: 6, status: 200, headers: { a: 'b' }, text: '{}' }];
const all = [fullEvent, bareEvent, stringsEvent, infer, inferVersioned, ok, okAll, ...others];

t.test('every kind of message reads back as it was sent, in order', async (t) => {
  t.same(link().send(all).back, expected(all), 'the whole turn, hot and cloned messages in their places');
  // One at a time too, on a fresh link each, so no message leans on another's strings.
  t.same(all.map((m) => link().send([m]).back[0]), expected(all), 'each message alone');
  t.same(link().send([]).back, [], 'an empty turn');
  const back = link().send([fullEvent, infer]).back as [typeof fullEvent, typeof infer];
  t.ok(Object.is(back[0].event.durationMs, Math.PI) && Object.is(back[1].receivedAt, infer.receivedAt), 'measured times are the same doubles');
  t.equal(back[1].id, 2 ** 40 + 1, 'a request number past 32 bits');
});

t.test('a link numbers each name once; later envelopes send only the number', async (t) => {
  const l = link();
  const first = l.send([fullEvent]);
  t.ok(first.turn.fresh?.includes('digits') && first.turn.fresh.includes('pixels'), 'the first envelope brings the names');
  const again = l.send([fullEvent, fullEvent]);
  t.equal(again.turn.fresh, undefined, 'the next brings none');
  t.same(again.back, expected([fullEvent, fullEvent]));
  t.ok(again.turn.length < 2.2 * first.turn.length, `two events take ${again.turn.length} bytes against ${first.turn.length} for one`);
});

t.test('strings a client picks travel with their envelope only, and the dictionary is bounded', async (t) => {
  const l = link(8);
  const fresh: string[] = [];
  const misread: number[] = [];
  for (let i = 0; i < 50; i++) {
    const msg = { t: 'event', event: { ...bareEvent.event, context: { routingKey: `key-${i}`, headers: { [`x-name-${i}`]: `value-${i}` } } } };
    const { turn, back } = l.send([msg]);
    fresh.push(...(turn.fresh ?? []));
    if (!isDeepStrictEqual(back, expected([msg]))) misread.push(i);
  }
  t.same(misread, [], 'each of 50 events with new names reads back whole, past the limit too');
  t.ok(fresh.length <= 8, `the link numbered ${fresh.length} strings (its limit: 8)`);
  t.notOk(fresh.some((s) => s.startsWith('key-') || s.startsWith('value-')), 'no routing key or header value was numbered');
  t.equal(DICTIONARY_LIMIT, 4096);
});

t.test('the outbox transfers the records and the slab, and clones a message whose JSON parts would change', async (t) => {
  const sent: { envelope: Envelope<unknown>; transfer: ArrayBuffer[] }[] = [];
  const outbox = new Outbox<unknown>((envelope, transfer) => sent.push({ envelope, transfer }), (fn) => fn());
  const inbox = new Inbox<unknown>();
  outbox.push(fullEvent);
  const { envelope, transfer } = sent.pop()!;
  t.ok(transfer.includes(envelope.turn.bytes), 'the records are transferred, not cloned');
  t.equal(envelope.turn.others, undefined, 'nothing cloned');
  t.same(inbox.open(envelope), expected([fullEvent]));
  const nan = { t: 'event', event: { ...fullEvent.event, request: { ...fullEvent.event.request, parameters: { score: Number.NaN } } } };
  outbox.push(nan);
  const cloned = sent.pop()!.envelope;
  t.equal(cloned.turn.others?.length, 1, 'a NaN parameter goes by structured clone');
  t.equal(inbox.open(cloned)[0], nan);
});

t.test('large tensors a request owns move by transfer on an I/O thread\'s side (bodies only once answered), and read back the same', async (t) => {
  const { markOwned, MOVE_MIN_BYTES } = await import('../dist/owned-buffers.js');
  const { packRequest, unpackRequest } = await import('../dist/server/io/wire.js');
  // As postMessage does: the receiver gets a copy, and what is transferred is detached here.
  const sent: { envelope: Envelope<unknown>; transfer: ArrayBuffer[] }[] = [];
  const post = (envelope: Envelope<unknown>, transfer: ArrayBuffer[]) => sent.push({ envelope: structuredClone(envelope, { transfer }), transfer });
  const inbox = new Inbox<any>();
  const big = (fill: number) => new Float32Array(MOVE_MIN_BYTES / 4).fill(fill);
  const request = (...inputs: Float32Array[]) => ({ parameters: {}, inputs: inputs.map((data, i) => ({ name: `x${i}`, datatype: 'FP32' as const, shape: [1, data.length], data })) });
  const read = (r: ReturnType<typeof unpackRequest>) => r.inputs.map((x) => [x.data.length, (x.data as Float32Array)[0]]);

  const moving = new Outbox<unknown>(post, (fn) => fn(), true);
  const shm = big(1);
  const body = big(2);
  const small = new Float32Array(16).fill(3);
  const plain = big(4);
  markOwned(shm.buffer, 'always');
  markOwned(body.buffer, 'answered');
  markOwned(small.buffer, 'always');
  // Not yet answered: the body is copied, the shared-memory read moves.
  moving.push({ t: 'infer', id: 1, model: 'm', fp: 'f', context: {}, request: packRequest(request(shm, body, small, plain), moving.slab) });
  let { envelope, transfer } = sent.pop()!;
  t.equal(envelope.moved?.length, 1, 'only the owned buffer that may always move');
  t.ok(transfer.includes(shm.buffer), 'and it is transferred');
  t.equal(shm.length, 0, 'so it is detached here');
  t.equal(body.length, MOVE_MIN_BYTES / 4, 'the body stays');
  let back = unpackRequest(inbox.open(envelope)[0].request, Outbox.source(envelope));
  t.same(read(back), [[MOVE_MIN_BYTES / 4, 1], [MOVE_MIN_BYTES / 4, 2], [16, 3], [MOVE_MIN_BYTES / 4, 4]], 'every tensor reads back as sent');

  // Answered (its event): the body moves too, twice named in one turn but moved once.
  moving.push({ t: 'event', event: { model: 'm', version: '1', role: 'primary', outcome: 'success', context: {}, durationMs: 1, request: packRequest(request(body, body.subarray(8)), moving.slab, true) } });
  ({ envelope, transfer } = sent.pop()!);
  t.equal(envelope.moved?.length, 1, 'one buffer for two views of it');
  back = unpackRequest(inbox.open(envelope)[0].event.request, Outbox.source(envelope));
  t.same(read(back), [[MOVE_MIN_BYTES / 4, 2], [MOVE_MIN_BYTES / 4 - 8, 2]]);

  // The core's side never moves: its tensors may still be in use there.
  const core = new Outbox<unknown>(post, (fn) => fn());
  const other = big(5);
  markOwned(other.buffer, 'always');
  core.push({ t: 'infer', id: 2, model: 'm', fp: 'f', context: {}, request: packRequest(request(other), core.slab, true) });
  t.equal(sent.pop()!.envelope.moved, undefined);
  t.equal(other.length, MOVE_MIN_BYTES / 4);
});

t.test('a turn the decoder cannot read is refused, not misread', async (t) => {
  const turn: EncodedTurn = { bytes: new Uint8Array([9]).buffer, length: 1, fresh: undefined, loose: undefined, others: undefined };
  t.throws(() => new WireDecoder().decode(turn), /does not know/);
  // A string number the receiver never got (its envelope skipped): refused too.
  const e = new WireEncoder();
  e.encode([fullEvent], hot);
  t.throws(() => new WireDecoder().decode(e.encode([fullEvent], hot)), /does not know/);
});
