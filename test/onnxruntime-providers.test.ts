// A config that asks onnxruntime for an execution provider this host cannot set up (Triton's
// instance_group kind KIND_GPU means ["cuda", "cpu"]; onnxruntime-node's CUDA provider needs its
// CUDA libraries): with "cpu" listed after it the model serves on the CPU, as onnxruntime's own
// Python API does with a list, and the load log and metadata say why; with no "cpu" the load
// fails naming the fix. On a host where CUDA works the model just runs there.
import t from 'tap';
import * as ort from 'onnxruntime-node';
import { join } from 'node:path';
import { Umbra } from '../dist/core/umbra.js';
import { tempRepo, affineModel } from './helpers/repo.js';

t.test('execution providers onnxruntime cannot set up here', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('gpu-then-cpu', 1, affineModel(2, 1));
  repo.writeConfig('gpu-then-cpu', { backend: 'onnxruntime', max_batch_size: 8, instance_group: [{ count: 1, kind: 'KIND_GPU' }] });
  repo.addVersion('gpu-only', 1, affineModel(2, 1));
  repo.writeConfig('gpu-only', { backend: 'onnxruntime', max_batch_size: 8, execution_providers: ['cuda'] });

  // What this host can do, asked of onnxruntime directly.
  let cudaError: string | undefined;
  try {
    await (await ort.InferenceSession.create(join(repo.dir, 'gpu-only', '1', 'model.onnx'), { executionProviders: ['cuda'] })).release();
  } catch (err) {
    cudaError = (err as Error).message.split('\n')[0]!;
  }
  t.comment(cudaError ? `onnxruntime cannot use CUDA here: ${cudaError}` : 'onnxruntime runs CUDA here');

  const umbra = await Umbra.open({ repository: repo.dir, workers: 1 });
  t.teardown(() => umbra.close());
  const index = Object.fromEntries((await umbra.manager.index()).map((e) => [e.name, e]));
  t.equal(index['gpu-then-cpu']!.state, 'READY', 'cuda then cpu: serves either way');
  const answer = await umbra.predict('gpu-then-cpu', { x: { data: new Float32Array([1, 2, 3, 4]), shape: [1, 4] } });
  t.same(Array.from(answer.outputs[0]!.data as Float32Array), [3, 5, 7, 9], 'and answers right');
  const note = umbra.manager.get('gpu-then-cpu').providerNote;
  if (cudaError) {
    t.match(note, /^execution_providers \[cuda, cpu\]: onnxruntime could not set up cuda on this host \(.+\), so the model runs on the CPU provider listed after it$/, 'why it runs on the CPU');
    t.equal(index['gpu-only']!.state, 'UNAVAILABLE', 'cuda alone: not served');
    t.match(index['gpu-only']!.reason, /onnxruntime cannot use execution_providers \[cuda\] on this host \(.+\); list "cpu" after them to fall back to the CPU/, 'the reason names the fix');
  } else {
    t.equal(note, undefined, 'CUDA works here: nothing to say');
    t.equal(index['gpu-only']!.state, 'READY');
  }
});
