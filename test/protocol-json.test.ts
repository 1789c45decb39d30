import t, { type Test } from 'tap';
import {
  DATATYPES, binaryOutputsFor, encodeInferResponse, encodeJson, float32ToHalf, halfToFloat32, parseInferRequest,
  type DataType, type InferRequest, type ModelSignature, type TensorData,
} from '../dist/protocol/index.js';
import { seededRandom as rng } from '../dist/random.js';
import { useNativeJson } from '../dist/protocol/native-json.js';
import { property } from './helpers/property.js';

// Seeded generator (mulberry32) so every run sees the same "random" inputs.

const RANGES: Partial<Record<DataType, [number, number]>> = {
  UINT8: [0, 255], UINT16: [0, 65535], UINT32: [0, 4294967295], INT8: [-128, 127], INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647], INT64: [-(2 ** 53) + 1, 2 ** 53 - 1], UINT64: [0, 2 ** 53 - 1],
};

/** Random JSON values for a datatype, always including the extremes of integer ranges. */
function jsonValues(datatype: DataType, n: number, next: () => number): unknown[] {
  const out: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const r = next();
    const range = RANGES[datatype];
    if (range) out.push(i === 0 ? range[0] : i === 1 ? range[1] : Math.floor(range[0] + r * (range[1] - range[0])));
    else if (datatype === 'BOOL') out.push(r < 0.5);
    else if (datatype === 'BYTES') out.push(i === 0 ? '' : `s${Math.floor(r * 1e6)}-é✓`);
    else if (datatype === 'FP32') out.push(Math.fround((r - 0.5) * 1e3));
    else if (datatype === 'FP16') out.push(halfToFloat32(float32ToHalf((r - 0.5) * 100)));
    else out.push((r - 0.5) * 1e300);
  }
  return out;
}

function expectedStorage(datatype: DataType, values: unknown[]): unknown[] {
  if (datatype === 'BOOL') return values.map((v) => (v ? 1 : 0));
  if (datatype === 'INT64' || datatype === 'UINT64') return values.map((v) => BigInt(v as number));
  if (datatype === 'FP16') return values.map((v) => float32ToHalf(v as number));
  return values;
}

function sig(inputs: ModelSignature['inputs'], maxBatchSize = 0, outputs: ModelSignature['outputs'] = [{ name: 'y', datatype: 'FP32', dims: [-1] }]): ModelSignature {
  return { name: 'm', maxBatchSize, inputs, outputs };
}

const X3 = sig([{ name: 'x', datatype: 'FP32', dims: [2, 3] }]);

function parse(body: unknown, signature: ModelSignature = X3, maxElements?: number): InferRequest {
  const bytes = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  return parseInferRequest(bytes, maxElements === undefined ? { signature } : { signature, maxElements });
}

function input(extra: Record<string, unknown>): Record<string, unknown> {
  return { name: 'x', shape: [2, 3], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6], ...extra };
}

function rejects(tt: Test, fn: () => unknown, message: RegExp): void {
  tt.throws(fn, { code: 'INVALID_INPUT', status: 400, message });
}

t.test('every datatype round-trips through JSON request and JSON response', async (t) => {
  const next = rng(7);
  const parsed = property('a JSON request is parsed into the datatype\'s storage');
  const encoded = property('a JSON response carries the same values, shape and datatype');
  for (const datatype of DATATYPES) {
    const values = jsonValues(datatype, 12, next);
    const s = sig([{ name: 'x', datatype, dims: [3, 4] }]);
    const req = parse({ inputs: [{ name: 'x', shape: [3, 4], datatype, data: values }] }, s);
    const tensor = req.inputs[0]!;
    parsed.same(Array.from(tensor.data as ArrayLike<unknown>), expectedStorage(datatype, values), () => datatype);
    const { body, headerLength } = encodeInferResponse({ model_name: 'm', model_version: '1', outputs: [tensor] }, { binaryOutputs: 'none' });
    const out = JSON.parse(body.toString()) as { outputs: { data: unknown[]; shape: number[]; datatype: string }[] };
    encoded.same([headerLength, out.outputs[0]!.data, out.outputs[0]!.shape, out.outputs[0]!.datatype], [undefined, values, [3, 4], datatype], () => `${datatype} (header length, data, shape, datatype)`);
  }
  parsed.assert(t);
  encoded.assert(t);
});

