// Peer: bare uWebSockets.js (the front end's limit). Parses the same OIP JSON a model server
// would, answers a digits-shaped response without computing anything. `--static` skips even the
// parse and answers fixed bytes: the ceiling of the load generator on this machine.
// Usage: node bench/peers/uws-bare.mjs PORT [--static]
import * as uws from 'uWebSockets.js';

const port = Number(process.argv[2] ?? 0);
const fixed = process.argv.includes('--static');
const answer = (model, id) => JSON.stringify({
  model_name: model, model_version: '1', ...(id ? { id } : {}),
  outputs: [
    { name: 'probabilities', datatype: 'FP32', shape: [1, 10], data: [0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.15, 0.2, 0.25, 0.15] },
    { name: 'label', datatype: 'INT64', shape: [1], data: [8] },
  ],
});
const staticAnswer = answer('digits');

uws.App()
  .get('/v2/health/ready', (res) => res.end('{"ready":true}'))
  // The model's metadata, so `umbra perf` (which reads it first) can drive this peer as well.
  .get('/v2/models/:model', (res, req) => {
    const name = req.getParameter(0);
    res.writeHeader('content-type', 'application/json').end(JSON.stringify({
      name, versions: ['1'], platform: 'onnxruntime_onnx',
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [-1, 64] }],
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 10] }, { name: 'label', datatype: 'INT64', shape: [-1] }],
    }));
  })
  .post('/v2/models/:model/infer', (res, req) => {
    const model = req.getParameter(0);
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    const chunks = [];
    res.onData((chunk, last) => {
      chunks.push(Buffer.from(chunk.slice(0)));
      if (!last || aborted) return;
      if (fixed) {
        res.cork(() => res.writeHeader('content-type', 'application/json').end(staticAnswer));
        return;
      }
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString());
        if (!Array.isArray(body.inputs) || !Array.isArray(body.inputs[0]?.data)) throw new Error('no inputs');
      } catch (err) {
        res.cork(() => res.writeStatus('400 Bad Request').end(JSON.stringify({ error: String(err.message) })));
        return;
      }
      res.cork(() => res.writeHeader('content-type', 'application/json').end(answer(model, body.id)));
    });
  })
  .listen('127.0.0.1', port, (token) => {
    if (!token) {
      process.stderr.write(`uws-bare: cannot listen on ${port}\n`);
      process.exit(1);
    }
  });
