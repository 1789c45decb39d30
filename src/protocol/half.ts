// IEEE 754 binary16 conversions. JSON clients send FP16 as ordinary numbers; Umbra stores the raw
// half bits (Uint16Array) because that is what onnxruntime's float16 tensors take.

const scratch = new Float64Array(1);
const scratchWords = new Uint32Array(scratch.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const LOW = LITTLE_ENDIAN ? 0 : 1;
const HIGH = LITTLE_ENDIAN ? 1 : 0;

/**
 * Round a number to the nearest half (ties to even) and return its bits. Works from the double's
 * bits directly so there is one rounding, not a double rounding through float32.
 */
export function float32ToHalf(value: number): number {
  scratch[0] = value;
  const lo = scratchWords[LOW]!;
  const hi = scratchWords[HIGH]!;
  const sign = (hi >>> 16) & 0x8000;
  const exponent = (hi >>> 20) & 0x7ff;
  const mantissaHigh = hi & 0xfffff; // top 20 of the 52 mantissa bits
  if (exponent === 0x7ff) return sign | 0x7c00 | (mantissaHigh !== 0 || lo !== 0 ? 0x200 : 0);
  const e = exponent - 1008; // rebias from 1023 to 15
  if (e >= 31) return sign | 0x7c00;
  const sticky = lo !== 0;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const m = mantissaHigh | 0x100000;
    const shift = 11 - e;
    let half = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (sticky || (half & 1) === 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mantissaHigh >>> 10);
  const rest = mantissaHigh & 0x3ff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rest > 0x200 || (rest === 0x200 && (sticky || (half & 1) === 1))) half++;
  return sign | half;
}

export function halfToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/** Largest finite half, for range checks. */
export const HALF_MAX = 65504;

export function halfArrayToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfToFloat32(bits[i]!);
  return out;
}