t.test('nested data and flat data give the same tensor', async (t) => {
  const flat = parse({ inputs: [input({})] }).inputs[0]!.data;
  const nested = parse({ inputs: [input({ data: [[1, 2, 3], [4, 5, 6]] })] }).inputs[0]!.data;
  t.same(Array.from(nested as Float32Array), Array.from(flat as Float32Array));
  t.type(nested, Float32Array);
  const s = sig([{ name: 'x', datatype: 'INT32', dims: [2, 2, 2] }]);
  const deep = parse({ inputs: [{ name: 'x', shape: [2, 2, 2], datatype: 'INT32', data: [[[1, 2], [3, 4]], [[5, 6], [7, 8]]] }] }, s);
  t.same(Array.from(deep.inputs[0]!.data as Int32Array), [1, 2, 3, 4, 5, 6, 7, 8]);
  const partly = parse({ inputs: [{ name: 'x', shape: [2, 2, 2], datatype: 'INT32', data: [[1, 2, 3, 4], [5, 6, 7, 8]] }] }, s);
  t.same(Array.from(partly.inputs[0]!.data as Int32Array), [1, 2, 3, 4, 5, 6, 7, 8]);
});

t.test('64-bit integers keep their exact value', async (t) => {
  const s = sig([{ name: 'a', datatype: 'INT64', dims: [-1] }, { name: 'b', datatype: 'UINT64', dims: [-1] }]);
  const req = parse({ inputs: [
    { name: 'a', shape: [4], datatype: 'INT64', data: [-1, -(2 ** 32), 2 ** 62, -(2 ** 63)] },
    { name: 'b', shape: [2], datatype: 'UINT64', data: [2 ** 63, 2 ** 32 + 5] },
  ] }, s);
  t.same(Array.from(req.inputs[0]!.data as BigInt64Array), [-1n, -(2n ** 32n), 2n ** 62n, -(2n ** 63n)]);
  t.same(Array.from(req.inputs[1]!.data as BigUint64Array), [2n ** 63n, 2n ** 32n + 5n]);
  const { body } = encodeInferResponse({ model_name: 'm', model_version: '1', outputs: req.inputs }, { binaryOutputs: 'none' });
  t.match(body.toString(), /"data":\[-1,-4294967296,4611686018427387904,-9223372036854775808\]/);
  t.match(body.toString(), /"data":\[9223372036854775808,4294967301\]/);
});

