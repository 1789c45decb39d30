// Mutated and truncated protobuf against a running Umbra gRPC port: seeded edits of valid
// requests (ModelInfer typed and raw, ModelStreamInfer, the control calls), sent as raw gRPC
// frames so no client library tidies them up. Counts every status; INTERNAL or UNKNOWN for a
// malformed message, or a server that stops answering, is a failure. Then hostileRun's HTTP/2-level
// cases (content-type, method, paths, length prefixes, compression flags, resets, broken frames).
//
//   node bench/grpc-fuzz.mjs [--messages 100000] [--seed 1] [--repo models/repository]
//
// Starts `umbra serve` as a child process (a crash shows as its exit) unless --address is given.
// test/grpc-fuzz.test.ts runs the same fuzzRun, bounded, in npm test.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect as connectHttp2 } from 'node:http2';
import { connect as connectTcp } from 'node:net';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { GrpcChannel } from '../dist/client/grpc-channel.js';
import { encodeInferRequest } from '../dist/protocol/proto/infer-messages.js';
import { INFERENCE_SERVICE, HEALTH_SERVICE, protoMethod } from '../dist/protocol/proto/files.js';
import { seededRandom } from '../dist/random.js';

const INFER = `/${INFERENCE_SERVICE}/ModelInfer`;

/** Valid requests to mutate: [path, bytes]. */
function seeds() {
  const pixels = Float32Array.from({ length: 64 }, (_, i) => i % 16);
  const digits = (extra) => encodeInferRequest({
    modelName: 'digits', modelVersion: '', id: 'seed', inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], ...extra.input }],
    outputs: extra.outputs ?? [], rawInputContents: extra.raw ?? [], parameters: extra.parameters,
  });
  const control = (service, method, request) => [`/${service}/${method}`, protoMethod(service, method).requestSerialize(request)];
  return [
    [INFER, digits({ raw: [Buffer.from(pixels.buffer)] })],
    [INFER, digits({ input: { contents: { fp32: pixels } } })],
    [INFER, digits({ input: { contents: { fp32: pixels } }, parameters: { priority: 1, timeout: 5_000_000, binary_data_output: true }, outputs: [{ name: 'label', parameters: { binary_data: true } }] })],
    [INFER, encodeInferRequest({ modelName: 'pair', modelVersion: '1', id: 'p', inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 4], contents: { fp32: new Float32Array(4) } }, { name: 'b', datatype: 'FP32', shape: [1, 4], contents: { fp32: new Float32Array(4) } }], outputs: [], rawInputContents: [] })],
    control(INFERENCE_SERVICE, 'ModelMetadata', { name: 'digits', version: '2' }),
    control(INFERENCE_SERVICE, 'ModelReady', { name: 'digits', version: '' }),
    control(INFERENCE_SERVICE, 'ModelStatistics', { name: 'digits', version: '' }),
    control(INFERENCE_SERVICE, 'RepositoryIndex', { repository_name: '', ready: true }),
    control(HEALTH_SERVICE, 'Check', { service: 'digits' }),
  ];
}

/** One seeded edit: flipped bytes, a cut, inserted garbage, a doubled span, or a field with a huge length. */
function mutate(bytes, random) {
  const pick = (n) => Math.floor(random() * n);
  const out = Buffer.from(bytes);
  switch (pick(6)) {
    case 0: for (let e = 1 + pick(4); e > 0; e--) out[pick(out.length)] = pick(256); return out;
    case 1: return out.subarray(0, pick(out.length));
    case 2: {
      const at = pick(out.length + 1);
      return Buffer.concat([out.subarray(0, at), Buffer.from(Array.from({ length: 1 + pick(12) }, () => pick(256))), out.subarray(at)]);
    }
    case 3: {
      const from = pick(out.length);
      const to = Math.min(out.length, from + 1 + pick(24));
      return Buffer.concat([out.subarray(0, to), out.subarray(from, to), out.subarray(to)]);
    }
    case 4: {
      // A length-delimited field claiming far more than the message has, or a varint that never ends.
      const field = 1 + pick(12);
      const tail = pick(2) === 0 ? [(field << 3) | 2, 0xff, 0xff, 0xff, 0x7f] : [(field << 3) | 0, ...Array(11).fill(0x80)];
      return Buffer.concat([out.subarray(0, pick(out.length + 1)), Buffer.from(tail)]);
    }
    default: {
      for (let e = 1 + pick(3); e > 0; e--) out[pick(out.length)] ^= 1 << pick(8);
      return out;
    }
  }
}

/**
 * Sends `messages` mutated messages (`inFlight` at a time, one in ten on a ModelStreamInfer stream),
 * and returns the statuses seen. `bad` lists the INTERNAL/UNKNOWN answers with their details.
 */
