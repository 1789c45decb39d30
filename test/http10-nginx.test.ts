// Umbra behind a default nginx reverse proxy: `proxy_pass` with no proxy_http_version speaks
// HTTP/1.0 to its upstream (with Connection: close), which uWebSockets.js alone answers 505; the
// HTTP guard serves it (test/http10.test.ts has the byte-level cases). Debian's nginx-light, run as
// this user from a generated config in a temporary folder; skipped where nginx is not installed.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { findBinary, freePort } from './helpers/prometheus.js';

const NGINX = findBinary('nginx');

/** Whether something accepts connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** nginx in the foreground on a free loopback port, proxying everything to `upstream` as shipped. */
async function startNginx(bin: string, upstream: number): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-nginx-'));
  const port = await freePort();
  // Every path nginx writes is under `dir`: it needs no root and touches nothing of the system's.
  writeFileSync(join(dir, 'nginx.conf'), [
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 64; }',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${join(dir, 'body')};`,
    `  proxy_temp_path ${join(dir, 'proxy')};`,
    `  fastcgi_temp_path ${join(dir, 'fastcgi')};`,
    `  uwsgi_temp_path ${join(dir, 'uwsgi')};`,
    `  scgi_temp_path ${join(dir, 'scgi')};`,
    '  server {',
    `    listen 127.0.0.1:${port};`,
    // The default: no proxy_http_version, so HTTP/1.0 to the upstream.
    `    location / { proxy_pass http://127.0.0.1:${upstream}; }`,
    '  }',
    '}',
    '',
  ].join('\n'));
  const child = spawn(bin, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, 'exit');
  const log = () => `${stderr}${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''}`;
  // Ready once it accepts connections: polled, bounded, failing with nginx's own words.
  const deadline = Date.now() + 10_000;
  while (!(await listening(port))) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${log()}`);
    if (Date.now() > deadline) throw new Error(`nginx did not listen on 127.0.0.1:${port} within 10 s: ${log()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

t.test('through a default nginx reverse proxy (HTTP/1.0 upstream): health, metadata, a JSON infer, /metrics', { skip: NGINX ? false : 'nginx is not installed (apt-get install -y nginx-light; .ci/run installs it)' }, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir });
  const proxy = await startNginx(NGINX!, s.server.port);
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
