// Starts an in-process Umbra server on a free loopback port for one test, and stops it after.
import type { Test } from 'tap';
import { startServer, type ServerOptions, type UmbraServer } from '../../dist/index.js';

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
  bytes: Buffer;
}

export interface TestServer {
  server: UmbraServer;
  url: string;
  get(path: string, headers?: Record<string, string>): Promise<Reply>;
  post(path: string, body?: unknown, headers?: Record<string, string>): Promise<Reply>;
  request(method: string, path: string, body?: Uint8Array | string, headers?: Record<string, string>): Promise<Reply>;
}

/**
 * Test servers run with two I/O threads and the core's thread reading nothing itself, so every
 * behaviour is checked across the hop whatever the host's default; UMBRA_TEST_IO_THREADS runs them
 * with that many threads instead, and UMBRA_TEST_CORE_READS=on with the core's thread as one of
 * them (CI runs the server tests both ways, and with one thread). A test that names `ioThreads` or
 * `coreReads` keeps its own.
 */
const ioThreadsFromEnv = {
  ioThreads: process.env.UMBRA_TEST_IO_THREADS ? Number(process.env.UMBRA_TEST_IO_THREADS) : 2,
  coreReads: process.env.UMBRA_TEST_CORE_READS === 'on',
};

export async function startTestServer(t: Test, options: Partial<ServerOptions> & { repository: string }): Promise<TestServer> {
  const server = await startServer({ host: '127.0.0.1', port: 0, workers: 2, ...ioThreadsFromEnv, ...options });
  t.teardown(() => server.stop());
  const request = async (method: string, path: string, body?: Uint8Array | string, headers: Record<string, string> = {}): Promise<Reply> => {
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = body;
    const res = await fetch(server.url + path, init);
    const bytes = Buffer.from(await res.arrayBuffer());
    const text = bytes.toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json, bytes };
  };
  return {
    server,
    url: server.url,
    request,
    get: (path, headers) => request('GET', path, undefined, headers),
    post: (path, body, headers) => request('POST', path, body === undefined ? undefined : typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body), headers),
  };
}
