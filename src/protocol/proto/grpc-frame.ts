// gRPC's length-prefixed message framing (grpc/doc/PROTOCOL-HTTP2.md): a compressed flag byte
// and a 4-byte big-endian length before each message. Both ends of Umbra's gRPC speak it.

/** Bytes before each message. */
export const FRAME_PREFIX_BYTES = 5;

/** The bytes of one uncompressed message as gRPC frames it. */
export function frameMessage(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_PREFIX_BYTES + message.byteLength);
  frame[0] = 0;
  frame.writeUInt32BE(message.byteLength, 1);
  frame.set(message, FRAME_PREFIX_BYTES);
  return frame;
}
