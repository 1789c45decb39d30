// The hand-written gRPC transport (src/server/grpc/call.ts, grpc-server.ts) as real clients see
// it: @grpc/grpc-js compressing its requests, details outside ASCII percent-encoded and read back
// whole, the client's deadline ending a call DEADLINE_EXCEEDED, and the wire helpers' edge cases.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { generatedClient, grpc } from './helpers/grpc.js';
import { parseTimeout, percentEncode } from '../dist/server/grpc/call.js';

const PROTO = new URL('../proto/', import.meta.url).pathname;

t.test('grpc-timeout and grpc-message encodings', async (t) => {
  t.equal(parseTimeout('100m'), 100);
  t.equal(parseTimeout('2S'), 2000);
  t.equal(parseTimeout('1H'), 3_600_000);
  t.equal(parseTimeout('5000u'), 5);
  t.equal(parseTimeout('123456789m'), undefined, 'at most 8 digits');
  t.equal(parseTimeout('10'), undefined, 'a unit is required');
  t.equal(parseTimeout('-1m'), undefined);
  t.equal(percentEncode('plain text: "quoted"'), 'plain text: "quoted"');
  t.equal(percentEncode('100% modèle\n'), '100%25 mod%C3%A8le%0A');
  t.equal(decodeURIComponent(percentEncode('modèle ✓ 100%')), 'modèle ✓ 100%');
});

t.test('a real client: compressed requests, non-ASCII details, deadlines', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const port = s.server.grpcPort;
  const c = generatedClient(port);
  t.teardown(() => c.close());

  const request = { model_name: 'affine', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] };
  const plain = await c.call('ModelInfer', request);
  t.ok(plain.ok);
  t.same(plain.ok && plain.value.outputs[0].contents.fp32_contents, [3, 5, 7, 9]);

  // grpc-js compressing every request with gzip, then with deflate: the server inflates them.
  const loader = await import('@grpc/proto-loader');
  const definition = loader.loadSync([`${PROTO}grpc_service.proto`], { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  const Service = (grpc.loadPackageDefinition(definition) as any).inference.GRPCInferenceService;
  for (const [name, algorithm] of [['gzip', 2], ['deflate', 1]] as const) {
    const compressing = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': algorithm });
    const answer = await new Promise<any>((resolve) => compressing.ModelInfer(request, (err: grpc.ServiceError | null, value: unknown) => resolve(err ?? value)));
    compressing.close();
    t.same(answer.outputs?.[0]?.contents?.fp32_contents, [3, 5, 7, 9], `a ${name}-compressed request is answered`);
  }

  const unknown = await c.call('ModelMetadata', { name: 'modèle ✓ 100%' });
  t.equal(!unknown.ok && unknown.error.code, grpc.status.INVALID_ARGUMENT, 'a name no model may have');
  t.match(!unknown.ok && unknown.error.details, /modèle ✓ 100%/, 'the details arrive as they were written');

  const live = await c.call('ServerLive', {}, {}, { deadline: Date.now() + 5000 });
  t.ok(live.ok, 'a call within its deadline is answered');
});

t.test('windows sized for tensors: an 8 MiB request goes out without waiting for the server', async (t) => {
  const { connect } = await import('node:http2');
  const { once } = await import('node:events');
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  const width = 1 << 20; // one row of 4 MiB
  repo.addVersion('wide', 1, affineModel(2, 1, width));
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const session = connect(`http://127.0.0.1:${s.server.grpcPort}`);
  t.teardown(() => session.close());
  await once(session, 'remoteSettings');
  t.ok(session.remoteSettings.initialWindowSize! >= 8 << 20, `each call may send ${session.remoteSettings.initialWindowSize} bytes before an update (HTTP/2's default: 65,535)`);
  t.ok(session.remoteSettings.maxFrameSize! >= 1 << 20, `in frames of up to ${session.remoteSettings.maxFrameSize} bytes (default 16,384)`);
  // The connection's own window arrives as a WINDOW_UPDATE right after the settings.
  const { until } = await import('./helpers/repo.js');
  await until(() => (session.state.remoteWindowSize ?? 0) >= (32 << 20) - 65_535, 'the connection window opened');
  t.ok(true, `the connection may carry ${session.state.remoteWindowSize} bytes before an update`);
  // And a 4 MiB tensor is answered exactly.
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const raw = Buffer.from(new Float32Array(width).map((_, i) => i % 1000).buffer);
  const r = await c.call('ModelInfer', { model_name: 'wide', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, width] }], raw_input_contents: [raw] });
  t.ok(r.ok, r.ok ? '4 MiB in, 4 MiB out' : r.error.details);
  if (r.ok) {
    const out = new Float32Array(new Uint8Array(r.value.raw_output_contents[0]).buffer);
    t.same([out.length, out[0], out[999], out[width - 1]], [width, 1, 1999, 2 * ((width - 1) % 1000) + 1]);
  }
});

