import t, { type Test } from 'tap';
import {
  DATATYPES, bytesPerElement, encodeInferResponse, parseInferRequest, tensorDataToBinary, typedArrayFor,
  type DataType, type ModelSignature, type Tensor, type TensorData,
} from '../dist/protocol/index.js';
import { seededRandom as rng } from '../dist/random.js';
import { property } from './helpers/property.js';

// Seeded generator (mulberry32) so every run sees the same "random" inputs.

/** Random, finite storage for `n` elements; integer types get random bytes over their whole range. */
function randomData(datatype: DataType, n: number, next: () => number): TensorData {
  const out = typedArrayFor(datatype, n);
  if (Array.isArray(out)) {
    for (let i = 0; i < n; i++) out[i] = i === 0 ? '' : `v${Math.floor(next() * 1e9)}-ü€${'x'.repeat(i % 5)}`;
    return out;
  }
  if (datatype === 'BOOL') (out as Uint8Array).forEach((_, i, a) => { a[i] = next() < 0.5 ? 1 : 0; });
  else if (datatype === 'FP32') (out as Float32Array).forEach((_, i, a) => { a[i] = (next() - 0.5) * 1e6; });
  else if (datatype === 'FP64') (out as Float64Array).forEach((_, i, a) => { a[i] = (next() - 0.5) * 1e300; });
  else if (datatype === 'FP16') (out as Uint16Array).forEach((_, i, a) => { a[i] = Math.floor(next() * 0xffff) & 0xfbff; }); // exponent never all ones
  else {
    const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(next() * 256);
  }
  return out;
}

function sig(inputs: ModelSignature['inputs'], maxBatchSize = 0): ModelSignature {
  return { name: 'm', maxBatchSize, inputs, outputs: [{ name: 'y', datatype: 'FP32', dims: [-1] }] };
}

/** A request body in the binary extension's layout, with the header length its header would carry. */
function binaryRequest(header: unknown, chunks: Uint8Array[], padding = ''): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header) + padding);
  return { body: Buffer.concat([json, ...chunks]), headerLength: json.length };
}

function binaryInput(tensor: Tensor, extra: Record<string, unknown> = {}): { header: Record<string, unknown>; bytes: Uint8Array } {
  const bytes = tensorDataToBinary(tensor);
  return { header: { name: tensor.name, shape: tensor.shape, datatype: tensor.datatype, parameters: { binary_data_size: bytes.byteLength, ...extra } }, bytes };
}

function rejects(tt: Test, fn: () => unknown, message: RegExp): void {
  tt.throws(fn, { code: 'INVALID_INPUT', status: 400, message });
}

const F6 = sig([{ name: 'x', datatype: 'FP32', dims: [2, 3] }]);
const SIX = new Float32Array([1.5, -2, 3.25, 4, 5, -6.75]);

function parseF6(header: unknown, chunks: Uint8Array[], headerLength?: number): unknown {
  const r = binaryRequest(header, chunks);
  return parseInferRequest(r.body, { signature: F6, headerLength: headerLength ?? r.headerLength });
}

t.test('every datatype round-trips through binary request and binary response', async (t) => {
  const next = rng(11);
  const requests = property('a binary request is parsed into the same values and shape');
  const responses = property('a binary response has a binary section of the tensor\'s size, no data field, and reads back the same');
  for (const datatype of DATATYPES) {
    const original: Tensor = { name: 'x', datatype, shape: [2, 5], data: randomData(datatype, 10, next) };
    const s = sig([{ name: 'x', datatype, dims: [-1] }], 8);
    const { header, bytes } = binaryInput(original);
    const req = binaryRequest({ inputs: [header] }, [bytes]);
    const parsed = parseInferRequest(req.body, { signature: s, headerLength: req.headerLength }).inputs[0]!;
    requests.same([Array.from(parsed.data as ArrayLike<unknown>), parsed.shape], [Array.from(original.data as ArrayLike<unknown>), [2, 5]], () => datatype);

    const resp = encodeInferResponse({ model_name: 'm', model_version: '1', outputs: [parsed] }, { binaryOutputs: 'all' });
    if (resp.headerLength === undefined || resp.headerLength >= resp.body.length) {
      responses.check(false, () => `${datatype}: no binary section`);
      continue;
    }
    const head = JSON.parse(resp.body.subarray(0, resp.headerLength).toString()) as { outputs: Record<string, unknown>[] };
    // A response's outputs have the same layout as request inputs, so the parser can read them back.
    const again = Buffer.concat([Buffer.from(JSON.stringify({ inputs: head.outputs })), resp.body.subarray(resp.headerLength)]);
    const reparsed = parseInferRequest(again, { signature: s, headerLength: again.length - (resp.body.length - resp.headerLength) });
    responses.same([(head.outputs[0]!['parameters'] as Record<string, number>)['binary_data_size'], 'data' in head.outputs[0]!, Array.from(reparsed.inputs[0]!.data as ArrayLike<unknown>)],
      [bytes.byteLength, false, Array.from(original.data as ArrayLike<unknown>)], () => `${datatype} (binary_data_size, has data, values read back)`);
  }
  requests.assert(t);
  responses.assert(t);
});