t.test('64-bit integers past 2^53 in JSON text are read as spelled, not as the double they round to', async (t) => {
  const s = sig([{ name: 'a', datatype: 'INT64', dims: [-1] }, { name: 'b', datatype: 'FP64', dims: [-1] }, { name: 'u', datatype: 'UINT64', dims: [-1] }]);
  const body = (a: string, b = '0.5', u = '1') => Buffer.from(`{"inputs":[{"name":"a","shape":[2],"datatype":"INT64","data":[${a}, 1]},{"name":"b","shape":[1],"datatype":"FP64","data":[${b}]},{"name":"u","shape":[1],"datatype":"UINT64","data":[${u}]}]}`);
  const read = (text: Buffer) => parseInferRequest(text, { signature: s });
  const ints = (r: InferRequest, k: number) => Array.from(r.inputs[k]!.data as BigInt64Array);
  for (const native of [true, false]) {
    const was = useNativeJson(native);
    const how = native ? "the addon's scanner" : 'JSON.parse';
    t.same([ints(read(body('9007199254740993')), 0), ints(read(body('-123456789012345678')), 0), ints(read(body('7', '0.5', '18446744073709551615')), 2)],
      [[9007199254740993n, 1n], [-123456789012345678n, 1n], [18446744073709551615n]], `${how}: exact, where a double would read 9007199254740992, -123456789012345680 and 2^64`);
    // As before: 2^62 spelled exactly, and as JSON.stringify spells the double 2**62.
    t.same([ints(read(body('4611686018427387904')), 0), ints(read(body('4611686018427388000')), 0)], [[2n ** 62n, 1n], [2n ** 62n, 1n]], `${how}: 2^62 spelled either way`);
    const mixed = read(body('9007199254740993', '12345678901234567'));
    t.same([ints(mixed, 0), Array.from(mixed.inputs[1]!.data as Float64Array)], [[9007199254740993n, 1n], [12345678901234568]], `${how}: the same long integer in an FP64 input is the double it rounds to`);
    rejects(t, () => read(body('-9223372036854775809')), /expected an integer between -9223372036854775808 and 9223372036854775807 \(INT64\) for input "a" element 0 but received -9223372036854775809/);
    useNativeJson(was);
  }
  // Past 1 MiB the exact reading is not attempted (it costs several times JSON.parse): refused, naming the exact ways.
  const wide = sig([{ name: 'a', datatype: 'INT64', dims: [-1] }, { name: 'b', datatype: 'FP64', dims: [-1] }]);
  const floats = Array.from({ length: 300_000 }, () => '0.5').join(',');
  const big = Buffer.from(`{"inputs":[{"name":"a","shape":[1],"datatype":"INT64","data":[9007199254740993]},{"name":"b","shape":[300000],"datatype":"FP64","data":[${floats}]}]}`);
  t.ok(big.length > 1 << 20, 'a body over 1 MiB');
  rejects(t, () => parseInferRequest(big, { signature: wide }), /for input "a" element 0 \(INT64\) but received 9007199254740992, .*send 64-bit integers past 2\^53 in the binary extension \(binary_data_size\) or over gRPC/);
});

t.test('a 64-bit integer past 64 bits is refused with the digits the client sent, not the double they read as', async (t) => {
  const s = sig([{ name: 'u', datatype: 'UINT64', dims: [-1] }, { name: 'a', datatype: 'INT64', dims: [-1] }]);
  const body = (u: string, a = '1') => Buffer.from(`{"inputs":[{"name":"u","shape":[2],"datatype":"UINT64","data":[1, ${u}]},{"name":"a","shape":[1],"datatype":"INT64","data":[${a}]}]}`);
  const read = (text: Buffer) => parseInferRequest(text, { signature: s });
  const range = (name: string, datatype: string) => datatype === 'UINT64' ? `between 0 and 18446744073709551615 \\(UINT64\\) for input "${name}"` : `between -9223372036854775808 and 9223372036854775807 \\(INT64\\) for input "${name}"`;
  for (const native of [true, false]) {
    const was = useNativeJson(native);
    // 2^64 read as the double 2^64 was shown as 18446744073709552000; 10^23 - 1 as 1e+23.
    rejects(t, () => read(body('18446744073709551616')), new RegExp(`${range('u', 'UINT64')} element 1 but received 18446744073709551616$`));
    rejects(t, () => read(body('99999999999999999999999')), new RegExp(`${range('u', 'UINT64')} element 1 but received 99999999999999999999999$`));
    rejects(t, () => read(body('1', '-99999999999999999999999')), new RegExp(`${range('a', 'INT64')} element 0 but received -99999999999999999999999$`));
    rejects(t, () => read(body('9'.repeat(60))), new RegExp(`${range('u', 'UINT64')} element 1 but received ${'9'.repeat(40)}\\.\\.\\. \\(60 digits\\)$`));
    useNativeJson(was);
  }
});

