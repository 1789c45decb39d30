import t from 'tap';
import {
  DATATYPES, bytesPerElement, concatTensors, elementCount, float32ToHalf, halfToFloat32, ortTypeToDatatype,
  sameRowShape, splitTensor, tensorToOrtType, typedArrayFor, type DataType, type Tensor,
} from '../dist/protocol/index.js';
import { seededRandom as rng } from '../dist/random.js';
import { property } from './helpers/property.js';

// Seeded generator (mulberry32) so every run sees the same "random" inputs.

function randomTensor(datatype: DataType, rows: number, cols: number, next: () => number): Tensor {
  const n = rows * cols;
  const data = typedArrayFor(datatype, n);
  for (let i = 0; i < n; i++) {
    const r = next();
    if (Array.isArray(data)) data[i] = `t${Math.floor(r * 1e6)}`;
    else if (data instanceof BigInt64Array || data instanceof BigUint64Array) data[i] = BigInt(Math.floor(r * 2 ** 40));
    else if (datatype === 'BOOL') data[i] = r < 0.5 ? 1 : 0;
    else data[i] = Math.floor(r * 100) + (data instanceof Float32Array || data instanceof Float64Array ? 0.5 : 0);
  }
  return { name: 'x', datatype, shape: [rows, cols], data };
}

t.test('concat then split gives back the pieces, for every datatype', async (t) => {
  const next = rng(3);
  const merges = property('concat: rows add up, in storage of the pieces\' type');
  const splits = property('split gives back each piece, shape and values');
  for (const datatype of DATATYPES) {
    const rows = [1, 3, 2];
    const pieces = rows.map((r) => randomTensor(datatype, r, 4, next));
    const merged = concatTensors(pieces);
    merges.check(merged.shape.join() === '6,4' && merged.data.length === 24 && merged.data.constructor === pieces[0]!.data.constructor,
      () => `${datatype}: shape ${merged.shape}, ${merged.data.length} values in ${merged.data.constructor.name}`);
    const back = splitTensor(merged, rows);
    splits.same(back.map((b) => [b.shape, Array.from(b.data as ArrayLike<unknown>)]), pieces.map((p) => [p.shape, Array.from(p.data as ArrayLike<unknown>)]), () => datatype);
  }
  merges.assert(t);
  splits.assert(t);
});

t.test('concat and split edge cases', async (t) => {
  const next = rng(5);
  const one = randomTensor('FP32', 2, 3, next);
  t.equal(concatTensors([one]), one, 'a single tensor is not copied');
  t.throws(() => concatTensors([]), { code: 'INTERNAL' });
  t.throws(() => concatTensors([one, randomTensor('FP32', 2, 4, next)]), { code: 'INTERNAL', message: /cannot concatenate FP32 \[2, 4\] onto FP32 \[2, 3\]/ });
  t.throws(() => concatTensors([one, randomTensor('FP64', 2, 3, next)]), { code: 'INTERNAL' });
  t.notOk(sameRowShape(one, { ...one, shape: [] }));
  t.ok(sameRowShape(one, randomTensor('FP32', 7, 3, next)));
  t.throws(() => splitTensor(one, [1, 2]), { code: 'INTERNAL', message: /row counts add up to 3 but tensor "x" has 2 rows/ });
  t.throws(() => splitTensor(one, [-1, 3]), { code: 'INTERNAL' });
  t.throws(() => splitTensor({ ...one, shape: [] }, [1]), { code: 'INTERNAL', message: /scalar/ });
  const parts = splitTensor(one, [0, 2]);
  t.same(parts[0]!.shape, [0, 3]);
  t.equal(parts[0]!.data.length, 0);
  t.equal((parts[1]!.data as Float32Array).buffer, (one.data as Float32Array).buffer, 'split pieces are views');
  const withParams = splitTensor({ ...one, parameters: { k: 1 } }, [1, 1]);
  t.same(withParams[1]!.parameters, { k: 1 });
});

