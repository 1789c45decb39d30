// The native graph executor: compile an ONNX model (fold, fuse, lower), then run it on the kernels.
import { kernelIsa } from '../native/kernels.js';
import { compileGraph } from './compile.js';

export { compileGraph, foldConstants, type CompiledGraph, type Step, type DenseStep } from './compile.js';
export { GraphExecutor, SPARSE_DENSITY_BELOW, type ExecutorOptions, type LayerInfo } from './executor.js';
export { loadGraph, type Graph, type GraphNode } from './graph.js';
export type { Value, ValueData } from './tensor.js';

/**
 * Why the native backend cannot serve a model (the first unsupported node, or the addon not
 * loading), or null when it can. Compiles without packing, so it is safe on the main thread.
 */
export function nativeRefusal(modelPath: string): string | null {
  try {
    kernelIsa();
    compileGraph(modelPath);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}
