// A synchronous path into onnxruntime-node's own native session. The public
// `InferenceSession.run` wraps every call in a promise that waits a whole event-loop turn
// (setImmediate) before it calls the same native `run`, and re-wraps the results: on a model that
// computes in microseconds that turn is most of the cost, and on the event loop it is a turn in
// which other requests wait. This module opens the native session the public API would open, with
// the same options, and calls `run` directly. onnxruntime-node ships CommonJS without an exports
// map, so `dist/binding.js` is reachable; if a release moves or reshapes it, `openDirect` returns
// undefined and callers keep the public API.
import { createRequire } from 'node:module';
import type * as ort from 'onnxruntime-node';

/** The native session class as onnxruntime-node's binding exposes it. */
export interface DirectOrtSession {
  readonly inputMetadata: readonly RawMetadata[];
  readonly outputMetadata: readonly RawMetadata[];
  /** Runs synchronously; results are `ort.Tensor`s keyed by output name. */
  run(feeds: Record<string, ort.Tensor>, fetches: Record<string, null>, options: object): Record<string, ort.Tensor>;
  dispose(): void;
}

interface RawMetadata {
  name: string;
  isTensor: boolean;
}

interface BindingModule {
  binding: { InferenceSession: new () => DirectOrtSession & { loadModel(path: string, options: object): void; loadModel(buffer: ArrayBufferLike, byteOffset: number, byteLength: number, options: object): void } };
  initOrt: () => void;
}

let bindingModule: BindingModule | null | undefined;

function bindingOf(): BindingModule | null {
  if (bindingModule !== undefined) return bindingModule;
  bindingModule = null;
  if (process.env.UMBRA_ORT_DIRECT === '0') return null;
  try {
    const m = createRequire(import.meta.url)('onnxruntime-node/dist/binding.js') as Partial<BindingModule>;
    if (typeof m.initOrt === 'function' && typeof m.binding?.InferenceSession === 'function') bindingModule = m as BindingModule;
  } catch {
    // A layout this module does not know: the public API serves.
  }
  return bindingModule;
}

/**
 * Opens `modelPath` as a native onnxruntime session with `options` (the public API's session
 * options), or returns undefined when the binding is not reachable or its surface differs.
 * Load errors propagate exactly as the public API would raise them.
 */
export function openDirect(model: string | Uint8Array, options: ort.InferenceSession.SessionOptions): DirectOrtSession | undefined {
  const m = bindingOf();
  if (!m) return undefined;
  m.initOrt();
  const session = new m.binding.InferenceSession();
  if (typeof session.loadModel !== 'function' || typeof session.run !== 'function' || typeof session.dispose !== 'function') return undefined;
  if (typeof model === 'string') session.loadModel(model, options);
  else session.loadModel(model.buffer, model.byteOffset, model.byteLength, options);
  return session;
}
