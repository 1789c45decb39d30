// The addon's JSON helpers (native/src/json) against V8's JSON. The request-body scanner
// (src/protocol/request-json.ts): the same values as JSON.parse (each packed data array unpacked
// again), the same syntax errors, and through parseInferRequest the same tensors and the same
// error messages. The output number formatter (response.ts): numbers that read back exactly.
import t from 'tap';
import {
  PackedNumbers, encodeInferResponse, nativeJsonActive, parseInferRequest, parseRequestJson, useNativeJson,
  type InferRequest, type ModelSignature, type Tensor,
} from '../dist/protocol/index.js';
import { seededRandom } from '../dist/random.js';
import { property } from './helpers/property.js';

const active = nativeJsonActive();

/** PackedNumbers back to the nested arrays they came from. */
function unpacked(value: unknown): unknown {
  if (value instanceof PackedNumbers) {
    const dims = value.dims;
    let at = 0;
    const build = (level: number): unknown[] => {
      const out: unknown[] = [];
      for (let i = 0; i < dims[level]!; i++) out.push(level === dims.length - 1 ? value.values[at++] : build(level + 1));
      return out;
    };
    return build(0);
  }
  if (Array.isArray(value)) return value.map(unpacked);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unpacked(v)]));
  return value;
}

/** JSON text that keeps -0 and non-finite numbers apart from 0 and null. */
/**
 * A value as comparable text. An integer kept exact (a bigint: one a double would read as another
 * number, such as 9007199254740993) compares as the double JSON.parse reads it as, so the rest of
 * the document must equal JSON.parse's; `bigints` collects them for their own check.
 */
function canonical(value: unknown, bigints: bigint[] = []): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'bigint') {
      bigints.push(v);
      v = Number(v);
    }
    if (typeof v === 'number' && (Object.is(v, -0) || !Number.isFinite(v))) return `#num:${Object.is(v, -0) ? '-0' : String(v)}`;
    return v;
  });
}

