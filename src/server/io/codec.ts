// The binary form of one turn's messages between an I/O thread and the core's thread. Most of what
// crosses is three kinds of message, once per request: 'infer' (a parsed request for the core),
// 'ok' (its answer) and 'event' (a request the thread answered itself, for monitoring). Those are
// written field by field into one ArrayBuffer that is transferred with the turn: numbers as
// doubles (exact, nothing printed or read back), strings as numbers into a dictionary the two ends
// of one link build together. A string is sent once per link, the first time it is used, in the
// envelope that first uses it; after that only its number crosses. Strings a client chooses freely
// (ids, routing keys, header values, parameters as JSON) are never put in the dictionary: they
// travel beside the buffer for that envelope only. The dictionary is bounded (DICTIONARY_LIMIT):
// past it new strings travel the same way, so a client that sends endless new header names costs
// speed, never memory. Every other message, and a hot one holding a value JSON would change (a
// parameter that is NaN or a 64-bit integer), is cloned as it is, in its place in the turn.
//
// Decoding gives back the objects the sender was given (a header holding undefined left out), so
// both ends read messages as before. A link's encoder and decoder must see every envelope, in
// order: a MessagePort keeps order, and a link dies with its thread.
import type { Outcome, TrafficRole } from '../../core/hooks.js';
import type { InferTiming } from '../../execution/types.js';
import type { Tensor } from '../../protocol/types.js';
import type { PackedEvent, PackedRequest, PackedResponse, PackedTensor, WireContext } from './wire.js';

/** One turn's messages as they cross. */
export interface EncodedTurn {
  /** The records, `length` bytes of it. */
  bytes: ArrayBuffer;
  length: number;
  /** Strings new to the link's dictionary, in the order they were numbered. */
  fresh: string[] | undefined;
  /** Strings for this envelope only. */
  loose: string[] | undefined;
  /** Messages cloned as they are. */
  others: unknown[] | undefined;
}

/** Most strings one link's dictionary holds. */
export const DICTIONARY_LIMIT = 4096;

const OTHER = 0;
const EVENT = 1;
const INFER = 2;
const OK = 3;

/** An absent string or field. */
const NONE = -0x80000000;

const HAS_REQUEST = 1;
const HAS_RESPONSE = 2;
const HAS_ERROR = 4;
const HAS_TIMING = 8;

const HAS_KEY = 1;
const HAS_HEADERS = 2;
const HAS_TRANSPORT = 4;

type Msg = { t: string } & Record<string, unknown>;
type InferMsg = { id: number; model: string; version?: string; fp: string; request: PackedRequest; context: WireContext; receivedAt?: number };

/** The sending end of one link. */
export class WireEncoder {
  private readonly ids = new Map<string, number>();
  private buf = new ArrayBuffer(4096);
  private view = new DataView(this.buf);
  private at = 0;
  private fresh: string[] = [];
  private loose: string[] = [];
  private others: unknown[] = [];

  constructor(private readonly limit = DICTIONARY_LIMIT) {}

  /** Encodes one turn; `hot` says whether a hot message may be written (false: clone it). */
  encode(msgs: readonly unknown[], hot: (msg: unknown) => boolean): EncodedTurn {
    // Sized for the turn: about 200 bytes per hot message, so most turns never grow.
    this.buf = new ArrayBuffer(Math.max(256, msgs.length * 256));
    this.view = new DataView(this.buf);
    this.at = 0;
    for (const m of msgs as Msg[]) {
      switch (m.t) {
        case 'event':
          if (hot(m)) {
            this.event(m.event as PackedEvent);
            continue;
          }
          break;
        case 'infer':
          if (hot(m)) {
            this.infer(m as unknown as InferMsg);
            continue;
          }
          break;
        case 'ok':
          // 'all' / 'none' are strings; a Set is cloned.
          if ((m.binaryOutputs === undefined || typeof m.binaryOutputs === 'string') && hot(m)) {
            this.u8(OK);
            this.f64(m.id as number);
            this.response(m.response as PackedResponse);
            this.timing(m.timing as InferTiming);
            if (m.binaryOutputs === undefined) this.i32(NONE);
            else this.key(m.binaryOutputs as string);
            continue;
          }
          break;
      }
      this.u8(OTHER);
      this.i32(this.others.length);
      this.others.push(m);
    }
    const turn: EncodedTurn = {
      bytes: this.buf,
      length: this.at,
      fresh: this.fresh.length > 0 ? this.fresh : undefined,
      loose: this.loose.length > 0 ? this.loose : undefined,
      others: this.others.length > 0 ? this.others : undefined,
    };
    if (turn.fresh) this.fresh = [];
    if (turn.loose) this.loose = [];
    if (turn.others) this.others = [];
    return turn;
  }

