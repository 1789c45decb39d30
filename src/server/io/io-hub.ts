// The core's side of the I/O threads: starts them on one port, serves what they hand over
// (parsed requests into the core, other routes into the API), keeps their signature catalog
// current, replaces a thread that dies, and drains and stops them with the server.
import { EventEmitter } from 'node:events';
import { threadOptions } from '../../core/threads.js';
import { createServer } from 'node:net';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { Api, ApiReply, ApiRequest } from '../../api/api.js';
import { SignatureChanged } from '../../core/front.js';
import type { InferEvent, RequestContext } from '../../core/hooks.js';
import type { Umbra } from '../../core/umbra.js';
import { Cancellation } from '../../scheduler/cancellation.js';
import { sumStreamStats, type StreamOptions, type StreamStats } from '../ws.js';
import type { ApiHandler, HttpOptions } from '../http.js';
import { buildCatalog, signatureFingerprint } from './catalog.js';
import type { IoThreadData } from './io-thread.js';
import {
  Inbox, Outbox, errorFromWire, packResponse, sumQueues, unpackBody, unpackRequest, unpackResponse, wireError,
  type QueueCounts,
  type Control, type ControlReply, type Envelope, type PackedEvent, type SlabSource, type ToCore, type ToIo, type WireContext,
} from './wire.js';

export interface IoHubOptions {
  threads: number;
  host: string;
  port: number;
  http: HttpOptions;
  stream: StreamOptions;
}

/** One I/O thread as the core's thread sees it. */
class IoThread {
  readonly outbox: Outbox<ToIo>;
  /** The thread's envelopes, opened in the order they came. */
  readonly inbox = new Inbox<ToCore>();
  /** Requests handed over and not yet answered, so a client's abort or the thread's death cancels them. */
  readonly running = new Map<number, Cancellation>();
  /** Streamed API answers still open, by request id: a cancel or the thread's death stops them. */
  readonly streams = new Map<number, () => void>();
  tid = 0;
  /** Requests and API calls the thread read since it started (handed over, or answered itself). */
  requests = 0;
  /** The newest catalog the thread has applied. */
  applied = 0;
  exited: Promise<number>;
  /** Whether the thread has ended. */
  ended = false;
  /** Whether the thread has been told to stop. */
  stopSent = false;
  private readonly waiters: ((msg: ControlReply) => boolean)[] = [];

  constructor(readonly worker: Worker, readonly data: MessagePort) {
    // After the microtasks that settled a batch's requests: one message for all their answers.
    this.outbox = new Outbox<ToIo>((envelope, transfer) => data.postMessage(envelope, transfer), process.nextTick);
    this.exited = new Promise((resolve) => worker.once('exit', (code: number) => {
      this.ended = true;
      resolve(code);
    }));
    worker.on('message', (msg: ControlReply) => {
      for (let i = 0; i < this.waiters.length; i++) {
        if (this.waiters[i]!(msg)) {
          this.waiters.splice(i, 1);
          return;
        }
      }
    });
  }

  send(msg: Control): void {
    this.worker.postMessage(msg);
  }

  /** Tells the thread to close its sockets, drain its replicas and end (once). */
  stop(): void {
    if (this.stopSent) return;
    this.stopSent = true;
    this.send({ t: 'stop' });
  }

  private flushSeq = 0;
  private readonly flushWaiters = new Map<number, () => void>();

  /** Resolves once everything the thread sent before it got this call has been handled here. */
  flush(): Promise<void> {
    const seq = ++this.flushSeq;
    const done = new Promise<void>((resolve) => {
      this.flushWaiters.set(seq, resolve);
      void this.exited.then(() => resolve());
    });
    this.send({ t: 'flush', seq });
    return done;
  }

  flushed(seq: number): void {
    this.flushWaiters.get(seq)?.();
    this.flushWaiters.delete(seq);
  }

  /** The next control reply `accept` takes (undefined if the thread ends first). */
  next<T extends ControlReply>(accept: (msg: ControlReply) => msg is T): Promise<T | undefined> {
    return new Promise((resolve) => {
      this.waiters.push((msg) => {
        if (!accept(msg)) return false;
        resolve(msg);
        return true;
      });
      void this.exited.then(() => resolve(undefined));
    });
  }
}

