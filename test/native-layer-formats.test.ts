// Sparse or dense per layer, by measurement: the choice rule over recorded timings, what the
// executor records and follows (measured, a given plan, a fixed rule, too dense to time, a graph
// that cannot be timed), that every worker of a load runs the first worker's plan, and that the
// choice reaches the model metadata. Never asserts which kernel is faster: only that the choice
// follows from the timings it reports.
import t from 'tap';
import * as ort from 'onnxruntime-node';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel } from '../dist/onnx/builder.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { openNative } from '../dist/workers/backends/native.js';
import { chooseFormat, layerReportJson, MEASURE_DENSITY_MAX, timeLayer, type LayerTiming } from '../dist/graph/layer-formats.js';
import { threadCpuMicrosNow } from '../dist/thread-cpu.js';
import { WorkerPool } from '../dist/workers/pool.js';
import { startServer } from '../dist/index.js';
import type { SessionSpec } from '../dist/workers/messages.js';
import { tempRepo } from './helpers/repo.js';
import { prunedMlp } from './helpers/native-models.js';

const dir = mkdtempSync(join(tmpdir(), 'umbra-layer-formats-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const DIGITS = new URL('../models/repository/digits/1/model.onnx', import.meta.url).pathname;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

const timing = (batch: number, packedUs: number, csrUs: number): LayerTiming => ({ batch, rows: batch, packedUs, csrUs, calls: 9 });

t.test('a layer timed on the thread-cpu clock is not charged for time its thread spent off the CPU', { skip: threadCpuMicrosNow() === undefined ? 'this host does not report a thread\'s CPU time' : false }, async (t) => {
  // Stand-ins for the two kernels: one spends 2 ms on the CPU; the other spends 4 ms with its
  // thread off the CPU (blocked), as a kernel preempted by another process on the host would.
  // The first spins until its thread's own CPU clock has moved 2 ms, not the wall clock: on a
  // busy host (CI runs two test files at once on two cores) a 2 ms wall-clock spin measured
  // 1.46 ms of CPU, and the test then failed for the host's load, not for the code.
  const blocker = new Int32Array(new SharedArrayBuffer(4));
  const offCpu = () => { Atomics.wait(blocker, 0, 0, 4); };
  const onCpu = () => {
    const until = threadCpuMicrosNow()! + 2000;
    while (threadCpuMicrosNow()! < until) { /* spin */ }
  };
  const x = new Float32Array(1);
  const out = new Float32Array(1);
  const cpu = timeLayer(offCpu, onCpu, x, 1, out, 1, 'thread-cpu');
  t.ok(cpu.packedUs < 1000 && cpu.csrUs >= 1500, `thread-cpu: off-CPU ${cpu.packedUs.toFixed(0)} µs, on-CPU ${cpu.csrUs.toFixed(0)} µs`);
  t.equal(chooseFormat([cpu]).format, 'packed', 'the kernel that waited is not the one judged slower');
  const wall = timeLayer(offCpu, onCpu, x, 1, out, 1, 'wall');
  t.ok(wall.packedUs >= 3500, `wall: the wait counts (${wall.packedUs.toFixed(0)} µs), as a GPU layer's synchronisation must`);
});

t.test('chooseFormat runs a layer sparse only where it is no slower at any timed batch size', async (t) => {
  const allSparse = chooseFormat([timing(1, 40, 10), timing(64, 400, 100)]);
  t.equal(allSparse.format, 'csr');
  t.match(allSparse.reason, /^csr 4\.00x faster at batch 1, 4\.00x faster at batch 64 \(fastest of 9\/9 timed calls each\)$/);
  t.equal(chooseFormat([timing(1, 10, 40), timing(8, 10, 12)]).format, 'packed', 'dense wins everywhere');
  // CSR 2x faster at batch 1 but 1.5x slower at 64: dense stays, so batch 64 loses nothing.
  const mixed = chooseFormat([timing(1, 20, 10), timing(64, 100, 150)]);
  t.equal(mixed.format, 'packed');
  t.match(mixed.reason, /^packed 2\.00x slower at batch 1, 1\.50x faster at batch 64/);
  t.equal(chooseFormat([timing(1, 10, 20), timing(64, 150, 100)]).format, 'packed', 'the mirror case keeps dense too');
  t.equal(chooseFormat([timing(1, 100, 104), timing(64, 300, 100)]).format, 'csr', 'within the timing slack at one batch size, 3x faster at another');
  t.equal(chooseFormat([timing(1, 100, 107), timing(64, 300, 100)]).format, 'packed', 'past the slack');
  t.equal(chooseFormat([timing(1, 10, 10)]).format, 'packed', 'a tie keeps dense');
  t.throws(() => chooseFormat([]), /no timings/);
});

/** The shared pruned MLP, written to a file. */
async function prunedMlpFile(sparsity: number, seed: number): Promise<string> {
  const path = join(dir, `mlp-${sparsity}-${seed}.onnx`);
  writeModel(await prunedMlp(sparsity, seed), path);
  return path;
}

/** The native answers for `rows` rows equal onnxruntime's within 1e-4 (relative to max(1, |y|)). */
async function agreesWithOrt(t: Tap.Test, path: string, session: ReturnType<typeof openNative>, rows: number): Promise<void> {
  const r = rng(rows + 100);
  const x = Float32Array.from({ length: rows * 48 }, () => r() * 4);
  const reference = await ort.InferenceSession.create(path, { intraOpNumThreads: 1 });
  const want = (await reference.run({ x: new ort.Tensor('float32', x, [rows, 48]) })).y!.data as Float32Array;
  await reference.release();
  const [got] = await session.run([{ name: 'x', datatype: 'FP32', shape: [rows, 48], data: x.slice() }], []);
  const data = got!.data as Float32Array;
  t.ok(data.length === want.length && data.every((v, i) => Math.abs(v - want[i]!) <= 1e-4 * Math.max(1, Math.abs(want[i]!))), `${rows} rows equal onnxruntime's`);
}

declare namespace Tap { type Test = Parameters<Parameters<typeof t.test>[1]>[0]; }

t.test('each pruned layer is timed both ways on the warm-up batch sizes and keeps the format its timings favour', async (t) => {
  const path = await prunedMlpFile(0.9, 1);
  const session = openNative(path, 1, { tuneBatchSizes: [16, 1, 4, 4] });
  const layers = session.layers().map((l) => {
    if (!('basis' in l)) throw new Error('expected a CPU layer report');
    return l;
  });
  t.same(layers.map((l) => l.basis), ['measured', 'measured', 'measured']);
  t.same(layers.map((l) => l.timings?.map((x) => [x.batch, x.rows])), Array(3).fill([[1, 1], [4, 4], [16, 16]]), 'each batch size once, in order, one row per sample');
  t.ok(layers.every((l) => l.timings?.every((x) => x.packedUs > 0 && x.csrUs > 0 && Number.isFinite(x.packedUs + x.csrUs) && x.calls >= 3)), 'both formats timed, at least 3 calls each');
  t.same(layers.map((l) => l.format), layers.map((l) => chooseFormat(l.timings!).format), 'each keeps the format its own timings favour');
  t.same(layers.map((l) => l.reason), layers.map((l) => chooseFormat(l.timings!).reason), 'and says why, with the figures');
  t.same(session.tuned, { layerFormats: layers.map((l) => l.format) }, 'the plan other workers open with');
  for (const rows of [1, 5, 16]) await agreesWithOrt(t, path, session, rows);
});

t.test('a given plan, a fixed density rule, and layers too dense to time', async (t) => {
  const path = await prunedMlpFile(0.9, 2);
  const given = openNative(path, 1, { layerFormats: ['csr', 'packed', 'csr'] });
  t.same(given.layers().map((l) => [l.format, 'basis' in l ? l.basis : '']), [['csr', 'given'], ['packed', 'given'], ['csr', 'given']]);
  for (const rows of [1, 9]) await agreesWithOrt(t, path, given, rows);
  const misfit = openNative(path, 1, { layerFormats: ['csr'], tuneBatchSizes: [1] });
  t.ok(misfit.layers().every((l) => 'basis' in l && l.basis === 'measured'), 'a plan of another shape is ignored');
  const fixed = openNative(path, 1, { sparseBelow: 2 });
  t.same(fixed.layers().map((l) => [l.format, 'basis' in l ? l.basis : '']), [['csr', 'threshold'], ['csr', 'threshold'], ['csr', 'threshold']]);
  for (const rows of [1, 9]) await agreesWithOrt(t, path, fixed, rows);
  const dense = openNative(await prunedMlpFile(0, 3), 1).layers();
  t.same(dense.map((l) => ['basis' in l ? l.basis : '', l.format, 'timings' in l]), Array(3).fill(['too-dense', 'packed', false]), 'unpruned layers are dense and untimed');
  t.ok(dense.every((l) => l.density > MEASURE_DENSITY_MAX));
});

t.test('consecutive sparse layers pass transposed activations along, only where nothing else reads between them', async (t) => {
  const path = await prunedMlpFile(0.9, 6);
  const chained = openNative(path, 1, { sparseBelow: 2 });
  t.same(chainsOf(chained), [['fc0', 'fc1', 'fc2']], 'one chain through the whole MLP');
  for (const rows of [1, 8, 9, 64, 65]) await agreesWithOrt(t, path, chained, rows);
  t.same(chainsOf(openNative(path, 1, { layerFormats: ['csr', 'csr', 'packed'] })), [['fc0', 'fc1']], 'a dense layer ends the chain');
  t.same(chainsOf(openNative(path, 1, { layerFormats: ['csr', 'packed', 'csr'] })), [], 'no chain of one');
  // The same network with its middle activation also a graph output: the chain must break there.
  const exposed = join(dir, 'exposed.onnx');
  writeModel(await prunedMlp(0.9, 6, true), exposed);
  const split = openNative(exposed, 1, { sparseBelow: 2 });
  t.same(chainsOf(split), [['fc1', 'fc2']], 'a value another reader needs is never left transposed');
  const [y, a0] = await split.run([{ name: 'x', datatype: 'FP32', shape: [3, 48], data: new Float32Array(3 * 48).fill(0.5) }], ['y', 'a0']);
  t.same([y!.shape, a0!.shape], [[3, 10], [3, 96]]);
  await agreesWithOrt(t, exposed, split, 7);
});

function chainsOf(session: ReturnType<typeof openNative>): string[][] {
  const executor = (session as unknown as { executor: { sparseChains(): string[][] } }).executor;
  return executor.sparseChains();
}

t.test('a graph that cannot run the warm-up batches still loads; its untimed layers say why', async (t) => {
  // Reshape to a fixed [1, 48] works for one row only: timing stops at the first larger batch.
  const r = rng(4);
  const path = join(dir, 'fixed-reshape.onnx');
  writeModel(buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 48] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: [1, 8] }],
    initializers: [
      { name: 'shape', datatype: 'INT64', dims: [2], values: [1n, 48n] },
      { name: 'w', datatype: 'FP32', dims: [8, 48], values: Array.from({ length: 8 * 48 }, (_, i) => (i % 10 === 0 ? r() : 0)) },
    ],
    nodes: [
      { op: 'Reshape', inputs: ['x', 'shape'], outputs: ['flat'], name: 'fixed' },
      { op: 'Gemm', inputs: ['flat', 'w'], outputs: ['y'], attributes: { transB: 1 }, name: 'fc' },
    ],
  }), path);
  const session = openNative(path, 1, { tuneBatchSizes: [1, 8] });
  const [layer] = session.layers();
  t.ok(layer && 'basis' in layer && layer.basis === 'threshold', 'the layer after the failure is not timed');
  t.match(layer && 'reason' in layer ? layer.reason : '', /not timed \(a warm-up batch failed: .*\); the fixed cut of 45% decided/);
  const [y] = await session.run([{ name: 'x', datatype: 'FP32', shape: [1, 48], data: new Float32Array(48).fill(1) }], []);
  t.same(y!.shape, [1, 8], 'and it serves');
});

