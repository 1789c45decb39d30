// One request, one answer, wherever its bytes lie. onnxruntime's vectorised reductions start at
// an aligned address, so the order they sum in (and an answer's last bit) depends on where the
// input lies in memory: ReduceSum over [0.123, -1.777, ...] gave 2.6329999 at some offsets and
// 2.6330001 at others, and the server, whose small tensors came from a slab at 8-byte steps, gave
// the same request the two answers in turn. Inputs now reach onnxruntime on a 64-byte boundary.
import t from 'tap';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { startTestServer } from './helpers/server.js';
import { tempRepo } from './helpers/repo.js';
import { property } from './helpers/property.js';
import { buildModel } from '../dist/onnx/builder.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { addressMod64, alignedBytes, onCacheLine } from '../dist/native/kernels.js';
import { openOnnxruntime } from '../dist/workers/backends/onnxruntime.js';
import { slabTypedArrayFor } from '../dist/protocol/datatype.js';
import { alignedBuffer } from '../dist/server/http.js';

/** Values whose float32 sum onnxruntime rounds two ways, by where they lie (found on this onnxruntime-node). */
const VALUES = [0.123, -1.777, 1.331, 0.5, 0.25, -0.125, 1.999, -0.001, 0.333];

/** total = the sum of every value of x [batch, 9] (ReduceSum with no axes: one number). */
function sumAllModel() {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 9] }],
    outputs: [{ name: 'total', datatype: 'FP32', dims: [] }],
    nodes: [{ op: 'ReduceSum', inputs: ['x'], outputs: ['total'], attributes: { keepdims: 0 } }],
  });
}

/** What onnxruntime-node itself answers for VALUES on a 64-byte boundary. */
async function alignedAnswer(modelPath: string): Promise<number> {
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1 });
  const bytes = alignedBytes(4 * VALUES.length);
  const x = new Float32Array(bytes.buffer, bytes.byteOffset, VALUES.length);
  x.set(VALUES);
  const total = ((await session.run({ x: new ort.Tensor('float32', x, [1, 9]) })).total!.data as Float32Array)[0]!;
  await session.release();
  return total;
}

/** VALUES as float32, starting `offset` floats into a fresh buffer (a misplaced view). */
function valuesAt(offset: number): Float32Array {
  const x = new Float32Array(new ArrayBuffer(4 * (offset + VALUES.length + 16)), 4 * offset, VALUES.length);
  x.set(VALUES);
  return x;
}

t.test('onCacheLine hands back data on a 64-byte boundary, as it was', async (t) => {
  const onBoundary = property('a view 0 to 15 floats into its buffer comes back on a 64-byte boundary');
  const sameValues = property('with the same values');
  for (let offset = 0; offset < 16; offset++) {
    const x = valuesAt(offset);
    const placed = onCacheLine(x);
    onBoundary.same(addressMod64(placed), 0, () => `${offset} floats in`);
    sameValues.same(Array.from(placed), Array.from(x), () => `${offset} floats in`);
  }
  onBoundary.assert(t);
  sameValues.assert(t);
  const aligned = onCacheLine(valuesAt(3));
  t.equal(onCacheLine(aligned), aligned, 'data already on a boundary is not copied');
  const ints = new BigInt64Array(new ArrayBuffer(8 * 6), 8, 3);
  ints.set([1n, -2n, 3n]);
  const placedInts = onCacheLine(ints);
  t.same([placedInts.constructor.name, Array.from(placedInts), addressMod64(placedInts)], ['BigInt64Array', [1n, -2n, 3n], 0], 'any element type keeps its type and values');
  t.equal(onCacheLine(new Float32Array(0)).length, 0, 'an empty tensor stays empty');
});