export class IoHub extends EventEmitter {
  private threads: IoThread[] = [];
  private boundPort = 0;
  private stopping = false;
  private readonly detach: (() => void)[] = [];
  /** Counts the catalogs sent; each thread says which it has applied. */
  private generation = 0;
  private syncWaiters: { generation: number; resolve: () => void }[] = [];
  /** Whether I/O threads may answer inline models themselves (UMBRA_IO_LOCAL=0 turns it off, to compare). */
  private readonly local = process.env.UMBRA_IO_LOCAL !== '0';

  constructor(private readonly core: Umbra, private readonly api: Api, private readonly options: IoHubOptions) {
    super();
  }

  /**
   * The core's API as every caller must see it while threads route requests by the catalog: a
   * call that changed what they route by (a load, an unload, a traffic policy) returns once every
   * thread routes by the change, so the caller's next request, on any connection, sees it. The
   * threads' own API calls come through here, and so do the core thread's own connections where
   * it reads beside the threads.
   */
  readonly routedApi: ApiHandler = {
    handle: async (req: ApiRequest): Promise<ApiReply> => {
      const before = this.generation;
      const reply = await this.api.handle(req);
      if (this.generation !== before) await this.synced();
      return reply;
    },
    earlyReply: (method, path, headers) => this.api.earlyReply(method, path, headers),
  };

  get port(): number {
    return this.boundPort;
  }

  get size(): number {
    return this.threads.length;
  }

  /** OS thread ids of the I/O threads (for per-thread CPU accounting). */
  get threadIds(): number[] {
    return this.threads.map((t) => t.tid);
  }

  /** Each live thread's OS id and the requests it has handed over. */
  threadStats(): { tid: number; requests: number }[] {
    return this.threads.map((t) => ({ tid: t.tid, requests: t.requests }));
  }

