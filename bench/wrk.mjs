// A second load generator for the benchmarks: wrk (C, epoll; Debian package `wrk`), driven with
// the same pre-encoded requests as `umbra perf`. On a host where generator and server share the
// cores, a generator's own CPU per request is taken from the server it measures: `umbra perf`
// (JavaScript) costs about twice what wrk does per request, so the two together show how much of
// a figure is the generator's. Optional: without wrk on PATH the benchmarks say so and go on.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The wrk binary's path, or undefined when it is not installed. */
export function findWrk() {
  const found = spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  return found.status === 0 && path ? path : undefined;
}

// One pre-encoded request, sent as is by every connection: a static request costs wrk no Lua call
// per request (rotating several through a request() hook cut its rate against bare uWS from about
// 45k to 32k requests/s on the two-core host, as costly as the generator it is meant to check).
// The body's content does not change what a server does with it, and every server gets the same.
// The summary is printed as one JSON line for the caller to read.
const SCRIPT = `
init = function(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  if tonumber(args[2]) > 0 then
    wrk.headers["Content-Type"] = "application/octet-stream"
    wrk.headers["Inference-Header-Content-Length"] = args[2]
  else
    wrk.headers["Content-Type"] = "application/json"
  end
  for i = 3, #args do
    local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"us":%d,"socket_errors":%d,"status_errors":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
`;

/**
 * Closed-loop load from `connections` keep-alive connections for `seconds` (after `warmupSeconds`
 * of the same load, not counted; whole seconds, wrk takes no fractions): { throughput, p50_ms, p99_ms, errors }.
 * `request` is { body: Buffer|string, headerLength?: number, headers?: {name: value} } (headerLength:
 * binary extension; headers: sent with every request).
 */
export async function runWrk(wrk, { url, path, request, connections, seconds, warmupSeconds = 1 }) {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-wrk-'));
  try {
    const script = join(dir, 'requests.lua');
    const file = join(dir, 'body.bin');
    writeFileSync(script, SCRIPT);
    writeFileSync(file, request.body);
    const once = (s) => runOnce(wrk, ['-t1', `-c${connections}`, `-d${Math.max(1, Math.round(s))}s`, '--timeout', '30s', '-s', script, `${url}${path}`, '--', file, String(request.headerLength ?? 0), ...Object.entries(request.headers ?? {}).map(([k, v]) => `${k}: ${v}`)]);
    if (warmupSeconds > 0) await once(warmupSeconds);
    const r = await once(seconds);
    return {
      concurrency: connections,
      throughput: r.requests / (r.us / 1e6),
      p50_ms: r.p50_us / 1000,
      p99_ms: r.p99_us / 1000,
      errors: r.socket_errors + r.status_errors,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runOnce(wrk, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(wrk, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith('{"requests"'));
      if (code !== 0 || !line) return reject(new Error(`wrk failed (exit ${code}): ${(stderr || stdout).trim().slice(-300)}`));
      resolve(JSON.parse(line));
    });
  });
}
