// The text form of one turn's messages. Most of what crosses between an I/O thread and the core's
// thread is three kinds of message, once per request: 'infer' (a parsed request for the core),
// 'ok' (its answer) and 'event' (a request the thread answered itself, for monitoring). As plain
// JSON each is an object graph of ~700 bytes, mostly the same keys and the same strings (model,
// version, tensor names, header names) again and again, and JSON.parse of it was a third of what
// the core's thread spent per request. Here those three travel as arrays: repeated strings once
// per envelope in a table (the sender pays the lookups, the core only indexes), measured times in
// a Float64Array (exact, and no double printed or read back). Every other message goes as it is.
// Decoding gives back exactly the objects JSON would have, so both ends read messages as before.
import type { Outcome, TrafficRole } from '../../core/hooks.js';
import type { InferTiming } from '../../execution/types.js';
import type { Tensor } from '../../protocol/types.js';
import { StringTable as Strings } from '../../string-table.js';
import type { PackedEvent, PackedRequest, PackedResponse, PackedTensor, WireContext } from './wire.js';

/** One envelope's text and its numbers. */
export interface CompactText {
  json: string;
  nums: Float64Array | undefined;
}

const OTHER = 0;
const EVENT = 1;
const INFER = 2;
const OK = 3;

type Msg = { t: string } & Record<string, unknown>;

/** Encodes one turn's messages (each of them JSON-faithful: see wire.ts). */
export function encodeMessages(msgs: readonly unknown[]): CompactText {
  const strings = new Strings();
  const nums: number[] = [];
  const out: unknown[] = [strings.list];
  for (const m of msgs as Msg[]) {
    switch (m.t) {
      case 'event': out.push(encodeEvent(m.event as PackedEvent, strings, nums)); break;
      case 'infer': out.push(encodeInfer(m as never, strings, nums)); break;
      case 'ok':
        // 'all' / 'none' are strings; a Set is not JSON-faithful and never reaches here.
        if (m.binaryOutputs === undefined || typeof m.binaryOutputs === 'string') {
          out.push([OK, m.id, encodeResponse(m.response as PackedResponse, strings), encodeTiming(m.timing as InferTiming, nums), m.binaryOutputs === undefined ? -1 : strings.id(m.binaryOutputs)]);
          break;
        }
        out.push([OTHER, m]);
        break;
      default: out.push([OTHER, m]);
    }
  }
  return { json: JSON.stringify(out), nums: nums.length > 0 ? new Float64Array(nums) : undefined };
}

/** The messages `encodeMessages` was given, as JSON would have given them back. */
export function decodeMessages<M>(json: string, nums: Float64Array | undefined): M[] {
  const root = JSON.parse(json) as unknown[];
  const s = root[0] as string[];
  const r: Reader = { s, nums: nums ?? EMPTY, n: 0 };
  const msgs: M[] = [];
  for (let i = 1; i < root.length; i++) {
    const a = root[i] as unknown[];
    switch (a[0]) {
      case EVENT: msgs.push({ t: 'event', event: decodeEvent(a, r) } as M); break;
      case INFER: msgs.push(decodeInfer(a, r) as M); break;
      case OK: {
        const msg: Record<string, unknown> = { t: 'ok', id: a[1], response: decodeResponse(a[2] as unknown[], r), timing: decodeTiming(a[3] as number, r) };
        if ((a[4] as number) >= 0) msg.binaryOutputs = s[a[4] as number];
        msgs.push(msg as M);
        break;
      }
      default: msgs.push(a[1] as M);
    }
  }
  return msgs;
}

const EMPTY = new Float64Array(0);

interface Reader {
  s: string[];
  nums: Float64Array;
  /** The next number to read. */
  n: number;
}

function encodeEvent(e: PackedEvent, strings: Strings, nums: number[]): unknown[] {
  nums.push(e.durationMs);
  return [
    EVENT, strings.id(e.model), strings.id(e.version), strings.id(e.role), strings.id(e.outcome), encodeContext(e.context, strings),
    e.request === undefined ? 0 : encodeRequest(e.request, strings),
    e.response === undefined ? 0 : encodeResponse(e.response, strings),
    e.error === undefined ? 0 : e.error,
    e.timing === undefined ? 0 : encodeTiming(e.timing, nums),
  ];
}

function decodeEvent(a: unknown[], r: Reader): PackedEvent {
  const s = r.s;
  const e: PackedEvent = { model: s[a[1] as number]!, version: s[a[2] as number]!, role: s[a[3] as number] as TrafficRole, outcome: s[a[4] as number] as Outcome, context: decodeContext(a[5], s), durationMs: r.nums[r.n++]! };
  if (a[6] !== 0) e.request = decodeRequest(a[6] as unknown[], s);
  if (a[7] !== 0) e.response = decodeResponse(a[7] as unknown[], r);
  if (a[8] !== 0) e.error = a[8] as PackedEvent['error'] & object;
  if (a[9] !== 0) e.timing = decodeTiming(a[9] as number, r);
  return e;
}

type InferMsg = { id: number; model: string; version?: string; fp: string; request: PackedRequest; context: WireContext; receivedAt?: number };

