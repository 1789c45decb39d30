// Faults under load: corrupt model files reloaded while requests run, injected worker crashes
// beside healthy requests, and a client that stops reading a large answer. In each the server must
// keep answering everyone else exactly; only what the fault touches may fail, with a JSON error.
import t from 'tap';
import { connect } from 'node:net';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, until } from './helpers/repo.js';
import { parseResponses } from './helpers/raw-http.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { seededRandom } from '../dist/random.js';

process.env.UMBRA_FAULT_INJECTION = '1';

const WIDE = 1 << 21;
const repo = tempRepo();
t.teardown(() => repo.remove());
// 'steady' is reloaded with corrupt files; 'faulty' runs in the workers and batches, so an
// injected crash has batch-mates; 'wide' answers 2M floats (about 8 MB of JSON).
repo.addVersion('steady', 1, affineModel(3, 1));
repo.addVersion('faulty', 1, affineModel(2, 0));
// A long queue budget: on a busy host the replaced worker's start-up makes a queue stand, and
// what this test looks at is the crash, not load shedding (hostile-overload.test.ts).
repo.writeConfig('faulty', { max_batch_size: 8, dynamic_batching: { max_queue_delay_microseconds: 20_000 }, parameters: { execution: 'worker', queue_budget_ms: '10000' } });
repo.addVersion('wide', 1, affineModel(2, 0, WIDE));
// In the workers: the test waits for the core's own count of the request's run, and a model on
// the reading threads (its probe can fall under their budget) may run it on an I/O thread's replica.
repo.writeConfig('wide', { max_batch_size: 1, parameters: { execution: 'worker' } });
const s = await startTestServer(t, { repository: repo.dir, monitoring: false });

const row = (i: number) => [i, i + 0.5, -i, 2];
const body = (i: number, extra: Record<string, unknown> = {}) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: row(i) }], ...extra });

t.test('corrupt model files reloaded under load: each reload is refused, every request is answered by the old version', async (t) => {
  const file = join(repo.dir, 'steady', '1', 'model.onnx');
  const good = readFileSync(file);
  t.teardown(() => writeFileSync(file, good));
  const random = seededRandom(23);
  const garbage = Buffer.from(Array.from({ length: 4096 }, () => Math.floor(random() * 256)));
  // Parses as ONNX, but a node reads a tensor nothing defines: only opening a session finds out.
  const dangling = affineModel(3, 1);
  dangling.graph!.node![1]!.input![1] = 'nowhere';
  const corrupt: [string, () => void][] = [
    ['an empty file', () => writeFileSync(file, Buffer.alloc(0))],
    ['a truncated model', () => writeFileSync(file, good.subarray(0, Math.floor(good.length / 2)))],
    ['random bytes', () => writeFileSync(file, garbage)],
    ['a graph that reads an undefined tensor', () => writeModel(dangling, file)],
  ];
  for (const [kind, write] of corrupt) {
    write();
    const load = Array.from({ length: 48 }, (_, i) => s.post('/v2/models/steady/infer', body(i)));
    const reload = await s.post('/v2/repository/models/steady/load');
    t.equal(reload.status, 400, `${kind}: the reload is refused (${reload.json?.error})`);
    t.match(reload.json?.error, /steady/, `${kind}: the error names the model`);
    const answers = await Promise.all(load);
    const wrong = answers.filter((r, i) => r.status !== 200 || JSON.stringify(r.json.outputs[0].data) !== JSON.stringify(row(i).map((v) => v * 3 + 1)));
    t.equal(wrong.length, 0, `${kind}: all ${answers.length} requests answered exactly by the old version`);
    t.equal((await s.get('/v2/models/steady/ready')).status, 200, `${kind}: the model stays ready`);
  }
  writeFileSync(file, good);
  t.equal((await s.post('/v2/repository/models/steady/load')).status, 200, 'the good file loads again');
});

t.test('an injected worker crash fails only its own batch; everything after it is served', async (t) => {
  const mv = s.server.umbra.manager.get('faulty');
  t.equal(mv.placement, 'worker');
  // Rounds of one crashing request among healthy ones, sent together so they share batches.
  for (let round = 0; round < 3; round++) {
    const healthy = Array.from({ length: 23 }, (_, i) => s.post('/v2/models/faulty/infer', body(i)));
    const crash = s.post('/v2/models/faulty/infer', body(99, { parameters: { umbra_fault: 'crash' } }));
    const [bad, ...good] = await Promise.all([crash, ...healthy]);
    t.equal(bad!.status, 500, `round ${round}: the crashing request gets 500`);
    t.type(bad!.json?.error, 'string', 'with a JSON error');
    const failed = good.filter((r) => r.status !== 200);
    // Batches hold at most 8 requests: at most 7 healthy ones rode with the crash.
    const why = [...new Set(failed.map((r) => r.json?.error))].join(' | ');
    t.ok(failed.length <= 7, `round ${round}: ${failed.length} healthy requests failed (at most the crash's batch-mates)${failed.length > 0 ? `: ${why}` : ''}`);
    t.ok(failed.every((r) => r.status === 500 && typeof r.json?.error === 'string'), 'each failure is a 500 with a JSON error');
    const exact = good.filter((r, i) => r.status === 200 && JSON.stringify(r.json.outputs[0].data) === JSON.stringify(row(i).map((v) => v * 2)));
    t.equal(exact.length, good.length - failed.length, 'every other answer is exact');
  }
  const after = await Promise.all(Array.from({ length: 16 }, (_, i) => s.post('/v2/models/faulty/infer', body(i))));
  t.same(after.map((r) => r.status), Array(16).fill(200), 'after the crashes every request is served (the workers were replaced)');
});

t.test('a client that stops reading a large answer holds up no one else and still gets all of it', async (t) => {
  const input = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDE], data: new Array(WIDE).fill(0.25) }] });
  const socket = connect(s.server.port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  // Stops reading before the answer comes: the server's writes back up behind the full buffers.
  socket.pause();
  socket.write(`POST /v2/models/wide/infer HTTP/1.1\r\nHost: umbra\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(input)}\r\n\r\n${input}`);
  const wide = s.server.umbra.manager.get('wide');
  const ranBefore = wide.stats().executedRequests;
  await until(() => wide.stats().executedRequests > ranBefore, 'the large request ran', 60_000);
  // Everyone else, on other connections and models, while the answer sits unread.
  const others = await Promise.all(Array.from({ length: 32 }, (_, i) => s.post(`/v2/models/${i % 2 ? 'steady' : 'faulty'}/infer`, body(i))));
  const expected = (i: number) => row(i).map((v) => (i % 2 ? v * 3 + 1 : v * 2));
  t.ok(others.every((r, i) => r.status === 200 && JSON.stringify(r.json.outputs[0].data) === JSON.stringify(expected(i))), 'every other request answered exactly while the large answer was unread');
  socket.resume();
  for (;;) {
    const parsed = parseResponses(Buffer.concat(chunks));
    if (parsed.responses.length > 0) {
      const answer = parsed.responses[0]!;
      t.equal(answer.status, 200);
      const data: number[] = JSON.parse(answer.body.toString()).outputs[0].data;
      t.equal(data.length, WIDE, 'the whole answer arrived');
      t.ok(data.every((v) => v === 0.5), 'and it is exact');
      break;
    }
    await once(socket, 'data');
  }
});