export async function fuzzRun({ address, messages, seed = 1, inFlight = 32 }) {
  const random = seededRandom(seed);
  const base = seeds();
  const channel = new GrpcChannel(address);
  await channel.connect();
  const statuses = {};
  const bad = [];
  let streamErrors = 0;
  let streamAnswers = 0;
  const stream = await channel.stream(`/${INFERENCE_SERVICE}/ModelStreamInfer`, (answer) => {
    streamAnswers++;
    if (answer.length > 0 && answer[0] === 0x0a) streamErrors++; // field 1: error_message set
  }, (reply) => {
    if (reply.status !== 0 && reply.status !== 14) bad.push({ path: 'ModelStreamInfer (stream end)', status: reply.status, details: reply.details });
  });
  let sent = 0;
  let streamSent = 0;
  const next = async () => {
    while (sent < messages) {
      sent++;
      const [path, bytes] = base[Math.floor(random() * base.length)];
      const message = mutate(bytes, random);
      if (path === INFER && random() < 0.1) {
        stream.write(message);
        streamSent++;
        continue;
      }
      const reply = await channel.unary(path, message, { deadlineMs: 30_000 });
      statuses[reply.status] = (statuses[reply.status] ?? 0) + 1;
      if (reply.status === 13 || reply.status === 2) bad.push({ path, status: reply.status, details: reply.details, message: message.toString('base64') });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, next));
  stream.end();
  await new Promise((resolve) => {
    if (stream.stream.closed) resolve();
    else stream.stream.once('close', resolve);
  });
  const live = await channel.unary(`/${INFERENCE_SERVICE}/ServerLive`, protoMethod(INFERENCE_SERVICE, 'ServerLive').requestSerialize({}));
  channel.close();
  return { statuses, bad, streamSent, streamAnswers, streamErrors, liveAfter: live.status === 0 };
}

/** One raw HTTP/2 call: `send(stream)` writes what it likes; resolves with the HTTP and gRPC status. */
function rawCall(address, headers, send) {
  return new Promise((resolve) => {
    const session = connectHttp2(`http://${address}`);
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let answer = {};
    stream.on('response', (h) => { answer = { ...h }; });
    stream.on('trailers', (h) => { answer = { ...answer, ...h }; });
    stream.on('data', () => undefined);
    stream.on('error', () => undefined);
    stream.on('close', () => {
      session.close();
      const status = answer['grpc-status'];
      resolve({ http: answer[':status'], grpc: status === undefined ? undefined : Number(status), message: answer['grpc-message'] ? decodeURIComponent(answer['grpc-message']) : '' });
    });
    send(stream);
  });
}

const prefix = (flag, length) => {
  const out = Buffer.alloc(5);
  out[0] = flag;
  out.writeUInt32BE(length, 1);
  return out;
};
const framed = (flag, body) => Buffer.concat([prefix(flag, body.length), body]);

/** Bytes straight onto a TCP connection: resolves once the server closes it (or after `ms`). */
function rawTcp(address, bytes, ms = 2000) {
  return new Promise((resolve) => {
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
    const socket = connectTcp(port, host);
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), ms);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (d) => { received = Buffer.concat([received, d]); });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      // A GOAWAY frame (type 7) among what came back: the server said why it hung up.
      let goaway;
      for (let at = 0; at + 9 <= received.length; at += 9 + received.readUIntBE(at, 3)) {
        if (received[at + 3] === 7 && at + 17 <= received.length) goaway = received.readUInt32BE(at + 13);
      }
      resolve({ closed: true, goaway });
    });
  });
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

/**
 * HTTP/2- and framing-level hostility, one call each: wrong content-type or method, unknown
 * paths, cut and oversized length prefixes, bad compressed flags, resets mid-message, and
 * connections that are not HTTP/2 or send broken frames. Each case has the status it must get;
 * the server must answer ServerLive afterwards.
 */