t.test('binary and JSON inputs mix; binary data follows input order', async (t) => {
  const s = sig([
    { name: 'a', datatype: 'INT32', dims: [2] }, { name: 'b', datatype: 'FP32', dims: [1] }, { name: 'c', datatype: 'BYTES', dims: [2] },
  ]);
  const a = binaryInput({ name: 'a', datatype: 'INT32', shape: [2], data: new Int32Array([-7, 9]) });
  const c = binaryInput({ name: 'c', datatype: 'BYTES', shape: [2], data: ['hé', ''] });
  const req = binaryRequest({ inputs: [a.header, { name: 'b', shape: [1], datatype: 'FP32', data: [0.5] }, c.header] }, [a.bytes, c.bytes]);
  const parsed = parseInferRequest(req.body, { signature: s, headerLength: req.headerLength });
  t.same(parsed.inputs.map((i) => i.name), ['a', 'b', 'c']);
  t.same(Array.from(parsed.inputs[0]!.data as Int32Array), [-7, 9]);
  t.same(Array.from(parsed.inputs[1]!.data as Float32Array), [0.5]);
  t.same(parsed.inputs[2]!.data, ['hé', '']);
  t.same(parsed.inputs[0]!.parameters, { binary_data_size: 8 });
});

t.test('aligned binary tensors are views; unaligned ones are copied correctly', async (t) => {
  const { header, bytes } = binaryInput({ name: 'x', datatype: 'FP32', shape: [2, 3], data: SIX });
  const padded = property('a header padded by 0-3 spaces: same values, a view of the body when aligned, else a copy');
  for (let pad = 0; pad < 4; pad++) {
    const req = binaryRequest({ inputs: [header] }, [bytes], ' '.repeat(pad));
    const data = parseInferRequest(req.body, { signature: F6, headerLength: req.headerLength }).inputs[0]!.data as Float32Array;
    const aligned = (req.body.byteOffset + req.headerLength) % 4 === 0;
    padded.same([Array.from(data), data.buffer === req.body.buffer], [Array.from(SIX), aligned], () => `padded by ${pad} (values, shares the body)`);
  }
  padded.assert(t);
  // Unaligned copies of small tensors share slabs: each keeps its own values.
  const kept: Float32Array[] = [];
  for (let i = 0; i < 50; i++) {
    const values = new Float32Array(SIX.map((v) => v * (i + 1)));
    const { header: h, bytes: b } = binaryInput({ name: 'x', datatype: 'FP32', shape: [2, 3], data: values });
    const req = binaryRequest({ inputs: [h] }, [b], ' '.repeat(1 + (i % 3)));
    kept.push(parseInferRequest(req.body, { signature: F6, headerLength: req.headerLength }).inputs[0]!.data as Float32Array);
  }
  t.ok(kept.every((d, i) => d.every((v, j) => v === SIX[j]! * (i + 1))), 'fifty unaligned copies keep their own values');
});

