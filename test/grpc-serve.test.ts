// `umbra serve`'s gRPC settings: --grpc-port, UMBRA_GRPC_PORT and grpcPort (default 8001, 0 = off)
// with the flag named in every bad value, a port in use refused with the fix, and a served
// process answering over gRPC on the port it was given.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tempRepo, affineModel } from './helpers/repo.js';
import { resolveServeSettings } from '../dist/cli/settings.js';
import { UmbraGrpcClient } from '../dist/client/index.js';

const BIN = new URL('../bin/umbra.js', import.meta.url).pathname;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

t.test('settings: default 8001, 0 turns it off, flag over environment over file, bad values named', async (t) => {
  t.equal(resolveServeSettings({ repo: 'r' }, {}).grpcPort, 8001);
  t.equal(resolveServeSettings({ repo: 'r', grpcPort: '0' }, {}).grpcPort, 0);
  t.equal(resolveServeSettings({ repo: 'r' }, { UMBRA_GRPC_PORT: '9100' }).grpcPort, 9100);
  const file = join(mkdtempSync(join(tmpdir(), 'umbra-cfg-')), 'umbra.json');
  writeFileSync(file, JSON.stringify({ repo: 'r', grpcPort: 9200 }));
  t.equal(resolveServeSettings({ config: file }, {}).grpcPort, 9200);
  t.equal(resolveServeSettings({ config: file, grpcPort: '9300' }, { UMBRA_GRPC_PORT: '9100' }).grpcPort, 9300);
  t.throws(() => resolveServeSettings({ repo: 'r', grpcPort: '70000' }, {}), /--grpc-port/);
  t.throws(() => resolveServeSettings({ repo: 'r' }, { UMBRA_GRPC_PORT: 'grpc' }), /UMBRA_GRPC_PORT \(environment\).*--grpc-port/);
});

t.test('umbra serve answers gRPC on --grpc-port; a port in use is refused with the fix', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 0));
  // A port someone else holds: the server refuses to start and says which flag to change.
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', () => resolve()));
  const taken = (holder.address() as { port: number }).port;
  const refused = spawnSync(process.execPath, [BIN, 'serve', '--repo', repo.dir, '--port', '0', '--grpc-port', String(taken), '--workers', '1'], { encoding: 'utf8', timeout: 120_000 });
  holder.close();
  t.not(refused.status, 0);
  t.match(refused.stderr + refused.stdout, new RegExp(`port ${taken} on 127\\.0\\.0\\.1 is in use by another process.*--grpc-port`));

  const port = await freePort();
  // With the HTTP guard off as well (gRPC does not go through it): the log says so.
  const child = spawn(process.execPath, [BIN, 'serve', '--repo', repo.dir, '--port', '0', '--grpc-port', String(port), '--workers', '1', '--http-guard', 'off'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: string) => {
      out += d;
      if (/listening on/.test(out)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`server exited early (${code}): ${out}`)));
  });
  t.match(out, new RegExp(`gRPC on 127\\.0\\.0\\.1:${port}`));
  t.match(out, /HTTP guard: off, turned off \(--http-guard off\)/, '--http-guard off: the log says the guard is off');
  const client = new UmbraGrpcClient(`127.0.0.1:${port}`);
  t.teardown(() => client.close());
  t.ok(await client.serverLive());
  const answer = await client.infer('affine', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
  t.same(Array.from(answer.outputs[0]!.data as Float32Array), [2, 4, 6, 8]);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'drains and exits 0');
});
