// The native backend on a GPU (`backend: native` with `device: cuda`): the model config field,
// the refusal on a host without a usable device (a clear LOAD_FAILED naming cudaStatus()'s reason
// and the fix, never a crash), `device: auto` falling back to the CPU, the --device flags of
// bench-model and prune, and, where a device is usable, the GPU executor against the CPU executor
// on models that mix device chains with host steps, CUDA graph replay and device memory released
// at unload. GPU-only parts skip with the reason cudaStatus() gives.
import t from 'tap';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel, type ModelSpec } from '../dist/onnx/builder.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { readModelConfig, resolveConfigFile, toTritonConfig } from '../dist/repository/config.js';
import { openNative } from '../dist/workers/backends/native.js';
import { compileGraph } from '../dist/graph/index.js';
import { CudaGraphExecutor, partitionForDevice } from '../dist/graph/cuda-executor.js';
import { CudaPlan } from '../dist/native/cuda-plan.js';
import { cudaMemoryInUse, cudaStatus, threadStream, uploadDense } from '../dist/native/cuda.js';
import { denseWeights } from '../dist/native/kernels.js';
import { pruneOptionsFromFlags } from '../dist/cli/commands/prune.js';
import { benchDevice } from '../dist/cli/commands/bench-model.js';
import { startServer } from '../dist/index.js';
import { UmbraError } from '../dist/errors.js';
import { seededRandom } from '../dist/random.js';
import { tempRepo } from './helpers/repo.js';

declare namespace Tap { type Test = Parameters<Parameters<typeof t.test>[1]>[0]; }

const ROOT = new URL('..', import.meta.url).pathname;
const UMBRA = join(ROOT, 'bin', 'umbra.js');
const DIGITS = (v: number) => join(ROOT, 'models', 'repository', 'digits', String(v), 'model.onnx');
const status = cudaStatus();
const gpuSkip = status.available ? false : status.reason;