t.test('request fields: id, parameters, outputs and binary choices', async (t) => {
  const s = sig([{ name: 'x', datatype: 'FP32', dims: [2, 3] }], 0, [{ name: 'y', datatype: 'FP32', dims: [1] }, { name: 'z', datatype: 'INT64', dims: [1] }]);
  const req = parse({ id: 'r1', parameters: { binary_data_output: true, custom: 3 }, inputs: [input({})],
    outputs: [{ name: 'z', parameters: { binary_data: false } }, { name: 'y' }] }, s);
  t.equal(req.id, 'r1');
  t.same(req.parameters, { binary_data_output: true, custom: 3 });
  t.equal(req.binaryDataOutput, true);
  t.same(req.outputs, [{ name: 'z', parameters: { binary_data: false }, binaryData: false }, { name: 'y' }]);
  t.same([...(binaryOutputsFor(req) as Set<string>)], ['y']);
  const plain = parse({ inputs: [input({})] }, s);
  t.equal(plain.outputs, undefined);
  t.same(plain.parameters, {});
  t.equal(binaryOutputsFor(plain), 'none');
  t.equal(binaryOutputsFor({ ...plain, binaryDataOutput: true }), 'all');
  t.equal(binaryOutputsFor({ ...plain, outputs: [{ name: 'y', binaryData: false }] }), 'none');
  t.equal(parse({ inputs: [input({})], outputs: [] }, s).outputs, undefined, 'an empty outputs list asks for every output, as Triton and gRPC read it');
});

t.test('structural errors name the field', async (t) => {
  rejects(t, () => parse('{"inputs": ['), /^malformed JSON in the inference request/);
  rejects(t, () => parse([1]), /expected a JSON object for the inference request but received an array of length 1/);
  rejects(t, () => parse({}), /expected an array for inputs but received undefined/);
  rejects(t, () => parse({ inputs: [7] }), /expected an object for inputs\[0\] but received number 7/);
  rejects(t, () => parse({ inputs: [input({ name: 5 })] }), /expected a string for inputs\[0\]\.name but received number 5/);
  rejects(t, () => parse({ inputs: [input({ name: 'nope' })] }), /expected one of the inputs "x" of model "m" for inputs\[0\]\.name but received "nope"/);
  rejects(t, () => parse({ inputs: [input({}), input({})] }), /input "x" appears more than once/);
  rejects(t, () => parse({ inputs: [] }), /expected input "x" of model "m" but the request does not have it/);
  rejects(t, () => parse({ id: 3, inputs: [input({})] }), /expected a string for id but received number 3/);
  rejects(t, () => parse({ parameters: [], inputs: [input({})] }), /expected an object for parameters but received an array/);
  rejects(t, () => parse({ inputs: [input({ parameters: 'x' })] }), /expected an object for input "x" parameters/);
  rejects(t, () => parse({ parameters: { binary_data_output: 'yes' }, inputs: [input({})] }), /expected a boolean for parameters\.binary_data_output/);
  rejects(t, () => parse({ inputs: [input({ data: undefined })] }), /expected data or parameters\.binary_data_size for input "x" but received neither/);
  rejects(t, () => parse({ inputs: [input({ data: { a: 1 } })] }), /expected an array for input "x" data but received object/);
});

