// Requests read on I/O threads and computed on the core's thread: connections spread over the
// threads and still batch together, a thread that dies is replaced with only its own connections
// failing, drain answers everything admitted on every thread, and the hop's protocol (parse on the
// thread, retry unparsed when the routed version's signature changed) in isolation.
import t from 'tap';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, holdExecution, until } from './helpers/repo.js';
import { CatalogView, signatureFingerprint } from '../dist/server/io/catalog.js';
import { CoreLink, RemoteFront } from '../dist/server/io/io-front.js';
import { Inbox, Outbox, packResponse, unpackBody, unpackRequest, type Envelope, type ToCore, type ToIo } from '../dist/server/io/wire.js';
import { Umbra } from '../dist/index.js';

/** What the stop test reaches into on the hub (test instrumentation only). */
interface IoHubInternals {
  threads: { data: MessagePort }[];
  close(bound?: Promise<void>): Promise<void>;
  replicaQueues(): Promise<unknown>;
}

process.env.UMBRA_FAULT_INJECTION = '1';

const x = (v: number) => ({ name: 'x', datatype: 'FP32', shape: [1, 4], data: [v, v + 1, v + 2, v + 3] });

/** One keep-alive HTTP/1.1 connection, requests one at a time. */
class RawConnection {
  private buffered = Buffer.alloc(0);
  private waiting: ((r: { status: number; body: string } | Error) => void) | undefined;
  readonly closed: Promise<void>;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.parse();
    });
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.waiting?.(new Error('connection closed'));
      this.waiting = undefined;
      resolve();
    }));
    socket.on('error', () => undefined);
  }

  static async open(port: number): Promise<RawConnection> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new RawConnection(socket);
  }

  private parse(): void {
    const end = this.buffered.indexOf('\r\n\r\n');
    if (end < 0 || !this.waiting) return;
    const head = this.buffered.subarray(0, end).toString('latin1');
    const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
    if (this.buffered.length < end + 4 + length) return;
    const body = this.buffered.subarray(end + 4, end + 4 + length).toString('utf8');
    this.buffered = this.buffered.subarray(end + 4 + length);
    const done = this.waiting;
    this.waiting = undefined;
    done({ status: Number(head.split(' ')[1]), body });
  }

  request(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
    const text = JSON.stringify(body);
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    return new Promise((resolve, reject) => {
      this.waiting = (r) => (r instanceof Error ? reject(r) : resolve(r));
      this.socket.write(`POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${extra}content-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

// Both ways of running two: two I/O threads of their own, or the core's thread and one more.
for (const coreReads of [false, true]) {
const mode = coreReads ? 'the core\'s thread and one I/O thread' : 'two I/O threads';

t.test(`connections spread over ${mode}, their requests batch together on the core`, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  // A worker model with a queue delay: requests from both threads wait together and batch.
  repo.writeConfig('affine', { max_batch_size: 64, dynamic_batching: { max_queue_delay_microseconds: 200_000 }, parameters: { execution: 'worker' } });
  const s = await startTestServer(t, { repository: repo.dir, ioThreads: 2, coreReads });
  t.equal(s.server.ioThreads, 2);
  t.equal(s.server.coreReads, coreReads);
  const connections = await Promise.all(Array.from({ length: 24 }, () => RawConnection.open(s.server.port)));
  t.teardown(() => connections.forEach((c) => c.close()));
  const answers = await Promise.all(connections.map((c, i) => c.request('/v2/models/affine/infer', { id: String(i), inputs: [x(i)] })));
  const wrong = answers.filter((a, i) => a.status !== 200 || JSON.stringify(JSON.parse(a.body).outputs[0].data) !== JSON.stringify(x(i).data.map((v) => 2 * v + 1)));
  t.same(wrong, [], 'every connection got its own rows back');
  const perThread = s.server.ioThreadStats();
  t.equal(perThread.length, 2);
  t.equal(perThread.some((p) => p.tid === process.pid), coreReads, 'the core\'s thread is listed when it reads');
  t.ok(perThread.every((p) => p.requests > 0), `both threads read requests (${perThread.map((p) => p.requests).join(', ')})`);
  const stats = s.server.umbra.manager.get('affine').stats();
  t.ok(stats.executions < stats.executedRequests, `requests of both threads shared batches (${stats.executedRequests} requests in ${stats.executions} batches)`);
});

t.test(`${mode}: an I/O thread that dies is replaced; only its own connections fail`, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  // Run in the workers: an inline model is answered by the thread's own replica, which does not
  // count as a request handed over to the core (how a connection's thread is found below).
  repo.writeConfig('affine', { parameters: { execution: 'worker' } });
  const s = await startTestServer(t, { repository: repo.dir, ioThreads: 2, coreReads });
  // Find two connections on different threads: each thread counts what it reads.
  const byThread = new Map<number, RawConnection>();
  const opened: RawConnection[] = [];
  t.teardown(() => opened.forEach((c) => c.close()));
  while (byThread.size < 2 && opened.length < 64) {
    const before = s.server.ioThreadStats();
    const c = await RawConnection.open(s.server.port);
    opened.push(c);
    t.equal((await c.request('/v2/models/affine/infer', { inputs: [x(1)] })).status, 200);
    // A thread that answered the request itself reports it just after the answer.
    const grew = () => s.server.ioThreadStats().find((a) => a.requests > (before.find((b) => b.tid === a.tid)?.requests ?? 0));
    await until(() => grew() !== undefined, 'the thread that read the request counted it');
    const tid = grew()!.tid;
    if (!byThread.has(tid)) byThread.set(tid, c);
  }
  t.equal(byThread.size, 2, 'connections reached both threads');
  // The doomed one is on an I/O thread (the fault is injected there, not on the core's thread).
  const entries = [...byThread.entries()].sort(([a], [b]) => Number(a === process.pid) - Number(b === process.pid));
  const [[doomedTid, doomed], [, survivor]] = entries as [[number, RawConnection], [number, RawConnection]];
  t.not(doomedTid, process.pid);
  const replaced = once(s.server.events, 'replaced');
  const crash = doomed.request('/v2/models/affine/infer', { inputs: [x(2)] }, { 'x-umbra-fault': 'io-crash' }).catch((e: Error) => e);
  await doomed.closed;
  await replaced;
  const outcome = await crash;
  t.ok(outcome instanceof Error || outcome.status === 200, 'the request on the dying thread either finished or lost its connection');
  const still = await survivor.request('/v2/models/affine/infer', { inputs: [x(3)] });
  t.equal(still.status, 200, 'the other thread\'s connection kept working');
  t.same(JSON.parse(still.body).outputs[0].data, [7, 9, 11, 13]);
  const threads = s.server.ioThreadStats();
  t.equal(threads.length, 2, 'two threads reading again');
  t.notOk(threads.some((p) => p.tid === doomedTid), 'the dead thread is gone');
  const fresh = await Promise.all(Array.from({ length: 8 }, async () => {
    const c = await RawConnection.open(s.server.port);
    opened.push(c);
    return (await c.request('/v2/models/affine/infer', { inputs: [x(4)] })).status;
  }));
  t.same(fresh, Array(8).fill(200), 'new connections are served on either thread');
});

t.test(`drain on ${mode}: every admitted request is answered, then the port closes`, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  // One at a time, held until the drain has begun: the ten wait in the queue together (a queue
  // bound of its own: the derived one would refuse some of them).
  repo.addVersion('slow', 1, affineModel(2, 0, 64));
  repo.writeConfig('slow', { max_batch_size: 1, instance_group: [{ count: 1 }], dynamic_batching: { max_queue_size: 16 }, parameters: { execution: 'worker' } });
  const s = await startTestServer(t, { repository: repo.dir, ioThreads: 2, coreReads });
  const mv = s.server.umbra.manager.get('slow');
  const hold = holdExecution(mv);
  t.teardown(() => hold.release());
  const row = (i: number) => ({ name: 'x', datatype: 'FP32', shape: [1, 64], data: Array.from({ length: 64 }, (_, k) => (i + k) % 7) });
  const connections = await Promise.all(Array.from({ length: 10 }, () => RawConnection.open(s.server.port)));
  t.teardown(() => connections.forEach((c) => c.close()));
  const inflight = connections.map((c, i) => c.request('/v2/models/slow/infer', { inputs: [row(i)] }));
  await until(() => mv.pending + mv.inFlight === 10, 'all ten requests admitted');
  t.ok(s.server.ioThreadStats().every((p) => p.requests > 0), 'both threads admitted some');
  const stopping = s.server.stop();
  const ready = await s.server.api.handle({ method: 'GET', path: '/v2/health/ready', query: '', headers: {}, body: new Uint8Array() });
  t.equal(ready.status, 503, 'readiness turns false at once');
  t.equal(mv.pending + mv.inFlight, 10, 'nothing ran before the drain began');
  hold.release();
  const results = await Promise.all(inflight);
  t.same(results.map((r) => r.status), Array(10).fill(200), 'every admitted request is answered');
  t.same(results.map((r) => JSON.parse(r.body).outputs[0].data[0]), Array.from({ length: 10 }, (_, i) => 2 * (i % 7)), 'each with its own answer');
  await stopping;
  await t.rejects(fetch(`${s.url}/v2/health/live`), 'no thread accepts connections any more');
});
}

t.test('stop: a thread whose inline replica is not open yet answers what it handed to the core before it closes', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('inline', 1, affineModel(2, 1));
  repo.writeConfig('inline', { parameters: { execution: 'inline' } });
  // A thread still opening its replica of an inline model hands the model's requests to the core;
  // UMBRA_IO_LOCAL=0 holds every thread in that state (the hub reads it as it starts).
  process.env.UMBRA_IO_LOCAL = '0';
  const s = await startTestServer(t, { repository: repo.dir, ioThreads: 2, coreReads: false }).finally(() => delete process.env.UMBRA_IO_LOCAL);
  const hub = (s.server as unknown as { transport: IoHubInternals }).transport;
  const c = await RawConnection.open(s.server.port);
  t.teardown(() => c.close());
  t.equal((await c.request('/v2/models/inline/infer', { inputs: [x(1)] })).status, 200, 'served before the stop, on a connection kept open');

  // The core's messages to the threads are held in transit from the request below until each
  // thread has taken its stop: the answer is on its way when the thread is told to stop.
  const held: (() => void)[] = [];
  let holding = false;
  for (const thread of hub.threads) {
    const post = thread.data.postMessage.bind(thread.data);
    thread.data.postMessage = (...args: Parameters<MessagePort['postMessage']>) => {
      if (holding) held.push(() => post(...args));
      else post(...args);
    };
  }
  const umbra = s.server.umbra;
  let reachedCore!: () => void;
  const reached = new Promise<void>((resolve) => { reachedCore = resolve; });
  const infer = umbra.infer.bind(umbra);
  umbra.infer = (...args: Parameters<typeof umbra.infer>) => {
    reachedCore();
    return infer(...args);
  };
  const inferBody = umbra.inferBody.bind(umbra);
  umbra.inferBody = (...args: Parameters<typeof umbra.inferBody>) => {
    reachedCore();
    return inferBody(...args);
  };
  // Every thread has drained when the stop drains the models (as a load under way holds it
  // there): a client that had not yet seen the drain sends on its open connection.
  const manager = umbra.manager;
  const drainAll = manager.drainAll.bind(manager);
  let late: Promise<{ status: number; body: string } | Error> | undefined;
  manager.drainAll = async () => {
    if (!late) {
      holding = true;
      late = c.request('/v2/models/inline/infer', { inputs: [x(5)] }).catch((err: Error) => err);
      await reached;
    }
    return drainAll();
  };
  const close = hub.close.bind(hub);
  hub.close = (bound?: Promise<void>) => {
    const closing = close(bound);
    // Each thread answers this after its stop (one channel, in order), or has ended.
    void hub.replicaQueues().then(() => {
      holding = false;
      for (const post of held.splice(0)) post();
    });
    return closing;
  };

  await s.server.stop();
  const answer = await late!;
  t.equal(answer instanceof Error ? answer.message : answer.status, 200, 'the request that arrived during the stop is answered, not reset');
  t.same(answer instanceof Error ? undefined : JSON.parse(answer.body).outputs[0].data, [11, 13, 15, 17], 'with its own result');
});

t.test('request headers cross to the core only while a hook may read them', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  // One model answered on the I/O thread (its event crosses), one run on the core (the request crosses).
  repo.addVersion('inline', 1, affineModel(2, 1));
  repo.writeConfig('inline', { parameters: { execution: 'inline' } });
  repo.addVersion('worker', 1, affineModel(2, 1));
  repo.writeConfig('worker', { parameters: { execution: 'worker' } });
  const s = await startTestServer(t, { repository: repo.dir, ioThreads: 2, coreReads: false });
  const seen: { model: string; headers: Record<string, string> | undefined }[] = [];
  const quiet = s.server.umbra.hooks.use({ onResult: (e) => seen.push({ model: e.model, headers: e.context.headers }), readsHeaders: false });
  t.notOk(s.server.umbra.hooks.readsHeaders, 'Umbra\'s own hooks (monitoring, traffic, the ops page) read no headers');
  const c = await RawConnection.open(s.server.port);
  t.teardown(() => c.close());
  for (const model of ['inline', 'worker']) t.equal((await c.request(`/v2/models/${model}/infer`, { inputs: [x(1)] }, { 'x-tenant': 'blue' })).status, 200);
  await until(() => seen.length === 2, 'both events seen');
  t.same(seen.map((e) => e.headers), [undefined, undefined], 'no headers cross while no hook reads them');
  quiet();
  // A hook that does not say it reads none may read them: from the next catalog the threads apply, they cross.
  const heard: { model: string; tenant: string | undefined }[] = [];
  s.server.umbra.hooks.use({ onResult: (e) => heard.push({ model: e.model, tenant: e.context.headers?.['x-tenant'] }) });
  t.ok(s.server.umbra.hooks.readsHeaders);
  for (const model of ['inline', 'worker']) {
    await until(async () => {
      heard.length = 0;
      await c.request(`/v2/models/${model}/infer`, { inputs: [x(2)] }, { 'x-tenant': 'blue' });
      await until(() => heard.length === 1, 'the event seen');
      return heard[0]!.tenant === 'blue';
    }, `the ${model} request's headers reached the hook`);
  }
  t.pass('headers crossed for both once a hook may read them');
});

t.test('a client that goes away before its request runs takes it out of the core\'s queue', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  // One at a time, the first held until the abort has crossed both threads, and no staging (a
  // staged request has left the queue).
  repo.addVersion('slow', 1, affineModel(2, 0, 64));
  repo.writeConfig('slow', { max_batch_size: 1, instance_group: [{ count: 1 }], parameters: { execution: 'worker', stage_batches: 'false' } });
  const s = await startTestServer(t, { repository: repo.dir, ioThreads: 2 });
  const mv = s.server.umbra.manager.get('slow');
  const hold = holdExecution(mv);
  t.teardown(() => hold.release());
  const row = { name: 'x', datatype: 'FP32', shape: [1, 64], data: Array(64).fill(1) };
  const running = await RawConnection.open(s.server.port);
  const queued = await RawConnection.open(s.server.port);
  t.teardown(() => running.close());
  // One after the other: the two connections may be read by different I/O threads, so sent
  // together either could reach the core first.
  const first = running.request('/v2/models/slow/infer', { inputs: [row] });
  await until(() => mv.inFlight === 1, 'the first one running (held)');
  void queued.request('/v2/models/slow/infer', { inputs: [row] }).catch(() => undefined);
  await until(() => mv.pending === 1, 'the second one queued');
  queued.close();
  await until(() => mv.stats().aborted === 1, 'the queued request was aborted on the core');
  hold.release();
  t.equal((await first).status, 200);
  t.equal(mv.stats().executedRequests, 1, 'the aborted request never ran');
});

