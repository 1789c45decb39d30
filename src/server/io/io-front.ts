// An I/O thread's side of the hop: the InferenceFront the HTTP and WebSocket code call there, and
// the API handler that answers infer routes on the thread (parse, validate, encode) and hands
// every other route to the core's thread.
import type { MessagePort } from 'node:worker_threads';
import { errorReply, splitPath, type ApiReply, type ApiRequest } from '../../api/api.js';
import { inferReply } from '../../api/infer-route.js';
import type { BodyInferResult, InferBodyOptions, InferenceFront } from '../../core/front.js';
import { binaryOutputsFor, parseInferRequest, type ParseInferRequestOptions } from '../../protocol/index.js';
import type { InferRequest } from '../../protocol/types.js';
import type { CatalogView } from './catalog.js';
import {
  Outbox, errorFromWire, packRequest, unpackBody, unpackResponse, wireContext,
  type Envelope, type ToCore, type ToIo,
} from './wire.js';

const faultInjection = process.env.UMBRA_FAULT_INJECTION === '1';

interface Waiting {
  settle(msg: ToIo, slab: ArrayBuffer | undefined): void;
}

/** The I/O thread's end of the data channel: numbered requests out, their answers in. */
export class CoreLink {
  readonly outbox: Outbox<ToCore>;
  private readonly waiting = new Map<number, Waiting>();
  private seq = 0;

  constructor(private readonly port: MessagePort) {
    // After the poll phase that read this turn's requests: one message for all of them.
    this.outbox = new Outbox<ToCore>((envelope, transfer) => port.postMessage(envelope, transfer), setImmediate);
    port.on('message', (envelope: Envelope<ToIo>) => {
      for (const msg of envelope.msgs) {
        const w = this.waiting.get(msg.id);
        if (!w) continue;
        this.waiting.delete(msg.id);
        w.settle(msg, envelope.slab);
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

  get pending(): number {
    return this.waiting.size;
  }

  close(): void {
    this.port.close();
  }
}

/** inferBody on an I/O thread: parse here when the catalog knows the signature, run on the core's thread. */
export class RemoteFront implements InferenceFront {
  constructor(private readonly link: CoreLink, private readonly catalog: CatalogView) {}

  inferBody(model: string, version: string | undefined, body: Uint8Array, headerLength?: number, options: InferBodyOptions = {}): Promise<BodyInferResult> {
    const known = this.catalog.lookup(model, version);
    let request: InferRequest | undefined;
    if (known) {
      const parse: ParseInferRequestOptions = { signature: known.signature };
      if (headerLength !== undefined) parse.headerLength = headerLength;
      if (options.header !== undefined) parse.header = options.header;
      try {
        request = parseInferRequest(body, parse);
      } catch {
        // A bad body goes over as it is: the core words the error and counts it, as with one thread.
        request = undefined;
      }
    }
    return new Promise<BodyInferResult>((resolve, reject) => {
      const context = wireContext(options.context);
      const settle = (msg: ToIo, slab: ArrayBuffer | undefined): void => {
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
        const msg: ToCore = { t: 'infer', id, model, fp: known!.fp, request: packRequest(request!, outbox.slab), context };
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
      this.link.call((id) => {
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
        resolve({ status: msg.status, headers: msg.headers, body });
      });
    });
  }
}

/** /v2/models/{m}/infer and /v2/models/{m}/versions/{v}/infer; undefined for anything else (or a malformed path). */
function inferRoute(path: string): { model: string; version?: string } | undefined {
  if (!path.startsWith('/v2/models/') || !path.endsWith('/infer')) return undefined;
  let segments: string[];
  try {
    segments = splitPath(path);
  } catch {
    return undefined;
  }
  if (segments.length === 4 && segments[3] === 'infer') return { model: segments[2]! };
  if (segments.length === 6 && segments[3] === 'versions' && segments[5] === 'infer') return { model: segments[2]!, version: segments[4]! };
  return undefined;
}
