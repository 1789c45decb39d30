// Peer: node:http + onnxruntime-node, what a competent user builds in an afternoon (keep-alive,
// one session per process, session.run per request). With --workers N, node:cluster runs N such
// processes on one port: how the same user serves from every core.
// Usage: node bench/peers/node-http-ort.mjs PORT MODEL.onnx [--workers N]
import { createServer } from 'node:http';
import { openModel } from './ort-handler.mjs';
import { serveOnEveryWorker, workersFromArgs } from './cluster.mjs';

const [port, file] = [Number(process.argv[2] ?? 0), process.argv[3]];

const workers = workersFromArgs(process.argv);
await serveOnEveryWorker(workers, async (isReady) => {
  const infer = await openModel(file, workers);
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    if (req.method === 'GET' && req.url === '/v2/health/ready') {
      res.writeHead(isReady() ? 200 : 503, { 'content-type': 'application/json' }).end(`{"ready":${isReady()}}`);
      return;
    }
    const match = req.method === 'POST' && /^\/v2\/models\/([^/]+)\/infer$/.exec(req.url ?? '');
    if (!match) {
      res.writeHead(404).end();
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString());
        body.model_name = match[1];
        const answer = JSON.stringify(await infer(body));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) }).end(answer);
      } catch (err) {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(err.message) }));
      }
    });
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
});