t.test('the hop: parsed on the thread, sent unparsed when the routed version has another signature', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const mv = umbra.manager.get('affine');
  const catalog = new CatalogView();
  const fp = signatureFingerprint(mv.signature);
  // Where a request may be refused before its body is read: the version it runs on, told by the
  // core's batcher through shared memory; never where a hook may route or answer it.
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const models = (claimed: boolean) => ({ affine: { versions: { '1': fp }, uniform: fp, default: '1', claimed } });
  const admission = { 'affine/1': { flag: flag.buffer as SharedArrayBuffer, refusals: { 1: 'the queue holds its limit' } } };
  catalog.update({ models: models(true), signatures: { [fp]: mv.signature }, replicas: {}, answering: false, headers: true, idPrefix: null, admission });
  t.equal(catalog.target('affine', undefined), undefined, 'a claimed model: an unversioned request may go elsewhere');
  t.same(catalog.target('affine', '1'), { version: '1', role: 'direct' }, 'a named version is never rerouted');
  catalog.update({ models: models(false), signatures: { [fp]: mv.signature }, replicas: {}, answering: true, headers: true, idPrefix: null, admission });
  t.equal(catalog.target('affine', '1'), undefined, 'a hook may answer without the model: no target');
  catalog.update({ models: models(false), signatures: { [fp]: mv.signature }, replicas: {}, answering: false, headers: true, idPrefix: null, admission });
  t.same(catalog.target('affine', undefined), { version: '1', role: 'primary' });
  t.equal(catalog.refusal('affine', '1'), undefined, 'admitting');
  Atomics.store(flag, 0, 1);
  t.equal(catalog.refusal('affine', '1'), 'the queue holds its limit', 'the state the core wrote, read here');
  Atomics.store(flag, 0, 0);
  t.equal(catalog.refusal('affine', '2'), undefined, 'a version with no board');
  t.same(catalog.lookup('affine', undefined)?.fp, fp, 'unversioned requests parse against the one signature');
  t.same(catalog.lookup('affine', '1')?.fp, fp);
  t.equal(catalog.lookup('affine', '2'), undefined, 'an unknown version goes to the core unparsed');
  t.equal(catalog.lookup('constructor', undefined), undefined, 'model names are not object keys');
  await t.rejects(umbra.infer('affine', undefined, { parameters: {}, inputs: [{ ...x(1), data: new Float32Array(x(1).data) }] as never }, { accepts: () => false }), { name: 'SignatureChanged' }, 'the core refuses a request parsed against another signature');

  // Play the core's side of the channel: answer the parsed request with 'retry', then the body.
  const channel = new MessageChannel();
  const link = new CoreLink(channel.port1);
  t.teardown(() => { link.close(); channel.port2.close(); });
  const front = new RemoteFront(link, catalog, undefined);
  const seen: string[] = [];
  const inbox = new Inbox<ToCore>();
  // Answers go out at once, one envelope each, through the core's kind of outbox.
  const replies = new Outbox<ToIo>((envelope, transfer) => channel.port2.postMessage(envelope, transfer), (fn) => fn());
  channel.port2.on('message', (envelope: Envelope<ToCore>) => {
    for (const msg of inbox.open(envelope)) {
      seen.push(msg.t);
      const out = replies.slab;
      let answer: ToIo;
      if (msg.t === 'infer') {
        t.same(Array.from(unpackRequest(msg.request, envelope.slab).inputs[0]!.data as Float32Array), [5, 6, 7, 8], 'tensors cross in the slab');
        answer = { t: 'retry', id: msg.id };
      } else if (msg.t === 'body') {
        const body = JSON.parse(Buffer.from(unpackBody(msg.body, envelope.slab)).toString('utf8'));
        t.same(body.inputs[0].data, [5, 6, 7, 8], 'the retry carries the body as sent');
        answer = { t: 'ok', id: msg.id, response: packResponse({ model_name: 'affine', model_version: '1', outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 4], data: new Float32Array([11, 13, 15, 17]) }] }, out), timing: { queueMs: 0, computeMs: 0, rows: 1, batchRows: 1 } };
      } else {
        continue;
      }
      replies.push(answer);
    }
  });
  const body = Buffer.from(JSON.stringify({ inputs: [x(5)] }));
  const result = await front.inferBody('affine', undefined, body);
  t.same(seen, ['infer', 'body']);
  t.same(Array.from(result.response.outputs[0]!.data as Float32Array), [11, 13, 15, 17]);
  t.equal(result.binaryOutputs, 'none');
});