t.test('messages arriving in pieces: a 4 MiB request in 4 KiB writes, and two stream messages cut inside their length prefixes', async (t) => {
  const { connect } = await import('node:http2');
  const loader = await import('@grpc/proto-loader');
  const definition = loader.loadSync([`${PROTO}grpc_service.proto`], { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  const methods = definition['inference.GRPCInferenceService'] as any;
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  const width = 1 << 20;
  repo.addVersion('wide', 1, affineModel(2, 1, width));
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const session = connect(`http://127.0.0.1:${s.server.grpcPort}`);
  t.teardown(() => session.close());
  const framed = (message: Buffer) => {
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(message.length, 1);
    return Buffer.concat([prefix, message]);
  };
  // Writes `bytes` cut at `cuts` (offsets), each piece its own DATA frame, and reads the answers' messages.
  const exchange = (method: string, bytes: Buffer, cuts: number[]) => new Promise<{ messages: Buffer[]; status: string | undefined }>((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': `/inference.GRPCInferenceService/${method}`, 'content-type': 'application/grpc', te: 'trailers' });
    const parts: Buffer[] = [];
    let status: string | undefined;
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('trailers', (trailers) => { status = String(trailers['grpc-status']); });
    req.on('error', reject);
    req.on('end', () => {
      const all = Buffer.concat(parts);
      const messages: Buffer[] = [];
      for (let at = 0; at + 5 <= all.length; at += 5 + all.readUInt32BE(at + 1)) messages.push(all.subarray(at + 5, at + 5 + all.readUInt32BE(at + 1)));
      resolve({ messages, status });
    });
    let from = 0;
    for (const cut of [...cuts, bytes.length]) {
      req.write(bytes.subarray(from, cut));
      from = cut;
    }
    req.end();
  });

  const raw = Buffer.from(new Float32Array(width).map((_, i) => i % 1000).buffer);
  const big = framed(methods.ModelInfer.requestSerialize({ model_name: 'wide', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, width] }], raw_input_contents: [raw] }));
  const cuts: number[] = [1, 2, 3, 4, 5];
  for (let at = 4096; at < big.length; at += 4096) cuts.push(at);
  const unary = await exchange('ModelInfer', big, cuts);
  t.equal(unary.status, '0', `a ${big.length}-byte message in ${cuts.length + 1} pieces is answered`);
  const answer = methods.ModelInfer.responseDeserialize(unary.messages[0]);
  const out = new Float32Array(new Uint8Array(answer.raw_output_contents[0]).buffer);
  t.same([out.length, out[0], out[999], out[width - 1]], [width, 1, 1999, 2 * ((width - 1) % 1000) + 1], 'and exactly');

  const one = framed(methods.ModelInfer.requestSerialize({ id: 'a', model_name: 'affine', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] }));
  const two = framed(methods.ModelInfer.requestSerialize({ id: 'b', model_name: 'affine', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [5, 6, 7, 8] } }] }));
  const both = Buffer.concat([one, two]);
  const seen: string[] = [];
  // Every cut from inside the first message's body to inside the second's prefix, one at a time.
  for (const cut of [3, one.length - 1, one.length, one.length + 2, one.length + 4]) {
    const streamed = await exchange('ModelStreamInfer', both, [cut]);
    const answers = streamed.messages.map((m) => methods.ModelStreamInfer.responseDeserialize(m).infer_response);
    seen.push(`${cut}: ${answers.map((a: any) => `${a.id}=${a.outputs[0].contents.fp32_contents.join(',')}`).join(' ')} (${streamed.status})`);
  }
  t.same(seen, [3, one.length - 1, one.length, one.length + 2, one.length + 4].map((cut) => `${cut}: a=3,5,7,9 b=11,13,15,17 (0)`), 'both stream messages answered wherever the bytes were cut');
});
