// Models the native-backend tests share.
import { buildModel } from '../../dist/onnx/builder.js';
import { pruneMagnitude } from '../../dist/native/prune.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/**
 * An MLP 48 -> 96 -> 96 -> 10 (Gemm transB=1 with bias, Relu between; nodes fc0..fc2), its
 * seeded weights pruned per layer by magnitude to `sparsity` (0 = dense). `exposeHidden` also
 * makes the first hidden activation, a0, a graph output.
 */
export async function prunedMlp(sparsity: number, seed: number, exposeHidden = false): Promise<ReturnType<typeof buildModel>> {
  const r = rng(seed);
  const sizes = [[48, 96], [96, 96], [96, 10]] as const;
  const layers = sizes.map(([k, n], i) => ({ name: `w${i}`, weights: Float32Array.from({ length: k * n }, () => r() * 0.4) }));
  if (sparsity > 0) await pruneMagnitude(layers, { sparsity, perLayer: true });
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 48] }],
    outputs: [
      { name: 'y', datatype: 'FP32', dims: ['batch', 10] },
      ...(exposeHidden ? [{ name: 'a0', datatype: 'FP32' as const, dims: ['batch', 96] }] : []),
    ],
    initializers: [
      ...layers.map((l, i) => ({ name: l.name, datatype: 'FP32' as const, dims: [sizes[i]![1], sizes[i]![0]], values: l.weights })),
      ...sizes.map(([, n], i) => ({ name: `b${i}`, datatype: 'FP32' as const, dims: [n], values: Array.from({ length: n }, () => r()) })),
    ],
    nodes: [
      { op: 'Gemm', inputs: ['x', 'w0', 'b0'], outputs: ['h0'], attributes: { transB: 1 }, name: 'fc0' },
      { op: 'Relu', inputs: ['h0'], outputs: ['a0'] },
      { op: 'Gemm', inputs: ['a0', 'w1', 'b1'], outputs: ['h1'], attributes: { transB: 1 }, name: 'fc1' },
      { op: 'Relu', inputs: ['h1'], outputs: ['a1'] },
      { op: 'Gemm', inputs: ['a1', 'w2', 'b2'], outputs: ['y'], attributes: { transB: 1 }, name: 'fc2' },
    ],
  });
}