t.test('a hot message is written into the turn\'s buffer only when its JSON parts read back unchanged; else it is cloned', async (t) => {
  const sent: Envelope<unknown>[] = [];
  const outbox = new Outbox<unknown>((envelope) => sent.push(envelope), (fn) => fn());
  const inbox = new Inbox<unknown>();
  const send = (msg: unknown) => {
    outbox.push(msg);
    const envelope = sent.pop()!;
    return { json: envelope.turn.others === undefined, back: inbox.open(envelope)[0] };
  };
  const request = (parameters: Record<string, unknown>) => ({ t: 'infer', id: 1, model: 'm', fp: 'f', context: { headers: { a: 'b' }, transport: 'http' }, request: { parameters, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], at: 0, length: 4 }] } });
  const plain = request({ priority: 2, tag: 'x', nested: { list: [1, 'two', true, null] } });
  t.same(send(plain), { json: true, back: plain }, 'JSON\'s own kind of data is written and reads back equal');
  const unfaithful: [string, unknown][] = [
    ['NaN', Number.NaN], ['Infinity', Number.POSITIVE_INFINITY], ['-0', -0], ['a 64-bit integer', 2n ** 63n - 1n],
    ['a typed array', new Float32Array(2)], ['a hole in an array', [1, undefined]],
  ];
  const results = unfaithful.map(([what, value]) => {
    const msg = request({ value });
    const { json, back } = send(msg);
    const readBack = (back as typeof msg).request.parameters.value;
    return { what, json, same: typeof value === 'object' ? readBack === value : Object.is(readBack, value) };
  });
  t.same(results.filter((r) => r.json || !r.same), [], 'a parameter JSON would change goes by structured clone (here: by reference), unchanged');
  const event = { t: 'event', event: { model: 'm', version: '1', role: 'primary', outcome: 'success', context: {}, durationMs: 1.5, response: { model_name: 'm', model_version: '1', parameters: { score: Number.NaN }, outputs: [] } } };
  t.equal(send(event).json, false, 'an event whose response parameters JSON would change is cloned');
  t.equal(send({ t: 'ok', id: 1, response: { model_name: 'm', model_version: '1', outputs: [] }, timing: { queueMs: 0, computeMs: 0, rows: 1, batchRows: 1 }, binaryOutputs: new Set(['y']) }).json, false, 'a set of binary outputs is cloned');
});

