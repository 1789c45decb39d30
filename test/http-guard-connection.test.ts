// What the HTTP guard makes of the request's Connection field where the bundled uWebSockets.js
// reads it wrongly: it closes after answering any five-byte value as if it were `close` (the guard
// hands such a value on with a comma after it, an empty list element), and it keeps a connection
// open after an answer to HEAD that says `Connection: close` (the guard ends the connection after
// any answer that says so). The guard's rewrite at every cut: test/http-guard.test.ts.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { rawExchange, rawSequence, requestBytes } from './helpers/raw-http.js';

const repo = tempRepo();
t.teardown(() => repo.remove());
repo.addVersion('affine', 1, affineModel(2, 1));
const s = await startTestServer(t, { repository: repo.dir });
const port = s.server.port;

t.test('a five-byte Connection value other than close keeps the connection', async (t) => {
  const get = requestBytes('GET', '/v2/health/live', [['host', 'umbra'], ['connection', 'Hello']]);
  const answers = await rawSequence(port, [[get], [get]]);
  t.same(answers.map((a) => a.status), [200, 200], 'two requests answered on one connection');
  t.equal(answers[0]?.headers['keep-alive'], 'timeout=8', 'the first answer keeps the connection (keep-alive hint, no close)');
});

t.test('Connection: close itself still closes, in any case', async (t) => {
  const r = await rawExchange(port, [requestBytes('GET', '/v2/health/live', [['host', 'umbra'], ['connection', 'CLOSE']])], { expect: 1, awaitClose: 5000, limitMs: 5000 });
  t.equal(r.responses[0]?.status, 200, 'answered');
  t.ok(r.closedByServer, 'and closed');
});

t.test('HEAD whose answer says Connection: close is closed after it', async (t) => {
  const values = ['keep-alive, close', 'close'];
  const rs = await Promise.all(values.map((value) => rawExchange(port, [requestBytes('HEAD', '/v2/health/ready', [['host', 'umbra'], ['connection', value]])], { expect: 1, awaitClose: 5000, limitMs: 5000 })));
  t.same(rs.map((r) => r.responses[0]?.headers.connection?.toLowerCase()), ['close', 'close'], `${values.join(' and ')}: the answer says close`);
  t.same(rs.map((r) => r.closedByServer), [true, true], 'and the server closed the connection after it');
});
