// The gRPC service from Python: grpcio (gRPC's C-core stack, what most KServe and Triton users
// call) with stubs generated from proto/ by grpc_tools, as such a user makes them. The other gRPC
// tests use @grpc/grpc-js, the same stack as the server; this one checks the wire against another
// implementation. Each answer is compared with the REST answer for the same request. Skips where
// the Debian packages python3-grpcio and python3-grpc-tools are missing (.ci/run installs them).
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { buildModel } from '../dist/onnx/builder.js';

const run = promisify(execFile);
const python = '/usr/bin/python3';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const fixture = join(ROOT, 'test', 'fixtures', 'python', 'grpc_client.py');

async function pythonGrpc(): Promise<string | undefined> {
  try {
    await run(python, ['-c', 'import grpc, grpc_tools.protoc']);
    return undefined;
  } catch {
    return `${python} with grpcio and grpc_tools is not installed (apt-get install python3-grpcio python3-grpc-tools)`;
  }
}

const missing = await pythonGrpc();
if (missing) {
  t.skip(missing);
} else {
  t.test('a Python grpcio client: health, metadata, FP32 raw and typed, BYTES, errors, streaming, statistics', async (t) => {
    const repo = tempRepo();
    t.teardown(() => repo.remove());
    repo.addVersion('affine', 1, affineModel(2, 1));
    repo.addVersion('text', 1, buildModel({
      inputs: [{ name: 'x', datatype: 'BYTES', dims: ['batch', 2] }],
      outputs: [{ name: 'y', datatype: 'BYTES', dims: ['batch', 2] }],
      nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
    }));
    const stubs = mkdtempSync(join(tmpdir(), 'umbra-py-stubs-'));
    t.teardown(() => rmSync(stubs, { recursive: true, force: true }));
    const proto = join(ROOT, 'proto');
    await run(python, ['-m', 'grpc_tools.protoc', `-I${proto}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, 'grpc_service.proto', 'health.proto', 'model_config.proto']);

    const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
    const { stdout } = await run(python, [fixture, stubs, `127.0.0.1:${s.server.grpcPort}`], { timeout: 120_000 });
    const got = JSON.parse(stdout);

    t.same([got.live, got.ready, got.model_ready, got.health], [true, true, true, 'SERVING'], 'live, ready, model ready and grpc.health.v1 SERVING');
    const meta = (await s.get('/v2/models/affine')).json;
    t.same(got.metadata, {
      name: meta.name,
      versions: meta.versions,
      platform: meta.platform,
      inputs: meta.inputs.map((i: any) => [i.name, i.datatype, i.shape]),
      outputs: meta.outputs.map((o: any) => [o.name, o.datatype, o.shape]),
    }, 'metadata as REST gives it');

    const rows = [[0.5, -1.25, 3.0, 1e-3], [7.0, 0.0, -2.5, 100.0]];
    const rest = (await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: rows.flat() }] })).json;
    const expected = { model: 'affine', version: rest.model_version, name: 'y', datatype: 'FP32', shape: [2, 4], data: rest.outputs[0].data };
    t.same(got.raw, { id: 'py-raw', ...expected }, 'raw_input_contents: the REST answer, the id echoed');
    t.same({ ...got.typed, id: undefined }, { id: undefined, ...expected }, 'typed contents: the REST answer');
    t.ok(typeof got.typed.id === 'string' && got.typed.id !== '', 'a request without id is given one');

    t.same(got.bytes.echoed, got.bytes.sent, 'BYTES (UTF-8, empty, 300 bytes) come back as sent');

    t.same(
      [got.errors.shape?.code, got.errors.model?.code, got.errors.version?.code],
      ['INVALID_ARGUMENT', 'NOT_FOUND', 'NOT_FOUND'],
      'a wrong shape, an unknown model and an unknown version get their status codes',
    );
    t.match(got.errors.shape.details, /shape/, 'the shape error says what is wrong');

    const answers = got.stream.filter((m: any) => m.error === undefined);
    const streamed = await Promise.all([0, 1, 2].map(async (i) => (await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [i, i, i, i] }] })).json.outputs[0].data));
    t.same(answers.map((a: any) => [a.id, a.data]), [0, 1, 2].map((i) => [`s${i}`, streamed[i]]), 'a stream answers each request in order, raw and typed');
    t.same(got.stream.filter((m: any) => m.error !== undefined).map((m: any) => m.id), ['bad'], 'a bad request on a stream is answered in-band with its id and the stream goes on');

    const stats = (await s.get('/v2/models/affine/stats')).json;
    t.same(got.stats.map((m: any) => [m.name, m.version]), stats.model_stats.map((m: any) => [m.name, m.version]), 'statistics name the versions REST names');
  });
}