t.test('a streamed answer (server-sent events) comes through in order, stops when the client leaves, ends on drain', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  for (const ioThreads of [1, 2]) {
    const s = await startTestServer(t, { repository: repo.dir, ioThreads });
    const writers = new Set<(chunk: string) => void>();
    let stopped = 0;
    s.server.api.route('GET', '/test/events', () => ({
      status: 200,
      headers: { 'content-type': 'text/event-stream' },
      body: 'retry: 1000\n\n',
      stream: {
        open(write) {
          writers.add(write);
          return () => {
            writers.delete(write);
            stopped += 1;
          };
        },
      },
    }));
    const aborter = new AbortController();
    const res = await fetch(`${s.url}/test/events`, { signal: aborter.signal });
    t.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    await until(() => writers.size === 1, 'the stream opened on the core');
    for (let i = 0; i < 50; i++) for (const w of writers) w(`data: ${i}\n\n`);
    while (!text.includes('data: 49\n\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
    }
    const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => Number(e.slice(6)));
    t.same(events, Array.from({ length: 50 }, (_, i) => i), `every chunk, in order (io threads ${ioThreads})`);
    aborter.abort();
    await until(() => stopped === 1, 'the stream stopped when the client left');
    // A second client is still open when the server drains: the drain ends it.
    const second = await fetch(`${s.url}/test/events`);
    await until(() => writers.size === 1, 'the second stream opened');
    const rest = second.text();
    await s.server.stop();
    t.match(await rest, /^retry: 1000/, 'the drain ended the open stream');
    t.equal(stopped, 2);
  }
});

