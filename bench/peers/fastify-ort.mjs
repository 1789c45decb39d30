// Peer: Fastify + onnxruntime-node, the framework a Node team would reach for. With --workers N,
// node:cluster runs N such processes on one port, one per core.
// Usage: node bench/peers/fastify-ort.mjs PORT MODEL.onnx [--workers N]
import Fastify from 'fastify';
import { openModel } from './ort-handler.mjs';
import { serveOnEveryWorker, workersFromArgs } from './cluster.mjs';

const [port, file] = [Number(process.argv[2] ?? 0), process.argv[3]];

const workers = workersFromArgs(process.argv);
await serveOnEveryWorker(workers, async (isReady) => {
  const infer = await openModel(file, workers);
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 * 1024, keepAliveTimeout: 60_000 });
  app.get('/v2/health/ready', async (_request, reply) => {
    reply.code(isReady() ? 200 : 503);
    return { ready: isReady() };
  });
  app.post('/v2/models/:model/infer', async (request, reply) => {
    try {
      return await infer({ ...request.body, model_name: request.params.model });
    } catch (err) {
      reply.code(400);
      return { error: String(err.message) };
    }
  });
  await app.listen({ port, host: '127.0.0.1' });
});
