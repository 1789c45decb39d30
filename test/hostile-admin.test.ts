// Admin routes are closed to the network by default: without a token only loopback clients that
// came straight in may use them (through I/O threads too: the client's address travels with the
// request), everyone else gets 401 naming the fix. With a token, it is compared in constant time
// and may come from a file so it is not in the process list.
import t from 'tap';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { generatedClient, grpc } from './helpers/grpc.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { AdminGate, isLoopbackAddress } from '../dist/api/admin.js';
import { resolveServeSettings } from '../dist/cli/settings.js';

t.test('loopback addresses, written every way a transport writes them', async (t) => {
  for (const a of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1', '0000:0000:0000:0000:0000:ffff:7f00:0001', '0000:0000:0000:0000:0000:0000:0000:0001']) t.ok(isLoopbackAddress(a), a);
  for (const a of ['10.0.0.1', '192.168.1.1', '::ffff:10.0.0.1', '0000:0000:0000:0000:0000:ffff:0a00:0001', 'fe80::1', '', 'localhost', '127.0.0.1.evil']) t.notOk(isLoopbackAddress(a), a || '(empty)');
});

t.test('the gate: no token means loopback only; a token means the token from anywhere', async (t) => {
  const open = new AdminGate();
  t.doesNotThrow(() => open.check({ headers: {}, remoteAddress: '127.0.0.1' }), 'loopback, no token set');
  t.throws(() => open.check({ headers: {}, remoteAddress: '10.1.2.3' }), /only to loopback clients.*--admin-token-file/, 'remote: 401 naming the fix');
  t.throws(() => open.check({ headers: { 'x-forwarded-for': '10.1.2.3' }, remoteAddress: '127.0.0.1' }), /came through a proxy/, 'loopback behind a proxy counts as remote');
  t.throws(() => open.check({ headers: { forwarded: 'for=10.1.2.3' }, remoteAddress: '::1' }), /proxy/, 'Forwarded header too');
  t.throws(() => open.check({ headers: {} }), /loopback/, 'no address at all: refused, never opened by a missing address');
  t.match(open.describe(), /only to loopback/);
  // A browser on this host is a loopback client too: a page of another site (its Origin), or one
  // whose name was rebound to 127.0.0.1 (its Host), is not the operator.
  for (const host of ['127.0.0.1:8000', 'localhost:8000', 'LOCALHOST', 'umbra.localhost:8000', '[::1]:8000', '10.0.0.5:8000']) {
    t.doesNotThrow(() => open.check({ headers: { host }, remoteAddress: '127.0.0.1' }), `Host ${host}`);
  }
  t.doesNotThrow(() => open.check({ headers: { host: '127.0.0.1:8000', origin: 'http://127.0.0.1:8000' }, remoteAddress: '127.0.0.1' }), 'the server\'s own page');
  for (const host of ['rebound.example:8000', 'rebound.example', '127.0.0.1.nip.io:8000', 'localhost.example']) {
    t.throws(() => open.check({ headers: { host }, remoteAddress: '127.0.0.1' }), /Host .* is not a loopback name.*--admin-token-file/, `Host ${host}: refused`);
  }
  for (const origin of ['http://evil.example', 'http://127.0.0.1:9999', 'http://localhost:8000', 'null', 'not a url']) {
    t.throws(() => open.check({ headers: { host: '127.0.0.1:8000', origin }, remoteAddress: '127.0.0.1' }), /Origin .* is another site/, `Origin ${origin}: refused`);
  }
  const closed = new AdminGate('s3cret');
  t.doesNotThrow(() => closed.check({ headers: { authorization: 'Bearer s3cret' }, remoteAddress: '10.1.2.3' }), 'the token from anywhere');
  // The scheme's name is case-insensitive (RFC 9110 11.1); the token is not.
  for (const header of ['bearer s3cret', 'BEARER s3cret']) t.doesNotThrow(() => closed.check({ headers: { authorization: header }, remoteAddress: '10.1.2.3' }), `accepted: '${header}'`);
  for (const header of ['', 'Bearer ', 'Bearer s3cre', 'Bearer s3cret ', 'Bearers3cret', 's3cret', 'Bearer S3CRET', 'Basic s3cret']) {
    t.throws(() => closed.check({ headers: { authorization: header }, remoteAddress: '127.0.0.1' }), /admin token/, `wrong: '${header}'`);
  }
});

t.test('through the server: loopback admin works with no token, forwarded requests get 401 with the fix', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, monitoring: false });
  // Without the client's address on the request (an I/O thread that dropped it), this would be 401.
  const load = await s.post('/v2/repository/models/affine/load');
  t.equal(load.status, 200, `load from loopback, no token (I/O threads: ${s.server.ioThreads})`);
  const shadow = await s.get('/v2/models/affine/shadow');
  t.not(shadow.status, 401, 'shadow log from loopback');
  const proxied = await s.post('/v2/repository/models/affine/unload', undefined, { 'x-forwarded-for': '203.0.113.9' });
  t.equal(proxied.status, 401, 'forwarded: 401');
  t.match(proxied.json?.error, /--admin-token-file/, 'naming the fix');
  const ready = await s.get('/v2/models/affine/ready');
  t.equal(ready.status, 200, 'the model is still loaded');
});