t.test('stop: the core\'s own thread answers a request it is still answering before it closes', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  // One thread: the core's thread reads every request (coreReads); two threads with the core's
  // among them run the same transport beside the I/O threads.
  const s = await startTestServer(t, { repository: repo.dir, ioThreads: 1 });
  const transport = (s.server as unknown as { transport: { close(bound?: Promise<void>): Promise<void> } }).transport;
  const c = await RawConnection.open(s.server.port);
  t.teardown(() => c.close());
  t.equal((await c.request('/v2/models/affine/infer', { inputs: [x(1)] })).status, 200, 'served before the stop, on a connection kept open');

  // From the late request on, the core's answers are held until the transport is told to close:
  // the request is still being answered (an async answer) when close() comes.
  let open!: () => void;
  const gate = new Promise<void>((resolve) => { open = resolve; });
  let reachedCore!: () => void;
  const reached = new Promise<void>((resolve) => { reachedCore = resolve; });
  const umbra = s.server.umbra;
  const infer = umbra.infer.bind(umbra);
  umbra.infer = async (...args: Parameters<typeof umbra.infer>) => {
    reachedCore();
    const answer = await infer(...args);
    await gate;
    return answer;
  };
  const inferBody = umbra.inferBody.bind(umbra);
  umbra.inferBody = async (...args: Parameters<typeof umbra.inferBody>) => {
    reachedCore();
    const answer = await inferBody(...args);
    await gate;
    return answer;
  };
  // The transport has drained when the stop drains the models (as a load under way holds it
  // there): a client that had not yet seen the drain sends on its open connection.
  const manager = umbra.manager;
  const drainAll = manager.drainAll.bind(manager);
  let late: Promise<{ status: number; body: string } | Error> | undefined;
  manager.drainAll = async () => {
    if (!late) {
      late = c.request('/v2/models/affine/infer', { inputs: [x(5)] }).catch((err: Error) => err);
      await reached;
    }
    return drainAll();
  };
  const close = transport.close.bind(transport);
  transport.close = (bound?: Promise<void>) => {
    const closing = close(bound);
    open();
    return closing;
  };

  await s.server.stop();
  const answer = await late!;
  t.equal(answer instanceof Error ? answer.message : answer.status, 200, 'the request that arrived during the stop is answered, not reset');
  t.same(answer instanceof Error ? undefined : JSON.parse(answer.body).outputs[0].data, [11, 13, 15, 17], 'with its own result');
});
