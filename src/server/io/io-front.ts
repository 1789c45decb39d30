// An I/O thread's side of the hop: the InferenceFront the HTTP and WebSocket code call there, and
// the API handler that answers infer routes on the thread (parse, validate, encode) and hands
// every other route to the core's thread.
import { withClassification } from '../../protocol/classification.js';
import type { MessagePort } from 'node:worker_threads';
import { earlyInferRefusal, errorReply, inferRoute, type ApiReply, type ApiRequest } from '../../api/api.js';
import { inferReply } from '../../api/infer-route.js';
import type { BodyInferResult, InferBodyOptions, InferenceFront } from '../../core/front.js';
import { binaryOutputsFor, parseInferRequest, placeSharedOutputs, type ParseInferRequestOptions } from '../../protocol/index.js';
import type { InferRequest } from '../../protocol/types.js';
import type { CatalogView, LocalReplicas } from './catalog.js';
import { outcomeOf, type RequestContext } from '../../core/hooks.js';
import { UmbraError } from '../../errors.js';
import { IdBlock } from '../../core/ids.js';
import type { InferOptions } from '../../execution/types.js';
import {
  Inbox, Outbox, errorFromWire, packRequest, packResponse, unpackBody, unpackResponse, wireContext, wireError,
  type Envelope, type SlabSource, type ToCore, type ToIo,
} from './wire.js';

const faultInjection = process.env.UMBRA_FAULT_INJECTION === '1';

interface Waiting {
  settle(msg: ToIo, slab: SlabSource): void;
}

/** The I/O thread's end of the data channel: numbered requests out, their answers in. */
export class CoreLink {
  readonly outbox: Outbox<ToCore>;
  private readonly waiting = new Map<number, Waiting>();
  private seq = 0;

  constructor(private readonly port: MessagePort) {
    // After the poll phase that read this turn's requests: one message for all of them.
    // Large tensors a request owns go to the core's thread by transfer (src/owned-buffers.ts).
    this.outbox = new Outbox<ToCore>((envelope, transfer) => port.postMessage(envelope, transfer), setImmediate, true);
    const inbox = new Inbox<ToIo>();
    port.on('message', (envelope: Envelope<ToIo>) => {
      const source = Outbox.source(envelope);
      for (const msg of inbox.open(envelope)) {
        const w = this.waiting.get(msg.id);
        if (!w) continue;
        this.waiting.delete(msg.id);
        w.settle(msg, source);
      }
    });
  }

  /** Sends one message built by `build(id)` and waits for its answer. */
  call(build: (id: number) => ToCore, settle: Waiting['settle']): number {
    const id = ++this.seq;
    this.waiting.set(id, { settle });
    this.outbox.push(build(id));
    return id;
  }

  /** Keeps receiving messages for `id` (a streamed answer's chunks) until `forget`. */
  listen(id: number, settle: Waiting['settle']): void {
    const waiter: Waiting = {
      settle: (msg, slab) => {
        // Every answer takes its waiter off the list; this one stays until forgotten.
        this.waiting.set(id, waiter);
        settle(msg, slab);
      },
    };
    this.waiting.set(id, waiter);
  }

  forget(id: number): void {
    this.waiting.delete(id);
  }

  get pending(): number {
    return this.waiting.size;
  }

  close(): void {
    this.port.close();
  }
}

/** Ids asked for at once; a new block is asked for when half of one is left. */
const ID_BLOCK = 16384;

/**
 * inferBody on an I/O thread: parse here when the catalog knows the signature; answer here when
 * the version runs inline and nothing may route the request elsewhere (no hop at all: the hooks
 * get the event afterwards); otherwise run it on the core's thread.
 */
export class RemoteFront implements InferenceFront {
  private ids: IdBlock | undefined;
  private askingIds = false;

  constructor(private readonly link: CoreLink, private readonly catalog: CatalogView, private readonly replicas: LocalReplicas | undefined) {}

  inferBody(model: string, version: string | undefined, body: Uint8Array, headerLength?: number, options: InferBodyOptions = {}): Promise<BodyInferResult> {
    const known = this.catalog.lookup(model, version);
    let request: InferRequest | undefined;
    if (known) {
      const parse: ParseInferRequestOptions = { signature: known.signature };
      if (headerLength !== undefined) parse.headerLength = headerLength;
      if (options.header !== undefined) parse.header = options.header;
      const shm = this.catalog.sharedMemory;
      if (shm !== undefined) parse.sharedMemory = shm;
      try {
        request = parseInferRequest(body, parse);
      } catch {
        // A bad body goes over as it is: the core words the error and counts it, as with one thread.
        request = undefined;
      }
    }
    if (request) {
      const parsed = request;
      const local = this.answerLocally(model, version, parsed, options) ?? this.viaCore(model, version, body, headerLength, options, parsed, known!.fp);
      // Outputs asked for in shared memory are written by the thread that parsed the request.
      const shm = this.catalog.sharedMemory;
      if (shm === undefined || !parsed.outputs?.some((o) => o.sharedMemory !== undefined)) return local;
      return local.then((result) => ({ response: placeSharedOutputs(parsed, result.response, shm), timing: result.timing, binaryOutputs: result.binaryOutputs }));
    }
    return this.viaCore(model, version, body, headerLength, options, request, known?.fp);
  }

