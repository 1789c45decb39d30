// The gRPC service against a client generated from proto/ with @grpc/proto-loader, as a KServe or
// Triton user would make one: the same conformance the REST path passes (metadata, readiness,
// FP32/INT64/BYTES/FP16 inference with typed and raw contents, errors by status code), each
// answer checked against the REST answer for the same request.
import t, { type Test } from 'tap';
import { startTestServer, type TestServer } from './helpers/server.js';
import { tempRepo, affineModel, pairModel } from './helpers/repo.js';
import { generatedClient, grpc, type GeneratedClient } from './helpers/grpc.js';
import { buildModel } from '../dist/onnx/builder.js';
import { float32ToHalf, halfToFloat32 } from '../dist/protocol/index.js';

const S = grpc.status;

function identity(datatype: 'BYTES' | 'FP16', width: number) {
  return buildModel({
    inputs: [{ name: 'x', datatype, dims: ['batch', width] }],
    outputs: [{ name: 'y', datatype, dims: ['batch', width] }],
    nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
  });
}

// One server for the file: starting one is most of a test's time on a busy host.
t.setTimeout(300_000);

async function setup(t: Test): Promise<{ s: TestServer; c: GeneratedClient }> {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.addVersion('pair', 1, pairModel());
  repo.addVersion('text', 1, identity('BYTES', 2));
  repo.addVersion('half', 1, identity('FP16', 4));
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any', adminToken: 'sesame' });
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  return { s, c };
}

function floats(bytes: Buffer): number[] {
  return Array.from(new Float32Array(new Uint8Array(bytes).buffer));
}

const { s, c } = await setup(t);

/** A protobuf message's fields by number (varints as numbers, length-delimited as bytes), read off the wire. */
function wireFields(bytes: Buffer): Map<number, (number | Buffer)[]> {
  const fields = new Map<number, (number | Buffer)[]>();
  let at = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = bytes[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  while (at < bytes.length) {
    const tag = varint();
    const wire = tag & 7;
    let value: number | Buffer;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const n = varint();
      value = bytes.subarray(at, at + n);
      at += n;
    } else throw new Error(`wire type ${wire} in a message that has none`);
    fields.set(tag >>> 3, [...(fields.get(tag >>> 3) ?? []), value]);
  }
  return fields;
}

t.test('ModelConfig: the configuration REST answers, on the published field numbers', async (t) => {
  for (const model of ['affine', 'pair', 'text', 'half']) {
    const rest = (await s.get(`/v2/models/${model}/config`)).json;
    const reply = await c.call('ModelConfig', { name: model });
    // protobuf fills in what REST leaves out (defaults, the oneof's name): REST's fields must all be there, equal.
    t.match(reply.ok && reply.value.config, rest, `${model}: as REST's GET /v2/models/${model}/config`);
  }
  const v1 = await c.call('ModelConfig', { name: 'affine', version: '1' });
  t.equal(v1.ok && v1.value.config.name, 'affine', 'a version asked for by number');
  const missing = await c.call('ModelConfig', { name: 'nope' });
  t.equal(!missing.ok && missing.error.code, S.NOT_FOUND, 'an unknown model is NOT_FOUND');

  // What a client generated from Triton's own .proto reads: the bytes, by field number.
  const raw = new grpc.Client(`127.0.0.1:${s.server.grpcPort}`, grpc.credentials.createInsecure());
  t.teardown(() => raw.close());
  const request = Buffer.concat([Buffer.from([0x0a, 6]), Buffer.from('affine')]);
  const bytes = await new Promise<Buffer>((resolve, reject) => raw.makeUnaryRequest('/inference.GRPCInferenceService/ModelConfig', (b: Buffer) => b, (b: Buffer) => b, request, (err, value) => (err ? reject(err) : resolve(value!))));
  const affine = (await s.get('/v2/models/affine/config')).json;
  const config = wireFields(wireFields(bytes).get(1)![0] as Buffer);
  const input = wireFields(config.get(5)![0] as Buffer);
  const str = (v: (number | Buffer)[] | undefined) => (v?.[0] as Buffer | undefined)?.toString();
  t.same({
    name: str(config.get(1)),
    platform: str(config.get(2)),
    max_batch_size: config.get(4)?.[0],
    input: { name: str(input.get(1)), data_type: input.get(2)?.[0] },
    output: str(wireFields(config.get(6)![0] as Buffer).get(1)),
    latest: wireFields(wireFields(config.get(3)![0] as Buffer).get(1)![0] as Buffer).get(1)?.[0],
    backend: str(config.get(17)),
  }, { name: 'affine', platform: 'onnxruntime_onnx', max_batch_size: affine.max_batch_size, input: { name: 'x', data_type: 11 }, output: 'y', latest: 1, backend: affine.backend }, 'name 1, platform 2, version_policy 3 (latest 1), max_batch_size 4, input 5 (name 1, data_type 2: TYPE_FP32 is 11), output 6, backend 17');
});

