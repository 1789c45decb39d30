// A quiet gRPC stream behind nginx stays open: nginx ends a grpc_pass call whose upstream sent
// nothing for grpc_read_timeout (60 s by default, in ingress-nginx too) with RST_STREAM, which the
// client sees as INTERNAL, and a ModelStreamInfer stream can be quiet for longer than that. Umbra
// PINGs each connection with a call open (every 25 s by default). Timed here at a smaller scale:
// PINGs every 2 s against a 5 s read timeout, a stream quiet for 11 s.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { freePort } from './helpers/prometheus.js';
import { generatedClient, grpc } from './helpers/grpc.js';
import { NGINX, NGINX_MISSING, startNginx } from './helpers/nginx.js';

t.test('behind nginx, a ModelStreamInfer stream quiet for over twice grpc_read_timeout is kept open by PINGs', { skip: NGINX ? false : NGINX_MISSING }, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const readTimeoutSeconds = 5;
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any', grpcPingSeconds: 2 });
  const port = await freePort();
  const nginx = await startNginx([
    `  upstream umbra_grpc { server 127.0.0.1:${s.server.grpcPort}; keepalive 4; }`,
    '  server {',
    `    listen 127.0.0.1:${port} http2;`,
    `    location / { grpc_read_timeout ${readTimeoutSeconds}s; grpc_pass grpc://umbra_grpc; }`,
    '  }',
  ].join('\n'), [port]);
  t.teardown(() => nginx.stop());
  const c = generatedClient(port);
  t.teardown(() => c.close());

  const call = c.raw.ModelStreamInfer();
  const answers: string[] = [];
  let failed: grpc.ServiceError | undefined;
  call.on('error', (err: grpc.ServiceError) => {
    failed = err;
  });
  const next = () => new Promise<string>((resolve) => call.once('data', (m: any) => resolve(m.error_message || m.infer_response.id)));
  const row = (id: string) => ({ model_name: 'affine', id, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] });
  call.write(row('before'));
  answers.push(await next());
  // Waiting out the timeout is the point: nothing is sent either way for over two of nginx's timeouts.
  await new Promise((resolve) => setTimeout(resolve, (2 * readTimeoutSeconds + 1) * 1000));
  t.equal(failed?.code, undefined, `the stream is still open after ${2 * readTimeoutSeconds + 1} s quiet (${failed?.details ?? 'no error'}; nginx: ${nginx.log().split('\n').filter((l) => /timed out/.test(l)).join('; ') || 'nothing timed out'})`);
  if (failed) return;
  call.write(row('after'));
  answers.push(await next());
  call.end();
  t.same(answers, ['before', 'after'], 'and answers on it');
});