  private event(e: PackedEvent): void {
    this.u8(EVENT);
    this.key(e.model);
    this.key(e.version);
    this.key(e.role);
    this.key(e.outcome);
    this.context(e.context);
    const parts = (e.request === undefined ? 0 : HAS_REQUEST) | (e.response === undefined ? 0 : HAS_RESPONSE) | (e.error === undefined ? 0 : HAS_ERROR) | (e.timing === undefined ? 0 : HAS_TIMING);
    this.u8(parts);
    if (e.request !== undefined) this.request(e.request);
    if (e.response !== undefined) this.response(e.response);
    if (e.error !== undefined) this.text(JSON.stringify(e.error));
    if (e.timing !== undefined) this.timing(e.timing);
    this.f64(e.durationMs);
  }

  private infer(m: InferMsg): void {
    this.u8(INFER);
    this.f64(m.id);
    this.key(m.model);
    if (m.version === undefined) this.i32(NONE);
    else this.key(m.version);
    this.key(m.fp);
    this.request(m.request);
    this.context(m.context);
    if (m.receivedAt === undefined) this.u8(0);
    else {
      this.u8(1);
      this.f64(m.receivedAt);
    }
  }

  private context(c: WireContext): void {
    const flags = (c.routingKey === undefined ? 0 : HAS_KEY) | (c.headers === undefined ? 0 : HAS_HEADERS) | (c.transport === undefined ? 0 : HAS_TRANSPORT);
    this.u8(flags);
    if (c.routingKey !== undefined) this.text(c.routingKey);
    if (c.headers !== undefined) {
      const headers = c.headers;
      const countAt = this.at;
      this.i32(0);
      let count = 0;
      for (const k in headers) {
        const v = headers[k];
        // A header holding undefined is no header.
        if (v === undefined) continue;
        this.key(k);
        this.text(v);
        count++;
      }
      this.view.setInt32(countAt, count, true);
    }
    if (c.transport !== undefined) this.key(c.transport);
  }

  private request(p: PackedRequest): void {
    this.json(p.parameters, true);
    this.tensors(p.inputs);
    this.optText(p.id);
    this.json(p.outputs, false);
    this.u8(p.binaryDataOutput === undefined ? 0 : p.binaryDataOutput ? 2 : 1);
  }

  private response(p: PackedResponse): void {
    this.key(p.model_name);
    this.key(p.model_version);
    this.tensors(p.outputs);
    this.optText(p.id);
    this.json(p.parameters, false);
  }

  private tensors(list: PackedTensor[]): void {
    this.i32(list.length);
    for (const t of list) {
      // A tensor with parameters or strings (BYTES) goes whole, as JSON.
      if (t.parameters !== undefined || t.strings !== undefined) {
        this.u8(1);
        this.text(JSON.stringify(t));
        continue;
      }
      // 2: its data is in a buffer moved with the envelope (its index follows).
      this.u8(t.moved === undefined ? 0 : 2);
      this.key(t.name);
      this.key(t.datatype);
      const shape = t.shape;
      this.i32(shape.length);
      for (let i = 0; i < shape.length; i++) this.f64(shape[i]!);
      this.f64(t.at);
      this.f64(t.length);
      if (t.moved !== undefined) this.i32(t.moved);
    }
  }

