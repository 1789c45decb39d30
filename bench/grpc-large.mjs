// Large tensors over gRPC against the same tensors over HTTP's binary extension, one `umbra serve`
// per build (each with its defaults), one request at a time: wall time per request, client and
// server together, for 8 to 48 MB of FP32. A gRPC message arrives in many HTTP/2 DATA frames; the
// time it takes must grow with its size as HTTP's does.
//
//   node bench/grpc-large.mjs [--rounds=2] [--mb=8,16,32,48] ["--builds=NAME=DIR;..."]
//
// --builds adds other checkouts (a `git worktree` with dist/ built) served side by side with this one.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(join(root, 'package.json'));
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const { buildModel } = await import(join(root, 'dist/onnx/builder.js'));
const { writeModel } = await import(join(root, 'dist/onnx/model-io.js'));

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const rounds = Number(arg('rounds', '2'));
const sizes = arg('mb', '8,16,32,48').split(',').map(Number);
const builds = [['this build', root], ...arg('builds', '').split(';').filter(Boolean).map((b) => b.split('='))];

const work = mkdtempSync(join(tmpdir(), 'umbra-grpc-large-'));
writeModel(buildModel({
  inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 'n'] }],
  outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 'n'] }],
  nodes: [{ op: 'Mul', inputs: ['x', 'two'], outputs: ['y'] }],
  initializers: [{ name: 'two', datatype: 'FP32', dims: [], values: [2] }],
}), join(work, 'repo', 'twice', '1', 'model.onnx'));

const definition = loader.loadSync([join(root, 'proto/grpc_service.proto')], { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
const Service = grpc.loadPackageDefinition(definition).inference.GRPCInferenceService;

async function serve(dir, i) {
  const child = spawn(process.execPath, [join(dir, 'bin/umbra.js'), 'serve', '--repo', join(work, 'repo'), '--port', '0', '--grpc-port', String(18950 + i), '--state-dir', join(work, `state-${i}`)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const port = await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${dir}: exited ${code}\n${out}`)));
  });
  return { child, http: port, grpc: 18950 + i };
}

const servers = [];
for (const [i, [, dir]] of builds.entries()) servers.push(await serve(dir, i));
const results = {};
try {
  for (let round = 1; round <= rounds; round++) {
    for (const [i, [name]] of builds.entries()) {
      const s = servers[i];
      const client = new Service(`127.0.0.1:${s.grpc}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
      for (const mb of sizes) {
        const n = mb * 262144;
        const raw = Buffer.from(new Float32Array(n).fill(1.5).buffer);
        const t0 = performance.now();
        const answer = await new Promise((resolve) => client.ModelInfer({ model_name: 'twice', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, n] }], raw_input_contents: [raw] }, { deadline: Date.now() + 600_000 }, (err, value) => resolve(err ?? value)));
        const t1 = performance.now();
        const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, n], parameters: { binary_data_size: raw.length } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }));
        const res = await fetch(`http://127.0.0.1:${s.http}/v2/models/twice/infer`, { method: 'POST', headers: { 'inference-header-content-length': String(header.length), 'content-type': 'application/octet-stream' }, body: Buffer.concat([header, raw]) });
        // The answer's JSON header, then y's bytes: its last value is the last 4 bytes.
        const bytes = Buffer.from(await res.arrayBuffer());
        const t2 = performance.now();
        const grpcOk = answer.raw_output_contents?.[0]?.length === raw.length && new Float32Array(new Uint8Array(answer.raw_output_contents[0]).buffer)[n - 1] === 3;
        const httpOk = res.status === 200 && bytes.length >= raw.length && bytes.readFloatLE(bytes.length - 4) === 3;
        const row = (results[`${name}, ${mb} MB`] ??= { grpcMs: [], httpMs: [] });
        row.grpcMs.push(grpcOk ? Math.round(t1 - t0) : `failed: ${answer.code} ${answer.details ?? ''}`);
        row.httpMs.push(httpOk ? Math.round(t2 - t1) : `failed: ${res.status}`);
        console.error(`round ${round} ${name} ${mb} MB: gRPC ${row.grpcMs.at(-1)} ms, HTTP binary ${row.httpMs.at(-1)} ms`);
      }
      client.close();
    }
  }
} finally {
  for (const s of servers) s.child.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
console.log(JSON.stringify(results, null, 2));
