// Protocol Buffers wire format, read and written by hand for the few messages on the inference
// path: a reader that checks every length against the bytes it has (so a truncated or mangled
// message is an error naming where it broke, never a read past the end or a crash) and a writer
// that sizes a message first and then fills one buffer.

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LENGTH = 2;
export const WIRE_START_GROUP = 3;
export const WIRE_END_GROUP = 4;
export const WIRE_FIXED32 = 5;

/** Nesting deeper than this (groups inside groups in unknown fields) is refused rather than followed. */
const MAX_GROUP_DEPTH = 32;

/** Bytes that are not a well-formed message of the expected type. */
export class ProtoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtoError';
  }
}

export class ProtoReader {
  pos: number;
  /** The low and high 32 bits of the last varint read by `varint64`. */
  lo = 0;
  hi = 0;

  constructor(readonly buf: Buffer, start = 0, readonly end = buf.length) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  private fail(what: string): never {
    throw new ProtoError(`${what} at byte ${this.pos}`);
  }

  /** The next field's tag: field number << 3 | wire type. */
  tag(): number {
    const tag = this.uint32();
    if (tag >>> 3 === 0) this.fail('field number 0');
    return tag;
  }

  /** A varint's low 32 bits, unsigned (an int32 or uint32 field; a negative int32 takes 10 bytes). */
  uint32(): number {
    const buf = this.buf;
    let value = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('a varint runs past the end of its message');
      const b = buf[this.pos++]!;
      if (shift < 32) value |= (b & 0x7f) << shift;
      if (b < 0x80) return value >>> 0;
      shift += 7;
    }
    this.fail('a varint longer than 10 bytes');
  }

  /** A 64-bit varint into `lo`/`hi`. */
  varint64(): void {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('a varint runs past the end of its message');
      const b = buf[this.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= bits << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (7 * i - 32);
      if (b < 0x80) {
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
    }
    this.fail('a varint longer than 10 bytes');
  }

  /** An int64 as a number: exact up to 2^53 in magnitude, the nearest double beyond. */
  int64(): number {
    this.varint64();
    return (this.hi | 0) * 4294967296 + this.lo;
  }

  /** A uint64 as a number: exact up to 2^53, the nearest double beyond. */
  uint64(): number {
    this.varint64();
    return this.hi * 4294967296 + this.lo;
  }

  bool(): boolean {
    this.varint64();
    return this.lo !== 0 || this.hi !== 0;
  }

  double(): number {
    const at = this.need(8);
    return this.buf.readDoubleLE(at);
  }

  /** Moves past `n` bytes and returns where they start. */
  need(n: number): number {
    const at = this.pos;
    if (n > this.end - at) this.fail(`${n} bytes wanted but only ${this.end - at} remain in the message`);
    this.pos = at + n;
    return at;
  }

  /** A length-delimited field's extent: [start, end) within `buf`. */
  span(): number {
    const length = this.uint32();
    if (length > this.end - this.pos) this.fail(`a field of ${length} bytes runs past the end of its message (${this.end - this.pos} remain)`);
    return length;
  }

  /** A length-delimited field as a view of the message's bytes (no copy). */
  bytes(): Buffer {
    const length = this.span();
    const start = this.pos;
    this.pos += length;
    return this.buf.subarray(start, start + length);
  }

  string(): string {
    const length = this.span();
    const start = this.pos;
    this.pos += length;
    return this.buf.toString('utf8', start, start + length);
  }

  /** Moves past a field of `wireType` that the reader does not know. */
  skip(wireType: number, depth = 0): void {
    switch (wireType) {
      case WIRE_VARINT: this.varint64(); return;
      case WIRE_FIXED64: this.need(8); return;
      case WIRE_LENGTH: {
        // The length first: `pos += span()` would add it to where the varint started.
        const length = this.span();
        this.pos += length;
        return;
      }
      case WIRE_FIXED32: this.need(4); return;
      case WIRE_START_GROUP: {
        if (depth >= MAX_GROUP_DEPTH) this.fail('groups nested too deeply');
        for (;;) {
          if (this.pos >= this.end) this.fail('a group without its end');
          const tag = this.tag();
          if ((tag & 7) === WIRE_END_GROUP) return;
          this.skip(tag & 7, depth + 1);
        }
      }
      default: this.fail(`wire type ${wireType}`);
    }
  }
}

/** Throws unless a known field came with the wire type its declaration implies. */
export function expectWireType(reader: ProtoReader, tag: number, wireType: number, field: string): void {
  if ((tag & 7) !== wireType) throw new ProtoError(`${field} (field ${tag >>> 3}) came with wire type ${tag & 7} instead of ${wireType} at byte ${reader.pos}`);
}

/** Bytes of `value` as a varint (value is a uint32 or a non-negative safe integer). */
export function varintSize(value: number): number {
  if (value < 0) return 10;
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  if (value < 0x10000000) return 4;
  if (value < 2 ** 35) return 5;
  if (value < 2 ** 42) return 6;
  if (value < 2 ** 49) return 7;
  if (value < 2 ** 56) return 8;
  if (value < 2 ** 63) return 9;
  return 10;
}

/** Bytes of a 64-bit two's complement integer as a varint (negatives take 10). */
export function int64Size(value: bigint): number {
  if (value < 0n) return 10;
  let n = 1;
  while (value >= 0x80n) {
    value >>= 7n;
    n++;
  }
  return n;
}

export function stringSize(value: string): number {
  const n = Buffer.byteLength(value, 'utf8');
  return varintSize(n) + n;
}

/** Fills a buffer sized beforehand; every write moves `pos`. */
export class ProtoWriter {
  pos: number;

  constructor(readonly buf: Buffer, start = 0) {
    this.pos = start;
  }

  tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  /** A non-negative safe integer, or a negative one as 10-byte two's complement. */
  varint(value: number): void {
    if (value < 0) {
      this.int64(BigInt(value));
      return;
    }
    const buf = this.buf;
    while (value >= 0x80) {
      buf[this.pos++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    buf[this.pos++] = value;
  }

  int64(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    const buf = this.buf;
    while (v >= 0x80n) {
      buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    buf[this.pos++] = Number(v);
  }

  bytes(field: number, value: Uint8Array): void {
    this.tag(field, WIRE_LENGTH);
    this.varint(value.byteLength);
    this.buf.set(value, this.pos);
    this.pos += value.byteLength;
  }

  /** A string field; `byteLength` when the caller has measured it already. */
  string(field: number, value: string, byteLength = Buffer.byteLength(value, 'utf8')): void {
    this.tag(field, WIRE_LENGTH);
    this.varint(byteLength);
    this.pos += this.buf.write(value, this.pos, 'utf8');
  }

  double(value: number): void {
    this.pos = this.buf.writeDoubleLE(value, this.pos);
  }

  /**
   * The buffer, once exactly filled. Typed-array writes past the end are dropped silently, so a
   * sizing mistake would send a cut message: it fails loudly here instead.
   */
  finish(): Buffer {
    if (this.pos !== this.buf.length) throw new Error(`protobuf writer filled ${this.pos} of the ${this.buf.length} bytes it sized`);
    return this.buf;
  }
}
