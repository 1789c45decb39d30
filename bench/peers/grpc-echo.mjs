// Bare @grpc/grpc-js: the ceiling of the library Umbra's gRPC service runs on. ModelInfer answers
// a fixed, pre-encoded digits answer (the bytes Umbra would send) with no decoding at all;
// ModelStreamInfer reads each request's id and answers it; ModelMetadata serves what umbra perf
// asks first. Usage: node bench/peers/grpc-echo.mjs PORT
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { decodeInferRequest, encodeInferResponse, encodeStreamResponse } from '../../dist/protocol/proto/infer-messages.js';
import { INFERENCE_SERVICE, protoMethod } from '../../dist/protocol/proto/files.js';

const port = Number(process.argv[2]);
const same = (b) => b;
const answer = {
  modelName: 'digits', modelVersion: '2', id: '',
  outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [1, 10] }, { name: 'label', datatype: 'INT64', shape: [1] }],
  rawOutputContents: [Buffer.alloc(40, 1), Buffer.alloc(8, 2)],
};
const fixed = encodeInferResponse(answer);
const metadata = protoMethod(INFERENCE_SERVICE, 'ModelMetadata');
const method = (name, requestStream, responseStream, requestDeserialize = same, responseSerialize = same) => ({
  path: `/${INFERENCE_SERVICE}/${name}`, requestStream, responseStream, requestSerialize: same, requestDeserialize, responseSerialize, responseDeserialize: same,
});
const server = new Server();
server.addService({
  ModelInfer: method('ModelInfer', false, false),
  ModelStreamInfer: method('ModelStreamInfer', true, true),
  ModelMetadata: method('ModelMetadata', false, false, metadata.requestDeserialize, metadata.responseSerialize),
}, {
  ModelInfer: (_call, callback) => callback(null, fixed),
  ModelStreamInfer: (call) => {
    call.on('data', (bytes) => call.write(encodeStreamResponse({ ...answer, id: decodeInferRequest(bytes).id })));
    call.on('end', () => call.end());
  },
  ModelMetadata: (_call, callback) => callback(null, {
    name: 'digits', versions: ['2'], platform: 'echo',
    inputs: [{ name: 'pixels', datatype: 'FP32', shape: [-1, 64] }],
    outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 10] }, { name: 'label', datatype: 'INT64', shape: [-1] }],
  }),
});
server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  process.stdout.write('listening\n');
});
process.on('SIGTERM', () => server.forceShutdown());
