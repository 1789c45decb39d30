// The HTTP transport guard: Umbra's own reading of what clients send, between the socket and the
// bundled uWebSockets.js (native/binding/transport_guard.cc, native/src/net/stream_guard.h). With
// it, a request line cut across TCP segments is handed to the library whole (it answers 505 to
// some cuts), malformed requests it would leave waiting are answered 400, valid forms it
// mishandles (chunk extensions, trailers, an absolute-form target) are rewritten to forms it
// reads, an HTTP/1.0 request (it answers 505 to any version but 1.1) is handed on as HTTP/1.1
// with `Connection: close`, so it is answered and its connection then closed, a WebSocket text frame that is not UTF-8 is closed with 1007 (the library drops the
// connection without a close frame), the library's own error pages (400, 431, 505) are
// answered as `{"error": ...}` JSON, and a pipelined request is held until the answer before it is
// out (the library closes a connection whose next request it reads while one is running). A
// connection whose answer says `Connection: close` is ended after it (the library keeps one open
// after HEAD), and a five-byte Connection value other than `close` keeps its connection (the
// library takes any five bytes for `close`). It is installed once per process, for every uWebSockets.js
// app in it, and cannot be taken out again.
import { native, type NativeTransportGuard, type NativeTransportGuardCounts } from '../native/addon.js';

export type HttpGuardStatus = NativeTransportGuard & { enabled: boolean };

let installed: HttpGuardStatus | undefined;

/**
 * Installs the guard unless `enabled` is false (then reports it off; a guard that an earlier
 * server in the process installed stays in place). Never throws: where the guard cannot be
 * installed, the status says why and the library runs as shipped.
 */
export function installHttpGuard(enabled = true): HttpGuardStatus {
  if (installed?.installed) return installed;
  if (!enabled) return { enabled: false, installed: false, pipelining: false, reason: 'turned off (--http-guard off)', library: '', hooked: [] };
  try {
    installed = { enabled: true, ...native().guardTransport() };
  } catch (err) {
    installed = { enabled: true, installed: false, pipelining: false, reason: (err as Error).message, library: '', hooked: [] };
  }
  return installed;
}

/** Whether the guard is in place in this process. */
export function httpGuardInstalled(): boolean {
  return installed?.installed === true;
}

/** What the guard has done in this process. */
export function httpGuardCounts(): NativeTransportGuardCounts {
  return native().transportGuardCounts();
}

/** One line for the start-up log. */
export function describeHttpGuard(status: HttpGuardStatus): string {
  if (status.installed) return `HTTP guard: on (cut request lines handed on whole, malformed requests answered 400, valid forms the transport mishandles rewritten, HTTP/1.0 requests answered, each connection closed after its answer, 1007 for text frames that are not UTF-8, JSON for the transport's own errors, ${status.pipelining ? 'pipelined requests answered in order' : 'pipelined requests behind a running one close the connection: libuv\'s poll was not found'})`;
  return `HTTP guard: off, ${status.reason}: a request line cut across TCP segments may get 505, HTTP/1.0 requests (nginx's default proxy_pass among them) get 505, some malformed requests wait for the idle timeout, and the transport's own errors are HTML (README "The HTTP guard")`;
}