  /**
   * Starts every thread on one port. uWebSockets.js shares a port between listeners only when it
   * is named (port 0 binds exclusively), so for port 0 a free port is found first; should another
   * process take it in between, another one is tried.
   */
  async start(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const port = this.options.port === 0 ? await freePort(this.options.host) : this.options.port;
      this.boundPort = port;
      const started = await Promise.allSettled(Array.from({ length: this.options.threads }, () => this.spawn(port)));
      const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (!failed) {
        process.on('exit', this.closeSocketsAtExit);
        const refresh = () => this.broadcastCatalog();
        for (const event of ['loaded', 'unloaded', 'load-failed'] as const) {
          this.core.manager.on(event, refresh);
          this.detach.push(() => this.core.manager.off(event, refresh));
        }
        // A traffic policy taking or releasing a model, a store attached: routing changed.
        this.detach.push(this.core.hooks.onChange(refresh));
        // A shared-memory region registered or unregistered: the call returns once every thread has the new list.
        this.detach.push(this.core.sharedMemory.onChange(() => {
          this.broadcastCatalog();
          return this.synced();
        }));
        // Requests the threads answered themselves reach the hooks in the threads' messages.
        this.detach.push(this.core.addEventSource(() => Promise.all(this.threads.map((t) => t.flush())).then(() => undefined)));
        return;
      }
      await this.close();
      this.stopping = false;
      if (this.options.port !== 0 || attempt >= 4) throw failed.reason;
    }
  }

  private async spawn(port: number): Promise<number> {
    const channel = new MessageChannel();
    const data: IoThreadData = { host: this.options.host, port, http: this.options.http, stream: this.options.stream, data: channel.port2 };
    const worker = new Worker(new URL('./io-thread.js', import.meta.url), threadOptions({ workerData: data, transferList: [channel.port2] }));
    const thread = new IoThread(worker, channel.port1);
    channel.port1.on('message', (envelope: Envelope<ToCore>) => this.serve(thread, envelope));
    // Listed at once, so every catalog sent from now on reaches it.
    this.threads.push(thread);
    thread.send({ t: 'catalog', catalog: buildCatalog(this.core, this.local), generation: this.generation });
    worker.on('error', (err) => process.stderr.write(`umbra: I/O thread error: ${err.message}\n`));
    worker.on('message', (msg: ControlReply) => {
      if (msg.t === 'catalog-applied') {
        thread.applied = Math.max(thread.applied, msg.generation);
        this.checkSynced();
      } else if (msg.t === 'stream-event') {
        if (msg.event === 'pause') this.emit('pause');
        else this.emit('close', { code: msg.code, reason: msg.reason });
      }
    });
    const started = await thread.next((m): m is Extract<ControlReply, { t: 'listening' | 'listen-failed' }> => m.t === 'listening' || m.t === 'listen-failed');
    if (!started || started.t === 'listen-failed') {
      this.threads.splice(this.threads.indexOf(thread), 1);
      await thread.exited;
      channel.port1.close();
      throw new Error(started?.t === 'listen-failed' ? started.message : 'an I/O thread ended before it listened');
    }
    thread.tid = started.tid;
    this.core.threads.add('io', started.tid);
    void thread.exited.then((code) => this.onExit(thread, code));
    return started.port;
  }

  /**
   * A worker whose event loop still holds uWS handles when it ends aborts the whole process
   * (node's "uv_loop_close() while having open handles"): so did process.exit() in a process that
   * embeds a running server, or one whose drain left a thread behind. The 'exit' event comes
   * before node ends the workers, and their own event loops still run: each live thread is told
   * to close its sockets, and this thread waits (at most a second in all) until they have.
   */
  private readonly closeSocketsAtExit = (): void => {
    const live = this.threads.filter((t) => !t.ended);
    if (live.length === 0) return;
    const signal = new Int32Array(new SharedArrayBuffer(4 * live.length));
    live.forEach((t, index) => t.send({ t: 'exit', signal, index }));
    const deadline = Date.now() + 1000;
    for (let i = 0; i < live.length; i++) Atomics.wait(signal, i, 0, Math.max(0, deadline - Date.now()));
  };

  /** A thread that died takes its own connections with it; its requests are cancelled and a new thread takes its place. */
  private onExit(thread: IoThread, code: number): void {
    const i = this.threads.indexOf(thread);
    if (i >= 0) this.threads.splice(i, 1);
    this.core.threads.remove(thread.tid);
    this.checkSynced();
    for (const c of thread.running.values()) c.abort();
    thread.running.clear();
    for (const stop of thread.streams.values()) stop();
    thread.streams.clear();
    thread.data.close();
    if (this.stopping) return;
    this.core.threads.replaced('io');
    process.stderr.write(`umbra: an I/O thread ended (exit code ${code}); starting another\n`);
    this.spawn(this.boundPort).then(() => this.emit('replaced'), (err: Error) => process.stderr.write(`umbra: could not replace the I/O thread: ${err.message}\n`));
  }

  private broadcastCatalog(): void {
    const catalog = buildCatalog(this.core, this.local);
    this.generation += 1;
    for (const t of this.threads) t.send({ t: 'catalog', catalog, generation: this.generation });
  }

  /** Resolves once every thread has applied the newest catalog (a thread that ends counts as done). */
  private synced(): Promise<void> {
    if (this.threads.every((t) => t.applied >= this.generation)) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push({ generation: this.generation, resolve }));
  }

  private checkSynced(): void {
    if (this.syncWaiters.length === 0) return;
    const low = Math.min(...this.threads.map((t) => t.applied));
    this.syncWaiters = this.syncWaiters.filter((w) => {
      if (low < w.generation) return true;
      w.resolve();
      return false;
    });
  }

  private serve(thread: IoThread, envelope: Envelope<ToCore>): void {
    const slab = Outbox.source(envelope);
    for (const msg of thread.inbox.open(envelope)) {
      // Requests handed over, and requests the thread answered itself (their events).
      if (msg.t === 'infer' || msg.t === 'body' || msg.t === 'api' || msg.t === 'event' || msg.t === 'refused') thread.requests += 1;
      switch (msg.t) {
        case 'infer': this.infer(thread, msg, slab); break;
        case 'body': this.inferBody(thread, msg, slab); break;
        case 'api': this.apiRequest(thread, msg, slab); break;
        case 'cancel': this.cancel(thread, msg.id); break;
        case 'event': this.core.emitEvent(eventFromWire(msg.event, slab)); break;
        case 'refused': this.core.refusedElsewhere(msg.model, msg.version, msg.role, contextOf(msg.context), errorFromWire(msg.error)); break;
        case 'ids': thread.outbox.push({ t: 'ids', id: msg.id, start: this.idBlock(msg.count) }); break;
        case 'flushed': thread.flushed(msg.seq); break;
      }
    }
  }

  /** Sequence numbers for ids an I/O thread assigns; none when the core assigns no ids. */
  private idBlock(count: number): number {
    return this.core.ids ? this.core.ids.reserve(count) : -1;
  }

  private cancel(thread: IoThread, id: number): void {
    thread.running.get(id)?.abort();
    const stop = thread.streams.get(id);
    if (stop) {
      thread.streams.delete(id);
      stop();
    }
  }

  private track(thread: IoThread, id: number): Cancellation {
    const cancellation = new Cancellation();
    thread.running.set(id, cancellation);
    return cancellation;
  }

  private fail(thread: IoThread, id: number, err: unknown): void {
    thread.running.delete(id);
    thread.outbox.push(err instanceof SignatureChanged ? { t: 'retry', id } : { t: 'err', id, error: wireError(err) });
  }

  private infer(thread: IoThread, msg: Extract<ToCore, { t: 'infer' }>, slab: SlabSource): void {
    const signal = this.track(thread, msg.id);
    const fp = msg.fp;
    const options: Parameters<Umbra['infer']>[3] = { context: contextOf(msg.context), signal, accepts: (sig) => signatureFingerprint(sig) === fp };
    if (msg.receivedAt !== undefined) options.receivedAt = msg.receivedAt;
    this.core.infer(msg.model, msg.version, unpackRequest(msg.request, slab), options).then((r) => {
      thread.running.delete(msg.id);
      thread.outbox.push({ t: 'ok', id: msg.id, response: packResponse(r.response, thread.outbox.slab), timing: r.timing });
    }, (err: unknown) => this.fail(thread, msg.id, err));
  }

  private inferBody(thread: IoThread, msg: Extract<ToCore, { t: 'body' }>, slab: SlabSource): void {
    const signal = this.track(thread, msg.id);
    const options: Parameters<Umbra['inferBody']>[4] = { context: contextOf(msg.context), signal };
    if (msg.receivedAt !== undefined) options.receivedAt = msg.receivedAt;
    this.core.inferBody(msg.model, msg.version, unpackBody(msg.body, slab), msg.headerLength, options).then((r) => {
      thread.running.delete(msg.id);
      thread.outbox.push({ t: 'ok', id: msg.id, response: packResponse(r.response, thread.outbox.slab), timing: r.timing, binaryOutputs: r.binaryOutputs });
    }, (err: unknown) => this.fail(thread, msg.id, err));
  }

  private apiRequest(thread: IoThread, msg: Extract<ToCore, { t: 'api' }>, slab: SlabSource): void {
    const req: ApiRequest = { method: msg.method, path: msg.path, query: msg.query, headers: msg.headers, body: unpackBody(msg.body, slab) };
    if (msg.remoteAddress !== undefined) req.remoteAddress = msg.remoteAddress;
    void this.routedApi.handle(req).then((reply) => {
      const out: Extract<ToIo, { t: 'reply' }> = { t: 'reply', id: msg.id, status: reply.status, headers: reply.headers };
      if (typeof reply.body === 'string') out.text = reply.body;
      else out.bytes = thread.outbox.slab.addBody(reply.body);
      if (reply.stream) out.stream = true;
      thread.outbox.push(out);
      if (!reply.stream) return;
      let open = true;
      const end = () => {
        if (!open) return;
        open = false;
        thread.streams.delete(msg.id);
        thread.outbox.push({ t: 'end', id: msg.id });
      };
      const stop = reply.stream.open((text) => {
        if (open) thread.outbox.push({ t: 'chunk', id: msg.id, text });
      }, end);
      if (open) {
        thread.streams.set(msg.id, () => {
          open = false;
          stop();
        });
      } else stop();
    });
  }

  /** Every thread stops accepting at once, answers what it has, and says so; bounded by `deadline`. */
  async drain(deadline: Promise<void>): Promise<void> {
    const drained = this.threads.map((t) => {
      const done = t.next((m): m is Extract<ControlReply, { t: 'drained' }> => m.t === 'drained');
      t.send({ t: 'drain' });
      return done;
    });
    await Promise.race([Promise.all(drained), deadline]);
  }

  /**
   * The drain's deadline passed: every thread answers what it has not answered (503), and says so.
   * Its stop follows at once, taken once the answers are written (a thread takes its messages in
   * order): one still running a batch, which answers neither, does not hold back the others' stop
   * for the whole grace.
   */
  async cutOff(drainSeconds: number): Promise<void> {
    // A thread that ends from here on is not replaced.
    this.stopping = true;
    await Promise.all(this.threads.map((t) => {
      const done = t.next((m): m is Extract<ControlReply, { t: 'cut-off' }> => m.t === 'cut-off');
      t.send({ t: 'deadline', drainSeconds });
      t.stop();
      return done;
    }));
  }

  /**
   * Closes every thread's sockets and waits for the threads to end: each first drains its inline
   * model replicas, and a batch running there cannot be interrupted. With `bound`, a thread not
   * ended when it resolves is not waited for (the log names it and its replicas): it ends by itself
   * once its batch is done, or with the process.
   */
  async close(bound?: Promise<void>): Promise<void> {
    this.stopping = true;
    for (const d of this.detach.splice(0)) d();
    const threads = [...this.threads];
    for (const t of threads) t.stop();
    const ended = Promise.all(threads.map((t) => t.exited));
    void ended.then(() => process.off('exit', this.closeSocketsAtExit));
    if (!bound) {
      await ended;
      return;
    }
    await Promise.race([ended, bound]);
    const left = threads.filter((t) => !t.ended);
    if (left.length === 0) return;
    const replicas = Object.keys(buildCatalog(this.core, this.local).replicas);
    for (const t of left) {
      process.stderr.write(`umbra: drain: I/O thread ${t.tid} had not ended when the drain's time was up (its inline model replicas: ${replicas.length > 0 ? replicas.join(', ') : 'none'}, a batch of which may still be running); not waited for, it ends once that batch is done or with the process\n`);
    }
  }


  /** Each thread's stats reply (undefined from a thread that ended meanwhile). */
  private threadReplies(): Promise<(Extract<ControlReply, { t: 'stats' }> | undefined)[]> {
    return Promise.all(this.threads.map((t) => {
      const reply = t.next((m): m is Extract<ControlReply, { t: 'stats' }> => m.t === 'stats');
      t.send({ t: 'stats' });
      return reply;
    }));
  }

  /** Open WebSocket connections and their requests, over every thread. */
  async streamStats(): Promise<StreamStats> {
    return sumStreamStats(await this.threadReplies());
  }

  /** The queues of the threads' replicas of inline versions, summed by "model/version". */
  async replicaQueues(): Promise<Record<string, QueueCounts>> {
    return sumQueues((await this.threadReplies()).map((r) => r?.queues ?? {}));
  }
}

/** A port no one listens on now, as the kernel picks one for port 0. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

function eventFromWire(e: PackedEvent, slab: SlabSource): InferEvent {
  const event: InferEvent = { model: e.model, version: e.version, role: e.role, outcome: e.outcome, context: contextOf(e.context), durationMs: e.durationMs };
  if (e.request) event.request = unpackRequest(e.request, slab);
  if (e.response) event.response = unpackResponse(e.response, slab);
  if (e.error) event.error = errorFromWire(e.error);
  if (e.timing) event.timing = e.timing;
  return event;
}

function contextOf(wire: WireContext): RequestContext {
  const context: RequestContext = {};
  if (wire.routingKey !== undefined) context.routingKey = wire.routingKey;
  if (wire.headers !== undefined) context.headers = wire.headers;
  if (wire.transport !== undefined) context.transport = wire.transport;
  return context;
}
