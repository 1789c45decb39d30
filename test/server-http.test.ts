// Every Open Inference Protocol endpoint over real HTTP, both encodings, and each error status,
// with outputs checked against onnxruntime-node run directly on the same inputs.
import t from 'tap';
import * as ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { startTestServer } from './helpers/server.js';
import { property } from './helpers/property.js';
import { alignedBuffer } from '../dist/server/http.js';
import { tempRepo, affineModel, pairModel } from './helpers/repo.js';

const EXAMPLES = new URL('../models/repository/', import.meta.url).pathname;

function digitsRows(n: number): Float32Array {
  const lines = readFileSync(new URL('../models/digits.csv', import.meta.url), 'utf8').trim().split('\n').slice(1, n + 1);
  return Float32Array.from(lines.flatMap((l) => l.split(',').slice(0, 64).map(Number)));
}

async function ortDirect(modelPath: string, feeds: Record<string, ort.Tensor>) {
  const session = await ort.InferenceSession.create(modelPath);
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

t.test('example repository: health, metadata, JSON and binary inference match onnxruntime', async (t) => {
  const s = await startTestServer(t, { repository: EXAMPLES });
  t.same((await s.get('/v2/health/live')).json, { live: true });
  const ready = await s.get('/v2/health/ready');
  t.equal(ready.status, 200);
  t.same(ready.json, { ready: true });
  const server = await s.get('/v2');
  t.equal(server.json.name, 'umbra');
  t.ok(server.json.extensions.includes('binary_tensor_data'));

  const meta = await s.get('/v2/models/digits');
  t.equal(meta.status, 200);
  t.same(meta.json.versions.sort(), ['1', '2']);
  t.same(meta.json.inputs, [{ name: 'pixels', datatype: 'FP32', shape: [-1, 64] }]);
  t.same(meta.json.outputs.map((o: { name: string }) => o.name).sort(), ['label', 'probabilities']);
  t.same((await s.get('/v2/models/digits/versions/1')).json.versions, ['1']);
  t.equal((await s.get('/v2/models/digits/ready')).status, 200);
  t.equal((await s.get('/v2/models/digits/versions/2/ready')).json.ready, true);

  const rows = digitsRows(5);
  const expected = await ortDirect(join(EXAMPLES, 'digits/2/model.onnx'), { pixels: new ort.Tensor('float32', rows, [5, 64]) });
  const expectedProbs = expected.probabilities!.data as Float32Array;
  const expectedLabels = Array.from(expected.label!.data as BigInt64Array, Number);

  // JSON, nested data, explicit version 2, id echoed.
  const nested = Array.from({ length: 5 }, (_, r) => Array.from(rows.subarray(r * 64, r * 64 + 64)));
  const json = await s.post('/v2/models/digits/versions/2/infer', { id: 'req-1', inputs: [{ name: 'pixels', shape: [5, 64], datatype: 'FP32', data: nested }] });
  t.equal(json.status, 200, json.text);
  t.equal(json.json.id, 'req-1');
  t.equal(json.json.model_name, 'digits');
  t.equal(json.json.model_version, '2');
  t.equal(json.headers.get('x-umbra-version'), '2');
  const probs = json.json.outputs.find((o: { name: string }) => o.name === 'probabilities');
  t.same(probs.shape, [5, 10]);
  t.equal(probs.datatype, 'FP32');
  t.ok(expectedProbs.every((p, i) => Math.abs(probs.data[i] - p) < 1e-6), 'probabilities within 1e-6 of onnxruntime');
  t.same(json.json.outputs.find((o: { name: string }) => o.name === 'label').data, expectedLabels);

  // Unversioned goes to the newest loaded version.
  t.equal((await s.post('/v2/models/digits/infer', { inputs: [{ name: 'pixels', shape: [1, 64], datatype: 'FP32', data: Array.from(rows.subarray(0, 64)) }] })).json.model_version, '2');

  // Binary request and binary output for one output only, JSON for the other.
  const header = Buffer.from(JSON.stringify({
    inputs: [{ name: 'pixels', shape: [5, 64], datatype: 'FP32', parameters: { binary_data_size: rows.byteLength } }],
    outputs: [{ name: 'probabilities', parameters: { binary_data: true } }, { name: 'label' }],
  }));
  const body = Buffer.concat([header, Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength)]);
  const bin = await s.request('POST', '/v2/models/digits/versions/2/infer', body, { 'inference-header-content-length': String(header.length) });
  t.equal(bin.status, 200, bin.text);
  const jsonLength = Number(bin.headers.get('inference-header-content-length'));
  t.ok(jsonLength > 0 && jsonLength < bin.bytes.length);
  const binHeader = JSON.parse(bin.bytes.subarray(0, jsonLength).toString());
  const probOut = binHeader.outputs.find((o: { name: string }) => o.name === 'probabilities');
  t.equal(probOut.parameters.binary_data_size, 5 * 10 * 4);
  const raw = bin.bytes.subarray(jsonLength, jsonLength + 200);
  const got = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  // The example digits model runs on Umbra's native kernels (backend: auto): its answers equal
  // onnxruntime's within 1e-6, and the binary path must carry exactly the bits the JSON path printed.
  t.same(Array.from(got), Array.from(Float32Array.from(probs.data as number[])), 'binary probabilities are bit-identical to the JSON answer');
  t.ok(Array.from(got).every((v, i) => Math.abs(v - expectedProbs[i]!) < 1e-6), 'binary probabilities within 1e-6 of onnxruntime');
  t.same(binHeader.outputs.find((o: { name: string }) => o.name === 'label').data, expectedLabels);

  // Headers of every length modulo 8 (padded with spaces): the body buffer is placed so the tensor
  // bytes are aligned, and the answers stay the same whatever the padding.
  const paddedAnswers = property('a header padded by 0-7 spaces gets 200 and the same probabilities');
  for (let pad = 0; pad < 8; pad++) {
    const padded = Buffer.concat([header, Buffer.from(' '.repeat(pad))]);
    const r = await s.request('POST', '/v2/models/digits/versions/2/infer', Buffer.concat([padded, Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength)]), { 'inference-header-content-length': String(padded.length) });
    const n = Number(r.headers.get('inference-header-content-length'));
    const b = r.bytes.subarray(n, n + 200);
    paddedAnswers.same([r.status, Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)))], [200, Array.from(got)], () => `padded by ${pad} (${r.text.slice(0, 200)})`);
  }
  paddedAnswers.assert(t);

  // binary_data_output asks for every output as binary.
  const allBin = await s.post('/v2/models/digits/versions/1/infer', { parameters: { binary_data_output: true }, inputs: [{ name: 'pixels', shape: [1, 64], datatype: 'FP32', data: Array.from(rows.subarray(0, 64)) }] });
  t.equal(allBin.status, 200);
  t.ok(allBin.headers.get('inference-header-content-length'));

  // Two inputs, two outputs, config.pbtxt.
  const a = [1, 2, 3, 4, 5, 6, 7, 8];
  const b = [8, 7, 6, 5, 4, 3, 2, 1];
  const pair = await s.post('/v2/models/pair/infer', { inputs: [{ name: 'a', shape: [2, 4], datatype: 'FP32', data: a }, { name: 'b', shape: [2, 4], datatype: 'FP32', data: b }], outputs: [{ name: 'sum' }] });
  t.equal(pair.status, 200, pair.text);
  t.same(pair.json.outputs.map((o: { name: string }) => o.name), ['sum'], 'only the requested output');
  t.same(pair.json.outputs[0].data, [9, 9, 9, 9, 9, 9, 9, 9]);
});

