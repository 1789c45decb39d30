// A parse worker: plans the features once, then parses the chunks the job sends, in any order
// (each answer carries its request id). Typed arrays go back transferred, not copied.
import { parentPort, workerData } from 'node:worker_threads';
import { parseChunk, planFor, type ParseSetup } from './parse.js';
import type { ParseRequest, ParseReply } from './parse-pool.js';

const setup = workerData as ParseSetup;
const plan = planFor(setup);

parentPort!.on('message', (request: ParseRequest) => {
  let reply: ParseReply;
  try {
    reply = { id: request.id, chunk: parseChunk(plan, setup.shard, request.records) };
  } catch (err) {
    reply = { id: request.id, error: err instanceof Error ? err.message : String(err) };
  }
  const transfer = reply.chunk ? [reply.chunk.status.buffer, ...reply.chunk.data.filter((d) => !Array.isArray(d)).map((d) => (d as Float32Array).buffer)] : [];
  parentPort!.postMessage(reply, transfer as ArrayBuffer[]);
});
