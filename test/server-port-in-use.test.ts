// A second server on a port another process listens on is refused with the fix named, never let
// in beside it: the HTTP listener shares its port among Umbra's own I/O threads (SO_REUSEPORT),
// which without this check would let a second `umbra serve` take a share of the first one's
// connections in silence (two repositories answering one address by turns).
import t from 'tap';
import { createServer } from 'node:net';
import { UmbraServer, ensurePortFree } from '../dist/server/server.js';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';

t.test('a port in use is refused, HTTP and gRPC, and the first server keeps every connection', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const first = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const port = Number(new URL(first.url).port);
  const grpcPort = first.server.grpcPort!;

  await t.rejects(UmbraServer.start({ repository: repo.dir, host: '127.0.0.1', port, workers: 1, ioThreads: 2 }),
    { code: 'INVALID_ARGUMENT', message: `port ${port} on 127.0.0.1 is in use by another process (another umbra serve?); stop it, or choose another port with --port (startServer()'s port)` }, 'HTTP port in use');
  await t.rejects(UmbraServer.start({ repository: repo.dir, host: '0.0.0.0', port, workers: 1, ioThreads: 1 }),
    { code: 'INVALID_ARGUMENT', message: /^port \d+ on 0\.0\.0\.0 is in use by another process/ }, 'the same port on every address');
  await t.rejects(UmbraServer.start({ repository: repo.dir, host: '127.0.0.1', port: 0, grpcPort, workers: 1 }),
    { code: 'INVALID_ARGUMENT', message: /with --grpc-port \(startServer\(\)'s grpcPort\)$/ }, 'gRPC port in use');

  // Nothing of the refused servers listens: 40 fresh connections all reach the first one.
  const answers = await Promise.all(Array.from({ length: 40 }, () => fetch(`${first.url}/v2/models/affine`, { headers: { connection: 'close' } }).then((r) => r.status)));
  t.same([...new Set(answers)], [200], 'every connection answered by the first server');

  // A port some other program holds (a plain listener) is refused the same way.
  const other = createServer();
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  t.teardown(() => other.close());
  const held = (other.address() as { port: number }).port;
  await t.rejects(ensurePortFree('127.0.0.1', held, '--port'), { message: /is in use by another process/ });
  await t.resolves(ensurePortFree('127.0.0.1', 0, '--port'), 'port 0: the kernel picks a free one');
});
