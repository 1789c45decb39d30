// Runs of CSR layers that feed only each other (a pruned MLP's hidden layers) stay in the sparse
// kernel's transposed layout from the first layer's input to the last one's output: each layer
// writes Yt [n, lanes], which is the next layer's Xt, so the transposes in between are skipped.
// On six 4096x4096 layers at 90% sparsity and batch 64 the transposes were ~15% of a pass.
import type { BoundGemm, BoundSpmm } from '../native/kernels.js';
import { alignedFloat32, sparseInputRows, spmmLanes } from '../native/kernels.js';
import type { DenseStep, Step } from './compile.js';
import { stepInputs } from './compile.js';
import type { Value } from './tensor.js';

/** What the chain needs of a prepared layer. */
export interface ChainableLayer {
  kind: 'prepared-dense';
  step: DenseStep;
  format: 'packed' | 'csr';
  run: BoundGemm;
  sparse?: BoundSpmm;
}

export interface SparseChain<L extends ChainableLayer> {
  kind: 'sparse-chain';
  /** Two or more CSR layers, each reading the one before. */
  layers: L[];
}

type Prepared<L> = Exclude<Step, DenseStep> | L;

/** What each step reads; a prepared layer reads its step's input. */
function reads<L extends ChainableLayer>(step: Prepared<L>): string[] {
  return step.kind === 'prepared-dense' ? [step.step.input] : stepInputs(step);
}

/**
 * Merges each run of consecutive CSR layers into one chain where every intermediate result is
 * read by the next layer only (not by another step, not a graph output), and the layers agree on
 * Gemm (2-D) or MatMul (leading dimensions kept) semantics, so shapes and errors stay as when
 * each runs alone. Later layers must not transpose their input (Gemm transA).
 */
export function formSparseChains<L extends ChainableLayer>(steps: readonly Prepared<L>[], graphOutputs: readonly string[]): (Prepared<L> | SparseChain<L>)[] {
  const uses = new Map<string, number>();
  for (const s of steps) for (const name of reads(s)) uses.set(name, (uses.get(name) ?? 0) + 1);
  for (const name of graphOutputs) uses.set(name, (uses.get(name) ?? 0) + 1);
  const links = (a: Prepared<L>, b: Prepared<L> | undefined): boolean => a.kind === 'prepared-dense' && b?.kind === 'prepared-dense'
    && a.format === 'csr' && b.format === 'csr' && a.sparse !== undefined && b.sparse !== undefined
    && b.step.input === a.step.output && uses.get(a.step.output) === 1
    && a.step.gemm === b.step.gemm && !b.step.transposeInput && b.step.k === a.step.n;
  const program: (Prepared<L> | SparseChain<L>)[] = [];
  for (let i = 0; i < steps.length;) {
    let j = i;
    while (links(steps[j]!, steps[j + 1])) j++;
    if (j > i) program.push({ kind: 'sparse-chain', layers: steps.slice(i, j + 1) as L[] });
    else program.push(steps[i]!);
    i = j + 1;
  }
  return program;
}

/**
 * Runs chains with two scratch buffers of transposed activations (64-byte aligned, as the
 * kernel's own scratch is) that grow as needed and are reused by every run (a run never returns them: only the last layer writes a row-major result).
 * One runner per executor: runs on one executor never overlap.
 */
export class SparseChainRunner {
  private readonly buffers: Float32Array[] = [new Float32Array(0), new Float32Array(0)];

  private scratch(which: number, floats: number): Float32Array {
    if (this.buffers[which]!.length < floats) this.buffers[which] = alignedFloat32(floats);
    return this.buffers[which]!;
  }

  /**
   * The chain's output for `input` (already checked and laid out as X [m, k] by the caller);
   * `allocate` gives the storage of the result.
   */
  run<L extends ChainableLayer>(chain: SparseChain<L>, input: Value, first: { x: Float32Array; m: number }, allocate: (n: number) => Float32Array): Value {
    const last = chain.layers[chain.layers.length - 1]!;
    const { x, m } = first;
    const dims = last.step.gemm ? [m, last.step.n] : [...input.dims.slice(0, -1), last.step.n];
    if (m === 0) return { dims, data: new Float32Array(0) };
    const lanes = spmmLanes(m);
    let current = x;
    chain.layers.forEach((layer, i) => {
      const final = i === chain.layers.length - 1;
      // A layer's Yt is the next one's Xt, which has rows up to whole panels.
      const out = final ? allocate(m * layer.step.n) : this.scratch(i % 2, sparseInputRows(layer.step.n) * lanes);
      current = layer.sparse!.lanes(current, m, out, { input: i > 0, output: !final });
    });
    return { dims, data: current };
  }
}