t.test('binary responses: chosen outputs only, parameters kept, header length exact', async (t) => {
  const outputs: Tensor[] = [
    { name: 'p', datatype: 'FP32', shape: [2], data: new Float32Array([0.25, -1]) },
    { name: 'q', datatype: 'INT64', shape: [1], data: new BigInt64Array([-3n]), parameters: { unit: 'x' } },
    { name: 'r', datatype: 'BYTES', shape: [2], data: ['ab', 'ü'] },
  ];
  const resp = encodeInferResponse({ model_name: 'm', model_version: '2', id: 'i', outputs }, { binaryOutputs: new Set(['q', 'r']) });
  const head = JSON.parse(resp.body.subarray(0, resp.headerLength).toString()) as { id: string; outputs: Record<string, unknown>[] };
  t.equal(head.id, 'i');
  t.same(head.outputs[0], { name: 'p', datatype: 'FP32', shape: [2], data: [0.25, -1] });
  t.same(head.outputs[1], { name: 'q', datatype: 'INT64', shape: [1], parameters: { unit: 'x', binary_data_size: 8 } });
  t.same(head.outputs[2], { name: 'r', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: 4 + 2 + 4 + 2 } });
  const tail = resp.body.subarray(resp.headerLength);
  t.equal(tail.readBigInt64LE(0), -3n);
  t.equal(tail.readUInt32LE(8), 2);
  t.equal(tail.toString('utf8', 12, 14), 'ab');
  t.equal(tail.readUInt32LE(14), 2);
  t.equal(tail.toString('utf8', 18, 20), 'ü');
  t.equal(tail.length, 20);
  const none = encodeInferResponse({ model_name: 'm', model_version: '2', outputs }, { binaryOutputs: new Set(['zzz']) });
  t.equal(none.headerLength, undefined);
});

t.test('binary size and framing errors', async (t) => {
  const good = binaryInput({ name: 'x', datatype: 'FP32', shape: [2, 3], data: SIX });
  const withSize = (size: unknown): unknown => ({ inputs: [{ ...good.header, parameters: { binary_data_size: size } }] });
  rejects(t, () => parseF6(withSize(20), [good.bytes.subarray(0, 20)]), /expected binary_data_size 24 for input "x" \(6 FP32 elements of 4 bytes\) but received 20/);
  rejects(t, () => parseF6(withSize(24), [good.bytes.subarray(0, 20)]), /expected 24 bytes of binary data for input "x" \(its binary_data_size\) but only 20 remain/);
  rejects(t, () => parseF6(withSize(-1), [good.bytes]), /expected a non-negative integer for input "x" parameters\.binary_data_size but received number -1/);
  rejects(t, () => parseF6(withSize('24'), [good.bytes]), /binary_data_size but received the string "24"/);
  rejects(t, () => parseF6({ inputs: [{ ...good.header, data: Array.from(SIX) }] }, [good.bytes]), /expected either data or parameters\.binary_data_size for input "x" but received both/);
  rejects(t, () => parseF6({ inputs: [good.header] }, [good.bytes, new Uint8Array([1, 2, 3])]), /expected no bytes after the binary tensor data but received 3/);
  const json = Buffer.from(JSON.stringify({ inputs: [good.header] }));
  rejects(t, () => parseInferRequest(Buffer.concat([json, good.bytes]), { signature: F6 }), /malformed JSON/);
  rejects(t, () => parseInferRequest(json, { signature: F6 }), /expected 24 bytes of binary data for input "x" .* but only 0 remain/);
  const body = Buffer.concat([json, good.bytes]);
  for (const h of [-1, 0, body.length + 1, 2.5, Number.NaN]) {
    rejects(t, () => parseInferRequest(body, { signature: F6, headerLength: h }), /expected an integer between 1 and the body length \d+ for Inference-Header-Content-Length/);
  }
  rejects(t, () => parseInferRequest(body, { signature: F6, headerLength: json.length - 3 }), /malformed JSON/);
});

