// HTTP content codings: request bodies compressed with gzip or deflate (what Triton's HTTP clients
// send with request_compression_algorithm) are answered as if sent plain, within --max-body-bytes
// of the inflated body; answers go out compressed only with --response-compression on, to clients
// whose Accept-Encoding asks. Requests go through node:http, which neither adds Accept-Encoding nor
// inflates answers, so what is checked is what went over the wire.
import t from 'tap';
import { request as httpRequest } from 'node:http';
import zlib from 'node:zlib';
import { startTestServer } from './helpers/server.js';
import { property } from './helpers/property.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { UmbraHttpClient } from '../dist/client/index.js';

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  bytes: Buffer;
}

function raw(url: string, method: string, path: string, body?: Uint8Array | string, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url + path, { method, headers: { ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const WIDTH = 256;
/** An infer request for `rows` rows of the width-256 affine model (y = 2x + 1), as JSON text. */
function inferJson(rows: number, extra: Record<string, unknown> = {}): string {
  const data = Array.from({ length: rows * WIDTH }, (_, i) => ((i * 37) % 101) / 8);
  return JSON.stringify({ ...extra, inputs: [{ name: 'x', shape: [rows, WIDTH], datatype: 'FP32', data }] });
}

const json = (r: Raw) => JSON.parse(r.bytes.toString('utf8'));
/** Two infer answers' JSON, equal but for the id each request is given. */
function sameAnswer(a: Buffer, b: Buffer): boolean {
  const { id: _a, ...x } = JSON.parse(a.toString('utf8'));
  const { id: _b, ...y } = JSON.parse(b.toString('utf8'));
  return JSON.stringify(x) === JSON.stringify(y);
}
const inflate = (r: Raw) => {
  const coding = r.headers['content-encoding'];
  return coding === 'gzip' ? zlib.gunzipSync(r.bytes) : coding === 'deflate' ? zlib.inflateSync(r.bytes) : r.bytes;
};

t.test('compressed request bodies: gzip and deflate answered as plain ones; bombs, corrupt data and unknown codings refused', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('wide', 1, affineModel(2, 1, WIDTH));
  const limit = 64 * 1024;
  const s = await startTestServer(t, { repository: repo.dir, maxBodyBytes: limit });
  const post = (path: string, body: Uint8Array | string, headers: Record<string, string> = {}) => raw(s.url, 'POST', path, body, { 'content-type': 'application/json', ...headers });

  const body = inferJson(4);
  const plain = await post('/v2/models/wide/infer', body);
  t.equal(plain.status, 200, plain.bytes.toString().slice(0, 200));
  const expected = json(plain).outputs;
  t.equal(expected[0].data[1], 2 * (37 / 8) + 1, 'the plain answer is the model\'s');

  const codings = property('each coding of the same body gets the plain body\'s answer');
  const variants: [string, Buffer, string][] = [
    ['gzip', zlib.gzipSync(body), 'gzip'],
    ['x-gzip', zlib.gzipSync(body), 'x-gzip'],
    ['GZIP in capitals', zlib.gzipSync(body), 'GZIP'],
    ['deflate (zlib)', zlib.deflateSync(body), 'deflate'],
    ['deflate sent raw', zlib.deflateRawSync(body), 'deflate'],
    ['gzip after identity', zlib.gzipSync(body), 'identity, gzip'],
  ];
  for (const [name, bytes, coding] of variants) {
    const r = await post('/v2/models/wide/infer', bytes, { 'content-encoding': coding });
    codings.same([r.status, r.status === 200 ? json(r).outputs : r.bytes.toString()], [200, expected], () => name);
  }
  codings.assert(t);

  // Binary tensors: Inference-Header-Content-Length is the JSON header's length before compression.
  const rows = 3;
  const x = Float32Array.from({ length: rows * WIDTH }, (_, i) => i / 16);
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [rows, WIDTH], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }));
  const binBody = Buffer.concat([header, Buffer.from(x.buffer)]);
  const bin = await raw(s.url, 'POST', '/v2/models/wide/infer', zlib.gzipSync(binBody), { 'content-encoding': 'gzip', 'inference-header-content-length': String(header.length) });
  t.equal(bin.status, 200, bin.bytes.toString().slice(0, 200));
  const jsonLength = Number(bin.headers['inference-header-content-length']);
  const tail = bin.bytes.subarray(jsonLength);
  const y = new Float32Array(tail.buffer.slice(tail.byteOffset, tail.byteOffset + tail.byteLength));
  t.same(Array.from(y), Array.from(x, (v) => Math.fround(2 * v + 1)), 'a gzip binary-extension body: the binary answer is the model\'s');

  // A compressed body over 16 KiB is inflated on libuv's threads instead: the same answer.
  const many = 48;
  const noise = Float32Array.from({ length: many * WIDTH }, (_, i) => Math.fround(Math.sin(i * 12.9898) * 43758.5453) % 1);
  const noiseHeader = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [many, WIDTH], datatype: 'FP32', parameters: { binary_data_size: noise.byteLength } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }));
  const noiseBody = zlib.gzipSync(Buffer.concat([noiseHeader, Buffer.from(noise.buffer)]));
  t.ok(noiseBody.byteLength > 16 * 1024, 'a compressed body over 16 KiB');
  const large = await raw(s.url, 'POST', '/v2/models/wide/infer', noiseBody, { 'content-encoding': 'gzip', 'inference-header-content-length': String(noiseHeader.length) });
  const largeTail = large.bytes.subarray(Number(large.headers['inference-header-content-length']));
  t.same([large.status, Array.from(new Float32Array(largeTail.buffer.slice(largeTail.byteOffset, largeTail.byteOffset + largeTail.byteLength)))], [200, Array.from(noise, (v) => Math.fround(2 * v + 1))], 'its answer is the model\'s');

  // KServe V1 (TF-Serving) bodies are inflated the same way.
  const v1 = await post('/v1/models/wide:predict', zlib.gzipSync(JSON.stringify({ instances: [Array.from({ length: WIDTH }, (_, i) => i)] })), { 'content-encoding': 'gzip' });
  t.equal(v1.status, 200, v1.bytes.toString().slice(0, 200));
  t.equal(json(v1).predictions[0][WIDTH - 1], 2 * (WIDTH - 1) + 1, 'V1 predict with a gzip body');

  // Refusals: each a JSON error with the status that says what to fix.
  const bomb = zlib.gzipSync(Buffer.alloc(64 * limit, 0x20));
  const corrupt = Buffer.from(zlib.gzipSync(body));
  corrupt.fill(0x55, 20, 60);
  const cases: [string, Promise<Raw>, number, RegExp][] = [
    ['a small gzip body that inflates past --max-body-bytes', post('/v2/models/wide/infer', bomb, { 'content-encoding': 'gzip' }), 413, /inflates.*--max-body-bytes/],
    ['a gzip body over 16 KiB that inflates past --max-body-bytes', post('/v2/models/wide/infer', zlib.gzipSync(Buffer.alloc(1024 * limit, 0x20)), { 'content-encoding': 'gzip' }), 413, /inflates.*--max-body-bytes/],
    ['a deflate body that inflates past --max-body-bytes', post('/v2/models/wide/infer', zlib.deflateSync(Buffer.alloc(2 * limit, 0x20)), { 'content-encoding': 'deflate' }), 413, /--max-body-bytes/],
    ['gzip that is not gzip', post('/v2/models/wide/infer', body, { 'content-encoding': 'gzip' }), 400, /not valid gzip/],
    ['corrupt gzip', post('/v2/models/wide/infer', corrupt, { 'content-encoding': 'gzip' }), 400, /not valid gzip/],
    ['gzip cut short', post('/v2/models/wide/infer', zlib.gzipSync(body).subarray(0, 40), { 'content-encoding': 'gzip' }), 400, /not valid gzip/],
    ['brotli', post('/v2/models/wide/infer', zlib.brotliCompressSync(body), { 'content-encoding': 'br' }), 415, /gzip, deflate or identity/],
    ['two codings in turn', post('/v2/models/wide/infer', zlib.gzipSync(zlib.gzipSync(body)), { 'content-encoding': 'gzip, gzip' }), 415, /not supported/],
  ];
  const refusals = property('each bad compressed body gets its status and a JSON error saying why');
  for (const [name, reply, status, pattern] of cases) {
    const r = await reply;
    let error: unknown;
    try {
      error = json(r).error;
    } catch {
      error = undefined;
    }
    refusals.check(r.status === status && typeof error === 'string' && pattern.test(error), () => `${name}: ${r.status} ${r.bytes.toString().slice(0, 200)}`);
  }
  refusals.assert(t);
  const after = await post('/v2/models/wide/infer', zlib.gzipSync(body), { 'content-encoding': 'gzip' });
  t.same([after.status, json(after).outputs], [200, expected], 'the server answers as before after every refusal');
});

