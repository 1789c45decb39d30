#!/usr/bin/env node
// Native backend vs onnxruntime on a 4096x4096-class stack (3 x Gemm 4096x4096 + bias + Relu),
// dense and magnitude-pruned per layer to 50/60/70/90/95%, at batch 1, 8 and 64, in one run.
// Both single-threaded (ORT intraOpNumThreads 1, kernels threads 1), in this process, with the
// windows interleaved round by round (ORT, native with each layer's format measured at load on
// the benched batch sizes, native with every layer forced dense, and forced CSR; order rotating)
// so load from other processes on a shared machine hits all of them alike; figures are medians.
//
//   node bench/native-model.mjs [--rounds 5] [--window 0.4] [--sizes 4096x3] [--json out.json]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildModel } from '../dist/onnx/builder.js';
import { writeModel } from '../dist/onnx/model-io.js';
import { pruneMagnitude } from '../dist/native/prune.js';
import { kernelIsa } from '../dist/native/kernels.js';
import { benchInputs, measureWindow, median, openBenchSession } from '../dist/cli/commands/bench-model.js';

const { values: flags } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    window: { type: 'string', default: '0.4' },
    width: { type: 'string', default: '4096' },
    layers: { type: 'string', default: '3' },
    levels: { type: 'string', default: '0,0.5,0.6,0.7,0.9,0.95' },
    batches: { type: 'string', default: '1,8,64' },
    json: { type: 'string' },
  },
});
const ROUNDS = Number(flags.rounds);
const WINDOW = Number(flags.window);
const WIDTH = Number(flags.width);
const LAYERS = Number(flags.layers);
const LEVELS = flags.levels.split(',').map(Number);
const BATCHES = flags.batches.split(',').map(Number);

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

// Dense weights once; every level prunes a copy (per layer, exact magnitude cut).
const r = rng(42);
const scale = 2 / Math.sqrt(WIDTH);
const baseWeights = Array.from({ length: LAYERS }, () => Float32Array.from({ length: WIDTH * WIDTH }, () => r() * scale));
const biases = Array.from({ length: LAYERS }, () => Float32Array.from({ length: WIDTH }, () => r() * 0.1));

function stackModel(weights) {
  const nodes = [];
  let x = 'x';
  weights.forEach((_, i) => {
    nodes.push({ op: 'Gemm', inputs: [x, `w${i}`, `b${i}`], outputs: [`h${i}`], attributes: { transB: 1 } });
    nodes.push({ op: 'Relu', inputs: [`h${i}`], outputs: [i === weights.length - 1 ? 'y' : `a${i}`] });
    x = `a${i}`;
  });
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', WIDTH] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', WIDTH] }],
    nodes,
    initializers: weights.flatMap((w, i) => [
      { name: `w${i}`, datatype: 'FP32', dims: [WIDTH, WIDTH], values: w },
      { name: `b${i}`, datatype: 'FP32', dims: [WIDTH], values: biases[i] },
    ]),
  });
}

const dir = mkdtempSync(join(tmpdir(), 'umbra-native-bench-'));
const rows = [];
process.stderr.write(`${LAYERS} x Gemm ${WIDTH}x${WIDTH} + Relu; ${cpus().length} cores (${cpus()[0]?.model}); kernels ${kernelIsa()}; `
  + `layer formats measured at load; ${ROUNDS} rounds of ${WINDOW} s windows\n`);
try {
  for (const level of LEVELS) {
    const weights = baseWeights.map((w) => Float32Array.from(w));
    if (level > 0) await pruneMagnitude(weights.map((w, i) => ({ name: `w${i}`, weights: w })), { sparsity: level, perLayer: true });
    const path = join(dir, `stack-${level}.onnx`);
    writeModel(stackModel(weights), path);
    const sessions = {
      onnxruntime: await openBenchSession(path, 'onnxruntime', 1),
      native: await openBenchSession(path, 'native', 1, undefined, 'cpu', BATCHES),
      // Each kernel on every layer, to show what the measured choice picks from.
      nativePacked: await openBenchSession(path, 'native', 1, 0),
      nativeCsr: await openBenchSession(path, 'native', 1, 2),
    };
    const format = sessions.native.layers().map((l) => l.format).join('/');
    for (const batch of BATCHES) {
      const inputs = benchInputs(sessions.native, batch);
      const names = Object.keys(sessions);
      const windows = Object.fromEntries(names.map((n) => [n, []]));
      for (const name of names) {
        await sessions[name].run(inputs, []);
        await measureWindow(sessions[name], inputs, batch, WINDOW / 2);
      }
      for (let round = 0; round < ROUNDS; round++) {
        const order = names.map((_, i) => names[(i + round) % names.length]);
        for (const name of order) windows[name].push((await measureWindow(sessions[name], inputs, batch, WINDOW)).rowsPerSecond);
      }
      const row = {
        sparsity: level, batch, nativeFormat: format,
        ortRowsPerSecond: median(windows.onnxruntime),
        nativeRowsPerSecond: median(windows.native),
        nativePackedRowsPerSecond: median(windows.nativePacked),
        nativeCsrRowsPerSecond: median(windows.nativeCsr),
        windows,
      };
      row.speedup = row.nativeRowsPerSecond / row.ortRowsPerSecond;
      row.csrSpeedup = row.nativeCsrRowsPerSecond / row.ortRowsPerSecond;
      row.packedSpeedup = row.nativePackedRowsPerSecond / row.ortRowsPerSecond;
      rows.push(row);
      process.stderr.write(`sparsity ${(level * 100).toFixed(0).padStart(2)}% batch ${String(batch).padStart(2)}: ort ${row.ortRowsPerSecond.toFixed(1)} rows/s, `
        + `native (${format}) ${row.nativeRowsPerSecond.toFixed(1)} (${row.speedup.toFixed(2)}x), dense ${row.nativePackedRowsPerSecond.toFixed(1)} (${row.packedSpeedup.toFixed(2)}x), `
        + `csr ${row.nativeCsrRowsPerSecond.toFixed(1)} (${row.csrSpeedup.toFixed(2)}x)\n`);
    }
    for (const s of Object.values(sessions)) await s.release();
    rmSync(path);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log('| sparsity | batch | onnxruntime rows/s | native rows/s (measured layers) | native / ORT | dense-forced / ORT | CSR-forced / ORT |');
console.log('|---:|---:|---:|---:|---:|---:|---:|');
for (const row of rows) {
  console.log(`| ${(row.sparsity * 100).toFixed(0)}% | ${row.batch} | ${row.ortRowsPerSecond.toFixed(1)} | ${row.nativeRowsPerSecond.toFixed(1)} (${row.nativeFormat}) | ${row.speedup.toFixed(2)}x | ${row.packedSpeedup.toFixed(2)}x | ${row.csrSpeedup.toFixed(2)}x |`);
}
if (flags.json) {
  const { writeFileSync } = await import('node:fs');
  writeFileSync(flags.json, JSON.stringify({ width: WIDTH, layers: LAYERS, rounds: ROUNDS, window: WINDOW, isa: kernelIsa(), rows }, null, 2));
}