t.test('datatype facts and onnxruntime names', async (t) => {
  const sizes: Record<DataType, number> = { BOOL: 1, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8, FP16: 2, FP32: 4, FP64: 8, BYTES: 0 };
  const facts = property('each datatype: its element size, its storage, and its onnxruntime name both ways');
  for (const d of DATATYPES) {
    const storage = typedArrayFor(d, 3);
    facts.same([bytesPerElement(d), ortTypeToDatatype(tensorToOrtType(d)), storage.length, Array.isArray(storage) ? 0 : storage.BYTES_PER_ELEMENT],
      [sizes[d], d, 3, sizes[d]], () => `${d} (size, both ways, storage length, storage element size)`);
  }
  facts.assert(t);
  t.equal(tensorToOrtType('FP32'), 'float32');
  t.equal(tensorToOrtType('BOOL'), 'bool');
  t.equal(tensorToOrtType('BYTES'), 'string');
  t.equal(tensorToOrtType('FP16'), 'float16');
  t.equal(ortTypeToDatatype('int64'), 'INT64');
  t.equal(ortTypeToDatatype('tensor(float)'), 'FP32');
  t.equal(ortTypeToDatatype('tensor(double)'), 'FP64');
  t.throws(() => ortTypeToDatatype('bfloat16'), { code: 'INVALID_ARGUMENT', message: /expected a tensor type Umbra can serve .* but received the string "bfloat16"/ });
  t.same(typedArrayFor('BYTES', 2), ['', '']);
  t.equal(elementCount([2, 3, 4]), 24);
  t.equal(elementCount([]), 1);
  t.equal(elementCount([5, 0]), 0);
});

t.test('half conversion: every half survives a round trip', async (t) => {
  let bad = 0;
  for (let bits = 0; bits < 0x10000; bits++) {
    const isNan = (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;
    const f = halfToFloat32(bits);
    if (isNan ? !Number.isNaN(f) || (float32ToHalf(f) & 0x7e00) !== 0x7e00 : float32ToHalf(f) !== bits) bad++;
  }
  t.equal(bad, 0);
});

t.test('half conversion rounds to nearest even, once', async (t) => {
  t.equal(float32ToHalf(1 + 2 ** -11), 0x3c00, 'tie goes to even (down)');
  t.equal(float32ToHalf(1 + 3 * 2 ** -11), 0x3c02, 'tie goes to even (up)');
  t.equal(float32ToHalf(1 + 2 ** -11 + 2 ** -40), 0x3c01, 'just above a tie rounds up (no double rounding through float32)');
  t.equal(float32ToHalf(65504), 0x7bff);
  t.equal(float32ToHalf(65519.99), 0x7bff);
  t.equal(float32ToHalf(65520), 0x7c00, 'rounds to infinity');
  t.equal(float32ToHalf(-Infinity), 0xfc00);
  t.equal(float32ToHalf(2 ** -24), 0x0001, 'smallest subnormal');
  t.equal(float32ToHalf(2 ** -25), 0x0000, 'tie below the smallest subnormal goes to zero');
  t.equal(float32ToHalf(2 ** -25 + 2 ** -40), 0x0001);
  t.equal(float32ToHalf(-0), 0x8000);
  t.equal(float32ToHalf(2 ** -14 - 2 ** -25), 0x0400, 'subnormal rounds up into the normals');
  t.equal(halfToFloat32(0x3555), 0.333251953125);
  t.equal(halfToFloat32(0xc000), -2);
  const next = rng(9);
  const roundTrip = property('a random float within the half range comes back within half a unit in the last place');
  for (let i = 0; i < 1000; i++) {
    const v = (next() - 0.5) * 2 * 60000;
    const back = halfToFloat32(float32ToHalf(v));
    roundTrip.check(Math.abs(back - v) <= Math.abs(v) * 2 ** -11 + 2 ** -25, () => `${v} came back as ${back}`);
  }
  roundTrip.assert(t);
});
