// A drain ends kept-alive connections that are between requests at once (a FIN after their last
// answer), as Go's http.Server.Shutdown does: left open until the drain ends, such a connection
// could be closed just as its client (nginx, a pooled agent) sends a request on it, which is then
// lost with no answer (nginx: 502 "upstream prematurely closed connection"). A connection with a
// request in flight still gets its whole answer, with Connection: close, then closes.
import t from 'tap';
import { connect, type Socket } from 'node:net';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, until } from './helpers/repo.js';
import { parseResponses, requestBytes, type RawResponse } from './helpers/raw-http.js';
import { httpGuardCounts } from '../dist/server/http-guard.js';

/** A kept-alive client connection: its answers as they come, and its end. */
function client(port: number) {
  const socket: Socket = connect(port, '127.0.0.1');
  let data = Buffer.alloc(0);
  const waiters: (() => void)[] = [];
  socket.on('data', (chunk: Buffer) => {
    data = Buffer.concat([data, chunk]);
    for (const w of waiters.splice(0)) w();
  });
  socket.on('error', () => undefined);
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  let ends = false;
  socket.on('end', () => { ends = true; });
  return {
    socket,
    ended,
    get endSeen() { return ends; },
    answers: (): RawResponse[] => parseResponses(data).responses,
    /** Resolves once `n` answers are in. */
    async answered(n: number): Promise<RawResponse[]> {
      while (parseResponses(data).responses.length < n) await new Promise<void>((r) => waiters.push(r));
      return parseResponses(data).responses;
    },
  };
}

t.test('drain: an idle kept-alive connection ends at once; one with a request in flight gets its answer with Connection: close', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('slow', 1, affineModel(2, 0));
  repo.writeConfig('slow', { max_batch_size: 1, instance_group: [{ count: 1 }], dynamic_batching: { max_queue_size: 16 }, parameters: { execution: 'worker', stage_batches: 'false', queue_budget_ms: '10000' } });
  const s = await startTestServer(t, { repository: repo.dir, drainSeconds: 60 });
  const mv = s.server.umbra.manager.get('slow');
  // Every batch waits for the gate: the drain cannot end before it opens.
  const executor = mv.execution as unknown as { execute: (...args: unknown[]) => Promise<unknown> };
  const original = executor.execute;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => { open = resolve; });
  t.teardown(() => open());
  let held = 0;
  executor.execute = async function (this: unknown, ...args: unknown[]) {
    held++;
    await gate;
    return original.apply(this, args);
  };

  // Idle connections, kept alive after one answer each (several: the kernel spreads them over the reading threads).
  const idle = Array.from({ length: 4 }, () => client(s.server.port));
  for (const c of idle) c.socket.write(requestBytes('GET', '/v2/health/live', [['host', 'umbra']]));
  const first = await Promise.all(idle.map((c) => c.answered(1)));
  t.same(first.map((a) => a[0]?.headers['keep-alive']), ['timeout=8', 'timeout=8', 'timeout=8', 'timeout=8'], 'each idle connection was kept alive');

  // A request in flight, held until the gate opens.
  const busy = client(s.server.port);
  const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
  busy.socket.write(requestBytes('POST', '/v2/models/slow/infer', [['host', 'umbra'], ['content-type', 'application/json'], ['content-length', String(Buffer.byteLength(body))]], body));
  await until(() => held === 1, 'the request is running');

  const before = httpGuardCounts().idleClosed;
  const stopping = s.server.stop();
  // The drain cannot end while the gate is shut: these ends come while a request is still running.
  await Promise.all(idle.map((c) => c.ended));
  t.same(idle.map((c) => c.endSeen && c.answers().length === 1), [true, true, true, true], 'each idle connection ended cleanly (a FIN after its one answer) while a request was still running');
  // Not by the library's idle timeout (8 to 12 s after the answer), which would end them too.
  t.equal(httpGuardCounts().idleClosed - before, 4, 'the drain ended the four (counted as idle_closed)');
  t.equal(busy.answers().length, 0, 'the request in flight is not answered yet');

  open();
  const [answer] = await busy.answered(1);
  await busy.ended;
  await stopping;
  t.equal(answer?.status, 200, 'the request in flight is answered 200');
  t.equal(answer?.headers.connection?.toLowerCase(), 'close', 'with Connection: close');
  t.ok(busy.endSeen, 'and its connection then ends');
});
