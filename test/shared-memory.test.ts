// Triton's system shared-memory extension: a client on the same host registers slices of a POSIX
// shared-memory object (/dev/shm) as named regions, then sends inputs and takes outputs through
// them instead of the request and answer bodies, over REST and gRPC alike. Off unless the server
// is started with it; registering is an admin call; a change made through one thread or transport
// is seen at once by every other; every mistake is a 4xx naming the field.
import t, { type Test } from 'tap';
import { closeSync, openSync, readSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { generatedClient, grpc } from './helpers/grpc.js';

t.setTimeout(240_000);

/** A fresh shared-memory object of `bytes` zero bytes; its shm_open name ("/...") and path. */
function shmObject(t: Test, bytes: number): { key: string; path: string; write(at: number, data: Float32Array): void; read(at: number, count: number): number[] } {
  const name = `umbra-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  const path = `/dev/shm/${name}`;
  writeFileSync(path, Buffer.alloc(bytes));
  t.teardown(() => rmSync(path, { force: true }));
  return {
    key: `/${name}`,
    path,
    write(at, data) {
      const fd = openSync(path, 'r+');
      writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 0, data.byteLength, at);
      closeSync(fd);
    },
    read(at, count) {
      const fd = openSync(path, 'r');
      const out = Buffer.alloc(count * 4);
      readSync(fd, out, 0, out.length, at);
      closeSync(fd);
      return Array.from(new Float32Array(out.buffer, out.byteOffset, count));
    },
  };
}

const rows = (n: number, seed: number) => Float32Array.from({ length: n * 4 }, (_, i) => (i * 7 + seed) % 13 - 4);
const affine = (x: Float32Array) => Array.from(x, (v) => v * 2 + 1);
const shmParams = (region: string, byteSize: number, offset?: number) => ({ shared_memory_region: region, shared_memory_byte_size: byteSize, ...(offset !== undefined ? { shared_memory_offset: offset } : {}) });

t.test('off by default: not advertised, registering refused (403) and shared-memory tensors refused (400), each naming the flag', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const obj = shmObject(t, 4096);
  const s = await startTestServer(t, { repository: repo.dir });
  t.notOk((await s.get('/v2')).json.extensions.includes('system_shared_memory'));
  const reg = await s.post('/v2/systemsharedmemory/region/in/register', { key: obj.key, offset: 0, byte_size: 64 });
  t.equal(reg.status, 403);
  t.match(reg.json.error, /--shared-memory on/);
  t.equal((await s.get('/v2/systemsharedmemory/status')).status, 403);
  const infer = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], parameters: shmParams('in', 16) }] });
  t.equal(infer.status, 400);
  t.match(infer.json.error, /--shared-memory on/);
  const out = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }], outputs: [{ name: 'y', parameters: shmParams('out', 16) }] });
  t.equal(out.status, 400);
  t.match(out.json.error, /--shared-memory on/);
});

t.test('REST: inputs read from and outputs written to registered regions, through every I/O thread', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const obj = shmObject(t, 8192);
  const s = await startTestServer(t, { repository: repo.dir, sharedMemory: true });
  t.ok((await s.get('/v2')).json.extensions.includes('system_shared_memory'), 'advertised in server metadata');

  // Two regions in one object: inputs from byte 1024 on, outputs from byte 4096 on.
  t.equal((await s.post('/v2/systemsharedmemory/region/in/register', { key: obj.key, offset: 1024, byte_size: 2048 })).status, 200);
  t.equal((await s.post('/v2/systemsharedmemory/region/out/register', { key: obj.key, offset: 4096, byte_size: 2048 })).status, 200);
  t.same((await s.get('/v2/systemsharedmemory/status')).json.sort((a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name)), [
    { name: 'in', key: obj.key, offset: 1024, byte_size: 2048 },
    { name: 'out', key: obj.key, offset: 4096, byte_size: 2048 },
  ]);
  t.same((await s.get('/v2/systemsharedmemory/region/in/status')).json, [{ name: 'in', key: obj.key, offset: 1024, byte_size: 2048 }]);
  t.equal((await s.get('/v2/systemsharedmemory/region/nope/status')).status, 404);

  // Input and output both in shared memory: the answer carries no data, only where it went.
  const x = rows(3, 1);
  obj.write(1024 + 64, x);
  const both = await s.post('/v2/models/affine/infer', {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 4], parameters: shmParams('in', 48, 64) }],
    outputs: [{ name: 'y', parameters: shmParams('out', 256, 32) }],
  });
  t.equal(both.status, 200, both.text);
  t.same(both.json.outputs, [{ name: 'y', datatype: 'FP32', shape: [3, 4], parameters: { shared_memory_region: 'out', shared_memory_byte_size: 48, shared_memory_offset: 32 } }]);
  t.same(obj.read(4096 + 32, 12), affine(x));

  // Many requests at once, over many connections (spread over the threads), each with its own slice.
  const n = 24;
  const inputs = Array.from({ length: n }, (_, i) => rows(1, i));
  inputs.forEach((v, i) => obj.write(1024 + i * 16, v));
  const answers = await Promise.all(inputs.map((_, i) => s.post('/v2/models/affine/infer', {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], parameters: shmParams('in', 16, i * 16) }],
    outputs: [{ name: 'y', parameters: shmParams('out', 16, i * 16) }],
  }, { connection: 'close' })));
  t.same(answers.map((a) => a.status), Array(n).fill(200));
  t.same(inputs.map((_, i) => obj.read(4096 + i * 16, 4)), inputs.map(affine), 'every answer in its own slice');

  // The region is read per request: the client writes new values, the next answer follows them.
  const again = rows(1, 99);
  obj.write(1024, again);
  const fresh = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], parameters: shmParams('in', 16) }] });
  t.same(fresh.json.outputs[0].data, affine(again), 'output in the body when not asked for in shared memory');

  // Input in the body, output in shared memory; binary outputs beside a shared one.
  const mixed = await s.post('/v2/models/affine/infer', {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
    outputs: [{ name: 'y', parameters: { ...shmParams('out', 16, 512), binary_data: true } }],
  });
  t.equal(mixed.status, 200);
  t.notOk(mixed.headers.get('inference-header-content-length'), 'a shared output is not a binary one');
  t.same(obj.read(4096 + 512, 4), [3, 5, 7, 9]);

  // Unregistered: refused at once on every thread, whichever one unregistered it.
  t.equal((await s.post('/v2/systemsharedmemory/region/in/unregister')).status, 200);
  const gone = await Promise.all(Array.from({ length: 8 }, () => s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], parameters: shmParams('in', 16) }] }, { connection: 'close' })));
  t.same(gone.map((g) => g.status), Array(8).fill(400));
  t.match(gone[0]!.json.error, /expected a registered shared memory region for input "x" parameters.shared_memory_region but received "in"/);
  t.equal((await s.post('/v2/systemsharedmemory/region/in/unregister')).status, 200, 'unregistering an unknown name is not an error');
  t.equal((await s.post('/v2/systemsharedmemory/unregister')).status, 200);
  t.same((await s.get('/v2/systemsharedmemory/status')).json, []);
});

t.test('REST: every mistake is a 4xx that names the field', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const obj = shmObject(t, 1024);
  const s = await startTestServer(t, { repository: repo.dir, sharedMemory: true });
  const register = (name: string, body: unknown) => s.post(`/v2/systemsharedmemory/region/${name}/register`, body);

  const cases: [string, unknown, number, RegExp][] = [
    ['no object', { key: '/umbra-test-no-such-object', byte_size: 16 }, 400, /no shared memory object "\/umbra-test-no-such-object" exists/],
    ['a path, not a key', { key: '/../etc/passwd', byte_size: 16 }, 400, /expected a shared memory key as shm_open takes it/],
    ['no key', { byte_size: 16 }, 400, /for "key"/],
    ['past the end', { key: obj.key, offset: 1000, byte_size: 100 }, 400, /\(1024 bytes\) but offset 1000 \+ byte_size 100 runs past its end/],
    ['no size', { key: obj.key }, 400, /for "byte_size"/],
    ['negative offset', { key: obj.key, offset: -1, byte_size: 16 }, 400, /for "offset"/],
  ];
  for (const [what, body, status, error] of cases) {
    const r = await register('r', body);
    t.equal(r.status, status, what);
    t.match(r.json.error, error, what);
  }
  // A link under /dev/shm to another file is not followed.
  const link = `/dev/shm/umbra-test-link-${process.pid}-${randomBytes(4).toString('hex')}`;
  symlinkSync(obj.path, link);
  t.teardown(() => rmSync(link, { force: true }));
  const linked = await register('r', { key: link.slice('/dev/shm'.length), byte_size: 16 });
  t.equal(linked.status, 400, 'a symbolic link');
  t.match(linked.json.error, /names a symbolic link .* which the server does not follow/);
  t.equal((await s.post('/v2/systemsharedmemory/region/r/register', 'not json', { 'content-type': 'application/json' })).status, 400);
  t.same((await s.get('/v2/systemsharedmemory/status')).json, [], 'nothing registered by a refused call');

  t.equal((await register('in', { key: obj.key, offset: 0, byte_size: 512 })).status, 200);
  const dup = await register('in', { key: obj.key, offset: 0, byte_size: 16 });
  t.equal(dup.status, 409);
  t.match(dup.json.error, /already registered/);
  t.equal((await register('small', { key: obj.key, offset: 512, byte_size: 8 })).status, 200);

  const infer = (input: Record<string, unknown>, outputs?: unknown[]) => s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], ...input }], ...(outputs ? { outputs } : {}) });
  const bad: [string, ReturnType<typeof infer>, RegExp][] = [
    ['unknown region', infer({ parameters: shmParams('nope', 16) }), /registered shared memory region .* but received "nope" \(register it first/],
    ['past the region', infer({ parameters: shmParams('in', 16, 500) }), /inside shared memory region "in" \(512 bytes\) but shared_memory_offset 500 \+ shared_memory_byte_size 16 runs past its end/],
    ['wrong size', infer({ parameters: shmParams('in', 12) }), /expected shared_memory_byte_size 16 for input "x" \(4 FP32 elements of 4 bytes\) but received 12/],
    ['data too', infer({ data: [1, 2, 3, 4], parameters: shmParams('in', 16) }), /in shared memory or in the request for input "x" but received both/],
    ['region without size', infer({ parameters: { shared_memory_region: 'in' } }), /expected both parameters.shared_memory_region and parameters.shared_memory_byte_size for input "x" but received only shared_memory_region/],
    ['bad size', infer({ parameters: shmParams('in', -16 as number) }), /non-negative integer for input "x" parameters.shared_memory_byte_size/],
    ['unknown output region', infer({ data: [1, 2, 3, 4] }, [{ name: 'y', parameters: shmParams('nope', 16) }]), /for output "y" parameters.shared_memory_region but received "nope"/],
    ['output too large for its slice', infer({ data: [1, 2, 3, 4] }, [{ name: 'y', parameters: shmParams('small', 8) }]), /expected shared_memory_byte_size of at least 16 for output "y" \(the answer's size\) but received 8/],
  ];
  for (const [what, pending, error] of bad) {
    const r = await pending;
    t.equal(r.status, 400, what);
    t.match(r.json.error, error, what);
  }
  t.equal((await s.get('/v2/health/ready')).status, 200, 'still serving');

  // CUDA shared memory: nothing registered, registering refused with what to do instead.
  t.same((await s.get('/v2/cudasharedmemory/status')).json, []);
  const cuda = await s.post('/v2/cudasharedmemory/region/g/register', { raw_handle: { b64: 'AAAA' }, device_id: 0, byte_size: 16 });
  t.equal(cuda.status, 400);
  t.match(cuda.json.error, /register a system shared memory region/);
});

t.test('registering is an admin call: the token when the server has one', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const obj = shmObject(t, 256);
  const s = await startTestServer(t, { repository: repo.dir, sharedMemory: true, adminToken: 'sesame', grpcPort: 'any' });
  t.equal((await s.post('/v2/systemsharedmemory/region/in/register', { key: obj.key, byte_size: 16 })).status, 401);
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const denied = await c.call('SystemSharedMemoryRegister', { name: 'in', key: obj.key, offset: 0, byte_size: 16 });
  t.equal(!denied.ok && denied.error.code, grpc.status.UNAUTHENTICATED);
  t.equal((await s.post('/v2/systemsharedmemory/region/in/register', { key: obj.key, byte_size: 16 }, { authorization: 'Bearer sesame' })).status, 200);
  t.equal((await s.post('/v2/systemsharedmemory/unregister')).status, 401);
  t.equal((await s.post('/v2/systemsharedmemory/unregister', undefined, { authorization: 'Bearer sesame' })).status, 200);
});

t.test('gRPC: the same regions, registered on either transport and used on both', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const obj = shmObject(t, 4096);
  const s = await startTestServer(t, { repository: repo.dir, sharedMemory: true, grpcPort: 'any' });
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());

  const meta = await c.call('ServerMetadata', {});
  t.ok(meta.ok && meta.value.extensions.includes('system_shared_memory'));
  t.ok((await c.call('SystemSharedMemoryRegister', { name: 'in', key: obj.key, offset: 0, byte_size: 1024 })).ok);
  t.equal((await s.post('/v2/systemsharedmemory/region/out/register', { key: obj.key, offset: 2048, byte_size: 1024 })).status, 200);
  const status = await c.call('SystemSharedMemoryStatus', {});
  t.same(status.ok && status.value.regions, {
    in: { name: 'in', key: obj.key, offset: 0, byte_size: 1024 },
    out: { name: 'out', key: obj.key, offset: 2048, byte_size: 1024 },
  });
  const dup = await c.call('SystemSharedMemoryRegister', { name: 'in', key: obj.key, offset: 0, byte_size: 16 });
  t.equal(!dup.ok && dup.error.code, grpc.status.FAILED_PRECONDITION);

  // Input from shared memory, output to it: the raw entry for the output is there, and empty.
  const x = rows(2, 5);
  obj.write(128, x);
  const both = await c.call('ModelInfer', {
    model_name: 'affine',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], parameters: { shared_memory_region: { string_param: 'in' }, shared_memory_byte_size: { int64_param: 32 }, shared_memory_offset: { int64_param: 128 } } }],
    outputs: [{ name: 'y', parameters: { shared_memory_region: { string_param: 'out' }, shared_memory_byte_size: { int64_param: 64 } } }],
    raw_input_contents: [],
  });
  t.ok(both.ok, both.ok ? '' : both.error.details);
  if (both.ok) {
    t.same(both.value.outputs[0].shape, [2, 4]);
    t.equal(both.value.outputs[0].parameters.shared_memory_byte_size.int64_param, 32);
  }
  t.same(obj.read(2048, 8), affine(x));

  // One input in shared memory, the output raw: raw entries count only the inputs in the message.
  const raw = await c.call('ModelInfer', {
    model_name: 'affine',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], parameters: { shared_memory_region: { string_param: 'in' }, shared_memory_byte_size: { int64_param: 32 }, shared_memory_offset: { int64_param: 128 } } }],
    parameters: { binary_data_output: { bool_param: true } },
  });
  t.ok(raw.ok);
  if (raw.ok) t.same(Array.from(new Float32Array(new Uint8Array(raw.value.raw_output_contents[0]).slice().buffer)), affine(x));

  const unknown = await c.call('ModelInfer', { model_name: 'affine', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], parameters: { shared_memory_region: { string_param: 'nope' }, shared_memory_byte_size: { int64_param: 16 } } }] });
  t.equal(!unknown.ok && unknown.error.code, grpc.status.INVALID_ARGUMENT);
  t.match(!unknown.ok && unknown.error.details, /received "nope"/);

  // Unregistered over gRPC: REST requests on the I/O threads refuse it at once.
  t.ok((await c.call('SystemSharedMemoryUnregister', { name: 'in' })).ok);
  const after = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], parameters: shmParams('in', 16) }] }, { connection: 'close' });
  t.equal(after.status, 400);
  t.ok((await c.call('SystemSharedMemoryUnregister', { name: '' })).ok, 'empty name: every region');
  const none = await c.call('SystemSharedMemoryStatus', {});
  t.same(none.ok && none.value.regions, {});

  const cuda = await c.call('CudaSharedMemoryRegister', { name: 'g', raw_handle: Buffer.alloc(64), device_id: 0, byte_size: 16 });
  t.equal(!cuda.ok && cuda.error.code, grpc.status.UNIMPLEMENTED);
  const cudaStatus = await c.call('CudaSharedMemoryStatus', {});
  t.same(cudaStatus.ok && cudaStatus.value.regions, {});
});

t.test('umbra/client: regions made with SharedMemoryObject, registered and used over HTTP (JSON and binary) and gRPC', async (t) => {
  const { UmbraHttpClient, UmbraGrpcClient, sharedMemoryParameters } = await import('../dist/client/index.js');
  const { SharedMemoryObject } = await import('../dist/client/shared-memory.js');
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, sharedMemory: true, grpcPort: 'any' });
  const key = `/umbra-client-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  const obj = SharedMemoryObject.create(key, 4096);
  t.teardown(() => obj.destroy());
  t.throws(() => SharedMemoryObject.create(key, 16), 'one of that name exists already');

  const http = new UmbraHttpClient(s.url);
  const rpc = new UmbraGrpcClient(`127.0.0.1:${s.server.grpcPort}`);
  t.teardown(() => rpc.close());
  await http.registerSystemSharedMemory('in', key, 1024);
  await rpc.registerSystemSharedMemory('out', key, 1024, 2048);
  t.same((await rpc.systemSharedMemoryStatus()).sort((a, b) => a.name.localeCompare(b.name)), [
    { name: 'in', key, offset: 0, byte_size: 1024 },
    { name: 'out', key, offset: 2048, byte_size: 1024 },
  ]);
  t.same(await http.systemSharedMemoryStatus('out'), [{ name: 'out', key, offset: 2048, byte_size: 1024 }]);

  const x = { name: 'x', datatype: 'FP32' as const, shape: [2, 4], data: rows(2, 3) };
  let at = 0;
  for (const [what, run] of [
    ['HTTP JSON', (req: any) => http.infer('affine', req)],
    ['HTTP binary', (req: any) => http.infer('affine', req, { binary: true })],
    ['gRPC', (req: any) => rpc.infer('affine', req)],
  ] as const) {
    const size = obj.write(at, x);
    const answer = await run({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: [], parameters: sharedMemoryParameters('in', size, at) }],
      outputs: [{ name: 'y', parameters: sharedMemoryParameters('out', 32, at) }],
    });
    t.same(answer.outputs[0].data, [], `${what}: no data in the answer`);
    t.equal(answer.outputs[0].parameters.shared_memory_byte_size, 32, what);
    t.same(Array.from(obj.read(2048 + at, 32, 'FP32', [2, 4]) as Float32Array), affine(x.data), `${what}: the answer in the region`);
    at += 64;
  }

  const other = new UmbraHttpClient(s.url);
  await t.rejects(other.systemSharedMemoryStatus('nope'), { status: 404 });
  await rpc.unregisterSystemSharedMemory('in');
  await http.unregisterSystemSharedMemory();
  t.same(await http.systemSharedMemoryStatus(), []);
});

