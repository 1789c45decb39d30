// The checks on a request's framing headers that uWebSockets.js leaves to the application
// (RFC 9112 sections 3.2, 6.1 and 6.3). uWS reads the body by the first Content-Length it meets
// and does not look at the others; a proxy in front may read another one, and the bytes one of
// them takes for the body the other takes for the next request (request smuggling). So a
// request whose framing two readers could read differently is refused, and its connection
// closed, before any of its body is used.
import { UmbraError } from '../errors.js';

/** Headers that must appear at most once: they decide where the request ends, or whom it is for. */
const SINGLE = new Set(['content-length', 'transfer-encoding', 'host']);

export interface ReadHeaders {
  /** Lower-case names; repeated headers other than the SINGLE ones joined with ", " (RFC 9110 5.3). */
  headers: Record<string, string>;
  /** The first SINGLE header that appeared more than once, if any. */
  repeated?: string;
}

/** Collects headers as uWS's `forEach` hands them over, noting any framing header that repeats. */
export class HeaderCollector {
  readonly headers: Record<string, string> = {};
  repeated: string | undefined;

  readonly add = (name: string, value: string): void => {
    const seen = this.headers[name];
    if (seen === undefined) {
      this.headers[name] = value;
    } else if (SINGLE.has(name)) {
      this.repeated ??= name;
    } else {
      this.headers[name] = `${seen}, ${value}`;
    }
  };
}

/**
 * Whether the client asked for the connection to close after this answer: a `close` option in its
 * Connection header (RFC 9112 section 9.6). The HTTP guard hands an HTTP/1.0 request on with
 * `Connection: close`, so this is true for every 1.0 client too.
 */
export function asksToClose(headers: Record<string, string>): boolean {
  const connection = headers.connection;
  return connection !== undefined && connection.split(',').some((option) => option.trim().toLowerCase() === 'close');
}

/**
 * Throws when the request's framing is ambiguous or unsupported (the caller answers and closes
 * the connection): a repeated Content-Length, Transfer-Encoding or Host header, a missing Host,
 * a Content-Length that is not a plain decimal, Content-Length together with Transfer-Encoding,
 * or a transfer coding other than chunked.
 */
export function checkFraming(read: ReadHeaders): void {
  const { headers, repeated } = read;
  if (repeated !== undefined) {
    throw new UmbraError('INVALID_INPUT', `the ${repeated} header appears more than once; send it once`);
  }
  if (headers.host === undefined) throw new UmbraError('INVALID_INPUT', 'an HTTP/1.1 request needs a Host header');
  const length = headers['content-length'];
  const coding = headers['transfer-encoding'];
  if (length !== undefined && coding !== undefined) {
    throw new UmbraError('INVALID_INPUT', 'a request may not have both Content-Length and Transfer-Encoding; send one');
  }
  if (length !== undefined && !/^\d{1,15}$/.test(length)) {
    throw new UmbraError('INVALID_INPUT', `expected a decimal byte count for the Content-Length header but received '${length.slice(0, 40)}'`);
  }
  if (coding !== undefined) {
    const codings = coding.split(',').map((c) => c.trim().toLowerCase());
    if (codings.length === 1 && codings[0] === 'chunked') return;
    if (codings[codings.length - 1] !== 'chunked') {
      throw new UmbraError('INVALID_INPUT', `the request's Transfer-Encoding '${coding.slice(0, 60)}' does not end in chunked, so its end cannot be found`);
    }
    throw new UmbraError('NOT_IMPLEMENTED', `the transfer coding '${coding.slice(0, 60)}' is not supported; send the body with Content-Length or Transfer-Encoding: chunked alone`);
  }
}
