// HTTP/1.1 over a raw loopback socket, for tests that control exactly which bytes go out in which
// write: split request lines, repeated framing headers, malformed requests. Answers are parsed as
// they arrive; the exchange ends when the expected number of answers is in (then the client
// closes, or waits for the server to close when told to), or when the server closes first.
import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: Buffer;
  /** No Content-Length but Connection: close: the body runs to the end of the connection. */
  untilClose: boolean;
}

export interface Exchange {
  responses: RawResponse[];
  /** The server closed the connection (before the client did). */
  closedByServer: boolean;
  /** Bytes after the last complete answer. */
  rest: Buffer;
}

export interface ExchangeOptions {
  /** Answers to wait for. */
  expect: number;
  /** Pause between writes, so the server reads each part separately. The outcome never depends on it. */
  gapMs?: number;
  /** After the answers, wait (at most this long) for the server to close. */
  awaitClose?: number;
  /** Give up after this long; what arrived so far is returned. */
  limitMs?: number;
}

/**
 * Parses complete answers from `data`. An answer without Content-Length has no body (HEAD), unless
 * it closes the connection: then its body is whatever follows (the library's own error pages).
 */
export function parseResponses(data: Buffer): { responses: RawResponse[]; rest: Buffer } {
  const responses: RawResponse[] = [];
  let at = 0;
  for (;;) {
    const end = data.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const lines = data.subarray(at, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    if (headers['content-length'] === undefined && /close/i.test(headers.connection ?? '')) {
      responses.push({ status, headers, body: data.subarray(end + 4), untilClose: true });
      at = data.length;
      break;
    }
    const length = Number(headers['content-length'] ?? 0);
    if (data.length < end + 4 + length) break;
    responses.push({ status, headers, body: data.subarray(end + 4, end + 4 + length), untilClose: false });
    at = end + 4 + length;
  }
  return { responses, rest: data.subarray(at) };
}

export function rawExchange(port: number, parts: (string | Buffer)[], options: ExchangeOptions): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    let data = Buffer.alloc(0);
    let settled = false;
    let clientEnded = false;
    const finish = (closedByServer: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(limit);
      const parsed = parseResponses(data);
      socket.destroy();
      resolve({ responses: parsed.responses, closedByServer, rest: parsed.rest });
    };
    let limit = setTimeout(() => finish(false), options.limitMs ?? 10_000);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const parsed = parseResponses(data).responses;
      if (parsed.length < options.expect || parsed[parsed.length - 1]!.untilClose) return;
      if (options.awaitClose === undefined) {
        clientEnded = true;
        finish(false);
      } else {
        clearTimeout(limit);
        limit = setTimeout(() => finish(false), options.awaitClose);
      }
    });
    socket.on('end', () => finish(!clientEnded));
    socket.on('error', () => finish(!clientEnded));
    socket.on('connect', async () => {
      for (let i = 0; i < parts.length; i++) {
        if (i > 0 && options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
        if (settled) return;
        socket.write(parts[i]!);
      }
    });
  });
}

/** A request's bytes: the request line, headers in order (repeats allowed), then the body. */
export function requestBytes(method: string, path: string, headers: [string, string][], body: string | Buffer = ''): Buffer {
  const head = `${method} ${path} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), typeof body === 'string' ? Buffer.from(body) : body]);
}

/**
 * One connection, requests one after another: each request's parts are written (with `gapMs`
 * between them, so the server reads them separately), then its answer is awaited before the next
 * request starts. Resolves with the answers so far when the server closes or `limitMs` passes.
 */
export function rawSequence(port: number, requests: Buffer[][], options: { gapMs?: number; limitMs?: number } = {}): Promise<RawResponse[]> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    let data = Buffer.alloc(0);
    let settled = false;
    let waiting: (() => void) | undefined;
    const answers = () => parseResponses(data).responses;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(limit);
      socket.destroy();
      waiting?.();
      resolve(answers());
    };
    const limit = setTimeout(finish, options.limitMs ?? 10_000);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      waiting?.();
    });
    socket.on('end', finish);
    socket.on('error', finish);
    socket.on('connect', async () => {
      for (let i = 0; i < requests.length; i++) {
        const parts = requests[i]!;
        for (let p = 0; p < parts.length; p++) {
          if (p > 0 && options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
          if (settled) return;
          socket.write(parts[p]!);
        }
        while (!settled && answers().length <= i) await new Promise<void>((r) => { waiting = r; });
        waiting = undefined;
      }
      finish();
    });
  });
}