t.test('binary element checks: BYTES framing, BOOL bytes, NaN gate', async (t) => {
  const sb = sig([{ name: 's', datatype: 'BYTES', dims: [2] }]);
  const header = (size: number): unknown => ({ inputs: [{ name: 's', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: size } }] });
  const parseBytes = (chunk: Buffer): unknown => {
    const r = binaryRequest(header(chunk.length), [chunk]);
    return parseInferRequest(r.body, { signature: sb, headerLength: r.headerLength });
  };
  const el = (s: string): Buffer => { const b = Buffer.from(s); const n = Buffer.alloc(4); n.writeUInt32LE(b.length); return Buffer.concat([n, b]); };
  rejects(t, () => parseBytes(Buffer.concat([el('ab'), Buffer.from([1, 0])])), /expected a 4-byte length for input "s" element 1 but only 2 bytes of its binary_data_size 8 remain/);
  rejects(t, () => parseBytes(Buffer.concat([el('ab'), Buffer.from([9, 0, 0, 0, 65])])), /expected 9 bytes for input "s" element 1 but only 1 bytes/);
  rejects(t, () => parseBytes(Buffer.concat([el('ab'), el('c'), Buffer.from([0])])), /expected binary_data_size 11 for input "s" \(2 BYTES elements\) but received 12/);
  // Bytes a string tensor cannot hold as sent: refused, not answered for altered input.
  const raw = (b: number[]): Buffer => { const n = Buffer.alloc(4); n.writeUInt32LE(b.length); return Buffer.concat([n, Buffer.from(b)]); };
  rejects(t, () => parseBytes(Buffer.concat([el('ok'), raw([0x63, 0xe9])])), /expected UTF-8 text for input "s" element 1 \(BYTES: onnxruntime's string tensors hold text\) but received bytes that are not UTF-8 \(2 bytes: 63 e9\)/);
  rejects(t, () => parseBytes(Buffer.concat([raw([0xed, 0xa0, 0x80]), el('ok')])), /element 0 .* not UTF-8 \(3 bytes: ed a0 80\)/, 'an encoded surrogate is not UTF-8 either');
  rejects(t, () => parseBytes(Buffer.concat([el('cat\u0000x'), el('ok')])), /expected text for input "s" element 0 \(BYTES\) but received a NUL character at character 3/);
  const fine = parseBytes(Buffer.concat([el('é✓😀'), el('')])) as { inputs: Tensor[] };
  t.same(fine.inputs[0]!.data, ['é✓😀', ''], 'UTF-8 text of any script, and the empty string, are taken as sent');

  const sbool = sig([{ name: 'b', datatype: 'BOOL', dims: [3] }]);
  const r = binaryRequest({ inputs: [{ name: 'b', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: 3 } }] }, [new Uint8Array([1, 0, 2])]);
  rejects(t, () => parseInferRequest(r.body, { signature: sbool, headerLength: r.headerLength }), /expected a byte 0 or 1 \(BOOL\) for input "b" element 2 but received 2/);

  const nan = binaryInput({ name: 'x', datatype: 'FP32', shape: [2, 3], data: new Float32Array([1, 2, 3, NaN, 5, 6]) });
  rejects(t, () => parseF6({ inputs: [nan.header] }, [nan.bytes]), /expected a finite number for input "x" element 3 but received NaN; set parameters\.allow_nan/);
  const allowed = binaryInput({ name: 'x', datatype: 'FP32', shape: [2, 3], data: new Float32Array([1, 2, 3, NaN, 5, 6]) }, { allow_nan: true });
  const data = (parseF6({ inputs: [allowed.header] }, [allowed.bytes]) as { inputs: Tensor[] }).inputs[0]!.data as Float32Array;
  t.ok(Number.isNaN(data[3]));

  const sh = sig([{ name: 'h', datatype: 'FP16', dims: [2] }]);
  const h = binaryInput({ name: 'h', datatype: 'FP16', shape: [2], data: new Uint16Array([0x3c00, 0xfc00]) });
  const hr = binaryRequest({ inputs: [h.header] }, [h.bytes]);
  rejects(t, () => parseInferRequest(hr.body, { signature: sh, headerLength: hr.headerLength }), /input "h" element 1 but received -Infinity/);
  const d = binaryInput({ name: 'd', datatype: 'FP64', shape: [1], data: new Float64Array([Infinity]) });
  const dr = binaryRequest({ inputs: [d.header] }, [d.bytes]);
  rejects(t, () => parseInferRequest(dr.body, { signature: sig([{ name: 'd', datatype: 'FP64', dims: [1] }]), headerLength: dr.headerLength }), /element 0 but received Infinity/);
});

