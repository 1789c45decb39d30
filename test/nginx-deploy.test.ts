// Umbra behind deploy/nginx/umbra.conf exactly as shipped (only its addresses changed to free
// loopback ports): HTTP through the upstream keep-alive pool, a body over nginx's default 1 MiB,
// the admin rule seeing X-Forwarded-For, a WebSocket stream, and gRPC unary and streaming calls
// through grpc_pass. Skipped where nginx is not installed.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import WebSocket from 'ws';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel, holdExecution, until } from './helpers/repo.js';
import { freePort } from './helpers/prometheus.js';
import { generatedClient, grpc } from './helpers/grpc.js';
import { NGINX, NGINX_MISSING, startNginx } from './helpers/nginx.js';

const CONF = readFileSync(new URL('../deploy/nginx/umbra.conf', import.meta.url), 'utf8');

/** The shipped file with each address swapped for a test port; each must be there exactly once. */
function withPorts(ports: { http: number; grpc: number; proxyHttp: number; proxyGrpc: number }): string {
  let text = CONF;
  const swap = (from: string, to: string) => {
    const parts = text.split(from);
    if (parts.length !== 2) throw new Error(`deploy/nginx/umbra.conf: expected "${from}" once, found it ${parts.length - 1} times`);
    text = parts.join(to);
  };
  swap('server 127.0.0.1:8000;', `server 127.0.0.1:${ports.http};`);
  swap('server 127.0.0.1:8001;', `server 127.0.0.1:${ports.grpc};`);
  swap('listen 8080;', `listen 127.0.0.1:${ports.proxyHttp};`);
  swap('listen 8081 http2;', `listen 127.0.0.1:${ports.proxyGrpc} http2;`);
  return text;
}

/**
 * A TCP relay in front of Umbra's HTTP port. `dropNextReused()` makes it take the next request
 * written onto a connection that already carried one and close that connection unanswered, as
 * Umbra does when a request arrives on a kept-alive connection the moment it closes it (its idle
 * close, the end of a drain): the race itself, made to happen on demand.
 */
