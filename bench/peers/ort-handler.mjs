// The model part shared by the node:http and Fastify peers, written the way a user would:
// one onnxruntime-node session created at start, session.run per request, OIP JSON in and out.
// One process gets onnxruntime's default session options (its intra-op pool uses every core), as a
// user who writes `InferenceSession.create(file)` does; a cluster of one process per core gives
// each session one intra-op thread, as onnxruntime's threading docs advise for sessions that run
// side by side, so the processes do not fight over the cores.
import * as ort from 'onnxruntime-node';

export async function openModel(file, workers) {
  const options = workers > 1 ? { intraOpNumThreads: 1, interOpNumThreads: 1 } : {};
  const session = await ort.InferenceSession.create(file, options);
  return async (body) => {
    const feeds = {};
    for (const input of body.inputs) {
      const data = input.datatype === 'INT64' ? BigInt64Array.from(input.data.flat(Infinity), BigInt) : Float32Array.from(input.data.flat(Infinity));
      feeds[input.name] = new ort.Tensor(input.datatype === 'INT64' ? 'int64' : 'float32', data, input.shape);
    }
    const results = await session.run(feeds);
    return {
      model_name: body.model_name,
      ...(body.id ? { id: body.id } : {}),
      outputs: Object.entries(results).map(([name, t]) => ({
        name,
        datatype: t.type === 'int64' ? 'INT64' : 'FP32',
        shape: t.dims,
        data: t.type === 'int64' ? Array.from(t.data, Number) : Array.from(t.data),
      })),
    };
  };
}
