// The compact text form of the messages between I/O threads and the core: what goes in comes out
// as JSON would have given it back, for every shape the hot messages take, and the envelope's
// numbers are exact.
import t from 'tap';
import { decodeMessages, encodeMessages } from '../dist/server/io/compact.js';
import { Outbox, openEnvelope, type Envelope } from '../dist/server/io/wire.js';

/** What plain JSON would have delivered: the reference the compact form must match. */
const viaJson = (msgs: unknown[]) => JSON.parse(JSON.stringify(msgs)) as unknown[];
const roundTrip = (msgs: unknown[]) => {
  const text = encodeMessages(msgs);
  return decodeMessages(text.json, text.nums);
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
const infer = { t: 'infer', id: 41, model: 'mlp', fp: 'sig-1', request: { parameters: {}, inputs: [tensor('features', 0, 64)], binaryDataOutput: true }, context: { headers: {} }, receivedAt: 1733400000123.4567 };
const inferVersioned = { t: 'infer', id: 42, model: 'mlp', version: '3', fp: 'sig-1', request: { parameters: {}, inputs: [] }, context: {} };
const ok = { t: 'ok', id: 41, response: { model_name: 'mlp', model_version: '3', outputs: [tensor('y', 0, 10)] }, timing };
const okAll = { ...ok, id: 42, binaryOutputs: 'all' };
const others = [{ t: 'cancel', id: 3 }, { t: 'ids', id: 4, count: 16384 }, { t: 'err', id: 5, error: { code: 'TIMEOUT', message: 'late' } }, { t: 'reply', id: 6, status: 200, headers: { a: 'b' }, text: '{}' }];

t.test('every kind of message reads back as JSON would give it', async (t) => {
  const msgs = [fullEvent, bareEvent, stringsEvent, infer, inferVersioned, ok, okAll, ...others];
  t.strictSame(roundTrip(msgs), viaJson(msgs), 'the whole turn, in order');
  // One at a time too, so no message leans on another's strings or numbers.
  const alone = msgs.map((m) => roundTrip([m])[0]);
  t.strictSame(alone, viaJson(msgs), 'each message alone');
  t.strictSame(roundTrip([]), [], 'an empty turn');
});

t.test('measured times cross exactly, outside the text', async (t) => {
  const text = encodeMessages([fullEvent, infer, ok]);
  t.notOk(text.json.includes(String(Math.PI)), 'no number printed in the text');
  t.strictSame(Array.from(text.nums ?? []), [Math.PI, timing.queueMs, timing.computeMs, 1, 7, infer.receivedAt, timing.queueMs, timing.computeMs, 1, 7], 'the numbers, in the order the messages hold them');
  const back = decodeMessages<typeof fullEvent>(text.json, text.nums);
  t.ok(Object.is(back[0]!.event.durationMs, Math.PI), 'a duration is the same double');
  t.equal(encodeMessages(others).nums, undefined, 'a turn without times carries no numbers');
});

t.test('repeated strings are written once per envelope', async (t) => {
  const many = Array.from({ length: 50 }, () => fullEvent);
  const text = encodeMessages(many);
  t.equal(text.json.split('"application/json"').length - 1, 1, 'a header value shared by 50 events appears once');
  t.ok(text.json.length < JSON.stringify(many).length / 3, `50 events take ${text.json.length} bytes against ${JSON.stringify(many).length} as plain JSON`);
});

t.test('the outbox sends compact text with its numbers, and clones what JSON would change', async (t) => {
  const sent: { envelope: Envelope<unknown>; transfer: ArrayBuffer[] }[] = [];
  const outbox = new Outbox<unknown>((envelope, transfer) => sent.push({ envelope, transfer }), (fn) => fn());
  outbox.push(fullEvent);
  const { envelope, transfer } = sent.pop()!;
  t.type(envelope.json, 'string');
  t.ok(envelope.nums instanceof Float64Array && transfer.includes(envelope.nums.buffer as ArrayBuffer), 'the numbers are transferred, not cloned');
  t.strictSame(openEnvelope(envelope), viaJson([fullEvent]));
  const nan = { t: 'event', event: { ...fullEvent.event, request: { ...fullEvent.event.request, parameters: { score: Number.NaN } } } };
  outbox.push(nan);
  const cloned = sent.pop()!.envelope;
  t.equal(cloned.json, undefined, 'a NaN parameter goes by structured clone');
  t.equal(openEnvelope(cloned)[0], nan);
});
