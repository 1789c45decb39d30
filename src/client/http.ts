// HTTP client for the Open Inference Protocol endpoints, over fetch (keep-alive by default in
// Node's undici and in browsers). JSON bodies, or the binary tensor extension with `binary: true`.
import { decodeResponse, encodeBinaryRequest, encodeJsonRequest, UmbraClientError, type ClientInferRequest, type ClientInferResponse, type SharedMemoryRegionStatus } from './tensors.js';

export interface HttpInferOptions {
  version?: string;
  /** Send inputs and receive outputs as raw bytes (Triton's binary tensor extension). */
  binary?: boolean;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /**
   * Compress the request body (Content-Encoding), as Triton's clients do with
   * request_compression_algorithm: worth it for large inputs over a slow link. Answers come back
   * compressed where the server runs with --response-compression on; fetch inflates them.
   */
  compression?: 'gzip' | 'deflate';
}

export interface HttpClientOptions {
  /** Sent with every request, e.g. {authorization: 'Bearer ...'}. */
  headers?: Record<string, string>;
  fetch?: typeof fetch;
}

export class UmbraHttpClient {
  private readonly base: string;
  private readonly fetch: typeof fetch;

  /** `baseUrl` such as http://127.0.0.1:8000 (a trailing slash is fine). */
  constructor(baseUrl: string, private readonly options: HttpClientOptions = {}) {
    this.base = baseUrl.replace(/\/+$/, '');
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  async infer(model: string, request: ClientInferRequest, options: HttpInferOptions = {}): Promise<ClientInferResponse> {
    const path = `/v2/models/${encodeURIComponent(model)}${options.version ? `/versions/${encodeURIComponent(options.version)}` : ''}/infer`;
    const headers: Record<string, string> = { ...this.options.headers, ...options.headers };
    let body: Uint8Array | string;
    if (options.binary) {
      const parameters = { binary_data_output: true, ...request.parameters };
      const { header, tensors } = encodeBinaryRequest(request, { parameters });
      body = concat([header, ...tensors]);
      headers['content-type'] = 'application/octet-stream';
      headers['inference-header-content-length'] = String(header.byteLength);
    } else {
      body = encodeJsonRequest(request);
      headers['content-type'] = 'application/json';
    }
    if (options.compression) {
      body = await compress(body, options.compression);
      headers['content-encoding'] = options.compression;
    }
    const init: RequestInit = { method: 'POST', headers, body };
    if (options.signal) init.signal = options.signal;
    const res = await this.send(this.base + path, init);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const headerLength = res.headers.get('inference-header-content-length');
    if (res.status !== 200) {
      // The body says what went wrong; a 503's Retry-After header says when to come back.
      const retryAfter = retryAfterSeconds(res.headers.get('retry-after'));
      try {
        decodeResponse(bytes, bytes.byteLength, res.status);
      } catch (err) {
        if (!(err instanceof UmbraClientError) || retryAfter === undefined) throw err;
        throw new UmbraClientError(err.message, err.status, err.id, retryAfter);
      }
      throw new UmbraClientError(`HTTP ${res.status}`, res.status, undefined, retryAfter);
    }
    return decodeResponse(bytes, headerLength ? Number(headerLength) : bytes.byteLength, res.status);
  }

  /** GET /v2/health/ready: true when the server and every model serve. */
  async ready(): Promise<boolean> {
    const res = await this.send(`${this.base}/v2/health/ready`, { headers: { ...this.options.headers } });
    await res.arrayBuffer();
    return res.status === 200;
  }

  /** GET /v2/models/{m}: inputs, outputs, versions. */
  async metadata(model: string): Promise<Record<string, unknown>> {
    return (await this.call('GET', `/v2/models/${encodeURIComponent(model)}`)) as Record<string, unknown>;
  }

  /**
   * Registers `byteSize` bytes from `offset` of the shared-memory object `key` (shm_open's name,
   * "/name") as region `name` (the server runs with --shared-memory on; an admin call).
   */
  async registerSystemSharedMemory(name: string, key: string, byteSize: number, offset = 0): Promise<void> {
    await this.call('POST', `/v2/systemsharedmemory/region/${encodeURIComponent(name)}/register`, { key, offset, byte_size: byteSize });
  }

  /** Unregisters region `name`, or every region when none is named. */
  async unregisterSystemSharedMemory(name?: string): Promise<void> {
    await this.call('POST', name === undefined ? '/v2/systemsharedmemory/unregister' : `/v2/systemsharedmemory/region/${encodeURIComponent(name)}/unregister`);
  }

  /** The registered regions (all, or the one named). */
  async systemSharedMemoryStatus(name?: string): Promise<SharedMemoryRegionStatus[]> {
    return (await this.call('GET', name === undefined ? '/v2/systemsharedmemory/status' : `/v2/systemsharedmemory/region/${encodeURIComponent(name)}/status`)) as SharedMemoryRegionStatus[];
  }

  /**
   * fetch, with a connection that failed (refused, reset, no such host) as an UmbraClientError of
   * status 0, as the stream and gRPC clients report it. A request the caller aborted stays fetch's
   * AbortError.
   */
  private async send(url: string, init: RequestInit): Promise<Response> {
    try {
      return await this.fetch(url, init);
    } catch (err) {
      if (init.signal?.aborted) throw err;
      const cause = (err as { cause?: { message?: unknown } }).cause?.message;
      throw new UmbraClientError(`could not reach ${url}: ${typeof cause === 'string' ? cause : (err as Error).message}`, 0);
    }
  }

  /** A JSON call; a non-200 answer throws its error. */
  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const init: RequestInit = { method, headers: { ...this.options.headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) } };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await this.send(this.base + path, init);
    const text = await res.text();
    let value: Record<string, unknown>;
    try {
      value = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // A proxy's error page, or something else listening on the port: as inference answers do.
      throw new UmbraClientError(`the server's answer (HTTP ${res.status}) is not JSON: ${JSON.stringify(text.slice(0, 120))}`, res.status);
    }
    if (res.status !== 200) throw new UmbraClientError(String(value?.error ?? `HTTP ${res.status}`), res.status);
    return value;
  }
}

/** Retry-After in seconds (its delay-seconds form, the one Umbra sends), or undefined. */
function retryAfterSeconds(value: string | null): number | undefined {
  return value !== null && /^\d+$/.test(value.trim()) ? Number(value.trim()) : undefined;
}

/** `body` in `coding`, by the CompressionStream that Node and browsers both have ("deflate" is the zlib format HTTP means). */
async function compress(body: Uint8Array | string, coding: 'gzip' | 'deflate'): Promise<Uint8Array> {
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream(coding));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let p = 0;
  for (const part of parts) {
    out.set(part, p);
    p += part.byteLength;
  }
  return out;
}
