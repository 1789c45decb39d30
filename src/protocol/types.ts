// Open Inference Protocol v2 shapes shared by every transport (HTTP JSON, HTTP binary, WebSocket)
// and by the in-process API. Tensors are held as typed arrays so they can be transferred between
// threads without copying.

export const DATATYPES = [
  'BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64',
  'FP16', 'FP32', 'FP64', 'BYTES',
] as const;
export type DataType = (typeof DATATYPES)[number];

/** Element storage per datatype. BOOL is one byte per element (0/1); FP16 is raw uint16 bits. */
export type TensorData =
  | Uint8Array | Uint16Array | Uint32Array | BigUint64Array
  | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Float32Array | Float64Array
  | string[];

export interface Tensor {
  name: string;
  datatype: DataType;
  shape: number[];
  data: TensorData;
  parameters?: Record<string, unknown>;
}

export interface RequestedOutput {
  name: string;
  /** Triton binary extension: answer this output as raw bytes after the JSON header. */
  binaryData?: boolean;
  /** Classification extension: answer this output as its top N classes per row (protocol/classification.ts). */
  classification?: number;
  /** Shared-memory extension: write this output into a registered region instead of the answer. */
  sharedMemory?: { region: string; offset: number; byteSize: number };
  parameters?: Record<string, unknown>;
}

export interface InferRequest {
  id?: string;
  parameters: Record<string, unknown>;
  inputs: Tensor[];
  /** Absent: every output of the model. */
  outputs?: RequestedOutput[];
  /** Triton binary extension: answer every output (without its own choice) as binary. */
  binaryDataOutput?: boolean;
}

export interface InferResponse {
  model_name: string;
  model_version: string;
  id?: string;
  parameters?: Record<string, unknown>;
  outputs: Tensor[];
}

/** What the protocol layer needs to know about a model to validate a request. */
export interface TensorSpec {
  name: string;
  datatype: DataType;
  /** Dims WITHOUT the batch dimension when the model batches (max_batch_size > 0); -1 = any. */
  dims: number[];
  /** An output's class labels, by index (the config's label_filename), for the classification extension. */
  labels?: string[];
  /** The file in the model's folder the labels came from (the config's label_filename), if any. */
  labelFilename?: string;
}

export interface ModelSignature {
  name: string;
  maxBatchSize: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}