t.test('binary inputs go through the same shape and count checks', async (t) => {
  const big = binaryInput({ name: 'x', datatype: 'FP32', shape: [3, 2], data: SIX });
  rejects(t, () => parseF6({ inputs: [big.header] }, [big.bytes]), /expected shape \[2, 3\] for input "x" but received \[3, 2\]/);
  const s = sig([{ name: 'x', datatype: 'UINT8', dims: [-1] }]);
  const r = binaryRequest({ inputs: [{ name: 'x', shape: [1 << 27], datatype: 'UINT8', parameters: { binary_data_size: 1 << 27 } }] }, []);
  rejects(t, () => parseInferRequest(r.body, { signature: s, headerLength: r.headerLength }), /expected at most 67108864 elements for input "x"/);
  t.equal(bytesPerElement('UINT8'), 1);
});

t.test('a repeated binary header is checked from its plan exactly as a first one is', async (t) => {
  // A signature of its own, so no other test's header is remembered for it.
  const s = sig([{ name: 'a', datatype: 'FP32', dims: [3] }, { name: 'b', datatype: 'INT32', dims: [2] }], 4);
  const header = (id?: string) => ({
    ...(id === undefined ? {} : { id }),
    parameters: { binary_data_output: true, tag: 'x' },
    inputs: [
      { name: 'a', shape: [1, 3], datatype: 'FP32', parameters: { binary_data_size: 12 } },
      { name: 'b', shape: [1, 2], datatype: 'INT32', parameters: { binary_data_size: 8 } },
    ],
    outputs: [{ name: 'y', parameters: { binary_data: false } }],
  });
  const body = (a: number[], b: number[], id?: string) => binaryRequest(header(id), [new Uint8Array(new Float32Array(a).buffer), new Uint8Array(new Int32Array(b).buffer)]);
  const parse = (r: { body: Buffer; headerLength: number }) => parseInferRequest(r.body, { signature: s, headerLength: r.headerLength });

  const first = parse(body([1, 2, 3], [4, 5]));
  const second = parse(body([6, 7, 8], [9, 10]));
  t.same(Array.from(second.inputs[0]!.data as Float32Array), [6, 7, 8], 'the second body\'s tensors, not the first\'s');
  t.same(Array.from(second.inputs[1]!.data as Int32Array), [9, 10]);
  t.same({ ...second, inputs: second.inputs.map((x) => ({ ...x, data: [] })) }, { ...first, inputs: first.inputs.map((x) => ({ ...x, data: [] })) }, 'everything else as the full parse gave it');
  t.equal(second.binaryDataOutput, true);
  t.same(second.outputs, [{ name: 'y', parameters: { binary_data: false }, binaryData: false }]);

  // What a caller does to one request never reaches the next.
  second.parameters.tag = 'changed';
  second.inputs[0]!.shape[0] = 99;
  second.inputs[0]!.parameters!.binary_data_size = 0;
  second.outputs![0]!.parameters!.binary_data = true;
  const third = parse(body([1, 1, 1], [2, 2]));
  t.equal(third.parameters.tag, 'x');
  t.same(third.inputs[0]!.shape, [1, 3]);
  t.equal(third.inputs[0]!.parameters!.binary_data_size, 12);
  t.same(third.outputs![0]!.parameters, { binary_data: false });
  t.not(third.inputs[0], second.inputs[0], 'fresh objects per request');

  // The tensors are still checked: NaN without allow_nan, and the same message as a full parse.
  rejects(t, () => parse(body([1, Number.NaN, 3], [4, 5])), /input "a".*NaN|NaN.*input "a"/);
  // Same header, another body length: the trailing bytes are refused as before.
  const long = body([1, 2, 3], [4, 5]);
  rejects(t, () => parseInferRequest(Buffer.concat([long.body, Buffer.from([0, 0, 0, 0])]), { signature: s, headerLength: long.headerLength }), /no bytes after the binary tensor data/);
  // A header with an id is its own plan; the id comes back each time.
  t.equal(parse(body([1, 2, 3], [4, 5], 'r-1')).id, 'r-1');
  t.equal(parse(body([1, 2, 3], [4, 5], 'r-1')).id, 'r-1');
  t.equal(parse(body([1, 2, 3], [4, 5])).id, undefined);
  // A lower element cap is not answered from a plan checked under a higher one.
  const r = body([1, 2, 3], [4, 5]);
  t.throws(() => parseInferRequest(r.body, { signature: s, headerLength: r.headerLength, maxElements: 2 }), { code: 'INVALID_INPUT' });
});