async function startRelay(upstream: number): Promise<{ port: number; connections: number; dropNextReused(): void; close(): Promise<void> }> {
  let drop = false;
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    connections++;
    let requests = 0;
    const umbra = connect(upstream, '127.0.0.1');
    for (const socket of [client, umbra]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.once('close', () => sockets.delete(socket));
    }
    client.on('data', (chunk) => {
      if (requests++ > 0 && drop) {
        drop = false;
        client.destroy();
        umbra.destroy();
        return;
      }
      umbra.write(chunk);
    });
    umbra.pipe(client);
    client.once('close', () => umbra.destroy());
    umbra.once('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    get connections() {
      return connections;
    },
    dropNextReused() {
      drop = true;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const expected = (x: number[]) => x.map((v) => Math.fround(Math.fround(v * 2) + 1));

t.test('Umbra behind deploy/nginx/umbra.conf: HTTP, WebSocket and gRPC', { skip: NGINX ? false : NGINX_MISSING }, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  const width = 1 << 19; // 2 MiB of FP32 per row: over nginx's default client_max_body_size
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.addVersion('wide', 1, affineModel(2, 1, width));
  // One request at a time and a queue of one, so a held batch makes the next arrivals refusals.
  repo.addVersion('held', 1, affineModel(2, 1));
  repo.writeConfig('held', { max_batch_size: 1, dynamic_batching: { max_queue_delay_microseconds: 0, default_queue_policy: { max_queue_size: 1 } }, instance_group: [{ count: 1 }], parameters: { execution: 'worker', stage_batches: 'false', queue_budget_ms: '10000' } });
  const s = await startTestServer(t, { repository: repo.dir, grpcPort: 'any' });
  const relay = await startRelay(s.server.port);
  t.teardown(() => relay.close());
  const proxyHttp = await freePort();
  const proxyGrpc = await freePort();
  const nginx = await startNginx(withPorts({ http: relay.port, grpc: s.server.grpcPort, proxyHttp, proxyGrpc }), [proxyHttp, proxyGrpc]);
  t.teardown(() => nginx.stop());
  const url = `http://127.0.0.1:${proxyHttp}`;

  t.test('HTTP', async (t) => {
    t.equal((await fetch(`${url}/v2/health/ready`)).status, 200, 'ready through nginx');
    for (let i = 0; i < 20; i++) {
      const x = [i, -1, 2, 3.25];
      const r = await fetch(`${url}/v2/models/affine/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] }) });
      t.equal(r.status, 200);
      t.same(((await r.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data, expected(x));
    }

    // A binary tensor of 2 MiB, header length in Inference-Header-Content-Length both ways.
    const values = new Float32Array(width).map((_, i) => (i % 7) - 3);
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, width], parameters: { binary_data_size: values.byteLength } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }));
    const big = await fetch(`${url}/v2/models/wide/infer`, { method: 'POST', headers: { 'inference-header-content-length': String(header.length), 'content-type': 'application/octet-stream' }, body: Buffer.concat([header, Buffer.from(values.buffer)]) });
    t.equal(big.status, 200, 'a 2 MiB binary request passes client_max_body_size');
    const bytes = Buffer.from(await big.arrayBuffer());
    const jsonLength = Number(big.headers.get('inference-header-content-length'));
    t.ok(jsonLength > 0, 'the answer\'s Inference-Header-Content-Length comes through');
    const out = new Float32Array(bytes.buffer.slice(bytes.byteOffset + jsonLength, bytes.byteOffset + bytes.length));
    t.equal(out.length, width, 'every output element');
    t.same([out[0], out[1], out[width - 1]], expected([values[0]!, values[1]!, values[width - 1]!]), 'outputs');

    // A POST written onto a pooled connection as it closes is run again on a new connection
    // (proxy_next_upstream error non_idempotent), not answered 502.
    const body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
    const post = () => fetch(`${url}/v2/models/affine/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    t.equal((await post()).status, 200, 'a POST that leaves a kept-alive connection in nginx\'s pool');
    const before = relay.connections;
    relay.dropNextReused();
    const raced = await post();
    t.equal(raced.status, 200, 'the POST that met the closing connection is answered (it was 502)');
    t.same(((await raced.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data, expected([1, 2, 3, 4]));
    t.equal(relay.connections, before + 1, 'on a new connection');

    const admin = await fetch(`${url}/v2/repository/models/affine/unload`, { method: 'POST' });
    t.equal(admin.status, 401, 'admin through the proxy is remote (X-Forwarded-For), not loopback');
    t.match(await admin.text(), /came through a proxy/);
  });

  t.test('WebSocket', async (t) => {
    const ws = new WebSocket(`ws://127.0.0.1:${proxyHttp}/v2/models/affine/stream`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const answers = new Map<string, number[]>();
    const all = new Promise<void>((resolve) => ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as { id: string; outputs: { data: number[] }[] };
      answers.set(m.id, m.outputs[0]!.data);
      if (answers.size === 50) resolve();
    }));
    for (let i = 0; i < 50; i++) ws.send(JSON.stringify({ id: `r${i}`, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [i, i, i, i] }] }));
    await all;
    t.ok([...Array(50).keys()].every((i) => answers.get(`r${i}`)?.[0] === expected([i])[0]), '50 requests on one stream, each answered');
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.close(1000);
    t.equal(await closed, 1000, 'a normal close');
  });

  t.test('gRPC', async (t) => {
    const c = generatedClient(proxyGrpc);
    t.teardown(() => c.close());
    const unary = await c.call('ModelInfer', { model_name: 'affine', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] });
    t.ok(unary.ok, 'ModelInfer through grpc_pass');
    if (unary.ok) t.same(unary.value.outputs[0].contents.fp32_contents, expected([1, 2, 3, 4]));
    const unknown = await c.call('ModelInfer', { model_name: 'nope', inputs: [] });
    t.same(unknown.ok ? undefined : [unknown.error.code, unknown.error.details], [grpc.status.NOT_FOUND, "unknown model 'nope'"], 'an error status and its message come through as trailers');
    const admin = await c.call('RepositoryModelUnload', { model_name: 'affine' });
    t.equal(admin.ok ? undefined : admin.error.code, grpc.status.UNAUTHENTICATED, 'admin through the proxy is remote (x-forwarded-for)');

    const call = c.raw.ModelStreamInfer();
    const answers = new Map<string, number[]>();
    const errors: string[] = [];
    const done = new Promise<void>((resolve) => {
      call.on('end', resolve);
      call.on('error', (err: grpc.ServiceError) => {
        errors.push(`the call failed: ${err.code} ${err.details}`);
        resolve();
      });
    });
    call.on('data', (m: any) => {
      if (m.error_message) errors.push(m.error_message);
      else answers.set(m.infer_response.id, m.infer_response.outputs[0].contents.fp32_contents);
    });
    // Small requests and then 6 MiB in all on one stream: nginx must not count the stream as one body.
    for (let i = 0; i < 77; i++) call.write({ model_name: 'affine', id: `r${i}`, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [i, i, i, i] } }] });
    const row = Array.from({ length: width }, (_, i) => i % 5);
    for (let i = 77; i < 80; i++) call.write({ model_name: 'wide', id: `r${i}`, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, width], contents: { fp32_contents: row } }] });
    call.end();
    await done;
    t.same(errors, [], 'no request on the stream failed');
    t.equal(answers.size, 80, 'ModelStreamInfer: 80 requests on one stream, each answered');
    t.same(answers.get('r76'), expected([76, 76, 76, 76]));
    t.same(answers.get('r79')?.slice(0, 5), expected(row.slice(0, 5)));
  });

  t.test('refusals, deadlines and cancellation pass through', async (t) => {
    const mv = s.server.umbra.manager.get('held');
    const row = { name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } };
    const c = generatedClient(proxyGrpc);
    t.teardown(() => c.close());
    const hold = holdExecution(mv);
    t.teardown(() => hold.release());
    const running = c.call('ModelInfer', { model_name: 'held', inputs: [row] });
    await until(() => mv.inFlight === 1, 'one request running (held)');
    const before = mv.stats();
    // A call queued behind it whose deadline passes: grpc-timeout reached Umbra through nginx,
    // or the client's cancellation did, and the request left Umbra's queue.
    const late = c.call('ModelInfer', { model_name: 'held', inputs: [row] }, {}, { deadline: Date.now() + 300 });
    await until(() => mv.pending === 1, 'a second request queued');
    t.equal((await late).ok ? undefined : (await late as { error: { code: number } }).error.code, grpc.status.DEADLINE_EXCEEDED, 'DEADLINE_EXCEEDED');
    await until(() => mv.stats().aborted === before.aborted + 1, 'the late request left the queue');

    const queued = c.call('ModelInfer', { model_name: 'held', inputs: [row] });
    await until(() => mv.pending === 1, 'the queue full again');
    const http = await fetch(`${url}/v2/models/held/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }) });
    t.equal(http.status, 503, 'HTTP: 503 from Umbra, not nginx');
    t.equal(http.headers.get('retry-after'), '1', 'with its Retry-After');
    t.match(await http.text(), /^\{"error":".*queue/, 'and its JSON body');
    const refused = await c.call('ModelInfer', { model_name: 'held', inputs: [row] });
    t.equal(refused.ok ? undefined : refused.error.code, grpc.status.UNAVAILABLE, 'gRPC: UNAVAILABLE');
    t.same(refused.ok ? undefined : refused.error.metadata.get('grpc-retry-pushback-ms'), ['1000'], 'with grpc-retry-pushback-ms in the trailers');
    hold.release();
    t.ok((await running).ok && (await queued).ok, 'the running and the queued request answered');
  });
});