t.test('metadata, readiness and health', async (t) => {
  t.same((await c.call('ServerLive', {})).ok && (await c.call('ServerLive', {})).value, { live: true } as any);
  const ready = await c.call('ServerReady', {});
  t.same(ready.ok && ready.value, { ready: true });
  const server = await c.call('ServerMetadata', {});
  t.ok(server.ok);
  if (server.ok) {
    t.equal(server.value.name, 'umbra');
    t.same(server.value.extensions, (await s.get('/v2')).json.extensions);
  }
  for (const model of ['affine', 'pair', 'text', 'half']) {
    const meta = await c.call('ModelMetadata', { name: model });
    t.ok(meta.ok, model);
    // REST adds extension fields gRPC's message has no place for (how the version runs, its queue bound).
    const { execution: _execution, queue: _queue, ...shared } = (await s.get(`/v2/models/${model}`)).json;
    if (meta.ok) t.same(meta.value, shared, `${model} metadata as REST`);
  }
  const modelReady = await c.call('ModelReady', { name: 'affine', version: '1' });
  t.same(modelReady.ok && modelReady.value, { ready: true });
  const unknown = await c.call('ModelReady', { name: 'nope' });
  t.equal(!unknown.ok && unknown.error.code, S.NOT_FOUND);
  const unknownVersion = await c.call('ModelMetadata', { name: 'affine', version: '7' });
  t.equal(!unknownVersion.ok && unknownVersion.error.code, S.NOT_FOUND);
  t.match(!unknownVersion.ok && unknownVersion.error.details, /version 7/);

  for (const service of ['', 'inference.GRPCInferenceService', 'liveness', 'affine']) {
    const h = await c.check(service);
    t.same(h.ok && h.value, { status: 'SERVING' }, `health "${service}"`);
  }
  const unknownService = await c.check('nope');
  t.equal(!unknownService.ok && unknownService.error.code, S.NOT_FOUND);
});

t.test('FP32 and INT64, typed and raw, answer as REST does; a raw request is answered raw', async (t) => {
  const a = [1.5, -2, 3.25, 0.5, 4, -8];
  const n = [7, -3, 2 ** 40, 0];
  const rest = await s.post('/v2/models/pair/infer', { inputs: [{ name: 'a', datatype: 'FP32', shape: [2, 3], data: a }, { name: 'n', datatype: 'INT64', shape: [2, 2], data: n }] });
  t.equal(rest.status, 200, rest.text);
  const restSum = rest.json.outputs.find((o: { name: string }) => o.name === 'sum');
  const restTwice = rest.json.outputs.find((o: { name: string }) => o.name === 'twice');

  const typed = await c.call('ModelInfer', {
    model_name: 'pair', id: 'typed-1',
    inputs: [
      { name: 'a', datatype: 'FP32', shape: [2, 3], contents: { fp32_contents: a } },
      { name: 'n', datatype: 'INT64', shape: [2, 2], contents: { int64_contents: n } },
    ],
  });
  t.ok(typed.ok, !typed.ok ? typed.error.details : '');
  if (typed.ok) {
    const v = typed.value;
    t.equal(v.id, 'typed-1');
    t.equal(v.model_name, 'pair');
    t.equal(v.model_version, '1');
    t.same(v.raw_output_contents, [], 'typed request, typed answer');
    const sum = v.outputs.find((o: { name: string }) => o.name === 'sum');
    const twice = v.outputs.find((o: { name: string }) => o.name === 'twice');
    t.same(sum.shape, restSum.shape);
    t.same(sum.contents.fp32_contents, restSum.data);
    t.same(twice.contents.int64_contents, restTwice.data);
  }

  const raw = await c.call('ModelInfer', {
    model_name: 'pair',
    inputs: [{ name: 'a', datatype: 'FP32', shape: [2, 3] }, { name: 'n', datatype: 'INT64', shape: [2, 2] }],
    raw_input_contents: [Buffer.from(new Float32Array(a).buffer), Buffer.from(new BigInt64Array(n.map(BigInt)).buffer)],
  });
  t.ok(raw.ok, !raw.ok ? raw.error.details : '');
  if (raw.ok) {
    const v = raw.value;
    t.equal(v.raw_output_contents.length, 2, 'raw request, raw answer');
    t.ok(v.outputs.every((o: { contents: unknown }) => o.contents === null), 'no typed contents beside raw ones');
    const i = v.outputs.findIndex((o: { name: string }) => o.name === 'sum');
    const j = v.outputs.findIndex((o: { name: string }) => o.name === 'twice');
    t.same(floats(v.raw_output_contents[i]), restSum.data);
    t.same(Array.from(new BigInt64Array(new Uint8Array(v.raw_output_contents[j]).buffer), Number), restTwice.data);
  }

  // binary_data_output turns a typed request's answer raw; false turns a raw request's answer typed.
  const asked = await c.call('ModelInfer', {
    model_name: 'affine', parameters: { binary_data_output: { bool_param: true } },
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
  });
  t.same(asked.ok && floats(asked.value.raw_output_contents[0]), [3, 5, 7, 9]);
  const declined = await c.call('ModelInfer', {
    model_name: 'affine', parameters: { binary_data_output: { bool_param: false } },
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [Buffer.from(new Float32Array([1, 2, 3, 4]).buffer)],
  });
  t.same(declined.ok && declined.value.outputs[0].contents.fp32_contents, [3, 5, 7, 9]);
  const one = await c.call('ModelInfer', {
    model_name: 'pair', outputs: [{ name: 'twice', parameters: { binary_data: { bool_param: true } } }],
    inputs: [{ name: 'a', datatype: 'FP32', shape: [2, 3], contents: { fp32_contents: a } }, { name: 'n', datatype: 'INT64', shape: [2, 2], contents: { int64_contents: n } }],
  });
  t.ok(one.ok);
  if (one.ok) {
    t.same(one.value.outputs.map((o: { name: string }) => o.name), ['twice'], 'only the requested output');
    t.equal(one.value.raw_output_contents.length, 1);
  }
});

