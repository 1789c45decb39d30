// The hand-written codec of the inference messages against protobufjs reading proto/ (so the field
// numbers agree with the .proto a client is generated from), packed and unpacked repeated fields,
// and malformed bytes: every truncation and seeded mutation of a valid message either decodes or
// throws ProtoError, never anything else.
import t from 'tap';
import protobuf from 'protobufjs';
import { decodeInferRequest, decodeInferResponse, decodeStreamResponse, encodeInferRequest, encodeInferResponse, encodeStreamResponse } from '../dist/protocol/proto/infer-messages.js';
import { ProtoError, ProtoWriter, WIRE_FIXED32, WIRE_LENGTH, WIRE_VARINT } from '../dist/protocol/proto/wire.js';
import { protoMethod, INFERENCE_SERVICE } from '../dist/protocol/proto/files.js';
import { encodeRetryStatus } from '../dist/server/grpc/status.js';
import { seededRandom } from '../dist/random.js';

const infer = protoMethod(INFERENCE_SERVICE, 'ModelInfer');
const stream = protoMethod(INFERENCE_SERVICE, 'ModelStreamInfer');

function everyContents() {
  return {
    bool: Uint8Array.from([1, 0, 1]),
    int: Int32Array.from([-1, 0, 2147483647, -2147483648]),
    int64: BigInt64Array.from([-1n, 0n, 9007199254740993n, -9223372036854775808n]),
    uint: Uint32Array.from([0, 1, 4294967295]),
    uint64: BigUint64Array.from([0n, 18446744073709551615n]),
    fp32: Float32Array.from([1.5, -0, 3.25e-20]),
    fp64: Float64Array.from([Math.PI, -1e300]),
    bytes: [Buffer.from('héllo'), Buffer.alloc(0)],
  };
}

t.test('a request encoded here reads the same through protobufjs, and back', async (t) => {
  const contents = everyContents();
  const request = {
    modelName: 'm', modelVersion: '3', id: 'req-1',
    parameters: { priority: 2, timeout: 9007199254740993n, routing_key: 'user-7', allow_nan: true, ratio: 0.25 },
    inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 3], parameters: { p: 'x' }, contents }, { name: 'b', datatype: 'INT64', shape: [-1, 4] }],
    outputs: [{ name: 'y', parameters: { binary_data: true } }],
    rawInputContents: [Buffer.from([1, 2, 3])],
  };
  const bytes = encodeInferRequest(request);
  const viaProtobufjs = infer.requestDeserialize(bytes) as any;
  t.equal(viaProtobufjs.model_name, 'm');
  t.equal(viaProtobufjs.id, 'req-1');
  t.same(viaProtobufjs.inputs[0].shape, [1, 3]);
  t.same(viaProtobufjs.inputs[1].shape, [-1, 4]);
  t.same(viaProtobufjs.inputs[0].contents.bool_contents, [true, false, true]);
  t.same(viaProtobufjs.inputs[0].contents.int_contents, Array.from(contents.int));
  t.same(viaProtobufjs.inputs[0].contents.fp64_contents, Array.from(contents.fp64));
  t.same(viaProtobufjs.inputs[0].contents.bytes_contents.map((b: Buffer) => b.toString()), ['héllo', '']);
  t.same(viaProtobufjs.parameters.priority, { int64_param: 2, parameter_choice: 'int64_param' });
  t.same(viaProtobufjs.parameters.ratio, { double_param: 0.25, parameter_choice: 'double_param' });
  t.same(viaProtobufjs.outputs[0].parameters.binary_data, { bool_param: true, parameter_choice: 'bool_param' });
  t.same(viaProtobufjs.raw_input_contents.map((b: Buffer) => [...b]), [[1, 2, 3]]);

  const back = decodeInferRequest(bytes);
  t.same(back.parameters, request.parameters);
  t.same(back.inputs[0]!.contents, contents);
  t.same(back.inputs[1]!.shape, [-1, 4]);
  t.same(back.outputs, request.outputs);

  // What protobufjs encodes (packed, its own field order) decodes here.
  const foreign = infer.requestSerialize({
    model_name: 'digits', id: '9', parameters: { binary_data_output: { bool_param: true } },
    inputs: [{ name: 'pixels', datatype: 'FP32', shape: [2, 2], contents: { fp32_contents: [1, 2, 3, 4], int64_contents: [5, -6] } }],
  });
  const mine = decodeInferRequest(foreign);
  t.same(Array.from(mine.inputs[0]!.contents!.fp32!), [1, 2, 3, 4]);
  t.same(Array.from(mine.inputs[0]!.contents!.int64!), [5n, -6n]);
  t.same(mine.parameters, { binary_data_output: true });
});