t.test('error statuses: 400, 404, 405, 413, 415 with {"error": ...} bodies', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.addVersion('pair', 1, pairModel());
  const s = await startTestServer(t, { repository: repo.dir, maxBodyBytes: 4096 });
  const infer = (body: unknown, path = '/v2/models/affine/infer', headers?: Record<string, string>) => s.post(path, body, headers);
  const cases: [string, Promise<{ status: number; json: any }>, number, RegExp][] = [
    ['malformed JSON', infer('{"inputs": ['), 400, /malformed JSON/],
    ['inputs not an array', infer({ inputs: 3 }), 400, /inputs/],
    ['unknown input name', infer({ inputs: [{ name: 'nope', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }), 400, /nope/],
    ['datatype mismatch', infer({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'INT32', data: [1, 2, 3, 4] }] }), 400, /FP32/],
    ['element count mismatch', infer({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3] }] }), 400, /element|data/i],
    ['wrong inner dim', infer({ inputs: [{ name: 'x', shape: [1, 5], datatype: 'FP32', data: [1, 2, 3, 4, 5] }] }), 400, /shape|dim/i],
    ['absurd shape', infer({ inputs: [{ name: 'x', shape: [1e15, 4], datatype: 'FP32', data: [1] }] }), 400, /./],
    ['NaN string', infer({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: ['NaN', 1, 2, 3] }] }), 400, /NaN|finite/i],
    ['string where number', infer({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: ['a', 1, 2, 3] }] }), 400, /expected/],
    ['unknown output', infer({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }], outputs: [{ name: 'zz' }] }), 400, /zz/],
    ['bad header length', s.request('POST', '/v2/models/affine/infer', '{}', { 'inference-header-content-length': 'abc' }), 400, /Inference-Header-Content-Length/],
    ['missing second input', infer({ inputs: [{ name: 'a', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }, '/v2/models/pair/infer'), 400, /n/],
    ['priority not an integer', infer({ parameters: { priority: 'high' }, inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }), 400, /priority/],
    ['unknown model', infer({ inputs: [] }, '/v2/models/ghost/infer'), 404, /ghost/],
    ['unknown version', infer({ inputs: [] }, '/v2/models/affine/versions/9/infer'), 404, /version 9/],
    ['bad version', s.get('/v2/models/affine/versions/abc'), 400, /version/],
    ['path traversal', s.get('/v2/models/..%2F..%2Fetc/ready'), 400, /model name/i],
    ['unknown route', s.get('/v2/nothing/here'), 404, /no route/],
    ['wrong method', s.get('/v2/models/affine/infer'), 405, /not allowed/],
    ['wrong method on health', s.post('/v2/health/live', {}), 405, /not allowed/],
    ['body over the limit', infer({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: new Array(3000).fill(1) }] }), 413, /limit/],
    ['a content coding Umbra cannot undo', infer('{}', '/v2/models/affine/infer', { 'content-encoding': 'br' }), 415, /content-encoding 'br' is not supported/],
  ];
  for (const [name, reply, status, pattern] of cases) {
    const r = await reply;
    t.equal(r.status, status, `${name}: status`);
    t.type(r.json?.error, 'string', `${name}: error body`);
    t.match(r.json?.error, pattern, `${name}: message`);
  }
  // RFC 9110: a 405 says which methods the resource takes.
  t.equal((await s.get('/v2/models/affine/infer')).headers.get('allow'), 'POST', 'a 405 has an Allow header');
  // The server survived all of it.
  const ok = await infer({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
  t.same(ok.json.outputs[0].data, [3, 5, 7, 9]);
});