t.test('umbra/client: SharedMemoryObject.create on a key in use names the object and what to do', async (t) => {
  const { SharedMemoryObject } = await import('../dist/client/shared-memory.js');
  const { UmbraClientError } = await import('../dist/client/index.js');
  const key = `/umbra-client-taken-${process.pid}-${randomBytes(4).toString('hex')}`;
  const taken = SharedMemoryObject.create(key, 16);
  t.teardown(() => taken.destroy());
  taken.write(0, new Uint8Array([7]));
  const path = `/dev/shm${key}`;
  // It threw the raw EEXIST: "file already exists, open '/dev/shm/...'".
  t.throws(() => SharedMemoryObject.create(key, 16), UmbraClientError, 'a client error, as the client\'s others are');
  t.throws(() => SharedMemoryObject.create(key, 16), { message: `the shared memory object ${key} (${path}) already exists: choose another key, or, if nothing uses it, remove it (SharedMemoryObject.open("${key}").destroy(), or rm ${path}) and create it again` }, 'naming the object and the fix');
  t.equal((taken.read(0, 1, 'UINT8', [1]) as Uint8Array)[0], 7, 'the object in use is left as it was');
});

t.test('umbra perf --shared-memory system: every transport through registered regions, released after; refused with the fix where the server has it off', async (t) => {
  const { runPerf } = await import('../dist/perf/index.js');
  const { readdirSync } = await import('node:fs');
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const before = readdirSync('/dev/shm').filter((f) => f.startsWith(`umbra-perf-${process.pid}-`));
  const s = await startTestServer(t, { repository: repo.dir, sharedMemory: true, grpcPort: 'any' });
  let seen = 0;
  for (const protocol of ['http', 'http-binary', 'ws', 'grpc'] as const) {
    const url = protocol === 'grpc' ? `127.0.0.1:${s.server.grpcPort}` : s.url;
    const [level] = await runPerf({
      url, model: 'affine', protocol, concurrency: [2], durationS: 0.3, warmupMs: 50, serverStats: false, sharedMemory: 'system',
      onMeasure: (phase) => {
        if (phase === 'start') seen += 1;
      },
    });
    t.ok(level!.completed > 0, `${protocol}: requests answered`);
    t.equal(level!.errors, 0, `${protocol}: none refused`);
    t.same((await s.get('/v2/systemsharedmemory/status')).json, [], `${protocol}: regions unregistered after the run`);
  }
  t.equal(seen, 4);
  t.same(readdirSync('/dev/shm').filter((f) => f.startsWith(`umbra-perf-${process.pid}-`)), before, 'no object left behind');

  const off = await startTestServer(t, { repository: repo.dir });
  await t.rejects(runPerf({ url: off.url, model: 'affine', concurrency: [1], durationS: 0.2, warmupMs: 0, serverStats: false, sharedMemory: 'system' }), /--shared-memory system: the server did not register the region .*--shared-memory on/);
  t.same(readdirSync('/dev/shm').filter((f) => f.startsWith(`umbra-perf-${process.pid}-`)), before, 'nothing left behind by a refused run');
});

