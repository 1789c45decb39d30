// Umbra behind a default nginx reverse proxy: `proxy_pass` with no proxy_http_version speaks
// HTTP/1.0 to its upstream (with Connection: close), which uWebSockets.js alone answers 505; the
// HTTP guard serves it (test/http10.test.ts has the byte-level cases). Debian's nginx-light, run as
// this user from a generated config in a temporary folder; skipped where nginx is not installed.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { freePort } from './helpers/prometheus.js';
import { NGINX, NGINX_MISSING, startNginx } from './helpers/nginx.js';

/** nginx on a free loopback port, proxying everything to `upstream` as shipped. */
async function startDefaultProxy(upstream: number): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const nginx = await startNginx([
    '  server {',
    `    listen 127.0.0.1:${port};`,
    // The default: no proxy_http_version, so HTTP/1.0 to the upstream.
    `    location / { proxy_pass http://127.0.0.1:${upstream}; }`,
    '  }',
  ].join('\n'), [port]);
  return { url: `http://127.0.0.1:${port}`, stop: () => nginx.stop() };
}

t.test('through a default nginx reverse proxy (HTTP/1.0 upstream): health, metadata, a JSON infer, /metrics', { skip: NGINX ? false : NGINX_MISSING }, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir });
  const proxy = await startDefaultProxy(s.server.port);
  t.teardown(() => proxy.stop());
  const rewritten = async () => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    return Number(/^umbra_http_guard_events_total\{event="http10_rewritten"\} (\d+)/m.exec(text)?.[1] ?? Number.NaN);
  };
  const before = await rewritten();

  const ready = await fetch(`${proxy.url}/v2/health/ready`);
  t.equal(ready.status, 200, 'health: 200 through nginx');
  t.same(await ready.json(), { ready: true }, 'health: the answer');
  const metadata = await fetch(`${proxy.url}/v2/models/affine`);
  t.equal((await metadata.json() as { name: string }).name, 'affine', 'metadata: the model\'s');
  const x = [0.5, -1, 2, 3.25];
  const infer = await fetch(`${proxy.url}/v2/models/affine/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] }),
  });
  t.equal(infer.status, 200, 'infer: 200 through nginx');
  const answer = await infer.json() as { outputs: { data: number[] }[] };
  t.same(answer.outputs[0]!.data, x.map((v) => Math.fround(Math.fround(v * 2) + 1)), 'infer: exact outputs');
  // A larger answer (the metrics exposition, about 20 KB on a fresh server), read to its length.
  const metrics = await fetch(`${proxy.url}/metrics`);
  t.match(await metrics.text(), /^umbra_http_guard_installed 1$/m, '/metrics: read whole through nginx');

  // nginx spoke HTTP/1.0 to Umbra for each of the four: the guard handed each on.
  t.equal(await rewritten(), before + 4, 'the four proxied requests arrived as HTTP/1.0 and were each rewritten');
});