t.test('datatype and shape errors', async (t) => {
  rejects(t, () => parse({ inputs: [input({ datatype: 'FLOAT' })] }), /expected an OIP datatype .* for input "x" datatype but received the string "FLOAT"/);
  rejects(t, () => parse({ inputs: [input({ datatype: 'INT32' })] }), /expected datatype FP32 for input "x" datatype but received the string "INT32"/);
  rejects(t, () => parse({ inputs: [input({ shape: '2,3' })] }), /expected an array of non-negative integers for input "x" shape/);
  rejects(t, () => parse({ inputs: [input({ shape: [2, -3] })] }), /expected a non-negative integer for input "x" shape\[1\] but received number -3/);
  rejects(t, () => parse({ inputs: [input({ shape: [1, 2 ** 62] })] }), /expected a dimension of at most 9007199254740991 for input "x" shape\[1\] but received one of about 4\.612e\+18: no tensor is that large/);
  rejects(t, () => parse({ inputs: [input({ shape: [2, 1.5] })] }), /shape\[1\] but received number 1\.5/);
  rejects(t, () => parse({ inputs: [input({ shape: [6] })] }), /expected shape \[2, 3\] for input "x" but received \[6\]/);
  rejects(t, () => parse({ inputs: [input({ shape: [3, 2] })] }), /expected shape \[2, 3\] for input "x" but received \[3, 2\]/);
  rejects(t, () => parse({ inputs: [input({ data: [1, 2, 3, 4, 5] })] }), /expected 6 elements for input "x" data \(shape \[2, 3\]\) but received 5/);
  rejects(t, () => parse({ inputs: [input({ data: [[1, 2, 3], [4, 5]] })] }), /expected 3 elements for input "x" data at depth 1/);
  rejects(t, () => parse({ inputs: [input({ data: [[1, 2], [3, 4], [5, 6]] })] }), /expected nested data matching shape \[2, 3\] for input "x" but received an array of length 3 at depth 0/);
  rejects(t, () => parse({ inputs: [input({ data: [[1, 2, 3], 4] })] }), /expected an array at depth 1 for input "x" data but received number 4/);
});

t.test('batching models take a leading batch dimension', async (t) => {
  const s = sig([{ name: 'a', datatype: 'FP32', dims: [-1] }, { name: 'b', datatype: 'BOOL', dims: [1] }], 4);
  const ok = parse({ inputs: [
    { name: 'a', shape: [2, 3], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] },
    { name: 'b', shape: [2, 1], datatype: 'BOOL', data: [true, false] },
  ] }, s);
  t.same(ok.inputs.map((i) => i.shape), [[2, 3], [2, 1]]);
  const a = (shape: number[], n: number): Record<string, unknown> => ({ name: 'a', shape, datatype: 'FP32', data: Array.from({ length: n }, (_, i) => i + 0.5) });
  const b = (rows: number): Record<string, unknown> => ({ name: 'b', shape: [rows, 1], datatype: 'BOOL', data: Array.from({ length: rows }, () => true) });
  rejects(t, () => parse({ inputs: [a([5, 1], 5), b(5)] }, s), /expected a batch size between 1 and 4 for input "a" but received 5/);
  rejects(t, () => parse({ inputs: [a([0, 2], 0), b(1)] }, s), /batch size between 1 and 4 for input "a" but received 0/);
  rejects(t, () => parse({ inputs: [a([3], 3), b(1)] }, s), /expected shape \[batch, -1\] for input "a" but received \[3\]/);
  rejects(t, () => parse({ inputs: [a([2, 2], 4), b(3)] }, s), /expected batch size 2 \(as input "a"\) for input "b" but received 3/);
});

t.test('absurd shapes are refused before allocating', async (t) => {
  const s = sig([{ name: 'x', datatype: 'FP32', dims: [-1, -1] }]);
  rejects(t, () => parse({ inputs: [input({ shape: [2 ** 40, 2 ** 40] })] }, s), /expected at most 67108864 elements for input "x" but received shape \[1099511627776, 1099511627776\]/);
  rejects(t, () => parse({ inputs: [input({ shape: [2, 3] })] }, s, 5), /expected at most 5 elements for input "x"/);
  // Empty along a free dimension: refused too, whatever the other dims say (nothing to infer on).
  rejects(t, () => parse({ inputs: [input({ shape: [0, 2 ** 40], data: [] })] }, s), /expected at least 1 along dimension 0 of input "x" \(a free dimension of the model\) but received 0 \(shape \[0, 1099511627776\]\)/);
  rejects(t, () => parse({ inputs: [input({ shape: [3, 0], data: [] })] }, s), /along dimension 1 of input "x"/);
});

