// The binary WebSocket frame, shared by the server and the client so both read it the same way:
//
//   [u32 little-endian N][N bytes of UTF-8 JSON header][tensor bytes]
//
// The JSON header is an Open Inference Protocol request or response; every tensor sent as bytes
// carries `parameters.binary_data_size`, and the bytes follow in the header's order (Triton's
// binary tensor extension, with the header length moved from an HTTP header into the frame).
// No dependencies, so the browser/Node client can import it.

/** Bytes before the JSON header: its length as a little-endian uint32. */
export const FRAME_PREFIX_BYTES = 4;

/** Close codes the server sends (RFC 6455 section 7.4.1). */
export const CLOSE_CODES = {
  normal: 1000,
  /** The server is shutting down; in-flight requests were answered first. */
  goingAway: 1001,
  /** A frame that cannot be read as a request: bad binary prefix, JSON that is not an object. */
  invalidFrame: 1007,
  /** More requests outstanding on the connection than the server allows. */
  policyViolation: 1008,
  /** A frame over the payload limit. */
  tooBig: 1009,
} as const;

export interface SplitFrame {
  /** The JSON header bytes. */
  header: Uint8Array;
  /** Header followed by tensor bytes: the body Triton's binary extension would carry over HTTP. */
  body: Uint8Array;
  headerLength: number;
}

/** Splits a binary frame; undefined when the prefix does not describe a header inside the frame. */
export function splitFrame(frame: Uint8Array): SplitFrame | undefined {
  if (frame.byteLength < FRAME_PREFIX_BYTES + 2) return undefined;
  const headerLength = new DataView(frame.buffer, frame.byteOffset, FRAME_PREFIX_BYTES).getUint32(0, true);
  if (headerLength < 2 || headerLength > frame.byteLength - FRAME_PREFIX_BYTES) return undefined;
  const body = frame.subarray(FRAME_PREFIX_BYTES);
  return { header: body.subarray(0, headerLength), body, headerLength };
}

/** Builds a binary frame from a JSON header (text or bytes) and the tensor bytes that follow it. */
export function joinFrame(header: string | Uint8Array, tensors: readonly Uint8Array[] = []): Uint8Array {
  const headerBytes = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  let total = FRAME_PREFIX_BYTES + headerBytes.byteLength;
  for (const t of tensors) total += t.byteLength;
  const frame = new Uint8Array(total);
  new DataView(frame.buffer).setUint32(0, headerBytes.byteLength, true);
  frame.set(headerBytes, FRAME_PREFIX_BYTES);
  let p = FRAME_PREFIX_BYTES + headerBytes.byteLength;
  for (const t of tensors) {
    frame.set(t, p);
    p += t.byteLength;
  }
  return frame;
}

/** Prefixes an encoded body whose first `headerLength` bytes are JSON (as `encodeInferResponse` gives it). */
export function frameFromBody(body: Uint8Array, headerLength: number): Uint8Array {
  const frame = new Uint8Array(FRAME_PREFIX_BYTES + body.byteLength);
  new DataView(frame.buffer).setUint32(0, headerLength, true);
  frame.set(body, FRAME_PREFIX_BYTES);
  return frame;
}
