// Who may call the admin routes (load, unload, traffic, rollouts, the shadow log): one decision
// that every transport (HTTP and WebSocket on uWebSockets.js, gRPC) makes through `AdminGate`.
//
// With a token, a request must carry `Authorization: Bearer <token>` (compared in constant time,
// whoever sends it). Without one, the routes are closed to the network: they answer only to a
// client on this host's loopback that came straight in (no proxy header), so a server started
// with no token is safe to expose and still runnable by hand on the box itself. A browser on the
// box is such a client whatever page it shows, so a loopback request must also name this host
// (Host) and come from no other site (Origin).
import { BlockList, isIP } from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import { UmbraError } from '../errors.js';

/** What the gate reads of a request. */
export interface AdminCaller {
  /** Lower-case header names. */
  headers: Record<string, string>;
  /**
   * The peer's IP address as the transport saw it. A caller without one (an embedding application
   * calling the API directly) is treated as remote: it needs the token, or to say it is local by
   * passing a loopback address. So a transport that failed to pass the address along closes the
   * admin routes rather than opening them.
   */
  remoteAddress?: string;
}

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** True for 127.0.0.0/8 and ::1, written any way (IPv4-mapped IPv6, uWS's expanded hex groups). */
export function isLoopbackAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return loopback.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Headers a reverse proxy adds. A proxy on the same host makes every client look like loopback,
 * so a request that says it was forwarded is judged as coming from outside.
 */
const FORWARDING_HEADERS = ['forwarded', 'x-forwarded-for', 'x-real-ip'];

/**
 * A bearer token, checked in constant time: `Authorization: Bearer <token>`, the scheme's name in
 * any case (RFC 9110 11.1), so proxies and clients that lower-case it are answered alike.
 */
export class BearerToken {
  private readonly digest: Buffer;

  constructor(token: string) {
    this.digest = sha256(token);
  }

  /** Whether `authorization` (the header's value, if any) carries this token. */
  matches(authorization: string | undefined): boolean {
    const header = authorization ?? '';
    const scheme = /^bearer +/i.exec(header);
    const token = scheme ? header.slice(scheme[0].length) : '';
    // Fixed-length digests, so neither the token's content nor its length leaks through timing.
    return timingSafeEqual(sha256(token), this.digest);
  }
}

export class AdminGate {
  private readonly token: BearerToken | undefined;

  constructor(token?: string) {
    this.token = token ? new BearerToken(token) : undefined;
  }

  get hasToken(): boolean {
    return this.token !== undefined;
  }

  /** One line for the start-up log: how the admin routes are guarded. */
  describe(): string {
    return this.token
      ? 'admin routes need the admin token (Authorization: Bearer <token>)'
      : 'admin routes answer only to loopback clients: no admin token is set (give one with --admin-token-file FILE to manage the server from elsewhere)';
  }

  /** Throws UNAUTHORIZED (401) unless `caller` may use the admin routes. */
  check(caller: AdminCaller): void {
    if (this.token) {
      if (!this.token.matches(caller.headers.authorization)) {
        throw new UmbraError('UNAUTHORIZED', 'this endpoint needs the admin token: send Authorization: Bearer <token>');
      }
      return;
    }
    const forwarded = FORWARDING_HEADERS.some((h) => caller.headers[h] !== undefined);
    if (caller.remoteAddress !== undefined && isLoopbackAddress(caller.remoteAddress) && !forwarded) {
      const browser = fromAnotherSite(caller.headers);
      if (browser === undefined) return;
      throw new UmbraError('UNAUTHORIZED', `admin endpoints answer a loopback client without a token only when it names this host and comes from no other web page (${browser}): open the page at http://127.0.0.1:PORT or http://localhost:PORT, or start umbra with --admin-token-file FILE (or UMBRA_ADMIN_TOKEN_FILE) and send Authorization: Bearer <token>`);
    }
    throw new UmbraError('UNAUTHORIZED', `admin endpoints answer only to loopback clients while the server has no admin token${forwarded ? ' (this request came through a proxy)' : ''}: start umbra with --admin-token-file FILE (or UMBRA_ADMIN_TOKEN_FILE) and send Authorization: Bearer <token>`);
  }
}

/**
 * Why a loopback request may be a web page's rather than the operator's, or undefined. A browser on
 * this host reaches loopback too: a page of any site can send it a form POST (no preflight, so no
 * CORS stands in the way), and a page whose own name an attacker's DNS turned to 127.0.0.1 (DNS
 * rebinding) even reads the answers. The first carries its site's Origin, the second its own name
 * as Host; a client that is not a browser (curl, umbra's CLI, gRPC) sends neither that way.
 */
function fromAnotherSite(headers: Record<string, string>): string | undefined {
  const host = headers.host;
  if (host !== undefined && !isLocalHostName(host)) return `Host ${JSON.stringify(host)} is not a loopback name or an IP address`;
  const origin = headers.origin;
  if (origin === undefined) return undefined;
  let originHost: string | undefined;
  try {
    originHost = new URL(origin).host;
  } catch {
    originHost = undefined;
  }
  if (originHost === undefined || originHost === '' || host === undefined || originHost.toLowerCase() !== host.toLowerCase()) return `Origin ${JSON.stringify(origin)} is another site`;
  return undefined;
}

/** A Host header no DNS answer can point elsewhere: an IP address, localhost or a name under .localhost (RFC 6761). */
function isLocalHostName(host: string): boolean {
  const name = host.toLowerCase().replace(/:\d*$/, '');
  if (name.startsWith('[') && name.endsWith(']')) return isIP(name.slice(1, -1)) === 6;
  return isIP(name) === 4 || name === 'localhost' || name.endsWith('.localhost');
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
