// umbra/client over HTTP: JSON and binary bodies, 64-bit integers, error answers as UmbraClientError.
import t from 'tap';
import { createServer, type AddressInfo } from 'node:net';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, pairModel } from './helpers/repo.js';
import { UmbraHttpClient, UmbraClientError } from '../dist/client/index.js';
import { buildModel } from '../dist/onnx/builder.js';

t.test('HTTP client: JSON and binary inference, metadata, readiness and errors', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.addVersion('pair', 1, pairModel());
  const s = await startTestServer(t, { repository: repo.dir });
  const client = new UmbraHttpClient(`${s.url}/`);
  t.equal(await client.ready(), true);
  t.same((await client.metadata('pair')).inputs, [{ name: 'a', datatype: 'FP32', shape: [-1, 3] }, { name: 'n', datatype: 'INT64', shape: [-1, 2] }]);

  const x = Float32Array.from([0.25, -1.5, 3.125, 7, -0.75, 2.5, 9.25, -4]);
  const json = await client.infer('affine', { id: 'j', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: x }] });
  t.equal(json.id, 'j');
  t.same(json.outputs[0]!.data, Array.from(x, (v) => v * 2 + 1));
  const binary = await client.infer('affine', { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: x }] }, { binary: true, version: '1' });
  t.ok(binary.outputs[0]!.data instanceof Float32Array);
  t.same(Array.from(binary.outputs[0]!.data as Float32Array), Array.from(x, (v) => v * 2 + 1));

  // INT64 beyond 2^32 survives the binary path exactly; plain number arrays are converted.
  const n = BigInt64Array.from([5_000_000_001n, -3n]);
  const pair = await client.infer('pair', { inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 3], data: [1.5, -2, 4] }, { name: 'n', datatype: 'INT64', shape: [1, 2], data: n }] }, { binary: true });
  const twice = pair.outputs.find((o) => o.name === 'twice')!;
  t.same(Array.from(twice.data as BigInt64Array), [10_000_000_002n, -6n]);
  t.same(Array.from(pair.outputs.find((o) => o.name === 'sum')!.data as Float32Array), [3, -4, 8]);

  // Over JSON too: a BigInt64Array past 2^53 is sent as its digits, not rounded to a double.
  const exact = await client.infer('pair', { inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 3], data: [1.5, -2, 4] }, { name: 'n', datatype: 'INT64', shape: [1, 2], data: BigInt64Array.from([9_007_199_254_740_993n, -123_456_789_012_345_678n]) }], outputs: [{ name: 'twice', parameters: { binary_data: true } }] });
  t.same(Array.from(exact.outputs.find((o) => o.name === 'twice')!.data as BigInt64Array), [18_014_398_509_481_986n, -246_913_578_024_691_356n], 'INT64 past 2^53 in a JSON request: exact');
  const exactAnswer = await client.infer('pair', { inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 3], data: [1.5, -2, 4] }, { name: 'n', datatype: 'INT64', shape: [1, 2], data: BigInt64Array.from([9_007_199_254_740_993n, 3n]) }] });
  t.same(exactAnswer.outputs.find((o) => o.name === 'twice')!.data, [18_014_398_509_481_986n, 6n], 'INT64 past 2^53 in a JSON answer: exact, as bigints');

  const missing = await client.infer('nope', { inputs: [] }).catch((e: unknown) => e);
  t.ok(missing instanceof UmbraClientError);
  t.equal((missing as UmbraClientError).status, 404);
  const bad = await client.infer('affine', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] }).catch((e: unknown) => e);
  t.equal((bad as UmbraClientError).status, 400);
  t.match((bad as UmbraClientError).message, /shape|dims|expected/);
});

t.test('HTTP client: FP16 bits and BOOL bytes mean the same in JSON as in binary', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  // h (FP16) and m (BOOL) read back as FP32, so each answer shows what the server took them for.
  repo.addVersion('cast', 1, buildModel({
    inputs: [{ name: 'h', datatype: 'FP16', dims: ['batch', 3] }, { name: 'm', datatype: 'BOOL', dims: ['batch', 3] }],
    outputs: [{ name: 'hf', datatype: 'FP32', dims: ['batch', 3] }, { name: 'mf', datatype: 'FP32', dims: ['batch', 3] }],
    nodes: [
      { op: 'Cast', inputs: ['h'], outputs: ['hf'], attributes: { to: 1 } },
      { op: 'Cast', inputs: ['m'], outputs: ['mf'], attributes: { to: 1 } },
    ],
  }));
  const s = await startTestServer(t, { repository: repo.dir });
  const client = new UmbraHttpClient(s.url);
  // 1.0, -2.5 and 0.099975586 as half-float bits, as binary answers hand them back.
  const h = Uint16Array.from([0x3c00, 0xc100, 0x2e66]);
  const want = [[1, -2.5, 0.0999755859375], [1, 0, 1]];
  const answers = [];
  for (const m of [Uint8Array.from([1, 0, 1]), [1, 0, 1], [true, false, true]]) {
    for (const binary of [false, true]) {
      const r = await client.infer('cast', { inputs: [{ name: 'h', datatype: 'FP16', shape: [1, 3], data: h }, { name: 'm', datatype: 'BOOL', shape: [1, 3], data: m }] }, { binary });
      answers.push(r.outputs.map((o) => Array.from(o.data as ArrayLike<number>)));
    }
  }
  t.same(answers, Array.from({ length: 6 }, () => want), 'a Uint16Array of FP16 bits, and BOOL as bytes, 0/1 or booleans: the same values over JSON and binary');

  // FP16 given as values (a plain array or a Float32Array) means those values on both paths.
  const values = [];
  for (const data of [[1, -2.5, 0.0999755859375], Float32Array.from([1, -2.5, 0.0999755859375])]) {
    for (const binary of [false, true]) {
      const r = await client.infer('cast', { inputs: [{ name: 'h', datatype: 'FP16', shape: [1, 3], data }, { name: 'm', datatype: 'BOOL', shape: [1, 3], data: [1, 0, 1] }] }, { binary });
      values.push(Array.from(r.outputs.find((o) => o.name === 'hf')!.data as ArrayLike<number>));
    }
  }
  t.same(values, Array.from({ length: 4 }, () => want[0]), 'FP16 values in a plain array or Float32Array: the same over JSON and binary');
});