function encodeInfer(m: InferMsg, strings: Strings, nums: number[]): unknown[] {
  const received = m.receivedAt !== undefined;
  if (received) nums.push(m.receivedAt!);
  return [INFER, m.id, strings.id(m.model), m.version === undefined ? -1 : strings.id(m.version), strings.id(m.fp), encodeRequest(m.request, strings), encodeContext(m.context, strings), received ? 1 : 0];
}

function decodeInfer(a: unknown[], r: Reader): Record<string, unknown> {
  const s = r.s;
  const msg: Record<string, unknown> = { t: 'infer', id: a[1], model: s[a[2] as number] };
  if ((a[3] as number) >= 0) msg.version = s[a[3] as number];
  msg.fp = s[a[4] as number];
  msg.request = decodeRequest(a[5] as unknown[], s);
  msg.context = decodeContext(a[6], s);
  if (a[7] === 1) msg.receivedAt = r.nums[r.n++];
  return msg;
}

/** 1 when the four numbers went to `nums`; a timing with other keys than InferTiming's goes as it is. */
function encodeTiming(t: InferTiming, nums: number[]): unknown {
  if (Object.keys(t).length !== 4 || t.queueMs === undefined || t.computeMs === undefined || t.rows === undefined || t.batchRows === undefined) return t;
  nums.push(t.queueMs, t.computeMs, t.rows, t.batchRows);
  return 1;
}

function decodeTiming(a: unknown, r: Reader): InferTiming {
  if (a !== 1) return a as InferTiming;
  const n = r.nums;
  const i = r.n;
  r.n = i + 4;
  return { queueMs: n[i]!, computeMs: n[i + 1]!, rows: n[i + 2]!, batchRows: n[i + 3]! };
}

/** 0 for no context; else [routingKey or null, headers as name/value ids or 0, transport id or -1]. */
function encodeContext(c: WireContext, strings: Strings): unknown {
  if (c.routingKey === undefined && c.headers === undefined && c.transport === undefined) return 0;
  let headers: number[] | 0 = 0;
  if (c.headers !== undefined) {
    headers = [];
    for (const k in c.headers) {
      const v = c.headers[k];
      // JSON leaves out a key holding undefined; so does this.
      if (v !== undefined) headers.push(strings.id(k), strings.id(v));
    }
  }
  return [c.routingKey === undefined ? null : c.routingKey, headers, c.transport === undefined ? -1 : strings.id(c.transport)];
}

function decodeContext(a: unknown, s: string[]): WireContext {
  const c: WireContext = {};
  if (a === 0) return c;
  const [key, h, transport] = a as [string | null, number[] | 0, number];
  if (key !== null) c.routingKey = key;
  if (h !== 0) {
    const headers: Record<string, string> = {};
    for (let i = 0; i < h.length; i += 2) headers[s[h[i]!]!] = s[h[i + 1]!]!;
    c.headers = headers;
  }
  if (transport >= 0) c.transport = s[transport] as WireContext['transport'];
  return c;
}

/** [parameters, inputs, id or null, outputs or null, binaryDataOutput: -1 absent, 0, 1]. */
function encodeRequest(p: PackedRequest, strings: Strings): unknown[] {
  return [p.parameters, p.inputs.map((t) => encodeTensor(t, strings)), p.id === undefined ? null : p.id, p.outputs === undefined ? null : p.outputs, p.binaryDataOutput === undefined ? -1 : p.binaryDataOutput ? 1 : 0];
}

function decodeRequest(a: unknown[], s: string[]): PackedRequest {
  const inputs = a[1] as unknown[];
  const p: PackedRequest = { parameters: a[0] as Record<string, unknown>, inputs: inputs.map((t) => decodeTensor(t, s)) };
  if (a[2] !== null) p.id = a[2] as string;
  if (a[3] !== null) p.outputs = a[3] as PackedRequest['outputs'];
  if (a[4] !== -1) p.binaryDataOutput = a[4] === 1;
  return p;
}

/** [model_name id, model_version id, outputs, id or null, parameters or null]. */
function encodeResponse(p: PackedResponse, strings: Strings): unknown[] {
  return [strings.id(p.model_name), strings.id(p.model_version), p.outputs.map((t) => encodeTensor(t, strings)), p.id === undefined ? null : p.id, p.parameters === undefined ? null : p.parameters];
}

function decodeResponse(a: unknown[], r: Reader): PackedResponse {
  const s = r.s;
  const outputs = a[2] as unknown[];
  const p: PackedResponse = { model_name: s[a[0] as number]!, model_version: s[a[1] as number]!, outputs: outputs.map((t) => decodeTensor(t, s)) };
  if (a[3] !== null) p.id = a[3] as string;
  if (a[4] !== null) p.parameters = a[4] as Record<string, unknown>;
  return p;
}

/** [name id, datatype id, shape, at, length]; a tensor with parameters or strings goes as it is (an object). */
function encodeTensor(t: PackedTensor, strings: Strings): unknown {
  if (t.parameters !== undefined || t.strings !== undefined) return t;
  return [strings.id(t.name), strings.id(t.datatype), t.shape, t.at, t.length];
}

function decodeTensor(a: unknown, s: string[]): PackedTensor {
  if (!Array.isArray(a)) return a as PackedTensor;
  return { name: s[a[0] as number]!, datatype: s[a[1] as number] as Tensor['datatype'], shape: a[2] as number[], at: a[3] as number, length: a[4] as number };
}