t.test('the finite check names the first non-finite element wherever it falls (four-lane sums and their tail)', async (t) => {
  const { checkFinite } = await import('../dist/protocol/validate.js');
  const cases: [number, number][] = [];
  for (const length of [1, 4, 7, 4099]) for (const at of new Set([0, Math.min(3, length - 1), length - 1])) cases.push([length, at]);
  const named = property('each case names its element and value');
  for (const Kind of [Float32Array, Float64Array]) {
    for (const [length, at] of cases) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const values = Kind.from({ length }, (_, i) => i - 2.5);
        values[at] = bad;
        // A second bad value later on: the message still names the first.
        if (at + 1 < length) values[length - 1] = NaN;
        let message = '';
        try {
          checkFinite(values, Kind === Float32Array ? 'FP32' : 'FP64', 'input "x"', false);
        } catch (err) {
          message = (err as Error).message;
        }
        named.check(message.startsWith(`expected a finite number for input "x" element ${at} but received ${bad}`), () => `${Kind.name} length ${length}, ${bad} at ${at}: ${message}`);
      }
    }
  }
  named.assert(t);
  t.doesNotThrow(() => checkFinite(Float32Array.from({ length: 4099 }, (_, i) => (i % 2 ? 3.4e38 : -3.4e38)), 'FP32', 'x', false), 'the largest finite values are finite');
  t.doesNotThrow(() => checkFinite(Float64Array.of(NaN), 'FP64', 'x', true), 'allow_nan skips the check');
});

t.test('the NaN gate on a wide FP32 input: the addon\'s check and the JavaScript loop agree on every position', async (t) => {
  const { useMonitorStats } = await import('../dist/native/monitor-stats.js');
  t.teardown(() => { useMonitorStats(true); });
  const width = 4096;
  const wide = sig([{ name: 'x', datatype: 'FP32', dims: [width] }], 64);
  const next = rng(41);
  const clean = new Float32Array(64 * width).map(() => (next() - 0.5) * 1e6);
  const parse = (data: Float32Array, extra: Record<string, unknown> = {}): unknown => {
    const x = binaryInput({ name: 'x', datatype: 'FP32', shape: [64, width], data }, extra);
    const r = binaryRequest({ inputs: [x.header] }, [x.bytes]);
    return parseInferRequest(r.body, { signature: wide, headerLength: r.headerLength });
  };
  const outcome = (data: Float32Array): string => {
    try {
      parse(data);
      return 'accepted';
    } catch (err) {
      return (err as Error).message;
    }
  };
  const cases: [number, number][] = [[0, NaN], [1, Infinity], [4095, -Infinity], [4096, NaN], [131_073, Infinity], [64 * width - 1, NaN]];
  const seen: Record<string, string[]> = {};
  for (const native of [true, false]) {
    useMonitorStats(native);
    const results = [outcome(clean)];
    for (const [at, value] of cases) {
      const bad = clean.slice();
      bad[at] = value;
      results.push(outcome(bad));
    }
    seen[native ? 'addon' : 'loop'] = results;
  }
  t.same(seen.addon, seen.loop, 'the same outcome and message either way');
  t.same(seen.loop!.map((m) => /element (\d+) but received (\S+);/.exec(m)?.slice(1).join(' ') ?? m), ['accepted', ...cases.map(([at, v]) => `${at} ${v}`)], 'each bad value refused at its own element, the clean input accepted');
  const allowed = clean.slice();
  allowed[7] = NaN;
  t.ok(Number.isNaN(((parse(allowed, { allow_nan: true }) as { inputs: Tensor[] }).inputs[0]!.data as Float32Array)[7]), 'allow_nan still lets it through');
});
