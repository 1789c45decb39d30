// The protocol layer's public surface: import from here, not from the files behind it.

export * from './types.js';
export {
  bytesPerElement, datatypeToOrtType, integerRange, isDataType, ortTypeToDatatype, tensorToOrtType, typedArrayFor, typedArrayView,
  type OrtTensorType,
} from './datatype.js';
export { float32ToHalf, halfToFloat32, halfArrayToFloat32, HALF_MAX } from './half.js';
export { concatTensors, elementCount, sameRowShape, splitTensor } from './tensor.js';
export { checkFinite, DEFAULT_MAX_ELEMENTS } from './validate.js';
export { encodeBytesElements, tensorDataToBinary } from './binary-data.js';
export { binaryOutputsFor, parseInferRequest, type ParseInferRequestOptions } from './request.js';
export { PackedNumbers, parseRequestJson } from './request-json.js';
export { nativeJsonActive, useNativeJson } from './native-json.js';
export {
  encodeInferResponse, encodeInferResponseText, encodeJson, stringifyJson, type EncodedResponse, type EncodeInferResponseOptions,
} from './response.js';
export {
  isSharedOutput, placeSharedOutputs, readSharedRef, SharedMemoryTable, type SharedRef, type SharedRegion,
} from './shared-memory.js';