t.test('every worker of a load opens with the plan the first one measured', async (t) => {
  const pool = new WorkerPool({ workers: 2, filename: new URL('./fixtures/tuning-worker.mjs', import.meta.url).href });
  t.teardown(() => pool.close());
  const barrier = new SharedArrayBuffer(8);
  new Int32Array(barrier)[1] = 2;
  const spec = { key: 'tuned#1', modelPath: '-', backend: 'native', executionProviders: [], intraOpThreads: 1, batchSizes: [1, 8], barrier } as SessionSpec;
  const warmed = await pool.warm(spec);
  t.match(warmed.tuned, { layerFormats: [/^measured-by-\d+$/] }, 'the first open measures');
  const answers = await Promise.all([0, 1].map(() => pool.run(spec, [], [])));
  const plans = answers.map((a) => JSON.parse(new TextDecoder().decode(a.outputs[0]!.data as Uint8Array)) as { threadId: number; tuned: unknown });
  t.not(plans[0]!.threadId, plans[1]!.threadId, 'one answer from each worker');
  t.same(plans.map((p) => p.tuned), [warmed.tuned, warmed.tuned], 'both run the measured plan');
});

t.test('the choice and its evidence in the model metadata and the session spec', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  mkdirSync(join(repo.dir, 'pruned', '1'), { recursive: true });
  copyFileSync(await prunedMlpFile(0.9, 5), join(repo.dir, 'pruned', '1', 'model.onnx'));
  repo.writeConfig('pruned', { backend: 'auto', max_batch_size: 8, dynamic_batching: { preferred_batch_size: [4] }, parameters: { execution: 'worker' } });
  mkdirSync(join(repo.dir, 'digits_ort', '1'), { recursive: true });
  copyFileSync(DIGITS, join(repo.dir, 'digits_ort', '1', 'model.onnx'));
  repo.writeConfig('digits_ort', { backend: 'onnxruntime', max_batch_size: 8 });
  const server = await startServer({ repository: repo.dir, port: 0, workers: 2 });
  t.teardown(() => server.stop());

  const mv = server.umbra.manager.get('pruned');
  t.same(mv.session.batchSizes, [1, 4, 8], 'timed on one request, the preferred size and the largest');
  const metadata = await (await fetch(`${server.url}/v2/models/pruned`)).json() as { platform: string; execution: { backend: string; placement: string; layers: Record<string, unknown>[] } };
  t.equal(metadata.platform, 'umbra_native', 'the protocol fields are unchanged');
  t.equal(metadata.execution.backend, 'native');
  t.equal(metadata.execution.placement, 'worker');
  t.same(metadata.execution.layers.map((l) => l.name), ['fc0', 'fc1', 'fc2']);
  t.same(metadata.execution.layers, layerReportJson(mv.layers!), 'the layers as measured in the worker');
  t.same(mv.session.tuned, { layerFormats: metadata.execution.layers.map((l) => l.format) }, 'later opens follow the same plan');
  t.same(metadata.execution.layers.map((l) => l.basis), ['measured', 'measured', 'measured']);
  t.same(metadata.execution.layers.map((l) => (l.timings as { batch: number }[]).map((x) => x.batch)), [[1, 4, 8], [1, 4, 8], [1, 4, 8]], 'timings per batch size');
  t.match(metadata.execution.layers.map((l) => l.timings), Array(3).fill([{ packed_us: Number, csr_us: Number, calls: Number, rows: Number }]), 'each with both formats\' times');
  const ortMetadata = await (await fetch(`${server.url}/v2/models/digits_ort`)).json() as { execution: Record<string, unknown> };
  t.same(ortMetadata.execution, { backend: 'onnxruntime', placement: server.umbra.manager.get('digits_ort').placement }, 'no layer report off the native backend');
});