t.test('over gRPC: with no token the repository calls answer a loopback peer, not one that came through a proxy', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, monitoring: false, grpcPort: 'any' });
  const c = generatedClient(s.server.grpcPort);
  t.teardown(() => c.close());
  const proxied = await c.call('RepositoryModelUnload', { model_name: 'affine' }, { 'x-forwarded-for': '203.0.113.9' });
  t.equal(!proxied.ok && proxied.error.code, grpc.status.UNAUTHENTICATED, 'forwarded: UNAUTHENTICATED');
  t.match(!proxied.ok && proxied.error.details, /--admin-token-file/, 'naming the fix');
  t.equal((await s.get('/v2/models/affine/ready')).status, 200, 'the model is still loaded');
  const unload = await c.call('RepositoryModelUnload', { model_name: 'affine' });
  t.ok(unload.ok, 'unload from loopback, no token');
  const load = await c.call('RepositoryModelLoad', { model_name: 'affine' });
  t.ok(load.ok, 'load from loopback, no token');
  t.equal((await s.get('/v2/models/affine/ready')).status, 200);
});

t.test('with a token: the token from a file, refused without it even from loopback', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-token-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'token');
  writeFileSync(file, 'from-a-file\n');
  const settings = resolveServeSettings({ repo: '/r', adminTokenFile: file }, {});
  t.equal(settings.adminToken, 'from-a-file', 'the trailing line break is not part of the token');
  t.equal((settings as Record<string, unknown>).adminTokenFile, undefined, 'the file name is not a server option');
  t.equal(resolveServeSettings({ repo: '/r' }, { UMBRA_ADMIN_TOKEN_FILE: file }).adminToken, 'from-a-file', 'UMBRA_ADMIN_TOKEN_FILE');
  t.throws(() => resolveServeSettings({ repo: '/r', adminTokenFile: file, adminToken: 'x' }, {}), /not both/);
  t.throws(() => resolveServeSettings({ repo: '/r', adminTokenFile: join(dir, 'missing') }, {}), /--admin-token-file: cannot read/);
  writeFileSync(join(dir, 'empty'), '\n');
  t.throws(() => resolveServeSettings({ repo: '/r', adminTokenFile: join(dir, 'empty') }, {}), /is empty/);
  writeFileSync(join(dir, 'two'), 'a\nb\n');
  t.throws(() => resolveServeSettings({ repo: '/r', adminTokenFile: join(dir, 'two') }, {}), /more than one line/);

  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, monitoring: false, adminToken: settings.adminToken! });
  t.equal((await s.post('/v2/repository/models/affine/load')).status, 401, 'loopback without the token: 401 once a token is set');
  t.equal((await s.post('/v2/repository/models/affine/load', undefined, { authorization: 'Bearer from-a-file' })).status, 200, 'with it: 200');
});
