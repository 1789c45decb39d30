// HTTP content codings (RFC 9110 8.4): request bodies a client compressed (Content-Encoding gzip or
// deflate, as Triton's HTTP clients send with request_compression_algorithm), and, when the server
// is told to, answers compressed for a client that asks (Accept-Encoding).
//
// A compressed body is limited by what it inflates to, not by what arrived: --max-body-bytes holds
// for the decoded body, so a small body that inflates past it is refused with 413 as soon as the
// limit is passed, never held whole in memory. Inflating and compressing run on libuv's threads
// (zlib's asynchronous calls) for any body worth it: a megabyte of JSON takes milliseconds, which
// the reading thread's other clients would otherwise wait through.
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { UmbraError } from '../errors.js';

export type Coding = 'gzip' | 'deflate';

const CODINGS = 'gzip, deflate or identity';

/**
 * The coding of a request's body from its Content-Encoding header: undefined for none (or
 * identity). A coding Umbra cannot undo, or several applied in turn, is refused with 415 and the
 * codings it takes.
 */
export function requestCoding(header: string | undefined): Coding | undefined {
  if (header === undefined) return undefined;
  const codings = header.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return undefined;
  if (codings.length === 1) {
    const [coding] = codings;
    // RFC 9110 8.4.1.3: x-gzip is gzip.
    if (coding === 'gzip' || coding === 'x-gzip') return 'gzip';
    if (coding === 'deflate') return 'deflate';
  }
  throw new UmbraError('UNSUPPORTED_MEDIA_TYPE', `content-encoding '${header.slice(0, 60)}' is not supported; send the body as ${CODINGS}`);
}

const inflaters = { gzip: promisify(zlib.gunzip), deflate: promisify(zlib.inflate), raw: promisify(zlib.inflateRaw) };

/**
 * The body a client compressed, inflated: at most `limit` bytes (413 past it), 400 when it is not
 * the coding it says. "deflate" is the zlib format (RFC 9110 8.4.1.2); a raw deflate stream, which
 * some clients send under that name, is taken too.
 */
export async function decodeBody(body: Uint8Array, coding: Coding, limit: number): Promise<Buffer> {
  const options = { maxOutputLength: limit };
  // A zlib stream starts with a header whose first two bytes, read big-endian, are a multiple of 31.
  const kind = coding === 'gzip' ? 'gzip' : body.byteLength >= 2 && (body[0]! & 0x0f) === 8 && ((body[0]! << 8) | body[1]!) % 31 === 0 ? 'deflate' : 'raw';
  try {
    // Small bodies at once: a 2 KB gzip body inflated in 10 µs here, and 85 µs by the round trip
    // through libuv's threads. What one can inflate to stays bounded by the limit either way.
    if (body.byteLength <= SYNC_BYTES) return kind === 'gzip' ? zlib.gunzipSync(body, options) : kind === 'deflate' ? zlib.inflateSync(body, options) : zlib.inflateRawSync(body, options);
    return await inflaters[kind](body, options);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) {
      throw new UmbraError('PAYLOAD_TOO_LARGE', `request body inflates (content-encoding ${coding}) past the limit of ${limit} bytes (set --max-body-bytes to raise it)`);
    }
    throw new UmbraError('INVALID_INPUT', `request body is not valid ${coding} data (content-encoding ${coding}): ${e.message}`);
  }
}

/**
 * Answers smaller than this go out as they are: compressing them saves less than the headers'
 * size and costs the same fixed work.
 */
export const MIN_COMPRESSED_BYTES = 1024;

/**
 * The coding to answer in from a request's Accept-Encoding header, or undefined for identity:
 * gzip or deflate, whichever the client weights higher (gzip on a tie), never one it gives q=0.
 * `*` stands for any coding the header does not name.
 */
export function responseCoding(header: string | undefined): Coding | undefined {
  if (header === undefined || header === '') return undefined;
  const weights = new Map<string, number>();
  for (const part of header.split(',')) {
    const [name = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    if (name === '') continue;
    let q = 1;
    for (const p of params) {
      const m = /^q\s*=\s*([0-9.]+)$/.exec(p);
      if (m) q = Number(m[1]);
    }
    if (!Number.isFinite(q)) continue;
    weights.set(name === 'x-gzip' ? 'gzip' : name, q);
  }
  const any = weights.get('*');
  const weight = (c: Coding) => weights.get(c) ?? any ?? 0;
  const gzip = weight('gzip');
  const deflate = weight('deflate');
  if (gzip <= 0 && deflate <= 0) return undefined;
  return gzip >= deflate ? 'gzip' : 'deflate';
}

/** Bodies up to this many bytes are (in)flated on the thread at once: the hop to libuv's threads would cost more. */
const SYNC_BYTES = 16 * 1024;

// Level 1: on model answers (JSON numbers, float tensors) zlib's higher levels took 2-3x the time
// for a few percent more; nginx's gzip_comp_level defaults to 1 for the same reason.
const COMPRESS_OPTIONS = { level: 1 };
const deflaters = { gzip: promisify(zlib.gzip), deflate: promisify(zlib.deflate) };

/** `body` in `coding`. */
export async function encodeBody(body: Uint8Array | string, coding: Coding): Promise<Buffer> {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  if (bytes.byteLength <= SYNC_BYTES) return coding === 'gzip' ? zlib.gzipSync(bytes, COMPRESS_OPTIONS) : zlib.deflateSync(bytes, COMPRESS_OPTIONS);
  return deflaters[coding](bytes, COMPRESS_OPTIONS);
}

/** A body's length in bytes (a string's in UTF-8). */
export function bodyBytes(body: Uint8Array | string): number {
  return typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
}