export async function hostileRun({ address }) {
  const live = protoMethod(INFERENCE_SERVICE, 'ServerLive').requestSerialize({});
  const path = (method) => `/${INFERENCE_SERVICE}/${method}`;
  const cases = [
    ['content-type application/json', 3, () => rawCall(address, { ':path': path('ServerLive'), 'content-type': 'application/json' }, (s) => s.end(framed(0, live)))],
    ['no content-type', 3, () => rawCall(address, { ':path': path('ServerLive'), 'content-type': undefined }, (s) => s.end(framed(0, live)))],
    ['GET instead of POST', 12, () => rawCall(address, { ':path': path('ServerLive'), ':method': 'GET' }, (s) => s.end())],
    ['unknown service', 12, () => rawCall(address, { ':path': '/no.Such/Thing' }, (s) => s.end(framed(0, live)))],
    ['unknown method', 12, () => rawCall(address, { ':path': path('Nope') }, (s) => s.end(framed(0, live)))],
    ['truncated length prefix', 3, () => rawCall(address, { ':path': path('ServerLive') }, (s) => s.end(Buffer.from([0, 0, 0])))],
    ['truncated message', 3, () => rawCall(address, { ':path': path('ModelInfer') }, (s) => s.end(Buffer.concat([prefix(0, 100), Buffer.alloc(10)])))],
    ['length prefix of 4 GiB', 8, () => rawCall(address, { ':path': path('ModelInfer') }, (s) => s.end(prefix(0, 0xffffffff)))],
    ['length prefix past the limit, body never sent', 8, () => rawCall(address, { ':path': path('ModelInfer') }, (s) => s.write(prefix(0, 0x7fffffff)))],
    ['no message on a unary call', 3, () => rawCall(address, { ':path': path('ServerLive') }, (s) => s.end())],
    ['two messages on a unary call', 3, () => rawCall(address, { ':path': path('ServerLive') }, (s) => s.end(Buffer.concat([framed(0, live), framed(0, live)])))],
    ['compressed flag without grpc-encoding', 3, () => rawCall(address, { ':path': path('ServerLive') }, (s) => s.end(framed(1, live)))],
    ['compressed flag 7', 3, () => rawCall(address, { ':path': path('ServerLive') }, (s) => s.end(framed(7, live)))],
    ['grpc-encoding snappy', 12, () => rawCall(address, { ':path': path('ServerLive'), 'grpc-encoding': 'snappy' }, (s) => s.end(framed(1, live)))],
    ['gzip that does not inflate', 3, () => rawCall(address, { ':path': path('ServerLive'), 'grpc-encoding': 'gzip' }, (s) => s.end(framed(1, Buffer.from('not gzip'))))],
    ['gzip-compressed request', 0, () => rawCall(address, { ':path': path('ServerLive'), 'grpc-encoding': 'gzip' }, (s) => s.end(framed(1, gzipSync(live))))],
    ['malformed grpc-timeout', 3, () => rawCall(address, { ':path': path('ServerLive'), 'grpc-timeout': 'soon' }, (s) => s.end(framed(0, live)))],
    ['reset mid-message', undefined, () => rawCall(address, { ':path': path('ModelInfer') }, (s) => {
      s.write(Buffer.concat([prefix(0, 1000), Buffer.alloc(100)]));
      setTimeout(() => s.close(8), 20);
    })],
  ];
  const results = [];
  for (const [name, expected, run] of cases) {
    process.env.FUZZ_TRACE && process.stderr.write(`${name}\n`);
    const got = await run();
    results.push({ name, expected, got: got.grpc, http: got.http, message: got.message, ok: got.grpc === expected });
  }
  const tcpCases = [
    ['HTTP/1.1 on the gRPC port', Buffer.from('POST /inference.GRPCInferenceService/ServerLive HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['garbage instead of the preface', Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37) & 0xff))],
    ['DATA frame on stream 0', Buffer.concat([PREFACE, EMPTY_SETTINGS, Buffer.from([0, 0, 4, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4])])],
    ['frame longer than the largest allowed', Buffer.concat([PREFACE, EMPTY_SETTINGS, Buffer.from([0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]), Buffer.alloc(64)])],
    ['HEADERS with a broken header block', Buffer.concat([PREFACE, EMPTY_SETTINGS, Buffer.from([0, 0, 4, 1, 5, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff])])],
  ];
  for (const [name, bytes] of tcpCases) {
    const got = await rawTcp(address, bytes);
    results.push({ name, expected: 'connection closed', got: got.goaway === undefined ? 'connection closed' : `GOAWAY ${got.goaway}`, ok: got.closed });
  }
  const channel = new GrpcChannel(address);
  const after = await channel.unary(path('ServerLive'), live);
  channel.close();
  return { cases: results, liveAfter: after.status === 0 };
}

async function main() {
  const args = process.argv.slice(2);
  const arg = (name, fallback) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : fallback;
  };
  const messages = Number(arg('messages', '100000'));
  const seed = Number(arg('seed', '1'));
  let address = arg('address');
  let child;
  if (!address) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const repo = arg('repo', fileURLToPath(new URL('../models/repository', import.meta.url)));
    child = spawn(process.execPath, [fileURLToPath(new URL('../bin/umbra.js', import.meta.url)), 'serve', '--repo', repo, '--port', '0', '--grpc-port', String(port), '--log-db', 'off'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    while (!/ready: true/.test(out)) {
      if (child.exitCode !== null) throw new Error(`umbra serve exited: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    address = `127.0.0.1:${port}`;
  }
  const started = performance.now();
  const result = await fuzzRun({ address, messages, seed });
  const seconds = (performance.now() - started) / 1000;
  const hostile = await hostileRun({ address });
  const crashed = child ? child.exitCode !== null : false;
  console.log(JSON.stringify({ messages, seed, seconds: Math.round(seconds), crashed, ...result, bad: result.bad.slice(0, 20), badCount: result.bad.length, hostile }, null, 1));
  if (child) {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
  process.exitCode = crashed || result.bad.length > 0 || !result.liveAfter || !hostile.liveAfter || hostile.cases.some((c) => !c.ok) ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