  /**
   * Refuses before the body is read where the version the request would run on refuses every
   * request now: this thread's replica of an inline version by its own batcher, any other by the
   * state the core's batcher publishes. The core counts it and its hooks see it.
   */
  refuseEarly(model: string, version: string | undefined, context: RequestContext): UmbraError | undefined {
    const target = this.catalog.target(model, version);
    if (!target) return undefined;
    const replica = this.replicas && this.catalog.localVersion(model, version) ? this.replicas.get(model, target.version) : undefined;
    if (replica) {
      const refusal = replica.refuseEarly();
      if (refusal) {
        this.link.outbox.push({ t: 'event', event: {
          model, version: target.version, role: target.role, outcome: 'rejected', context: wireContext(context, this.catalog.current.headers), error: wireError(refusal), durationMs: 0,
        } });
      }
      return refusal;
    }
    const message = this.catalog.refusal(model, target.version);
    if (message === undefined) return undefined;
    const refusal = new UmbraError('QUEUE_FULL', message, { retryAfter: 1 });
    this.link.outbox.push({ t: 'refused', model, version: target.version, role: target.role, context: wireContext(context, this.catalog.current.headers), error: wireError(refusal) });
    return refusal;
  }

  /** Runs the request on this thread's replica of an inline version, or undefined when it must go to the core. */
  private answerLocally(model: string, version: string | undefined, request: InferRequest, options: InferBodyOptions): Promise<BodyInferResult> | undefined {
    if (!this.replicas) return undefined;
    const target = this.catalog.localVersion(model, version);
    if (!target) return undefined;
    const executor = this.replicas.get(model, target.version);
    if (!executor) return undefined;
    if (!this.assignId(request)) return undefined;
    const startedAt = performance.now();
    const context = wireContext(options.context, this.catalog.current.headers);
    const inferOptions: InferOptions = {};
    if (options.signal) inferOptions.signal = options.signal;
    if (options.receivedAt !== undefined) inferOptions.receivedAt = options.receivedAt;
    return executor.infer(request, inferOptions).then((result) => {
      // After the answer is written (the transport writes in this turn's microtasks): the event
      // leaves with the turn's envelope.
      const slab = this.link.outbox.slab;
      this.link.outbox.push({ t: 'event', event: {
        model, version: target.version, role: target.role, outcome: 'success', context,
        request: packRequest(request, slab, true), response: packResponse(result.response, slab), timing: result.timing, durationMs: performance.now() - startedAt,
      } });
      return { response: withClassification(request, result.response, executor.signature), timing: result.timing, binaryOutputs: binaryOutputsFor(request) };
    }, (err: unknown) => {
      const slab = this.link.outbox.slab;
      this.link.outbox.push({ t: 'event', event: {
        model, version: target.version, role: target.role, outcome: outcomeOf(err), context,
        request: packRequest(request, slab, true), error: wireError(err), durationMs: performance.now() - startedAt,
      } });
      throw err;
    });
  }

  /** An id for a request that brought none, from this thread's block; false when none is left (the core assigns it). */
  private assignId(request: InferRequest): boolean {
    const prefix = this.catalog.current.idPrefix;
    if (prefix === null) return true;
    if (!this.ids || this.ids.prefix !== prefix) this.ids = new IdBlock(prefix);
    const ids = this.ids;
    if (ids.left < ID_BLOCK / 2 && !this.askingIds) {
      this.askingIds = true;
      this.link.call((id) => ({ t: 'ids', id, count: ID_BLOCK }), (msg) => {
        this.askingIds = false;
        if (msg.t === 'ids' && msg.start >= 0 && this.ids === ids) ids.add(msg.start, ID_BLOCK);
      });
    }
    return ids.assign(request);
  }