t.test('a status outside the common ones still has its reason phrase', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir });
  // 403: registering shared memory on a server started without it.
  const { port } = new URL(s.url);
  const socket = connect(Number(port), '127.0.0.1');
  const body = '{"key": "/x", "offset": 0, "byte_size": 4}';
  socket.write(`POST /v2/systemsharedmemory/region/x/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  t.equal(Buffer.concat(chunks).toString('latin1').split('\r\n')[0], 'HTTP/1.1 403 Forbidden');
});

t.test('model control: index, load, unload behind the admin token', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  const s = await startTestServer(t, { repository: repo.dir, adminToken: 's3cret' });
  const auth = { authorization: 'Bearer s3cret' };
  t.equal((await s.post('/v2/repository/models/affine/unload')).status, 401, 'no token');
  t.equal((await s.post('/v2/repository/models/affine/unload', undefined, { authorization: 'Bearer wrong' })).status, 401, 'wrong token');
  t.equal((await s.post('/v2/repository/models/affine/unload', undefined, { authorization: 's3cret' })).status, 401, 'not a bearer token');
  t.equal((await s.post('/v2/repository/models/affine/load', undefined, { authorization: 'bearer s3cret' })).status, 200, 'the scheme\'s name in any case (RFC 9110)');
  t.equal((await s.post('/v2/repository/models/affine/load', undefined, { authorization: 'BEARER  s3cret' })).status, 200, 'and with more than one space after it');

  t.same((await s.post('/v2/repository/index')).json, [{ name: 'affine', version: '1', state: 'READY' }]);
  t.equal((await s.post('/v2/repository/models/affine/unload', undefined, auth)).status, 200);
  t.equal((await s.get('/v2/models/affine')).status, 404, 'unloaded model is gone');
  t.equal((await s.get('/v2/health/ready')).status, 503, 'a server with no model loaded is not ready');
  t.same((await s.post('/v2/repository/index')).json, [{ name: 'affine', state: 'UNAVAILABLE', reason: 'unloaded' }]);
  t.same((await s.post('/v2/repository/index', { ready: true })).json, []);

  // A new model appears on disk and is loaded by name.
  repo.addVersion('late', 1, affineModel(3, 0));
  t.equal((await s.post('/v2/repository/models/late/load', undefined, auth)).status, 200);
  t.equal((await s.post('/v2/repository/models/affine/load', undefined, auth)).status, 200);
  const r = await s.post('/v2/models/late/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 1, 1, 1] }] });
  t.same(r.json.outputs[0].data, [3, 3, 3, 3]);
  t.equal((await s.get('/v2/health/ready')).status, 200);
  const missing = await s.post('/v2/repository/models/nosuch/load', undefined, auth);
  t.equal(missing.status, 404);
  t.match(missing.json.error, /nosuch/);
  t.equal((await s.get('/v2/health/ready')).status, 200, 'a failed load of an unknown name does not affect readiness');
  t.equal((await s.post('/v2/repository/models/bad..name/load', undefined, auth)).status, 400);
});

t.test('request bodies are placed so binary tensors start 8-byte aligned', async (t) => {
  const aligned = property('the buffer has the body\'s length and the tensors start 8-byte aligned');
  const plain = property('no header length, or one outside the body: a plain buffer of the length');
  for (const length of [1, 9, 100, 2194, 5000, 70000]) {
    for (let at = 1; at < Math.min(length, 20); at++) {
      const b = alignedBuffer(length, at);
      aligned.check(b.length === length && (b.byteOffset + at) % 8 === 0, () => `length ${length}, tensors at ${at}: ${b.length} bytes at offset ${b.byteOffset}`);
    }
    for (const at of [Number.NaN, 0, length, length + 5, -1]) plain.check(alignedBuffer(length, at).length === length, () => `length ${length}, header ${at}`);
  }
  aligned.assert(t);
  plain.assert(t);
});