t.test('compressed answers: only with --response-compression on, only when asked, only when worth it', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('wide', 1, affineModel(2, 1, WIDTH));
  const off = await startTestServer(t, { repository: repo.dir });
  const on = await startTestServer(t, { repository: repo.dir, responseCompression: true });
  const infer = (url: string, body: Uint8Array | string, headers: Record<string, string> = {}) => raw(url, 'POST', '/v2/models/wide/infer', body, { 'content-type': 'application/json', ...headers });

  const big = inferJson(16);
  const plain = await infer(on.url, big);
  t.equal(plain.status, 200);
  t.ok(plain.bytes.byteLength > 16 * 1024, 'the large answer is over 16 KiB (compressed on libuv\'s threads)');
  t.equal(plain.headers['content-encoding'], undefined, 'not asked: not compressed');
  t.equal(plain.headers.vary, 'Accept-Encoding', 'caches are told the answer varies with Accept-Encoding');

  const byDefault = await infer(off.url, big, { 'accept-encoding': 'gzip, deflate' });
  t.same([byDefault.headers['content-encoding'], byDefault.headers.vary, sameAnswer(byDefault.bytes, plain.bytes)], [undefined, undefined, true], 'off by default: asked, the answer still goes out as it is');

  const negotiated = property('Accept-Encoding picks the coding, and the answer inflates to the plain one');
  const asks: [string, string | undefined][] = [
    ['gzip', 'gzip'],
    ['deflate', 'deflate'],
    ['gzip, deflate', 'gzip'],
    ['gzip;q=0.5, deflate', 'deflate'],
    ['deflate;q=0.2, gzip;q=0.9', 'gzip'],
    ['*', 'gzip'],
    ['br, x-gzip', 'gzip'],
    ['gzip;q=0', undefined],
    ['*;q=0', undefined],
    ['identity', undefined],
    ['br, zstd', undefined],
  ];
  for (const [accept, coding] of asks) {
    const r = await infer(on.url, big, { 'accept-encoding': accept });
    let same = false;
    try {
      same = sameAnswer(inflate(r), plain.bytes);
    } catch {
      same = false;
    }
    negotiated.check(r.status === 200 && r.headers['content-encoding'] === coding && same && (coding === undefined || r.bytes.byteLength < plain.bytes.byteLength), () => `${accept}: ${r.status} ${String(r.headers['content-encoding'])} (wanted ${String(coding)}), inflates to the plain answer: ${same}`);
  }
  negotiated.assert(t);

  // A few kilobytes: compressed on the reading thread itself.
  const mid = await infer(on.url, inferJson(1), { 'accept-encoding': 'gzip' });
  const midPlain = await infer(on.url, inferJson(1));
  t.same([mid.headers['content-encoding'], sameAnswer(zlib.gunzipSync(mid.bytes), midPlain.bytes)], ['gzip', true], 'a 1-16 KiB answer is compressed too');

  // Under 1 KiB: as it is.
  const small = await raw(on.url, 'GET', '/v2/models/wide', undefined, { 'accept-encoding': 'gzip' });
  t.ok(small.bytes.byteLength < 1024, 'the metadata answer is under 1 KiB');
  t.same([small.status, small.headers['content-encoding']], [200, undefined], 'an answer under 1 KiB is not compressed');

  // Binary answers: the header length names the JSON part of the inflated body.
  const binary = await infer(on.url, inferJson(16, { parameters: { binary_data_output: true } }), { 'accept-encoding': 'gzip' });
  t.equal(binary.headers['content-encoding'], 'gzip');
  const inflated = zlib.gunzipSync(binary.bytes);
  const n = Number(binary.headers['inference-header-content-length']);
  const head = JSON.parse(inflated.subarray(0, n).toString('utf8'));
  const out = inflated.subarray(n);
  const values = new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength));
  t.same([head.outputs[0].parameters.binary_data_size, Array.from(values)], [values.byteLength, json(plain).outputs[0].data], 'a compressed binary answer inflates to the header and the tensor');

  // HEAD gets no body, so nothing to compress (the metrics page is well over 1 KiB); errors are small JSON.
  const metrics = await raw(on.url, 'GET', '/metrics', undefined, { 'accept-encoding': 'gzip' });
  t.same([metrics.status, metrics.headers['content-encoding'], zlib.gunzipSync(metrics.bytes).toString().includes('umbra_')], [200, 'gzip', true], 'the metrics page is compressed for a scraper that asks');
  const headReply = await raw(on.url, 'HEAD', '/metrics', undefined, { 'accept-encoding': 'gzip' });
  t.same([headReply.status, headReply.headers['content-encoding']], [200, undefined], 'HEAD: not compressed');
  const bad = await infer(on.url, '{"inputs": [', { 'accept-encoding': 'gzip' });
  t.same([bad.status, typeof json(bad).error], [400, 'string'], 'an error answer stays readable JSON');

  // umbra/client compresses what it sends; fetch asks for and inflates compressed answers.
  const client = new UmbraHttpClient(on.url);
  const x = Float32Array.from({ length: 4 * WIDTH }, (_, i) => i % 13);
  const clientAnswers = property('umbra/client with compression gets the model\'s answer, JSON and binary');
  for (const compression of ['gzip', 'deflate'] as const) {
    for (const binary of [false, true]) {
      const r = await client.infer('wide', { inputs: [{ name: 'x', shape: [4, WIDTH], datatype: 'FP32', data: x }] }, { compression, binary });
      clientAnswers.same(Array.from(r.outputs[0]!.data as Float32Array), Array.from(x, (v) => 2 * v + 1), () => `${compression}, binary ${binary}`);
    }
  }
  clientAnswers.assert(t);

  // A client that asks for gzip and sends gzip.
  const both = await infer(on.url, zlib.gzipSync(big), { 'accept-encoding': 'gzip', 'content-encoding': 'gzip' });
  t.same([both.status, both.headers['content-encoding'], sameAnswer(zlib.gunzipSync(both.bytes), plain.bytes)], [200, 'gzip', true], 'compressed both ways');
});