  private viaCore(model: string, version: string | undefined, body: Uint8Array, headerLength: number | undefined, options: InferBodyOptions, parsed: InferRequest | undefined, fp: string | undefined): Promise<BodyInferResult> {
    let request = parsed;
    return new Promise<BodyInferResult>((resolve, reject) => {
      const context = wireContext(options.context, this.catalog.current.headers);
      const settle = (msg: ToIo, slab: SlabSource): void => {
        if (msg.t === 'ok') {
          const binaryOutputs = request ? binaryOutputsFor(request) : (msg.binaryOutputs ?? 'none');
          resolve({ response: unpackResponse(msg.response, slab), timing: msg.timing, binaryOutputs });
        } else if (msg.t === 'err') {
          reject(errorFromWire(msg.error));
        } else if (msg.t === 'retry') {
          // Routed to a version with another signature: send the body and let the core parse it.
          request = undefined;
          send(sendBody);
        } else {
          reject(new Error(`unexpected answer '${msg.t}' to an inference`));
        }
      };
      const outbox = this.link.outbox;
      const sendParsed = (id: number): ToCore => {
        const msg: ToCore = { t: 'infer', id, model, fp: fp!, request: packRequest(request!, outbox.slab), context };
        if (version !== undefined) msg.version = version;
        if (options.receivedAt !== undefined) msg.receivedAt = options.receivedAt;
        return msg;
      };
      const sendBody = (id: number): ToCore => {
        const msg: ToCore = { t: 'body', id, model, body: outbox.slab.addBody(body), context };
        if (version !== undefined) msg.version = version;
        if (options.receivedAt !== undefined) msg.receivedAt = options.receivedAt;
        if (headerLength !== undefined) msg.headerLength = headerLength;
        return msg;
      };
      const send = (build: (id: number) => ToCore): void => {
        const id = this.link.call(build, settle);
        const signal = options.signal;
        if (signal && !signal.aborted) {
          signal.addEventListener('abort', () => this.link.outbox.push({ t: 'cancel', id }), { once: true });
        }
      };
      send(request ? sendParsed : sendBody);
    });
  }
}

/** The API on an I/O thread: infer routes here, the rest answered by the core's thread. */
export class IoApi {
  constructor(private readonly front: InferenceFront, private readonly link: CoreLink) {}

  /** A refusal given before the body is read (see Api.earlyReply). */
  earlyReply(method: string, path: string, headers: Record<string, string>): ApiReply | undefined {
    return earlyInferRefusal(this.front, method, path, headers);
  }

  handle(req: ApiRequest): Promise<ApiReply> {
    if (faultInjection && req.headers['x-umbra-fault'] === 'io-crash') {
      // Tests only (UMBRA_FAULT_INJECTION=1): this thread fails as a bug would, outside any handler.
      setImmediate(() => {
        throw new Error('injected I/O thread fault');
      });
    }
    const route = req.method === 'POST' ? inferRoute(req.path) : undefined;
    if (route) return inferReply(this.front, req, route.model, route.version).catch(errorReply);
    return new Promise<ApiReply>((resolve) => {
      const outbox = this.link.outbox;
      const id = this.link.call((id) => {
        const msg: Extract<ToCore, { t: 'api' }> = { t: 'api', id, method: req.method, path: req.path, query: req.query, headers: req.headers, body: outbox.slab.addBody(req.body) };
        if (req.remoteAddress !== undefined) msg.remoteAddress = req.remoteAddress;
        return msg;
      }, (msg, slab) => {
        if (msg.t !== 'reply') {
          resolve(errorReply(msg.t === 'err' ? errorFromWire(msg.error) : new Error(`unexpected answer '${msg.t}' to an API request`)));
          return;
        }
        // Copied out of the slab, so the reply does not keep every answer of its envelope alive.
        const body = msg.text ?? Buffer.from(unpackBody(msg.bytes!, slab));
        const reply: ApiReply = { status: msg.status, headers: msg.headers, body };
        if (msg.stream) reply.stream = this.relay(id);
        resolve(reply);
      });
    });
  }

  /**
   * A streamed answer's chunks, relayed from the core's thread. They are listened for at once
   * (they may come in the same message as the answer's head) and kept until the transport opens
   * the stream.
   */
  private relay(id: number): NonNullable<ApiReply['stream']> {
    const early: string[] = [];
    let ended = false;
    let sink: { write(chunk: string): void; end(): void } | undefined;
    this.link.listen(id, (msg) => {
      if (msg.t === 'chunk') {
        if (sink) sink.write(msg.text);
        else early.push(msg.text);
      } else if (msg.t === 'end') {
        this.link.forget(id);
        ended = true;
        sink?.end();
      }
    });
    return {
      open: (write, end) => {
        sink = { write, end };
        for (const chunk of early.splice(0)) write(chunk);
        if (ended) end();
        return () => {
          if (ended) return;
          ended = true;
          this.link.forget(id);
          this.link.outbox.push({ t: 'cancel', id });
        };
      },
    };
  }
}