t.test('element type and range errors', async (t) => {
  const one = (datatype: DataType, value: unknown): InferRequest =>
    parse({ inputs: [{ name: 'x', shape: [1], datatype, data: [value] }] }, sig([{ name: 'x', datatype, dims: [1] }]));
  rejects(t, () => one('INT8', 300), /expected an integer between -128 and 127 \(INT8\) for input "x" element 0 but received number 300/);
  rejects(t, () => one('UINT8', -1), /between 0 and 255 \(UINT8\)/);
  rejects(t, () => one('UINT32', 2 ** 32), /between 0 and 4294967295/);
  rejects(t, () => one('UINT64', -1), /between 0 and 18446744073709551615 \(UINT64\)/);
  rejects(t, () => one('INT64', 2 ** 63), /between -9223372036854775808 and 9223372036854775807 \(INT64\)/);
  rejects(t, () => one('INT32', 1.5), /expected an integer \(INT32\) for input "x" element 0 but received number 1\.5/);
  rejects(t, () => one('INT64', '5'), /expected an integer \(INT64\) for input "x" element 0 but received the string "5"/);
  rejects(t, () => one('FP32', 'abc'), /expected a number for input "x" element 0 but received the string "abc"/);
  rejects(t, () => one('FP32', null), /expected a number for input "x" element 0 but received null/);
  rejects(t, () => one('FP32', 1e39), /expected a number within the FP32 range for input "x" element 0/);
  const fp64 = sig([{ name: 'x', datatype: 'FP64', dims: [1] }]);
  rejects(t, () => parse('{"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":[1e400]}]}', fp64), /within the FP64 range for input "x" element 0 but received number Infinity/);
  rejects(t, () => one('FP16', 70000), /within the FP16 range/);
  rejects(t, () => one('BOOL', 1), /expected true or false \(BOOL\) for input "x" element 0 but received number 1/);
  rejects(t, () => one('BYTES', 5), /expected a string \(BYTES\) for input "x" element 0 but received number 5/);
  rejects(t, () => one('BYTES', 'cat\u0000x'), /expected text for input "x" element 0 \(BYTES\) but received a NUL character at character 3 \(onnxruntime's strings end at the first NUL/);
  rejects(t, () => one('BYTES', 'a\ud800b'), /expected text for input "x" element 0 \(BYTES\) but received an unpaired surrogate \(\\ud800\) at character 1/);
  rejects(t, () => one('BYTES', '\udc00'), /unpaired surrogate \(\\udc00\) at character 0/);
  t.equal((one('FP32', 3.4028234663852886e38).inputs[0]!.data as Float32Array)[0], 3.4028234663852886e38);
});

t.test('NaN and infinity only with allow_nan', async (t) => {
  const req = (data: unknown[], parameters?: Record<string, unknown>, inputParameters?: Record<string, unknown>): InferRequest =>
    parse({ ...(parameters ? { parameters } : {}), inputs: [input({ data, ...(inputParameters ? { parameters: inputParameters } : {}) })] });
  rejects(t, () => req([1, 2, 'NaN', 4, 5, 6]), /expected a finite number for input "x" element 2 but received NaN; set parameters\.allow_nan to true/);
  rejects(t, () => req([1, 2, 3, 4, 5, '-Infinity']), /element 5 but received -Infinity/);
  rejects(t, () => req([1, 2, 3, 4, 5, 'inf'], undefined, { allow_nan: 'yes' }), /expected a boolean for input "x" parameters\.allow_nan/);
  rejects(t, () => req([1, 2, 3, 4, 5, 'nan'], { allow_nan: true }, { allow_nan: false }), /finite number/);
  const viaInput = req([1, 'NaN', 'Infinity', '-inf', 5, 6], undefined, { allow_nan: true }).inputs[0]!.data as Float32Array;
  t.same(Array.from(viaInput), [1, NaN, Infinity, -Infinity, 5, 6]);
  const viaRequest = req([1, 2, 3, 4, 5, 'NaN'], { allow_nan: true }).inputs[0]!.data as Float32Array;
  t.ok(Number.isNaN(viaRequest[5]));
  const s = sig([{ name: 'h', datatype: 'FP16', dims: [2] }]);
  rejects(t, () => parse({ inputs: [{ name: 'h', shape: [2], datatype: 'FP16', data: [1, 'Infinity'] }] }, s), /input "h" element 1 but received Infinity/);
});

t.test('requested outputs must be real and unique', async (t) => {
  rejects(t, () => parse({ inputs: [input({})], outputs: {} }), /expected an array for outputs but received object/);
  rejects(t, () => parse({ inputs: [input({})], outputs: [{ name: 'q' }] }), /expected one of the outputs "y" of model "m" for outputs\[0\]\.name but received "q"/);
  rejects(t, () => parse({ inputs: [input({})], outputs: [{ name: 'y' }, { name: 'y' }] }), /output "y" is requested more than once/);
  rejects(t, () => parse({ inputs: [input({})], outputs: [{ name: 'y', parameters: { binary_data: 1 } }] }), /expected a boolean for output "y" parameters\.binary_data but received number 1/);
  rejects(t, () => parse({ inputs: [input({})], outputs: ['y'] }), /expected an object for outputs\[0\]/);
});

t.test('JSON responses carry id, parameters, NaN as strings and BOOL as booleans', async (t) => {
  const outputs = [
    { name: 'f', datatype: 'FP32' as const, shape: [3], data: new Float32Array([NaN, -Infinity, 0.5]) },
    { name: 'b', datatype: 'BOOL' as const, shape: [1, 2], data: new Uint8Array([1, 0]), parameters: { note: 'kept' } },
  ];
  const { body } = encodeInferResponse({ model_name: 'm', model_version: '3', id: 'q', parameters: { n: 10n }, outputs }, { binaryOutputs: 'none' });
  const json = JSON.parse(body.toString()) as Record<string, unknown>;
  t.same(json, {
    model_name: 'm', model_version: '3', id: 'q', parameters: { n: 10 },
    outputs: [
      { name: 'f', datatype: 'FP32', shape: [3], data: ['NaN', '-Infinity', 0.5] },
      { name: 'b', datatype: 'BOOL', shape: [1, 2], parameters: { note: 'kept' }, data: [true, false] },
    ],
  });
  t.throws(() => encodeInferResponse({ model_name: 'm', model_version: '1', outputs: [{ ...outputs[0]!, shape: [4] }] }, { binaryOutputs: 'none' }), { code: 'INTERNAL' });
});

t.test('encodeJson handles BigInt and typed arrays', async (t) => {
  const data: TensorData = new Int32Array([1, -2]);
  t.same(JSON.parse(encodeJson({ a: 5n, b: data, c: new BigInt64Array([3n]), d: 'x' }).toString()), { a: 5, b: [1, -2], c: [3], d: 'x' });
  t.ok(Buffer.isBuffer(encodeJson(null)));
});

t.test('large outputs encode exactly across internal chunk boundaries', async (t) => {
  const next = rng(21);
  const n = 20011;
  const f = new Float32Array(n).map(() => (next() - 0.5) * 1e4);
  const i32 = new Int32Array(n).map(() => Math.floor((next() - 0.5) * 2 ** 31));
  const outputs = [
    { name: 'f', datatype: 'FP32' as const, shape: [n], data: f },
    { name: 'i', datatype: 'INT32' as const, shape: [n], data: i32 },
  ];
  const { body } = encodeInferResponse({ model_name: 'm', model_version: '1', outputs }, { binaryOutputs: 'none' });
  const json = JSON.parse(body.toString()) as { outputs: { data: number[] }[] };
  t.same(json.outputs[0]!.data, Array.from(f));
  t.same(json.outputs[1]!.data, Array.from(i32));
});
