// A quiet WebSocket stream behind nginx stays open: nginx closes an upgraded connection whose
// upstream sent nothing for proxy_read_timeout (60 s by default, in ingress-nginx too), and the
// only thing Umbra sends on a quiet stream is the transport's ping, at half of --ws-idle-seconds.
// With the old default of 120 s those pings came every 60 s and nginx cut every quiet stream at
// 60 s (1006 at the client). Timed here at a smaller scale with the default's ratio to nginx's
// timeout: pings every 4 s (--ws-idle-seconds 8) against a 5 s read timeout.
import t from 'tap';
import WebSocket from 'ws';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { freePort } from './helpers/prometheus.js';
import { NGINX, NGINX_MISSING, startNginx } from './helpers/nginx.js';
import { STREAM_DEFAULTS } from '../dist/server/ws.js';

// nginx's proxy_read_timeout default, ingress-nginx's proxy-read-timeout, and the idle timeout
// most cloud load balancers start with.
const PROXY_DEFAULT_SECONDS = 60;
// uWS counts idle time in 4-second ticks, so a ping can come up to one tick late.
const TICK_SECONDS = 4;

t.test('the default ping interval leaves a quiet stream open behind a proxy\'s 60 s default', async (t) => {
  t.ok(STREAM_DEFAULTS.idleSeconds / 2 + TICK_SECONDS < PROXY_DEFAULT_SECONDS, `pings every ${STREAM_DEFAULTS.idleSeconds / 2} s (+ a ${TICK_SECONDS} s tick) < ${PROXY_DEFAULT_SECONDS} s`);
});

t.test('behind nginx, a stream quiet for over twice proxy_read_timeout is kept open by the pings', { skip: NGINX ? false : NGINX_MISSING }, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const idleSeconds = 8;
  const readTimeoutSeconds = 5;
  const s = await startTestServer(t, { repository: repo.dir, wsIdleSeconds: idleSeconds });
  const port = await freePort();
  const nginx = await startNginx([
    `  upstream umbra { server 127.0.0.1:${s.server.port}; keepalive 4; }`,
    '  server {',
    `    listen 127.0.0.1:${port};`,
    '    location / {',
    '      proxy_http_version 1.1;',
    '      proxy_set_header Upgrade $http_upgrade;',
    '      proxy_set_header Connection "upgrade";',
    `      proxy_read_timeout ${readTimeoutSeconds}s;`,
    '      proxy_pass http://umbra;',
    '    }',
    '  }',
  ].join('\n'), [port]);
  t.teardown(() => nginx.stop());

  const ws = new WebSocket(`ws://127.0.0.1:${port}/v2/models/affine/stream`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  let pings = 0;
  ws.on('ping', () => pings++);
  let closed: number | undefined;
  ws.on('close', (code) => {
    closed = code;
  });
  // Waiting out the timeout is the point: nothing is sent for more than two of nginx's timeouts.
  await new Promise((resolve) => setTimeout(resolve, (2 * readTimeoutSeconds + 1) * 1000));
  t.equal(closed, undefined, `still open after ${2 * readTimeoutSeconds + 1} s quiet (nginx log: ${nginx.log().split('\n').filter((l) => /timed out/.test(l)).join('; ') || 'nothing timed out'})`);
  t.ok(pings >= 2, `the server's pings came through nginx (${pings})`);
  if (closed !== undefined) return;
  const answer = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
  ws.send(JSON.stringify({ id: 'after', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }));
  t.match(JSON.parse(await answer), { id: 'after', outputs: [{ data: [3, 5, 7, 9] }] }, 'and it still answers');
  ws.close(1000);
});