function outcome(fn: () => unknown): { value?: string; error?: string } {
  try {
    return { value: canonical(unpacked(fn())) };
  } catch (err) {
    return { error: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

const NUMBERS = [
  '0', '-0', '1', '-1', '0.5', '1e3', '1E+3', '2.5e-3', '-7.25E-2', '123456789012345678901234567890', '0.1000000000000000055511151231257827',
  '1.7976931348623157e308', '1e309', '-1e309', '5e-324', '1e-400', '4.9406564584124654e-324', '9007199254740993', '18446744073709551615',
  '0.18727605044841766', '15.630521774291992',
];
const BAD_NUMBERS = ['01', '1.', '.5', '+1', '1e', '-', '0x10', 'NaN', 'Infinity', '1e+', '--1'];

function pick<T>(next: () => number, list: readonly T[]): T {
  return list[Math.floor(next() * list.length)]!;
}

function space(next: () => number): string {
  return next() < 0.7 ? '' : pick(next, [' ', '\n', '\t ', '\r\n  ']);
}

/** A data array: flat, regularly nested, ragged, empty, mixed with other values, or deep. */
function dataArray(next: () => number): string {
  const kind = next();
  const num = () => pick(next, NUMBERS);
  const list = (n: number, item: () => string) => `[${space(next)}${Array.from({ length: n }, item).join(`,${space(next)}`)}${space(next)}]`;
  if (kind < 0.35) return list(1 + Math.floor(next() * 8), num);
  if (kind < 0.55) {
    const a = 1 + Math.floor(next() * 3);
    const b = 1 + Math.floor(next() * 4);
    return list(a, () => list(b, num));
  }
  if (kind < 0.62) return list(2, () => list(2, () => list(1 + Math.floor(next() * 2), num))); // sometimes ragged at depth 2
  if (kind < 0.68) return list(1 + Math.floor(next() * 3), () => list(1 + Math.floor(next() * 3), num)); // often ragged
  if (kind < 0.72) return '[]';
  if (kind < 0.76) return '[[], []]';
  if (kind < 0.82) return list(3, () => pick(next, [num(), '"NaN"', 'true', 'null', '"x"']));
  if (kind < 0.86) return `[1, [2, 3]]`;
  if (kind < 0.9) return '['.repeat(10) + '1' + ']'.repeat(10);
  if (kind < 0.95) return pick(next, ['"text"', '5', 'null', '{"a": [1, 2]}']);
  return list(2, num).replace(/\d/, pick(next, BAD_NUMBERS)); // invalid JSON
}

function input(next: () => number): string {
  const fields = [`"name": "in${Math.floor(next() * 3)}"`, `"datatype": "FP32"`, `"shape": [2, 2]`, `"data": ${dataArray(next)}`];
  if (next() < 0.1) fields.push(`"data": ${dataArray(next)}`); // a repeated key: the last one wins
  if (next() < 0.1) fields.push(`"parameters": {"data": [1, 2], "\\u00e9": "é ✓ \\" \\\\"}`);
  if (next() < 0.5) fields.reverse();
  return `{${space(next)}${fields.join(`,${space(next)}`)}${space(next)}}`;
}

function document(next: () => number): string {
  const inputs = `[${Array.from({ length: Math.floor(next() * 3) + (next() < 0.9 ? 1 : 0) }, () => input(next)).join(', ')}]`;
  const fields = [`"inputs": ${inputs}`, `"id": "r${Math.floor(next() * 100)}"`];
  if (next() < 0.2) fields.push(`"outputs": [{"name": "y", "data": [1, 2, 3]}]`);
  if (next() < 0.1) fields.push(`"data": [4, 5]`);
  if (next() < 0.1) fields.push(`"inputs": ${next() < 0.5 ? '7' : `[${input(next)}]`}`);
  if (next() < 0.05) fields.push(`"note": "has \\u0000 in it"`);
  let text = `${space(next)}{${fields.join(', ')}}${space(next)}`;
  if (next() < 0.05) text = text.slice(0, Math.floor(next() * text.length)); // truncated
  if (next() < 0.03) text += ' x';
  return text;
}

t.test('the addon scanner is in use here (otherwise these comparisons would compare JSON.parse with itself)', async (t) => {
  t.ok(active, 'nativeJsonActive');
  const root = parseRequestJson(Buffer.from('{"inputs":[{"name":"a","data":[[1,2],[3,4]]}]}')) as { inputs: { data: unknown }[] };
  t.ok(root.inputs[0]!.data instanceof PackedNumbers);
  t.same((root.inputs[0]!.data as PackedNumbers).dims, [2, 2]);
  t.same(Array.from((root.inputs[0]!.data as PackedNumbers).values), [1, 2, 3, 4]);
});

t.test('random documents parse to what JSON.parse gives, or fail with its error', async (t) => {
  const next = seededRandom(2026);
  let packed = 0;
  let failed = 0;
  const agrees = property('each document parses to what JSON.parse gives, or fails with its error');
  const exact = property('an integer comes back as a bigint only where a double would read it as another number, and then exactly as spelled');
  let kept = 0;
  for (let i = 0; i < 3000; i++) {
    const text = document(next);
    const bytes = Buffer.from(text);
    const got = outcome(() => parseRequestJson(bytes));
    const want = outcome(() => JSON.parse(text));
    agrees.check(got.value === want.value && got.error === want.error, () => `document ${i} ${JSON.stringify({ text, got, want })}`);
    if (!want.error) {
      const bigints: bigint[] = [];
      canonical(unpacked(parseRequestJson(bytes)), bigints);
      kept += bigints.length;
      for (const b of bigints) exact.check(BigInt(Number(b)) !== b && new RegExp(`(^|[^\\d])${b}([^\\d]|$)`).test(text), () => `document ${i}: ${b} in ${text}`);
    }
    if (want.error) failed++;
    else if (text.includes('"data"') && canonical(parseRequestJson(bytes)) !== want.value) packed++;
  }
  agrees.assert(t);
  exact.assert(t);
  t.ok(kept > 10, `${kept} integers kept exact`);
  t.ok(packed > 500, `${packed} documents had packed arrays`);
  t.ok(failed > 50, `${failed} documents were invalid`);
});

t.test('a body cut short by Inference-Header-Content-Length is parsed up to that point', async (t) => {
  const json = '{"inputs":[{"name":"a","datatype":"FP32","shape":[2],"data":[1.5,2.5]}]}';
  const bytes = Buffer.concat([Buffer.from(json), Buffer.from([0x5b, 0x31, 0x2c])]);
  t.same(canonical(unpacked(parseRequestJson(bytes, json.length))), canonical(JSON.parse(json)));
});

t.test('parseInferRequest gives the same tensors and the same errors with and without the scanner', async (t) => {
  const signature: ModelSignature = {
    name: 'm', maxBatchSize: 8,
    inputs: [{ name: 'a', datatype: 'FP32', dims: [2, 3] }, { name: 'b', datatype: 'INT32', dims: [-1] }, { name: 'c', datatype: 'BOOL', dims: [1] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: [1] }],
  };
  const next = seededRandom(7);
  const nested = (dims: number[], leaf: () => string): string => (dims.length === 0 ? leaf() : `[${Array.from({ length: dims[0]! }, () => nested(dims.slice(1), leaf)).join(',')}]`);
  const cases: string[] = [];
  for (let i = 0; i < 400; i++) {
    const batch = 1 + Math.floor(next() * 3);
    const aShape = [batch, 2, 3];
    // The data's nesting: right, flattened at some depth, or off by one somewhere.
    const split = Math.floor(next() * 4);
    let dims = split === 0 ? [batch * 6] : split === 1 ? [batch, 6] : split === 2 ? [batch, 2, 3] : [batch, 3, 2];
    if (next() < 0.2) dims = dims.map((d, j) => (j === Math.floor(next() * dims.length) ? d + 1 : d));
    // Mostly valid values, now and then one the model's datatype refuses.
    const rare = (good: string[], bad: string[]) => () => pick(next, next() < 0.01 ? bad : good);
    const aLeaf = rare(['1.5', '-0', '3e38', '2', '0.1', '0.18727605044841766'], ['3.5e38', '1e309', '"NaN"']);
    const bLen = 1 + Math.floor(next() * 4);
    const bLeaf = rare(['1', '-7', '2147483647', '0'], ['2147483648', '1.5']);
    const cLeaf = rare(['true', 'false'], ['1']);
    const body = {
      a: `{"name":"a","datatype":"FP32","shape":[${aShape.join(',')}],"data":${nested(dims, aLeaf)}}`,
      b: `{"name":"b","datatype":"INT32","shape":[${batch},${bLen}],"data":${nested(next() < 0.5 ? [batch * bLen] : [batch, bLen], bLeaf)}}`,
      c: `{"name":"c","datatype":"BOOL","shape":[${batch},1],"data":${nested([batch, 1], cLeaf)}}`,
    };
    const params = next() < 0.3 ? ',"parameters":{"allow_nan":true}' : '';
    cases.push(`{"id":"q${i}","inputs":[${body.a},${body.b},${body.c}]${params}}`);
  }
  const run = (text: string) => {
    try {
      const r: InferRequest = parseInferRequest(Buffer.from(text), { signature });
      return canonical(r.inputs.map((x) => ({ name: x.name, shape: x.shape, data: Array.from(x.data as ArrayLike<number>) })));
    } catch (err) {
      return `error: ${(err as Error).message}`;
    }
  };
  let errors = 0;
  for (const text of cases) {
    useNativeJson(false);
    const want = run(text);
    useNativeJson(true);
    const got = run(text);
    if (got !== want) {
      t.fail('differs', { text, got, want });
      return;
    }
    if (want.startsWith('error')) errors++;
  }
  t.ok(errors > 50 && errors < 350, `${errors} of ${cases.length} requests were refused, the same way on both paths`);
});

t.test('output numbers read back to the same values with and without the addon', async (t) => {
  const next = seededRandom(11);
  const bits = new Uint32Array(1);
  const asFloat = new Float32Array(bits.buffer);
  const f32 = new Float32Array(4000);
  for (let i = 0; i < f32.length; i++) {
    bits[0] = Math.floor(next() * 2 ** 32); // every float32 bit pattern is as likely: denormals, huge, NaN
    f32[i] = asFloat[0]!;
  }
  f32.set([0, -0, Infinity, -Infinity, NaN, 1e-45, 3.4028234663852886e38, 0.1, 1 / 3, 16777217]);
  const f64 = Float64Array.from({ length: 4000 }, (_v, i) => (i % 7 === 0 ? (next() - 0.5) * 10 ** Math.floor(next() * 600 - 300) : (next() - 0.5) * 1e3));
  f64.set([5e-324, 1e21, 1e-7, 1.7976931348623157e308, -0, 123456789012345680000]);
  const encode = (data: Float32Array | Float64Array, datatype: 'FP32' | 'FP64') => {
    const output: Tensor = { name: 'y', datatype, shape: [data.length], data };
    return encodeInferResponse({ model_name: 'm', model_version: '1', outputs: [output] }, { binaryOutputs: 'none' }).body.toString();
  };
  const readBack = (text: string) => (JSON.parse(text) as { outputs: { data: (number | string)[] }[] }).outputs[0]!.data.map((v) => (typeof v === 'string' ? Number(v) : v));
  for (const [data, datatype] of [[f32, 'FP32'], [f64, 'FP64']] as const) {
    useNativeJson(true);
    const fast = readBack(encode(data, datatype));
    useNativeJson(false);
    const slow = readBack(encode(data, datatype));
    useNativeJson(true);
    let same = 0;
    for (let i = 0; i < data.length; i++) {
      const want = data[i]!;
      // The addon keeps -0's sign; V8's JSON.stringify writes it as 0.
      if (!Object.is(fast[i], want) || !(Object.is(slow[i], want) || (Object.is(want, -0) && slow[i] === 0))) {
        t.fail(`${datatype} element ${i}`, { want, fast: fast[i], slow: slow[i] });
        return;
      }
      same++;
    }
    t.equal(same, data.length, `${datatype}: every value reads back exactly on both paths`);
  }
});
