// Mutated and truncated protobuf against a running Umbra gRPC port: seeded edits of valid
// requests (ModelInfer typed and raw, ModelStreamInfer, the control calls), sent as raw gRPC
// frames so no client library tidies them up. Counts every status; INTERNAL or UNKNOWN for a
// malformed message, or a server that stops answering, is a failure.
//
//   node bench/grpc-fuzz.mjs [--messages 100000] [--seed 1] [--repo models/repository]
//
// Starts `umbra serve` as a child process (a crash shows as its exit) unless --address is given.
// test/grpc-fuzz.test.ts runs the same fuzzRun, bounded, in npm test.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
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
  const crashed = child ? child.exitCode !== null : false;
  console.log(JSON.stringify({ messages, seed, seconds: Math.round(seconds), crashed, ...result, bad: result.bad.slice(0, 20), badCount: result.bad.length }, null, 1));
  if (child) {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
  process.exitCode = crashed || result.bad.length > 0 || !result.liveAfter ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
