// Bare node:http2 speaking gRPC: the ceiling of a hand-written gRPC transport in Node. ModelInfer
// answers a fixed, pre-encoded digits answer (the bytes Umbra would send) with proper gRPC framing
// and a grpc-status trailer, after reading the whole request; ModelStreamInfer reads each request's
// id and answers it; ModelMetadata serves what umbra perf asks first. No decoding on the unary
// path, as bench/peers/grpc-echo.mjs does for @grpc/grpc-js. Usage: node bench/peers/grpc-http2-echo.mjs PORT
import { createServer, constants } from 'node:http2';
import { decodeInferRequest, encodeInferResponse, encodeStreamResponse } from '../../dist/protocol/proto/infer-messages.js';
import { INFERENCE_SERVICE, protoMethod } from '../../dist/protocol/proto/files.js';
import { frameMessage as frame } from '../../dist/protocol/proto/grpc-frame.js';

const port = Number(process.argv[2]);
const answer = {
  modelName: 'digits', modelVersion: '2', id: '',
  outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [1, 10] }, { name: 'label', datatype: 'INT64', shape: [1] }],
  rawOutputContents: [Buffer.alloc(40, 1), Buffer.alloc(8, 2)],
};
const fixed = frame(encodeInferResponse(answer));
const metadata = protoMethod(INFERENCE_SERVICE, 'ModelMetadata');
const metadataAnswer = frame(metadata.responseSerialize({
  name: 'digits', versions: ['2'], platform: 'echo',
  inputs: [{ name: 'pixels', datatype: 'FP32', shape: [-1, 64] }],
  outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 10] }, { name: 'label', datatype: 'INT64', shape: [-1] }],
}));
const RESPONSE = { [constants.HTTP2_HEADER_STATUS]: 200, 'content-type': 'application/grpc' };
const OK = { 'grpc-status': '0' };
const unary = (stream, body) => {
  stream.on('data', () => undefined);
  stream.on('end', () => {
    stream.respond(RESPONSE, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(OK));
    stream.end(body);
  });
};

const server = createServer();
server.on('stream', (stream, headers) => {
  stream.on('error', () => undefined);
  const path = headers[':path'];
  if (path === `/${INFERENCE_SERVICE}/ModelInfer`) unary(stream, fixed);
  else if (path === `/${INFERENCE_SERVICE}/ModelMetadata`) unary(stream, metadataAnswer);
  else if (path === `/${INFERENCE_SERVICE}/ModelStreamInfer`) {
    stream.respond(RESPONSE, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(OK));
    let pending = Buffer.alloc(0);
    stream.on('data', (chunk) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        const length = pending.readUInt32BE(1);
        const id = decodeInferRequest(pending.subarray(5, 5 + length)).id;
        stream.write(frame(encodeStreamResponse({ ...answer, id })));
        pending = pending.subarray(5 + length);
      }
    });
    stream.on('end', () => stream.end());
  } else {
    stream.respond({ ...RESPONSE, 'grpc-status': '12', 'grpc-message': 'unknown method' }, { endStream: true });
  }
});
server.listen(port, '127.0.0.1', () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => process.exit(0));