t.test('unpacked repeated fields, split packed runs and unknown fields decode as protobuf says', async (t) => {
  const contents = new ProtoWriter(Buffer.alloc(64));
  for (const v of [1.5, 2.5]) {
    contents.tag(6, WIRE_FIXED32);
    contents.buf.writeFloatLE(v, contents.pos);
    contents.pos += 4;
  }
  contents.bytes(6, Buffer.from(new Float32Array([3.5]).buffer)); // a packed run after unpacked ones
  contents.tag(3, WIRE_VARINT);
  contents.varint(-5); // an unpacked negative int64
  contents.tag(99, WIRE_VARINT); // unknown: skipped
  contents.varint(12345);
  const body = contents.buf.subarray(0, contents.pos);
  const tensor = new ProtoWriter(Buffer.alloc(128));
  tensor.string(1, 'x');
  tensor.tag(3, WIRE_VARINT); // shape unpacked
  tensor.varint(3);
  tensor.bytes(5, body);
  tensor.string(42, 'unknown string field');
  const message = new ProtoWriter(Buffer.alloc(256));
  message.bytes(5, tensor.buf.subarray(0, tensor.pos));
  const decoded = decodeInferRequest(message.buf.subarray(0, message.pos));
  t.same(Array.from(decoded.inputs[0]!.contents!.fp32!), [1.5, 2.5, 3.5]);
  t.same(Array.from(decoded.inputs[0]!.contents!.int64!), [-5n]);
  t.same(decoded.inputs[0]!.shape, [3]);
  const wrongType = new ProtoWriter(Buffer.alloc(8));
  wrongType.tag(1, WIRE_VARINT);
  wrongType.varint(5);
  t.throws(() => decodeInferRequest(wrongType.buf.subarray(0, wrongType.pos)), ProtoError, 'model_name as a varint');
});

t.test('answers encoded here read the same through protobufjs', async (t) => {
  const contents = everyContents();
  const response = {
    modelName: 'm', modelVersion: '1', id: 'r', parameters: { hit: true, count: -3, note: 'x' },
    outputs: [{ name: 'y', datatype: 'FP32', shape: [3], contents }, { name: 'z', datatype: 'INT64', shape: [2, 0] }],
    rawOutputContents: [Buffer.from([9, 9])],
  };
  const bytes = encodeInferResponse(response);
  const viaProtobufjs = infer.responseDeserialize(bytes) as any;
  t.equal(viaProtobufjs.model_version, '1');
  t.same(viaProtobufjs.outputs[0].contents.uint_contents, Array.from(contents.uint));
  t.same(viaProtobufjs.outputs[1].shape, [2, 0]);
  t.same(viaProtobufjs.parameters.count, { int64_param: -3, parameter_choice: 'int64_param' });
  t.same(decodeInferResponse(bytes).outputs[0]!.contents, contents);

  const ok = encodeStreamResponse(response);
  const viaStream = stream.responseDeserialize(ok) as any;
  t.equal(viaStream.error_message, '');
  t.equal(viaStream.infer_response.id, 'r');
  const failed = encodeStreamResponse({ modelName: 'm', modelVersion: '', id: 'q', outputs: [], rawOutputContents: [] }, 'it broke');
  t.same(decodeStreamResponse(failed).errorMessage, 'it broke');
  t.equal((stream.responseDeserialize(failed) as any).infer_response.id, 'q');
});

t.test('every truncation and seeded mutation of a request decodes or throws ProtoError', async (t) => {
  const valid = encodeInferRequest({
    modelName: 'digits', modelVersion: '', id: 'abc', parameters: { priority: 1, k: 'v' },
    inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 4], contents: everyContents() }],
    outputs: [{ name: 'label' }], rawInputContents: [Buffer.alloc(16, 7)],
  });
  let threw = 0;
  const attempt = (bytes: Buffer) => {
    try {
      decodeInferRequest(bytes);
    } catch (err) {
      threw++;
      if (!(err instanceof ProtoError)) t.fail(`a ${(err as Error).name} instead of a ProtoError: ${(err as Error).message}`);
    }
  };
  for (let n = 0; n < valid.length; n++) attempt(valid.subarray(0, n));
  const random = seededRandom(42);
  for (let i = 0; i < 20_000; i++) {
    const bytes = Buffer.from(valid);
    const edits = 1 + Math.floor(random() * 4);
    for (let e = 0; e < edits; e++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
    attempt(random() < 0.3 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes);
  }
  t.ok(threw > 1000, `${threw} of them refused, each as a ProtoError`);
});

t.test('retry info is a google.rpc.Status carrying google.rpc.RetryInfo', async (t) => {
  const root = protobuf.Root.fromJSON({
    nested: {
      Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
      Status: { fields: { code: { type: 'int32', id: 1 }, message: { type: 'string', id: 2 }, details: { rule: 'repeated', type: 'Any', id: 3 } } },
      Duration: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } },
      RetryInfo: { fields: { retry_delay: { type: 'Duration', id: 1 } } },
    },
  });
  const status = root.lookupType('Status').toObject(root.lookupType('Status').decode(encodeRetryStatus(14, 'queue full', 1.5)), { longs: Number }) as any;
  t.equal(status.code, 14);
  t.equal(status.message, 'queue full');
  t.equal(status.details[0].type_url, 'type.googleapis.com/google.rpc.RetryInfo');
  const retry = root.lookupType('RetryInfo').toObject(root.lookupType('RetryInfo').decode(status.details[0].value), { longs: Number }) as any;
  t.same(retry.retry_delay, { seconds: 1, nanos: 500_000_000 });
  t.equal(WIRE_LENGTH, 2);
});
