// `umbra/client`: talk to an Umbra server over HTTP (one request per call), a WebSocket stream
// (many requests in flight on one connection) or gRPC (Node only). Runs in Node and in browsers.
export { UmbraHttpClient, type HttpClientOptions, type HttpInferOptions } from './http.js';
export {
  UmbraStreamClient, streamUrl,
  type StreamCloseEvent, type StreamConnectOptions, type StreamInferOptions, type WebSocketConstructor, type WebSocketLike,
} from './stream.js';
export {
  UmbraClientError, decodeJsonResponse, decodeResponse, encodeBinaryRequest, encodeJsonRequest, inSharedMemory, sharedMemoryParameters, tensorBytes,
  type SharedMemoryRegionStatus, type ClientInferRequest, type ClientInferResponse, type ClientRequestedOutput, type ClientTensor, type ClientTensorData, type DataType,
} from './tensors.js';
export { UmbraGrpcClient, UmbraGrpcError, UmbraGrpcStream, type GrpcClientOptions, type GrpcInferOptions, type LoadModelOptions } from './grpc.js';
export { GrpcChannel, type CallOptions, type GrpcReply } from './grpc-channel.js';
export { CLOSE_CODES, FRAME_PREFIX_BYTES, joinFrame, splitFrame } from '../server/ws-frames.js';
