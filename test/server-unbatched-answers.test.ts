// Models whose answers do not have a row per request row: an output that counts something of its
// own (NonZero's hits, a detector's boxes) or reduces over the rows. Requests must not share
// their batches, and each must be answered with what the model gives its own inputs.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, hitsModel, totalModel, blankRowsModel, holdExecution, until } from './helpers/repo.js';

/** The [row, column] pairs of x's values over 0.5, flattened, as NonZero lists them. */
function hitsOf(rows: number[][]): number[] {
  return rows.flatMap((r, i) => r.flatMap((v, j) => (v > 0.5 ? [i, j] : [])));
}

/** Rows of `n` values: request `i`'s own mix of values over and under 0.5. */
function rowsOf(i: number, count: number): number[][] {
  return Array.from({ length: count }, (_, r) => Array.from({ length: 4 }, (_, c) => ((i * 7 + r * 5 + c * 3) % 10) / 10));
}

t.test('a model whose output counts its own rows is loaded to take requests one at a time, and each is answered by its own rows', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('hits', 1, hitsModel());
  repo.addVersion('hits_batched', 1, hitsModel());
  repo.writeConfig('hits_batched', { max_batch_size: 8 });
  const s = await startTestServer(t, { repository: repo.dir });

  const meta = (await s.get('/v2/models/hits')).json;
  t.match(meta.execution, { batching: 'off', batching_reason: 'its output "hits" has 0 rows for a 1-row batch (its first dim is not the batch)' }, 'the metadata says why');
  t.same(meta.inputs[0].shape, [-1, 4], 'the dims as the model has them, the first one dynamic');
  t.equal((await s.get('/v2/models/hits/config')).json.max_batch_size, 0);

  const sent = Array.from({ length: 24 }, (_, i) => rowsOf(i, 1 + (i % 3)));
  const replies = await Promise.all(sent.map((rows) => s.post('/v2/models/hits/infer', { inputs: [{ name: 'x', shape: [rows.length, 4], datatype: 'FP32', data: rows.flat() }] })));
  t.same(replies.map((r) => [r.status, r.json.outputs.find((o: { name: string }) => o.name === 'hits').data]), sent.map((rows) => [200, hitsOf(rows)]),
    '24 requests at once, of 1 to 3 rows: each answered 200 with its own hits');
  t.same(replies.map((r) => r.json.outputs.find((o: { name: string }) => o.name === 'y').shape), sent.map((rows) => [rows.length, 4]), 'and its own rows of y');

  // Where the config asks for batches, the load refuses, saying what to set.
  const index = (await s.post('/v2/repository/index')).json as { name: string; state: string; reason?: string }[];
  t.match(index.find((e) => e.name === 'hits_batched'), {
    state: 'UNAVAILABLE',
    reason: 'its output "hits" has 0 rows for a 1-row batch (its first dim is not the batch), so requests cannot share a batch; set max_batch_size: 0',
  });
});

t.test('a model that reduces over its rows answers each request whole', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('total', 1, totalModel());
  const s = await startTestServer(t, { repository: repo.dir });
  t.match((await s.get('/v2/models/total')).json.execution, { batching: 'off', batching_reason: 'the ONNX output "total" has no dynamic first (batch) dim' });
  const r = await s.post('/v2/models/total/infer', { inputs: [{ name: 'x', shape: [3, 4], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] }] });
  t.same([r.status, r.json.outputs[0]], [200, { name: 'total', datatype: 'FP32', shape: [4], data: [15, 18, 21, 24] }], 'three rows in, their column sums out');
});

t.test('a batch whose answers cannot be cut by request runs again one request at a time', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('blank', 1, blankRowsModel());
  // In the workers, one batch at a time: the test holds the first and queues the rest behind it.
  repo.writeConfig('blank', { parameters: { execution: 'worker' }, instance_group: [{ count: 1 }] });
  const s = await startTestServer(t, { repository: repo.dir });
  const mv = s.server.umbra.manager.get('blank');
  t.equal(mv.signature.maxBatchSize, 64, 'on zeros every row is blank: at load it batches');

  const sent = [[[0, 0, 0]], [[1, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [2, 0, -1]], [[0, 1, 0]], [[0, 0, 0], [3, 3, 3]]];
  const expected = sent.map((rows) => rows.flatMap((r, i) => (r[0]! + r[1]! + r[2]! === 0 ? [i] : [])));
  const hold = holdExecution(mv);
  t.teardown(() => hold.release());
  const post = (rows: number[][]) => s.post('/v2/models/blank/infer', { inputs: [{ name: 'x', shape: [rows.length, 3], datatype: 'FP32', data: rows.flat() }] });
  const first = post([[5, 0, 0]]);
  await until(() => hold.held === 1, 'the first batch is held');
  const rest = sent.map(post);
  await until(() => mv.stats().pending === sent.length, 'the other requests queue behind it');
  hold.release();
  const replies = await Promise.all([first, ...rest]);
  t.same(replies.map((r) => [r.status, r.json.outputs[0].data]), [[200, []], ...expected.map((e) => [200, e])], 'each answered with its own blank rows');
  t.equal(mv.stats().executions, 2, 'the queued requests were dispatched as one batch');
});