  /** The four numbers of an InferTiming; a timing with other keys goes as JSON. */
  private timing(t: InferTiming): void {
    if (Object.keys(t).length === 4 && t.queueMs !== undefined && t.computeMs !== undefined && t.rows !== undefined && t.batchRows !== undefined) {
      this.u8(0);
      this.f64(t.queueMs);
      this.f64(t.computeMs);
      this.f64(t.rows);
      this.f64(t.batchRows);
      return;
    }
    this.u8(1);
    this.text(JSON.stringify(t));
  }

  /** A value as JSON text; NONE for undefined, and for an empty plain object when `emptyIsNone`. */
  private json(value: unknown, emptyIsNone: boolean): void {
    if (value === undefined || (emptyIsNone && isEmptyObject(value))) this.i32(NONE);
    else this.text(JSON.stringify(value));
  }

  /** A string from a small set (names, versions, datatypes): numbered once per link. */
  private key(s: string): void {
    let id = this.ids.get(s);
    if (id === undefined) {
      if (this.ids.size >= this.limit) {
        this.text(s);
        return;
      }
      id = this.ids.size;
      this.ids.set(s, id);
      this.fresh.push(s);
    }
    this.i32(id);
  }

  /** A string for this envelope only. */
  private text(s: string): void {
    this.loose.push(s);
    this.i32(-this.loose.length);
  }

  private optText(s: string | undefined): void {
    if (s === undefined) this.i32(NONE);
    else this.text(s);
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.byteLength) return;
    let size = this.buf.byteLength * 2;
    while (size < this.at + n) size *= 2;
    const grown = new ArrayBuffer(size);
    new Uint8Array(grown).set(new Uint8Array(this.buf, 0, this.at));
    this.buf = grown;
    this.view = new DataView(grown);
  }

  private u8(v: number): void {
    this.room(1);
    this.view.setUint8(this.at, v);
    this.at += 1;
  }

  private i32(v: number): void {
    this.room(4);
    this.view.setInt32(this.at, v, true);
    this.at += 4;
  }

  private f64(v: number): void {
    this.room(8);
    this.view.setFloat64(this.at, v, true);
    this.at += 8;
  }
}

/** The receiving end of one link. */
export class WireDecoder {
  private readonly dict: string[] = [];
  private view = new DataView(new ArrayBuffer(0));
  private at = 0;
  private loose: string[] = [];

  decode<M>(turn: EncodedTurn): M[] {
    if (turn.fresh) for (const s of turn.fresh) this.dict.push(s);
    this.view = new DataView(turn.bytes, 0, turn.length);
    this.at = 0;
    this.loose = turn.loose ?? [];
    const others = turn.others ?? [];
    const msgs: M[] = [];
    while (this.at < turn.length) {
      switch (this.u8()) {
        case EVENT: msgs.push({ t: 'event', event: this.event() } as M); break;
        case INFER: msgs.push(this.infer() as M); break;
        case OK: {
          const msg: Record<string, unknown> = { t: 'ok', id: this.f64(), response: this.response(), timing: this.timing() };
          const binaryOutputs = this.optStr();
          if (binaryOutputs !== undefined) msg.binaryOutputs = binaryOutputs;
          msgs.push(msg as M);
          break;
        }
        case OTHER: msgs.push(others[this.i32()] as M); break;
        default: throw new Error('a message the I/O hop does not know (the two ends disagree)');
      }
    }
    this.loose = [];
    return msgs;
  }

  private event(): PackedEvent {
    const model = this.str();
    const version = this.str();
    const role = this.str() as TrafficRole;
    const outcome = this.str() as Outcome;
    const context = this.context();
    const parts = this.u8();
    const e: PackedEvent = { model, version, role, outcome, context, durationMs: 0 };
    if (parts & HAS_REQUEST) e.request = this.request();
    if (parts & HAS_RESPONSE) e.response = this.response();
    if (parts & HAS_ERROR) e.error = JSON.parse(this.str()) as PackedEvent['error'] & object;
    if (parts & HAS_TIMING) e.timing = this.timing();
    e.durationMs = this.f64();
    return e;
  }