t.test('large inputs answered on an I/O thread reach the core\'s hooks intact, from a binary body and from shared memory', async (t) => {
  const WIDE = 32768; // 128 KiB of FP32 a row: past the size from which owned buffers move instead of being copied
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('wide', 1, affineModel(2, 1, WIDE));
  const obj = shmObject(t, WIDE * 4 * 4);
  const s = await startTestServer(t, { repository: repo.dir, sharedMemory: true });
  const seen: { id: string | undefined; first: number; last: number; sum: number; out: number }[] = [];
  t.teardown(s.server.umbra.hooks.use({
    onResult: (e) => {
      const x = e.request!.inputs[0]!.data as Float32Array;
      const y = e.response?.outputs[0]?.data as Float32Array | undefined;
      seen.push({ id: e.request!.id, first: x[0]!, last: x[x.length - 1]!, sum: x.reduce((a, b) => a + b, 0), out: y ? y[y.length - 1]! : NaN });
    },
    readsHeaders: false,
  }));
  t.equal((await s.post('/v2/systemsharedmemory/region/in/register', { key: obj.key, byte_size: WIDE * 4 * 4 })).status, 200);

  const row = (seed: number) => Float32Array.from({ length: WIDE }, (_, i) => ((i * 31 + seed) % 97) - 48);
  const sent = new Map<string, Float32Array>();
  const requests: Promise<unknown>[] = [];
  for (let i = 0; i < 12; i++) {
    const x = row(i);
    const id = `r${i}`;
    sent.set(id, x);
    if (i % 2 === 0) {
      const header = Buffer.from(JSON.stringify({ id, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDE], parameters: { binary_data_size: WIDE * 4 } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }));
      requests.push(s.post('/v2/models/wide/infer', Buffer.concat([header, Buffer.from(x.buffer)]), { 'inference-header-content-length': String(header.length), connection: 'close' }).then((r) => {
        t.equal(r.status, 200, `${id}: answered`);
        const y = new Float32Array(r.bytes.buffer.slice(r.bytes.byteOffset + Number(r.headers.get('inference-header-content-length'))));
        t.equal(y[WIDE - 1], x[WIDE - 1]! * 2 + 1, `${id}: the answer follows the input`);
      }));
    } else {
      const slot = (i % 4) * WIDE * 4;
      obj.write(slot, x);
      requests.push(s.post('/v2/models/wide/infer', { id, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDE], parameters: shmParams('in', WIDE * 4, slot) }] }, { connection: 'close' }).then((r) => {
        t.equal(r.status, 200, `${id}: answered`);
        t.equal((r.json.outputs[0].data as number[])[WIDE - 1], x[WIDE - 1]! * 2 + 1, `${id}: the answer follows the input`);
      }));
    }
    // Shared-memory slots are reused: one request at a time per slot.
    if (i % 4 === 3) await Promise.all(requests.splice(0));
  }
  await Promise.all(requests);
  // Every event the hooks got carries the input as it was sent.
  await s.server.umbra.settleEvents();
  t.equal(seen.length, 12, 'an event for every request');
  for (const e of seen) {
    const x = sent.get(e.id!)!;
    t.same([e.first, e.last, e.sum], [x[0], x[WIDE - 1], x.reduce((a, b) => a + b, 0)], `${e.id}: the hooks see its input whole`);
    t.equal(e.out, x[WIDE - 1]! * 2 + 1, `${e.id}: and its answer`);
  }
});
