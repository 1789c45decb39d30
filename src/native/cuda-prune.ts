// Magnitude pruning on the GPU with the CPU adapter's shape (./prune.js pruneMagnitude): the
// same exact cuts (radix selection on the float bit patterns, ties by layer then index), masked
// on the device and written back in place. Per-layer min/max bounds are CPU-only.
import { cudaMagnitudePrune, threadStream } from './cuda.js';
import type { LayerCut, PruneLayer, SelectOptions } from './prune.js';
import { UmbraError } from '../errors.js';

/** Unstructured magnitude pruning in place on CUDA device 0. Blocks the calling thread. */
export async function pruneMagnitudeCuda(layers: readonly PruneLayer[], options: SelectOptions): Promise<LayerCut[]> {
  if (options.minSparsity !== undefined || options.maxSparsity !== undefined) {
    throw new UmbraError('INVALID_ARGUMENT', 'expected no minSparsity/maxSparsity for pruning on the GPU (they run on the CPU only) but received bounds');
  }
  const seen = new Set<string>();
  for (const layer of layers) {
    if (seen.has(layer.name)) throw new UmbraError('INVALID_ARGUMENT', `expected unique layer names but received "${layer.name}" twice`);
    seen.add(layer.name);
  }
  const { cuts } = cudaMagnitudePrune(threadStream(0), layers.map((l) => ({ name: l.name, data: l.weights })),
    { sparsity: options.sparsity, perLayer: options.perLayer ?? false, apply: true });
  return cuts.map((cut, i) => {
    const size = layers[i]?.weights.length ?? 0;
    return { ...cut, name: layers[i]?.name ?? '', size, sparsity: size === 0 ? 0 : cut.pruned / size };
  });
}