const dir = mkdtempSync(join(tmpdir(), 'umbra-cuda-backend-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let saved = 0;
function save(spec: ModelSpec): string {
  const path = join(dir, `m${saved++}.onnx`);
  writeModel(buildModel(spec), path);
  return path;
}

function values(n: number, seed: number, scale = 0.5, zeroFraction = 0): number[] {
  const next = seededRandom(seed);
  return Array.from({ length: n }, () => (next() < zeroFraction ? 0 : ((next() * 2 - 1) || 0.5) * scale));
}

/** Runs a CLI command; resolves with its exit code and output. */
function umbra(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [UMBRA, ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

t.test('model config: device is cpu by default; cuda and auto go with backend native or auto', async (t) => {
  const sig = { inputs: [{ name: 'x', datatype: 'FP32' as const, dims: [-1, 4], shapeKnown: true }], outputs: [{ name: 'y', datatype: 'FP32' as const, dims: [-1, 4], shapeKnown: true }], opset: 13, irVersion: 8, producer: 'test' };
  const file = (raw: Record<string, unknown>) => ({ source: 'config.json' as const, path: '/m/config.json', versionPolicy: { kind: 'latest' as const, numVersions: 1 }, modelFilename: 'model.onnx', raw });
  t.equal(resolveConfigFile(file({}), sig, 'm').device, 'cpu');
  t.equal(resolveConfigFile(file({ backend: 'native' }), sig, 'm').device, 'cpu');
  for (const device of ['cpu', 'cuda', 'auto']) {
    const config = resolveConfigFile(file({ backend: 'native', device }), sig, 'm');
    t.equal(config.device, device);
    t.equal(toTritonConfig(config).device, device, 'the config endpoint shows it');
  }
  t.equal(resolveConfigFile(file({ backend: 'auto', device: 'cuda' }), sig, 'm').device, 'cuda');
  t.throws(() => resolveConfigFile(file({ backend: 'native', device: 'gpu' }), sig, 'm'),
    { code: 'INVALID_ARGUMENT', message: /config\.json: expected one of cpu, cuda, auto for device but received the string "gpu"/ });
  t.throws(() => resolveConfigFile(file({ backend: 'native', device: 1 }), sig, 'm'), /for device but received number 1/);
  t.throws(() => resolveConfigFile(file({ device: 'cuda' }), sig, 'm'),
    { code: 'INVALID_ARGUMENT', message: /device: "cuda" applies to backend: native \(or auto\); onnxruntime runs where execution_providers say/ });
  t.equal(resolveConfigFile(file({ device: 'cpu' }), sig, 'm').device, 'cpu', 'device: cpu is harmless with onnxruntime');

  // pbtxt spelling.
  const folder = join(dir, 'pbtxt_model');
  mkdirSync(folder, { recursive: true });
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(folder, 'config.pbtxt'), 'backend: "native"\ndevice: "auto"\n');
  t.equal(resolveConfigFile(readModelConfig(folder), sig, 'pbtxt_model').device, 'auto');
});

t.test('device: cuda without a usable device is a clear load failure; auto falls back to the CPU', { skip: status.available ? 'a CUDA device is usable here' : false }, async (t) => {
  let thrown: unknown;
  try { openNative(DIGITS(1), 1, { device: 'cuda' }); } catch (err) { thrown = err; }
  t.ok(thrown instanceof UmbraError, 'an UmbraError, not a crash');
  t.equal((thrown as UmbraError).code, 'LOAD_FAILED');
  t.ok((thrown as Error).message.includes(status.reason), 'names cudaStatus().reason');
  t.match((thrown as Error).message, /^device: cuda needs a usable CUDA device but .*; set device: cpu \(or auto\) in the model config, or load the model on a host with a CUDA GPU$/);

  const auto = openNative(DIGITS(1), 1, { device: 'auto' });
  t.equal(auto.device, 'cpu', 'auto runs on the CPU here');
  const cpu = openNative(DIGITS(1), 1);
  const input = [{ name: 'pixels', datatype: 'FP32' as const, shape: [2, 64], data: Float32Array.from(values(128, 3, 8)) }];
  t.same((await auto.run(input, []))[0], (await cpu.run(input, []))[0], 'same answers as device: cpu');

  // The executor and the plan refuse too, with the reason, before touching the device.
  t.throws(() => new CudaGraphExecutor(compileGraph(DIGITS(1))), { message: new RegExp(`expected a usable CUDA device for a CUDA stream but ${escape(status.reason)}`) });
  t.throws(() => threadStream(0), UmbraError);
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

t.test('through a server: device cuda is UNAVAILABLE with the reason, auto and cpu serve', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  for (const [name, device] of [['on_cuda', 'cuda'], ['on_auto', 'auto'], ['on_cpu', 'cpu']] as const) {
    mkdirSync(join(repo.dir, name, '1'), { recursive: true });
    copyFileSync(DIGITS(1), join(repo.dir, name, '1', 'model.onnx'));
    repo.writeConfig(name, { backend: 'native', device, max_batch_size: 8 });
  }
  const server = await startServer({ repository: repo.dir, port: 0, workers: 1 });
  t.teardown(() => server.stop());
  const index = await server.umbra.manager.index();
  const state = (name: string) => index.find((e) => e.name === name);
  if (status.available) {
    t.equal(state('on_cuda')?.state, 'READY');
  } else {
    t.equal(state('on_cuda')?.state, 'UNAVAILABLE');
    t.match(state('on_cuda')?.reason, /device: cuda needs a usable CUDA device but no CUDA device: .*set device: cpu \(or auto\)/);
  }
  const served = status.available ? ['on_cuda', 'on_auto', 'on_cpu'] : ['on_auto', 'on_cpu'];
  const answers: unknown[] = [];
  for (const model of served) {
    t.equal(state(model)?.state, 'READY', `${model} is ready`);
    const r = await fetch(`${server.url}/v2/models/${model}/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'pixels', shape: [3, 64], datatype: 'FP32', data: values(192, 9, 8).map(Math.abs) }] }),
    });
    t.equal(r.status, 200, `${model} answers`);
    const body = await r.json() as { outputs: { name: string; data: number[] }[] };
    answers.push(body.outputs.find((o) => o.name === 'label')?.data);
  }
  t.ok(answers.every((a) => JSON.stringify(a) === JSON.stringify(answers[answers.length - 1])), 'every device gives the same labels');
});

t.test('bench-model --device: validated before loading, refused with the reason on this host', async (t) => {
  t.equal(benchDevice('cpu', 'native'), 'cpu');
  t.equal(benchDevice('auto', 'native'), 'auto');
  t.throws(() => benchDevice('gpu', 'native'), /--device: expected cpu, cuda, auto but received "gpu"/);
  t.throws(() => benchDevice('cuda', 'onnxruntime'), /--device: cuda applies to --backend native/);
  const r = await umbra(['bench-model', DIGITS(1), '--device', 'cuda', '--batch', '1', '--seconds', '0.05', '--repeats', '1', '--json']);
  if (status.available) {
    t.equal(r.code, 0);
    t.equal(JSON.parse(r.stdout).device, 'cuda');
  } else {
    t.equal(r.code, 2, 'a usage error');
    t.match(r.stderr, /--device cuda: no CUDA device: .*; use --device cpu \(or auto\), or run on a host with a CUDA GPU/);
  }
  const auto = await umbra(['bench-model', DIGITS(1), '--device', 'auto', '--batch', '2', '--seconds', '0.05', '--repeats', '1', '--json']);
  t.equal(auto.code, 0, auto.stderr);
  t.equal(JSON.parse(auto.stdout).device, status.available ? 'cuda' : 'cpu');
});

t.test('prune --device: cuda runs global/layer selection; other methods and bounds are refused', async (t) => {
  const out = join(dir, 'pruned.onnx');
  t.throws(() => pruneOptionsFromFlags(DIGITS(1), out, { sparsity: '0.5', layer: [], exclude: [], device: 'tpu' }), /--device: expected cpu or cuda but received "tpu"/);
  t.throws(() => pruneOptionsFromFlags(DIGITS(1), out, { method: 'nm', layer: [], exclude: [], device: 'cuda' }), /--device cuda: runs --method global or layer; --method nm runs on the CPU/);
  t.throws(() => pruneOptionsFromFlags(DIGITS(1), out, { sparsity: '0.5', minLayerSparsity: '0.1', layer: [], exclude: [], device: 'cuda' }), /--device cuda: --min-layer-sparsity\/--max-layer-sparsity run on the CPU only/);
  t.equal(pruneOptionsFromFlags(DIGITS(1), out, { sparsity: '0.5', layer: [], exclude: [] }).device, 'cpu');
  const r = await umbra(['prune', DIGITS(1), out, '--sparsity', '0.5', '--device', 'cuda', '--json']);
  if (!status.available) {
    t.equal(r.code, 2, 'a usage error');
    t.match(r.stderr, /--device cuda: no CUDA device: .*; use --device cpu, or run on a host with a CUDA GPU/);
    return;
  }
  t.equal(r.code, 0, r.stderr);
  const cpu = await umbra(['prune', DIGITS(1), join(dir, 'pruned-cpu.onnx'), '--sparsity', '0.5', '--json']);
  const strip = (s: string) => JSON.parse(s).layers.map((l: { name: string; threshold?: number; sparsityAfter: number }) => [l.name, l.threshold, l.sparsityAfter]);
  t.same(strip(r.stdout), strip(cpu.stdout), 'the GPU cuts equal the CPU cuts');
});

// A model whose layers form device chains broken by host steps: Gemm+bias+relu -> MatMul+Add
// (bias) + gelu (erf form) -> pruned MatMul (CSR) + sigmoid -> Add of a run-time input (host)
// -> Gemm + tanh, also read by a Softmax over axis 0 (host) -> Gemm -> Softmax over axis 1, the
// last (on the device); and a Gemm with transA on an input given as [k, batch].
function mixedModel(seed: number, opset: number): ModelSpec {
  const k = 19, h = 70, h2 = 33, n = 9;
  return {
    opset,
    inputs: [
      { name: 'x', datatype: 'FP32', dims: ['batch', k] }, { name: 'shift', datatype: 'FP32', dims: ['batch', h2] },
      { name: 'xt', datatype: 'FP32', dims: [5, 'batch'] },
    ],
    outputs: [
      { name: 'probs', datatype: 'FP32', dims: ['batch', n] }, { name: 'down', datatype: 'FP32', dims: ['batch', h2] },
      { name: 'side', datatype: 'FP32', dims: ['batch', 4] },
    ],
    initializers: [
      { name: 'w1', datatype: 'FP32', dims: [h, k], values: values(h * k, seed) },
      { name: 'b1', datatype: 'FP32', dims: [h], values: values(h, seed + 1) },
      { name: 'w2', datatype: 'FP32', dims: [h, h], values: values(h * h, seed + 2, 0.3) },
      { name: 'b2', datatype: 'FP32', dims: [h], values: values(h, seed + 3) },
      { name: 'half', datatype: 'FP32', dims: [], values: [0.5] },
      { name: 'one', datatype: 'FP32', dims: [], values: [1] },
      { name: 'sqrt2', datatype: 'FP32', dims: [], values: [Math.SQRT2] },
      { name: 'w3', datatype: 'FP32', dims: [h, h2], values: values(h * h2, seed + 4, 0.5, 0.9) },
      { name: 'w4', datatype: 'FP32', dims: [h2, h2], values: values(h2 * h2, seed + 5) },
      { name: 'w5', datatype: 'FP32', dims: [h2, n], values: values(h2 * n, seed + 6) },
      { name: 'w6', datatype: 'FP32', dims: [5, 4], values: values(20, seed + 7) },
    ],
    nodes: [
      { op: 'Gemm', inputs: ['x', 'w1', 'b1'], outputs: ['a1'], attributes: { transB: 1 } },
      { op: 'Relu', inputs: ['a1'], outputs: ['r1'] },
      { op: 'MatMul', inputs: ['r1', 'w2'], outputs: ['m2'] },
      { op: 'Add', inputs: ['m2', 'b2'], outputs: ['a2'] },
      { op: 'Div', inputs: ['a2', 'sqrt2'], outputs: ['g1'] },
      { op: 'Erf', inputs: ['g1'], outputs: ['g2'] },
      { op: 'Add', inputs: ['g2', 'one'], outputs: ['g3'] },
      { op: 'Mul', inputs: ['a2', 'g3'], outputs: ['g4'] },
      { op: 'Mul', inputs: ['g4', 'half'], outputs: ['gelu'] },
      { op: 'MatMul', inputs: ['gelu', 'w3'], outputs: ['m3'] },
      { op: 'Sigmoid', inputs: ['m3'], outputs: ['s3'] },
      { op: 'Add', inputs: ['s3', 'shift'], outputs: ['shifted'] },
      { op: 'Gemm', inputs: ['shifted', 'w4'], outputs: ['m4'] },
      { op: 'Tanh', inputs: ['m4'], outputs: ['t4'] },
      { op: 'Softmax', inputs: ['t4'], outputs: ['down'], attributes: { axis: 0 } },
      { op: 'Gemm', inputs: ['t4', 'w5'], outputs: ['logits'] },
      { op: 'Softmax', inputs: ['logits'], outputs: ['probs'], attributes: { axis: 1 } },
      { op: 'Gemm', inputs: ['xt', 'w6'], outputs: ['side'], attributes: { transA: 1 } },
    ],
  };
}

function assertClose(t: Tap.Test, got: ArrayLike<number>, want: ArrayLike<number>, tolerance: number, what: string): void {
  let worst = got.length === want.length ? 0 : Infinity;
  for (let i = 0; i < want.length; i++) {
    const g = Number(got[i]);
    worst = Number.isFinite(g) ? Math.max(worst, Math.abs(g - Number(want[i])) / Math.max(1, Math.abs(Number(want[i])))) : Infinity;
  }
  t.ok(worst <= tolerance, `${what}: within ${tolerance} (worst ${worst.toExponential(2)})`);
}

t.test('the graph splits into device chains and host runs (no device needed)', async (t) => {
  for (const opset of [11, 13]) {
    const parts = partitionForDevice(compileGraph(save(mixedModel(opset, opset))));
    const shown = parts.map((p) => (p.kind === 'chain'
      ? `chain ${[p.first, ...p.rest].map((s) => (s.kind === 'dense' ? `dense(${s.activation})` : s.kind)).join(' ')}`
      : `host ${p.steps.map((s) => (s.kind === 'reference' || s.kind === 'softmax' || s.kind === 'matmul' ? s.node.op : s.kind)).join(' ')} -> ${p.outputs.join(',')}`));
    t.same(shown, [
      'chain dense(relu) dense(gelu) dense(sigmoid)',
      'host Add -> shifted',
      'chain dense(tanh)',
      'host Softmax -> down',
      'chain dense(none) softmax',
      'chain dense(none)',
    ], `opset ${opset}`);
  }
  // The digits model: its input scale (Mul by 1/16) is folded into the first Gemm, so the graph
  // opens with the device chain Gemm+relu -> Gemm; the probabilities are an output and ArgMax
  // reads them too, so the softmax stays on the host.
  const digits = partitionForDevice(compileGraph(DIGITS(1))).map((p) => p.kind);
  t.equal(digits[0], 'chain');
  t.ok(digits.includes('host'));
  // A MatMul keeps its input's rank: a declared rank-2 input lets a softmax over axis 1 join.
  const knownRank = partitionForDevice(compileGraph(save({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 4] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 3] }],
    initializers: [{ name: 'w', datatype: 'FP32', dims: [4, 3], values: values(12, 1) }],
    nodes: [{ op: 'MatMul', inputs: ['x', 'w'], outputs: ['h'] }, { op: 'Softmax', inputs: ['h'], outputs: ['y'], attributes: { axis: 1 } }],
  })));
  t.same(knownRank.map((p) => p.kind), ['chain'], 'a declared rank-2 input lets the axis-1 softmax join');
});

// The executor's own logic (splitting, shapes, transposed inputs, host runs between chains, the
// constants it keeps, release) checked anywhere: the device layer is swapped for a stand-in that
// runs each chain with the CPU kernels, so only the device arithmetic itself is left to the GPU
// tests below.
t.test('the GPU executor\'s orchestration, with the device emulated on the CPU kernels', async (t) => {
  const kernels = await import('../dist/native/kernels.js');
  let live = 0;
  type Fake = { kind: string; bytes: number; dense?: ReturnType<typeof denseWeights>; csr?: ReturnType<typeof kernels.csrFromDense>; data?: Float32Array };
  const upload = (u: Fake) => { live += u.bytes; return u; };
  let plansMade = 0;
  class EmulatedPlan {
    released = false;
    runs = 0;
    constructor(private readonly ops: { kind: string; weights?: Fake; bias?: Fake; activation?: string }[], readonly inputWidth: number) {}
    static create(_stream: unknown, ops: EmulatedPlan['ops'], inputWidth: number) { plansMade++; return new EmulatedPlan(ops, inputWidth); }
    async runAsync(x: Float32Array, m: number): Promise<Float32Array> {
      return this.run(x, m);
    }
    run(x: Float32Array, m: number, out?: Float32Array): Float32Array {
      const y = this.compute(x, m);
      if (out) { out.set(y); return out; }
      return y;
    }
    private compute(x: Float32Array, m: number): Float32Array {
      this.runs++;
      let y = x.slice();
      let width = this.inputWidth;
      for (const op of this.ops) {
        const epilogue = { activation: (op.activation ?? 'none') as 'none', ...(op.bias ? { bias: op.bias.data! } : {}) };
        if (op.kind === 'dense') { y = kernels.gemm({ x: y, m, weights: op.weights!.dense!, ...epilogue }); width = op.weights!.dense!.n; }
        else if (op.kind === 'sparse') { y = kernels.spmm({ x: y, m, weights: op.weights!.csr!, ...epilogue }); width = op.weights!.csr!.rows; }
        else if (op.kind === 'softmax') kernels.softmax(y, m, width);
        else kernels.biasActivation(y, m, width, { activation: epilogue.activation });
      }
      return y;
    }
    stats() { return { graphs: 0, replays: 0, runs: this.runs, deviceBytes: this.released ? 0 : 16, inputWidth: this.inputWidth, outputWidth: 0 }; }
    release() { const bytes = this.released ? 0 : 16; this.released = true; return bytes; }
  }
  const { CudaGraphExecutor: Emulated } = await t.mockImport<typeof import('../dist/graph/cuda-executor.js')>('../dist/graph/cuda-executor.js', {
    '../dist/native/cuda-plan.js': { CudaPlan: EmulatedPlan, CUDA_GRAPH_MAX_ROWS: 64 },
    '../dist/native/cuda.js': {
      threadStream: () => ({}),
      uploadDense: (dense: NonNullable<Fake['dense']>) => upload({ kind: 'cuda-dense', bytes: dense.data.length * 4, dense }),
      uploadCsr: (csr: NonNullable<Fake['csr']>) => upload({ kind: 'cuda-csr', bytes: csr.values.length * 8, csr }),
      uploadVector: (data: Float32Array) => upload({ kind: 'cuda-vector', bytes: data.length * 4, data }),
      releaseCuda: (u: Fake) => { live -= u.bytes; const b = u.bytes; u.bytes = 0; return b; },
    },
  });
  for (const opset of [11, 13]) {
    const path = save(mixedModel(opset + 1, opset));
    const cpu = openNative(path, 1);
    const executor = new Emulated(compileGraph(path), { sparseBelow: 0.2 });
    t.same(executor.layers().map((l) => l.format), ['dense', 'dense', 'csr', 'dense', 'dense', 'dense']);
    t.ok(live > 0 && executor.deviceBytes() === live + 16 * 4, 'uploads and activations counted');
    for (const rows of [1, 4, 0, 9]) {
      const feeds = new Map([
        ['x', { dims: [rows, 19], data: Float32Array.from(values(rows * 19, rows + 1, 2)) }],
        ['shift', { dims: [rows, 33], data: Float32Array.from(values(rows * 33, rows + 2)) }],
        ['xt', { dims: [5, rows], data: Float32Array.from(values(rows * 5, rows + 3)) }],
      ]);
      const names = ['probs', 'down', 'side'];
      const got = await executor.run(feeds, names);
      const want = await cpu.run([...feeds].map(([name, v]) => ({ name, datatype: 'FP32' as const, shape: v.dims, data: v.data.slice() })), names);
      for (const [i, name] of names.entries()) {
        t.same(got.get(name)!.dims, want[i]!.shape, `opset ${opset} ${name} shape at ${rows} rows`);
        assertClose(t, got.get(name)!.data as Float32Array, want[i]!.data as Float32Array, 1e-5, `opset ${opset} ${name} at ${rows} rows`);
      }
    }
    await t.rejects(executor.run(new Map([['x', { dims: [2, 18], data: new Float32Array(36) }]]), ['probs']), { code: 'INVALID_INPUT', message: /layer ".*" expects rows of 19 values but received shape \[2, 18\]/ });
    t.ok(executor.release() > 0);
    t.equal(live, 0, 'release frees every upload');
    t.equal(executor.deviceBytes(), 0);
    await t.rejects(executor.run(new Map(), ['probs']), /released/);
  }
  // By default a pruned layer is timed both ways on the device (here the emulation) and keeps the
  // faster; the loser's upload is freed at once, and the other workers of the load follow the plan.
  const path = save(mixedModel(3, 13));
  const cpu = openNative(path, 1);
  plansMade = 0;
  const measured = new Emulated(compileGraph(path), { tuneBatchSizes: [1, 4] });
  const chains = measured.outline().filter((o) => o.kind === 'chain').length;
  const layers = measured.layers();
  t.same(layers.map((l) => l.basis), ['too-dense', 'too-dense', 'measured', 'too-dense', 'too-dense', 'too-dense'], 'only the pruned layer is timed');
  const timedLayer = layers[2]!;
  t.same(timedLayer.timings?.map((x) => [x.batch, x.rows]), [[1, 1], [4, 4]], 'timed on each batch size asked for');
  t.ok(timedLayer.timings!.every((x) => x.packedUs > 0 && x.csrUs > 0 && x.calls > 0), 'both forms timed');
  t.match(timedLayer.reason, new RegExp(`^${timedLayer.format === 'dense' ? 'packed' : 'csr'} .* at batch 1, .* at batch 4`), 'the reason gives the figures');
  t.equal(plansMade, chains + 2, 'one plan per form timed, beside the chains');
  t.equal(measured.deviceBytes(), live + 16 * chains, 'only the chosen form stays uploaded');
  const formats = measured.layerFormats();
  t.same(formats, layers.map((l) => (l.format === 'csr' ? 'csr' : 'packed')));
  plansMade = 0;
  const follower = new Emulated(compileGraph(path), { layerFormats: formats });
  t.same(follower.layers().map((l) => [l.format, l.basis]), layers.map((l) => [l.format, 'given']), 'a later open follows the plan without timing');
  t.equal(plansMade, chains);
  for (const executor of [measured, follower]) {
    const feeds = new Map([
      ['x', { dims: [3, 19], data: Float32Array.from(values(3 * 19, 4, 2)) }],
      ['shift', { dims: [3, 33], data: Float32Array.from(values(3 * 33, 5)) }],
      ['xt', { dims: [5, 3], data: Float32Array.from(values(3 * 5, 6)) }],
    ]);
    const got = await executor.run(feeds, ['probs']);
    const want = await cpu.run([...feeds].map(([name, v]) => ({ name, datatype: 'FP32' as const, shape: v.dims, data: v.data.slice() })), ['probs']);
    assertClose(t, got.get('probs')!.data as Float32Array, want[0]!.data as Float32Array, 1e-5, 'measured and followed plans answer as the CPU does');
    executor.release();
  }
  t.equal(live, 0, 'release frees every upload');
});

t.test('the GPU executor against the CPU executor', { skip: gpuSkip }, async (t) => {
  const baseline = cudaMemoryInUse();
  for (const opset of [11, 13]) {
    const path = save(mixedModel(opset, opset));
    const cpu = openNative(path, 1);
    const gpu = openNative(path, 1, { device: 'cuda', sparseBelow: 0.2 });
    t.equal(gpu.device, 'cuda');
    const layers = gpu.layers();
    t.same(layers.map((l) => l.format), ['dense', 'dense', 'csr', 'dense', 'dense', 'dense'], 'the 90%-sparse layer goes to the device as CSR');
    // By default the pruned layer is timed both ways on the device and keeps the faster.
    const measured = openNative(path, 1, { device: 'cuda' });
    const timed = measured.layers()[2]!;
    t.equal(timed.basis, 'measured');
    t.same(timed.timings?.map((x) => x.batch), [1, 64, 256]);
    await measured.release();
    for (const rows of [1, 1, 1, 3, 3, 8, 70, 3]) {
      const inputs = [
        { name: 'x', datatype: 'FP32' as const, shape: [rows, 19], data: Float32Array.from(values(rows * 19, rows * 7 + opset, 2)) },
        { name: 'shift', datatype: 'FP32' as const, shape: [rows, 33], data: Float32Array.from(values(rows * 33, rows * 11 + opset)) },
        { name: 'xt', datatype: 'FP32' as const, shape: [5, rows], data: Float32Array.from(values(rows * 5, rows * 13 + opset)) },
      ];
      const copy = () => inputs.map((i) => ({ ...i, data: i.data.slice() }));
      const want = await cpu.run(copy(), []);
      const got = await gpu.run(copy(), []);
      for (const [i, out] of got.entries()) {
        t.same(out.shape, want[i]!.shape, `${out.name} shape at ${rows} rows`);
        assertClose(t, out.data as Float32Array, want[i]!.data as Float32Array, 1e-4, `opset ${opset} ${out.name} at ${rows} rows`);
      }
    }
    const executor = (gpu as unknown as { executor: CudaGraphExecutor }).executor;
    t.same(executor.outline().map((o) => o.kind), ['chain', 'host', 'chain', 'host', 'chain', 'chain'], 'device chains around the host steps');
    const stats = executor.planStats();
    t.ok(stats.some((s) => s.replays > 0 && s.graphs > 0), 'repeated small batches replayed a captured CUDA graph');
    t.ok(executor.deviceBytes() > 0 && cudaMemoryInUse() > baseline, 'weights and activations are on the device and accounted');
    await gpu.release();
    t.equal(executor.deviceBytes(), 0, 'unload frees the model\'s device memory');
    await t.rejects(gpu.run([], []), /released/);
  }
  // The worker's stream keeps its own scratch; every model's memory is back.
  const streamScratch = cudaMemoryInUse() - baseline;
  const path = save(mixedModel(5, 13));
  const again = openNative(path, 1, { device: 'cuda' });
  const held = cudaMemoryInUse();
  await again.release();
  t.ok(cudaMemoryInUse() < held && cudaMemoryInUse() - baseline <= streamScratch + 1, 'a second load and unload leaves nothing behind');

  for (const v of [1, 2]) {
    const cpu = openNative(DIGITS(v), 1);
    const gpu = openNative(DIGITS(v), 1, { device: 'cuda', cuda: { precision: 'fp32' } });
    for (const rows of [1, 7, 64]) {
      const inputs = [{ name: 'pixels', datatype: 'FP32' as const, shape: [rows, 64], data: Float32Array.from(values(rows * 64, rows + v, 8)).map(Math.abs) }];
      const want = await cpu.run(inputs.map((i) => ({ ...i, data: i.data.slice() })), []);
      const got = await gpu.run(inputs, []);
      for (const [i, out] of got.entries()) {
        if (out.datatype === 'FP32') assertClose(t, out.data as Float32Array, want[i]!.data as Float32Array, 1e-4, `digits v${v} ${out.name} at ${rows} rows`);
        else t.same(out.data, want[i]!.data, `digits v${v} ${out.name} at ${rows} rows`);
      }
    }
    await gpu.release();
  }
});

t.test('CudaPlan: widths checked before any device work, graphs only up to graphMaxRows', { skip: gpuSkip }, async (t) => {
  const next = seededRandom(4);
  const w = denseWeights(Float32Array.from({ length: 6 * 5 }, () => next() - 0.5), 6, 5, 'nxk');
  const upload = uploadDense(w);
  t.throws(() => CudaPlan.create(threadStream(0), [{ kind: 'dense', weights: upload }], 7), /op 0 reads rows of 6 values but the op before it leaves 7/);
  const plan = CudaPlan.create(threadStream(0), [{ kind: 'dense', weights: upload }, { kind: 'softmax' }], 6, { graphMaxRows: 4 });
  const x = Float32Array.from({ length: 10 * 6 }, () => next());
  for (const m of [2, 2, 2, 10, 10]) plan.run(x, m, new Float32Array(m * 5).fill(Number.NaN));
  const s = plan.stats();
  t.equal(s.runs, 5);
  t.equal(s.replays, 2, 'batch 2 replayed twice; batch 10 is above graphMaxRows and never captured');
  const y = await plan.runAsync(x, 3);
  for (let r = 0; r < 3; r++) {
    const sum = y.subarray(r * 5, r * 5 + 5).reduce((a, b) => a + b, 0);
    t.ok(Math.abs(sum - 1) < 1e-5, `row ${r} sums to 1`);
  }
  t.ok(plan.release() > 0);
  t.equal(plan.release(), 0, 'idempotent');
  t.throws(() => plan.run(x, 1), /released/);
});

t.test('precision: fp32 by default; tf32 and bf16 only for the native backend on a GPU; fp16 refused with the alternatives', async (t) => {
  const sig = { inputs: [{ name: 'x', datatype: 'FP32' as const, dims: [-1, 4], shapeKnown: true }], outputs: [{ name: 'y', datatype: 'FP32' as const, dims: [-1, 4], shapeKnown: true }], opset: 13, irVersion: 8, producer: 'test' };
  const file = (raw: Record<string, unknown>) => ({ source: 'config.json' as const, path: '/m/config.json', versionPolicy: { kind: 'latest' as const, numVersions: 1 }, modelFilename: 'model.onnx', raw });
  t.equal(resolveConfigFile(file({}), sig, 'm').precision, 'fp32');
  t.equal(toTritonConfig(resolveConfigFile(file({ backend: 'native', device: 'cuda' }), sig, 'm')).precision, undefined, 'fp32 is not spelled out');
  for (const precision of ['tf32', 'bf16']) {
    for (const device of ['cuda', 'auto']) {
      const config = resolveConfigFile(file({ backend: 'native', device, precision }), sig, 'm');
      t.equal(config.precision, precision);
      t.equal(toTritonConfig(config).precision, precision, 'the config endpoint shows it');
    }
  }
  t.throws(() => resolveConfigFile(file({ backend: 'native', device: 'cuda', precision: 'fp16' }), sig, 'm'), { code: 'INVALID_ARGUMENT', message: /precision: "fp16" is not available yet; "bf16" .* or "tf32"/ });
  t.throws(() => resolveConfigFile(file({ backend: 'native', device: 'cuda', precision: 'int8' }), sig, 'm'), /expected one of fp32, tf32, bf16 for precision but received the string "int8"/);
  t.throws(() => resolveConfigFile(file({ backend: 'native', precision: 'bf16' }), sig, 'm'), /precision: "bf16" applies to backend: native with device: cuda \(or auto\); the CPU kernels compute in fp32/);
  t.throws(() => resolveConfigFile(file({ device: 'cpu', precision: 'tf32' }), sig, 'm'), /precision: "tf32" applies to backend: native/);
  t.equal(resolveConfigFile(file({ precision: 'fp32' }), sig, 'm').precision, 'fp32', 'fp32 is harmless anywhere');

  const r = await umbra(['bench-model', DIGITS(1), '--precision', 'bf16', '--batch', '1', '--seconds', '0.05', '--repeats', '1']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--precision: bf16 applies to --device cuda \(or auto\); the CPU kernels compute in fp32/);
  const bad = await umbra(['bench-model', DIGITS(1), '--precision', 'fp8', '--batch', '1']);
  t.match(bad.stderr, /--precision: expected fp32, tf32, bf16 but received "fp8"/);
});

t.test('precisionCost: the gap between a run and its fp32 reference, over every float output', async (t) => {
  const { precisionCost, seededBatch } = await import('../dist/graph/precision-cost.js');
  const ref = new Map([['y', { dims: [2, 2], data: Float32Array.from([1, -2, 3, 0]) }], ['ids', { dims: [2], data: new BigInt64Array([1n, 2n]) }]]);
  t.same(precisionCost('bf16', 2, ref, ref), { precision: 'bf16', reference: 'fp32', rows: 2, maxAbsDiff: 0, relL2: 0 }, 'identical: no cost');
  const got = new Map([['y', { dims: [2, 2], data: Float32Array.from([1, -2, 3.5, 0]) }], ['ids', { dims: [2], data: new BigInt64Array([9n, 9n]) }]]);
  const cost = precisionCost('tf32', 2, ref, got);
  t.equal(cost.maxAbsDiff, 0.5);
  t.ok(Math.abs(cost.relL2 - 0.5 / Math.sqrt(14)) < 1e-12, 'relative L2 over the float outputs only');
  const nan = new Map([['y', { dims: [2, 2], data: Float32Array.from([1, NaN, 3, 0]) }]]);
  t.equal(precisionCost('bf16', 2, ref, nan).maxAbsDiff, Infinity, 'a NaN where the reference is finite is an infinite error');
  t.throws(() => precisionCost('bf16', 2, ref, new Map()), /output "y" is missing/);
  const batch = seededBatch([{ name: 'x', shape: [-1, 3] }], 4);
  t.same(batch.get('x')!.dims, [4, 3]);
  t.same(Array.from(batch.get('x')!.data as Float32Array), Array.from(seededBatch([{ name: 'x', shape: [-1, 3] }], 4).get('x')!.data as Float32Array), 'seeded: the same batch every time');
  t.ok((batch.get('x')!.data as Float32Array).every((v) => v >= -1 && v < 1 && v !== 0));
});

t.test('on a GPU: bf16 and tf32 serve close to fp32, and their measured cost is in the metadata', { skip: gpuSkip }, async (t) => {
  const { openNativeMeasured } = await import('../dist/workers/backends/native.js');
  const path = save(mixedModel(7, 13));
  for (const [precision, bound] of [['tf32', 5e-3], ['bf16', 3e-2]] as const) {
    const session = await openNativeMeasured(path, 1, { device: 'cuda', cuda: { precision } });
    t.equal(session.accuracy?.precision, precision);
    t.ok(session.accuracy!.relL2 > 0 && session.accuracy!.relL2 < bound, `${precision}: relative L2 ${session.accuracy!.relL2} against fp32`);
    t.ok(session.layers().every((l) => !('precision' in l) || l.format === 'csr' || l.precision === precision), 'dense layers report the precision');
    await session.release();
  }
  const fp32 = await openNativeMeasured(path, 1, { device: 'cuda' });
  t.equal(fp32.accuracy, undefined, 'fp32 is the reference: nothing to measure');
  await fp32.release();
});