t.test('HTTP client: an element JSON refuses is refused in binary too, not stored wrapped, cut or as NaN', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('same', 1, buildModel({
    inputs: [{ name: 'i', datatype: 'INT32', dims: ['batch', 1] }, { name: 'u', datatype: 'UINT8', dims: ['batch', 1] }, { name: 'f', datatype: 'FP32', dims: ['batch', 1] }],
    outputs: [{ name: 'io', datatype: 'INT32', dims: ['batch', 1] }, { name: 'uo', datatype: 'UINT8', dims: ['batch', 1] }, { name: 'fo', datatype: 'FP32', dims: ['batch', 1] }],
    nodes: [
      { op: 'Identity', inputs: ['i'], outputs: ['io'] },
      { op: 'Identity', inputs: ['u'], outputs: ['uo'] },
      { op: 'Identity', inputs: ['f'], outputs: ['fo'] },
    ],
  }));
  const s = await startTestServer(t, { repository: repo.dir });
  const client = new UmbraHttpClient(s.url);
  const request = (i: unknown[], u: unknown[], f: unknown[]) => ({ inputs: [
    { name: 'i', datatype: 'INT32' as const, shape: [1, 1], data: i as number[] },
    { name: 'u', datatype: 'UINT8' as const, shape: [1, 1], data: u as number[] },
    { name: 'f', datatype: 'FP32' as const, shape: [1, 1], data: f as number[] },
  ] });
  // Binary answered 1, 44 and NaN for these: Int32Array cut 1.5, Uint8Array wrapped 300, Number('x') was NaN.
  const bad = [request([1.5], [1], [1]), request([1], [300], [1]), request([1], [1], ['x'])];
  const statuses: string[] = [];
  for (const r of bad) {
    for (const binary of [false, true]) {
      statuses.push(await client.infer('same', r, { binary }).then(() => 'answered', (err: unknown) => (err instanceof UmbraClientError ? `refused ${err.status}` : `threw ${String(err)}`)));
    }
  }
  t.same(statuses, Array.from({ length: 6 }, () => 'refused 400'), 'refused over JSON and in binary alike');
  const good = await client.infer('same', request([-7], [255], [0.5]), { binary: true });
  t.same(good.outputs.map((o) => Array.from(o.data as ArrayLike<number>)), [[-7], [255], [0.5]], 'elements in range are sent as they are');
});

t.test('HTTP client: a 503 carries the Retry-After the server sent', async (t) => {
  // A server refusing under overload, as Umbra answers: the error in the body, the wait in the header.
  const refusing = (async () => new Response(JSON.stringify({ error: 'queue full' }), { status: 503, headers: { 'content-type': 'application/json', 'retry-after': '2' } })) as typeof fetch;
  const client = new UmbraHttpClient('http://127.0.0.1:1', { fetch: refusing });
  const err = await client.infer('m', { inputs: [] }).catch((e: unknown) => e);
  t.ok(err instanceof UmbraClientError && err.status === 503 && err.message === 'queue full', 'an UmbraClientError with the status and the body\'s message');
  t.equal((err as UmbraClientError).retryAfter, 2, 'retryAfter from the Retry-After header');
});

t.test('HTTP client: a JSON call answered with something that is not JSON is an UmbraClientError', async (t) => {
  // A proxy's error page in front of the server: metadata and the repository calls read JSON too.
  const proxy = (async () => new Response('<html><body>502 Bad Gateway</body></html>', { status: 502, headers: { 'content-type': 'text/html' } })) as typeof fetch;
  const client = new UmbraHttpClient('http://127.0.0.1:1', { fetch: proxy });
  const errors = await Promise.all([client.metadata('m'), client.systemSharedMemoryStatus()].map((call) => call.catch((e: unknown) => e)));
  t.same(errors.map((e) => [e instanceof UmbraClientError, (e as UmbraClientError).status, (e as Error).message]), Array.from({ length: 2 }, () => [true, 502, 'the server\'s answer (HTTP 502) is not JSON: "<html><body>502 Bad Gateway</body></html>"']));
});

t.test('HTTP client: a connection that fails is an UmbraClientError of status 0', async (t) => {
  // A loopback port nothing listens on: open one, then close it.
  const listener = createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address() as AddressInfo;
  await new Promise((resolve) => listener.close(resolve));
  const client = new UmbraHttpClient(`http://127.0.0.1:${port}`);
  const err = await client.infer('m', { inputs: [] }).catch((e: unknown) => e);
  t.ok(err instanceof UmbraClientError && err.status === 0, 'infer: UmbraClientError, status 0');
  t.match((err as Error).message, /could not reach .*ECONNREFUSED/, 'the message says what failed');
});
