// A request's inputs reach a model worker as a copy in a buffer the worker hands back with its
// answer, and the next request's copy reuses it: the caller's tensors stay whole and readable,
// the answers are those of a plain transfer, and only buffers nothing here refers to are kept.
import t from 'tap';
import { TransferBuffers, MIN_RECYCLED_BYTES } from '../dist/workers/transfer-buffers.js';
import { WorkerPool } from '../dist/workers/pool.js';
import type { SessionSpec, WireTensor } from '../dist/workers/messages.js';
import { seededRandom } from '../dist/random.js';

const DIGITS = new URL('../models/repository/digits/1/model.onnx', import.meta.url).pathname;
const random = seededRandom(28);

function pixels(rows: number): WireTensor {
  const data = new Float32Array(rows * 64);
  for (let i = 0; i < data.length; i++) data[i] = random() * 16;
  return { name: 'pixels', datatype: 'FP32', shape: [rows, 64], data };
}

t.test('a copy leaves the caller its tensor and is a view of a power-of-two buffer of its own', async (t) => {
  const buffers = new TransferBuffers();
  const source = pixels(300); // 76,800 bytes
  const copy = buffers.copy(source);
  t.not(copy.data, source.data);
  t.same(Array.from(copy.data as Float32Array), Array.from(source.data as Float32Array), 'the same values');
  t.equal((copy.data as Float32Array).byteOffset, 0);
  t.equal((copy.data as Float32Array).buffer.byteLength, 131_072, 'the next power of two');
  t.ok(copy.data instanceof Float32Array, 'the same storage class');
  t.same({ name: copy.name, datatype: copy.datatype, shape: copy.shape }, { name: 'pixels', datatype: 'FP32', shape: [300, 64] });
});

t.test('handed-back buffers are reused by later copies, within the bounds', async (t) => {
  const buffers = new TransferBuffers({ maxPerSize: 2, maxBytes: 3 * 131_072 });
  const first = buffers.copy(pixels(300));
  const back = (first.data as Float32Array).buffer as ArrayBuffer;
  buffers.recycle([back]);
  t.equal(buffers.bytes, 131_072);
  const second = buffers.copy(pixels(260)); // another size in the same capacity
  t.equal((second.data as Float32Array).buffer, back, 'the kept buffer carries the next copy');
  t.equal(second.data.length, 260 * 64);
  t.same({ reused: buffers.reused, allocated: buffers.allocated, bytes: buffers.bytes }, { reused: 1, allocated: 1, bytes: 0 });

  buffers.recycle([new ArrayBuffer(100_000), new ArrayBuffer(MIN_RECYCLED_BYTES / 2)]);
  t.equal(buffers.bytes, 0, 'sizes it never hands out are left to the collector');
  buffers.recycle([new ArrayBuffer(131_072), new ArrayBuffer(131_072), new ArrayBuffer(131_072)]);
  t.equal(buffers.bytes, 2 * 131_072, 'at most maxPerSize of one size');
  buffers.recycle([new ArrayBuffer(262_144)]);
  t.equal(buffers.bytes, 2 * 131_072, 'never over maxBytes');
});

t.test('small tensors and BYTES are copied as before, never kept', async (t) => {
  const buffers = new TransferBuffers();
  const small = pixels(2);
  const copy = buffers.copy(small);
  t.equal((copy.data as Float32Array).buffer.byteLength, small.data.length * 4, 'an exact fresh copy');
  const strings: WireTensor = { name: 's', datatype: 'BYTES', shape: [1], data: ['a'] };
  t.equal(buffers.copy(strings), strings);
  t.same({ reused: buffers.reused, allocated: buffers.allocated }, { reused: 0, allocated: 0 });
});

t.test('a borrowed run keeps the caller\'s inputs, answers as a transfer does, and reuses the handed-back buffer', async (t) => {
  const pool = new WorkerPool({ workers: 1 });
  t.teardown(() => pool.close());
  const session: SessionSpec = { key: 'digits#transfer-buffers', modelPath: DIGITS, backend: 'onnxruntime', executionProviders: ['cpu'], intraOpThreads: 1 };
  await pool.warm(session);
  const request = pixels(256); // 64 KiB: the smallest size the buffers keep
  const before = Array.from(request.data as Float32Array);

  const borrowed = await pool.run(session, [request], [], { borrowed: true });
  t.equal(request.data.length, 256 * 64, 'the caller\'s input is not detached');
  t.same(Array.from(request.data as Float32Array), before, 'nor changed');
  t.notOk('spent' in borrowed, 'the handed-back buffers stay with the pool');
  t.equal(pool.buffers.bytes, 65_536, 'the input buffer came back');

  const again = await pool.run(session, [request], [], { borrowed: true });
  t.same({ reused: pool.buffers.reused, allocated: pool.buffers.allocated }, { reused: 1, allocated: 1 }, 'the second copy used it');

  const moved = await pool.run(session, [{ ...request, data: (request.data as Float32Array).slice() }], []);
  for (const answer of [borrowed, again]) {
    t.same(answer.outputs.map((o) => [o.name, o.shape, Array.from(o.data as ArrayLike<number | bigint>, Number)]),
      moved.outputs.map((o) => [o.name, o.shape, Array.from(o.data as ArrayLike<number | bigint>, Number)]), 'the answer of a plain transfer');
  }
  for (const o of again.outputs) t.not((o.data as Float32Array).buffer, (request.data as Float32Array).buffer);
});