t.test('what the request path builds lies on a 64-byte boundary', async (t) => {
  const misplaced = [];
  for (let i = 0; i < 200; i++) {
    const x = slabTypedArrayFor(i % 2 ? 'FP32' : 'INT64', 1 + (i % 37));
    if (addressMod64(x) !== 0) misplaced.push(i);
  }
  t.same(misplaced, [], 'small tensors carved from the slab, of any size, each on a boundary');
  t.equal(addressMod64(alignedBytes(100)), 0, 'alignedBytes');
  const misplacedBodies = [];
  for (const length of [100, 2194, 70000]) {
    for (let at = 1; at < 40; at++) {
      const b = alignedBuffer(length, at);
      if ((addressMod64(b)! + at) % 64 !== 0) misplacedBodies.push(`${length}@${at}`);
    }
  }
  t.same(misplacedBodies, [], 'a binary body\'s first tensor starts on a boundary, whatever the JSON header\'s length');
});

t.test('an onnxruntime session answers one input one way at every offset', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  const modelPath = join(repo.dir, 'sum.onnx');
  writeModel(sumAllModel(), modelPath);
  const direct = await openOnnxruntime({ key: 'sum', modelPath, backend: 'onnxruntime', executionProviders: ['cpu'], intraOpThreads: 1 });
  const fallback = await openOnnxruntime({ key: 'sum-api', modelPath, backend: 'onnxruntime', executionProviders: ['cpu'], intraOpThreads: 1 }, false);
  t.teardown(async () => {
    await direct.release();
    await fallback.release();
  });
  const answers = new Set<number>();
  for (let offset = 0; offset < 16; offset++) {
    const feeds = [{ name: 'x', datatype: 'FP32' as const, shape: [1, 9], data: valuesAt(offset) }];
    answers.add((direct.runSync!(feeds, [])[0]!.data as Float32Array)[0]!);
    answers.add(((await fallback.run(feeds, []))[0]!.data as Float32Array)[0]!);
  }
  t.same([...answers], [await alignedAnswer(modelPath)], 'one answer over 16 offsets, by either way into onnxruntime: its answer on a boundary');

  // Why: onnxruntime-node itself, handed the same views, answers by their offset.
  const raw = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1 });
  const rawAnswers = new Set<number>();
  for (let offset = 0; offset < 16; offset++) rawAnswers.add(((await raw.run({ x: new ort.Tensor('float32', valuesAt(offset), [1, 9]) })).total!.data as Float32Array)[0]!);
  await raw.release();
  t.comment(`onnxruntime-node on its own: ${rawAnswers.size} distinct answers over the same 16 offsets`);
});

t.test('the server answers the same request the same way, JSON or binary, one at a time or together', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('sum', 1, sumAllModel());
  repo.writeConfig('sum', { backend: 'onnxruntime' });
  const s = await startTestServer(t, { repository: repo.dir });
  const json = { inputs: [{ name: 'x', shape: [1, 9], datatype: 'FP32', data: VALUES }] };
  const answers = new Map<string, number>();
  const note = (how: string, r: { status: number; json: unknown }) => {
    const key = `${r.status} ${JSON.stringify((r.json as { outputs?: { data: number[] }[] }).outputs?.[0]?.data)}`;
    answers.set(key, (answers.get(key) ?? 0) + 1);
    return how;
  };
  for (let i = 0; i < 24; i++) note('json', await s.post('/v2/models/sum/infer', json));
  for (const r of await Promise.all(Array.from({ length: 24 }, () => s.post('/v2/models/sum/infer', json)))) note('json, together', r);
  // Binary: a JSON header of every length from 0 to 15 bytes longer moves the tensor through each offset.
  const x = Float32Array.from(VALUES);
  for (let pad = 0; pad < 16; pad++) {
    const header = Buffer.from(JSON.stringify({ id: 'p'.repeat(pad), inputs: [{ name: 'x', shape: [1, 9], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }] }));
    note('binary', await s.post('/v2/models/sum/infer', Buffer.concat([header, Buffer.from(x.buffer)]), { 'inference-header-content-length': String(header.length), 'content-type': 'application/octet-stream' }));
  }
  const modelPath = join(repo.dir, 'sum', '1', 'model.onnx');
  t.same([...answers], [[`200 ${JSON.stringify([await alignedAnswer(modelPath)])}`, 64]], '64 requests, one answer: onnxruntime\'s on a boundary');
});