t.test('BYTES and FP16: typed and raw BYTES, FP16 raw only', async (t) => {
  const words = ['héllo', '', 'zwölf', 'x'.repeat(300)];
  const rest = await s.post('/v2/models/text/infer', { inputs: [{ name: 'x', datatype: 'BYTES', shape: [2, 2], data: words }] });
  t.same(rest.json.outputs[0].data, words);
  const typed = await c.call('ModelInfer', { model_name: 'text', inputs: [{ name: 'x', datatype: 'BYTES', shape: [2, 2], contents: { bytes_contents: words.map((w) => Buffer.from(w)) } }] });
  t.ok(typed.ok, !typed.ok ? typed.error.details : '');
  if (typed.ok) t.same(typed.value.outputs[0].contents.bytes_contents.map((b: Buffer) => b.toString('utf8')), words);
  const encoded = Buffer.concat(words.flatMap((w) => {
    const bytes = Buffer.from(w);
    const length = Buffer.alloc(4);
    length.writeUInt32LE(bytes.length);
    return [length, bytes];
  }));
  const raw = await c.call('ModelInfer', { model_name: 'text', inputs: [{ name: 'x', datatype: 'BYTES', shape: [2, 2] }], raw_input_contents: [encoded] });
  t.ok(raw.ok, !raw.ok ? raw.error.details : '');
  if (raw.ok) t.same(raw.value.raw_output_contents[0], encoded, 'BYTES answered raw with 4-byte lengths');

  const values = [0.5, -1.25, 65504, 3.140625];
  const halves = Uint16Array.from(values, float32ToHalf);
  const fp16 = await c.call('ModelInfer', { model_name: 'half', inputs: [{ name: 'x', datatype: 'FP16', shape: [1, 4] }], raw_input_contents: [Buffer.from(halves.buffer)] });
  t.ok(fp16.ok, !fp16.ok ? fp16.error.details : '');
  if (fp16.ok) {
    t.same(Array.from(new Uint16Array(new Uint8Array(fp16.value.raw_output_contents[0]).buffer), halfToFloat32), values);
    t.same((await s.post('/v2/models/half/infer', { inputs: [{ name: 'x', datatype: 'FP16', shape: [1, 4], data: values }] })).json.outputs[0].data, values);
  }
  const typedHalf = await c.call('ModelInfer', { model_name: 'half', inputs: [{ name: 'x', datatype: 'FP16', shape: [1, 4], contents: { fp32_contents: values } }] });
  t.equal(!typedHalf.ok && typedHalf.error.code, S.INVALID_ARGUMENT);
  t.match(!typedHalf.ok && typedHalf.error.details, /raw_input_contents/);
  const bf16 = await c.call('ModelInfer', { model_name: 'half', inputs: [{ name: 'x', datatype: 'BF16', shape: [1, 4] }], raw_input_contents: [Buffer.alloc(8)] });
  t.equal(!bf16.ok && bf16.error.code, S.INVALID_ARGUMENT, 'BF16 refused as REST refuses it');
});