  private infer(): Record<string, unknown> {
    const msg: Record<string, unknown> = { t: 'infer', id: this.f64(), model: this.str() };
    const version = this.optStr();
    if (version !== undefined) msg.version = version;
    msg.fp = this.str();
    msg.request = this.request();
    msg.context = this.context();
    if (this.u8() === 1) msg.receivedAt = this.f64();
    return msg;
  }

  private context(): WireContext {
    const flags = this.u8();
    const c: WireContext = {};
    if (flags & HAS_KEY) c.routingKey = this.str();
    if (flags & HAS_HEADERS) {
      const headers: Record<string, string> = {};
      const count = this.i32();
      for (let i = 0; i < count; i++) {
        const name = this.str();
        headers[name] = this.str();
      }
      c.headers = headers;
    }
    if (flags & HAS_TRANSPORT) c.transport = this.str() as WireContext['transport'];
    return c;
  }

  private request(): PackedRequest {
    const parameters = this.json() ?? {};
    const p: PackedRequest = { parameters: parameters as Record<string, unknown>, inputs: this.tensors() };
    const id = this.optStr();
    if (id !== undefined) p.id = id;
    const outputs = this.json();
    if (outputs !== undefined) p.outputs = outputs as PackedRequest['outputs'];
    const binary = this.u8();
    if (binary !== 0) p.binaryDataOutput = binary === 2;
    return p;
  }

  private response(): PackedResponse {
    const p: PackedResponse = { model_name: this.str(), model_version: this.str(), outputs: this.tensors() };
    const id = this.optStr();
    if (id !== undefined) p.id = id;
    const parameters = this.json();
    if (parameters !== undefined) p.parameters = parameters as Record<string, unknown>;
    return p;
  }

  private tensors(): PackedTensor[] {
    const n = this.i32();
    const list: PackedTensor[] = [];
    for (let i = 0; i < n; i++) {
      const tag = this.u8();
      if (tag === 1) {
        list.push(JSON.parse(this.str()) as PackedTensor);
        continue;
      }
      const name = this.str();
      const datatype = this.str() as Tensor['datatype'];
      const rank = this.i32();
      const shape: number[] = [];
      for (let d = 0; d < rank; d++) shape.push(this.f64());
      const t: PackedTensor = { name, datatype, shape, at: this.f64(), length: this.f64() };
      if (tag === 2) t.moved = this.i32();
      list.push(t);
    }
    return list;
  }

  private timing(): InferTiming {
    if (this.u8() === 1) return JSON.parse(this.str()) as InferTiming;
    return { queueMs: this.f64(), computeMs: this.f64(), rows: this.f64(), batchRows: this.f64() };
  }

  private json(): unknown {
    const s = this.optStr();
    return s === undefined ? undefined : JSON.parse(s);
  }

  private str(): string {
    const code = this.i32();
    const s = code >= 0 ? this.dict[code] : this.loose[-code - 1];
    if (s === undefined) throw new Error('a string the I/O hop does not know (the two ends disagree)');
    return s;
  }

  private optStr(): string | undefined {
    const code = this.view.getInt32(this.at, true);
    if (code !== NONE) return this.str();
    this.at += 4;
    return undefined;
  }

  private u8(): number {
    const v = this.view.getUint8(this.at);
    this.at += 1;
    return v;
  }

  private i32(): number {
    const v = this.view.getInt32(this.at, true);
    this.at += 4;
    return v;
  }

  private f64(): number {
    const v = this.view.getFloat64(this.at, true);
    this.at += 8;
    return v;
  }
}

function isEmptyObject(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Object.getPrototypeOf(v) !== Object.prototype) return false;
  for (const _ in v) return false;
  return true;
}