t.test('errors by status code, worded as REST words them', async (t) => {
  const x = (shape: number[], data: number[]) => ({ name: 'x', datatype: 'FP32', shape, contents: { fp32_contents: data } });
  const cases: [string, object, object, number][] = [
    ['unknown model', { model_name: 'nope', inputs: [x([1, 4], [1, 2, 3, 4])] }, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }, S.NOT_FOUND],
    ['wrong shape', { model_name: 'affine', inputs: [x([1, 3], [1, 2, 3])] }, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] }, S.INVALID_ARGUMENT],
    ['wrong datatype', { model_name: 'affine', inputs: [{ name: 'x', datatype: 'INT32', shape: [1, 4], contents: { int_contents: [1, 2, 3, 4] } }] }, { inputs: [{ name: 'x', datatype: 'INT32', shape: [1, 4], data: [1, 2, 3, 4] }] }, S.INVALID_ARGUMENT],
    ['unknown input', { model_name: 'affine', inputs: [{ ...x([1, 4], [1, 2, 3, 4]), name: 'z' }] }, { inputs: [{ name: 'z', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }, S.INVALID_ARGUMENT],
    ['missing input', { model_name: 'affine', inputs: [] }, { inputs: [] }, S.INVALID_ARGUMENT],
    ['NaN without allow_nan', { model_name: 'affine', inputs: [x([1, 4], [1, NaN, 3, 4])] }, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 'NaN', 3, 4] }] }, S.INVALID_ARGUMENT],
    ['bad priority', { model_name: 'affine', parameters: { priority: { string_param: 'high' } }, inputs: [x([1, 4], [1, 2, 3, 4])] }, { parameters: { priority: 'high' }, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }, S.INVALID_ARGUMENT],
  ];
  for (const [what, grpcRequest, restBody, code] of cases) {
    const g = await c.call('ModelInfer', grpcRequest);
    const model = (grpcRequest as { model_name: string }).model_name;
    const r = await s.post(`/v2/models/${model}/infer`, restBody);
    t.equal(!g.ok && g.error.code, code, `${what}: status ${code}`);
    t.equal(!g.ok && g.error.details, r.json.error, `${what}: the REST message`);
  }
  const count = await c.call('ModelInfer', { model_name: 'affine', inputs: [x([1, 4], [1, 2, 3])] });
  t.equal(!count.ok && count.error.code, S.INVALID_ARGUMENT);
  t.match(!count.ok && count.error.details, /expected 4 elements in contents\.fp32_contents for input "x"/);
  const rawCount = await c.call('ModelInfer', { model_name: 'affine', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [Buffer.alloc(12)] });
  t.match(!rawCount.ok && rawCount.error.details, /expected 16 bytes in raw_input_contents\[0\]/);
  const mixed = await c.call('ModelInfer', { model_name: 'affine', inputs: [x([1, 4], [1, 2, 3, 4])], raw_input_contents: [Buffer.alloc(16)] });
  t.match(!mixed.ok && mixed.error.details, /no contents .* raw_input_contents/);
  const range = await c.call('ModelInfer', { model_name: 'affine', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { int_contents: [1, 2, 3, 4] } }] });
  t.match(!range.ok && range.error.details, /expected contents\.fp32_contents .* but received contents\.int_contents/);

  // The repository calls need the admin token.
  const denied = await c.call('RepositoryModelUnload', { model_name: 'affine' });
  t.equal(!denied.ok && denied.error.code, S.UNAUTHENTICATED);
  const wrong = await c.call('RepositoryModelUnload', { model_name: 'affine' }, { authorization: 'Bearer nope' });
  t.equal(!wrong.ok && wrong.error.code, S.UNAUTHENTICATED);
  const index = await c.call('RepositoryIndex', { ready: true });
  t.same(index.ok && index.value.models.map((m: { name: string }) => m.name), ['affine', 'half', 'pair', 'text']);
  t.ok((await c.call('RepositoryModelUnload', { model_name: 'affine' }, { authorization: 'Bearer sesame' })).ok);
  const gone = await c.call('ModelInfer', { model_name: 'affine', inputs: [x([1, 4], [1, 2, 3, 4])] });
  t.equal(!gone.ok && gone.error.code, S.NOT_FOUND);
  t.ok((await c.call('RepositoryModelLoad', { model_name: 'affine' }, { authorization: 'Bearer sesame' })).ok);
  t.ok((await c.call('ModelInfer', { model_name: 'affine', inputs: [x([1, 4], [1, 2, 3, 4])] })).ok, 'serves again after load');
  const missing = await c.call('RepositoryModelLoad', { model_name: 'nope' }, { authorization: 'Bearer sesame' });
  t.equal(!missing.ok && missing.error.code, S.NOT_FOUND);

  // Statistics count gRPC requests with the REST ones (monitoring sees every transport).
  const stats = await c.call('ModelStatistics', { name: 'pair' });
  t.ok(stats.ok);
  if (stats.ok) {
    const rest = (await s.get('/v2/models/pair/stats')).json;
    t.equal(stats.value.model_stats[0].inference_stats.success.count, rest.model_stats[0].inference_stats.success.count);
  }
});
