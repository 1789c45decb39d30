// onnxruntime-node backend. `session.run` blocks its thread, which is why it only runs in workers
// (or inline on the event loop for models whose whole batch costs microseconds). Sessions open
// through the direct native path (ort-direct.ts) where onnxruntime-node exposes it, so a run is
// one synchronous call; otherwise through the public API.
import * as ort from 'onnxruntime-node';
import { ortTypeToDatatype, datatypeToOrtType } from '../../protocol/index.js';
import type { DataType, TensorData } from '../../protocol/types.js';
import type { SessionSpec, WireTensor } from '../messages.js';
import type { Backend, BackendSession, TensorInfo } from './backend.js';
import { openDirect, type DirectOrtSession } from './ort-direct.js';
import { encodeModel, readModel, servedModel } from '../../onnx/model-io.js';
import { onCacheLine } from '../../native/kernels.js';

/** ONNX TensorProto element types, as onnxruntime-node's raw metadata reports them. */
const ONNX_ELEMENT_TYPES: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool',
  10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64',
};

interface AnyMetadata {
  name: string;
  isTensor: boolean;
  type?: string | number;
  shape?: readonly (number | string)[];
}

function describe(meta: readonly AnyMetadata[]): TensorInfo[] {
  return meta.map((m) => {
    if (!m.isTensor) return { name: m.name, datatype: 'BYTES' as DataType, shape: [] };
    const type = typeof m.type === 'number' ? ONNX_ELEMENT_TYPES[m.type] ?? `onnx element type ${m.type}` : String(m.type);
    return {
      name: m.name,
      datatype: ortTypeToDatatype(type),
      shape: (m.shape ?? []).map((d) => (typeof d === 'number' && d >= 0 ? d : -1)),
    };
  });
}

/**
 * onnxruntime's inputs, each on a 64-byte boundary: its vectorised reductions sum in an order set
 * by where the data lies, so the same request gave two answers (one bit apart) depending on
 * where its tensor landed in a slab, a request body or a batch buffer. A copy only where the
 * data is not already there; onnxruntime's own buffers (every intermediate) always are.
 */
function feedsOf(inputs: WireTensor[]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of inputs) {
    const data = ArrayBuffer.isView(t.data) ? onCacheLine(t.data as Float32Array) : t.data;
    feeds[t.name] = new ort.Tensor(datatypeToOrtType(t.datatype) as 'float32', data as Float32Array, t.shape);
  }
  return feeds;
}

function collect(results: Record<string, ort.Tensor>, names: readonly string[]): WireTensor[] {
  const out: WireTensor[] = [];
  for (const name of names) {
    const r = results[name];
    if (!r) throw new Error(`onnxruntime returned no output named ${name}`);
    out.push({ name, datatype: ortTypeToDatatype(r.type), shape: r.dims.map(Number), data: r.data as TensorData });
  }
  return out;
}

/** A session opened through the public API (the fallback when the direct path is unavailable). */
class OrtSession implements BackendSession {
  readonly inputs: TensorInfo[];
  readonly outputs: TensorInfo[];

  constructor(private readonly session: ort.InferenceSession) {
    this.inputs = describe(session.inputMetadata);
    this.outputs = describe(session.outputMetadata);
  }

  async run(inputs: WireTensor[], outputNames: string[]): Promise<WireTensor[]> {
    const names = outputNames.length > 0 ? outputNames : this.session.outputNames;
    return collect(await this.session.run(feedsOf(inputs), names as string[]), names);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** A session on onnxruntime-node's native class: `runSync` is the whole cost of a run. */
class DirectSession implements BackendSession {
  readonly inputs: TensorInfo[];
  readonly outputs: TensorInfo[];
  private readonly allOutputs: Record<string, null> = {};
  private released = false;

  constructor(private readonly session: DirectOrtSession) {
    this.inputs = describe(session.inputMetadata);
    this.outputs = describe(session.outputMetadata);
    for (const o of this.outputs) this.allOutputs[o.name] = null;
  }

  runSync(inputs: WireTensor[], outputNames: string[]): WireTensor[] {
    if (this.released) throw new Error('the onnxruntime session was released');
    let fetches = this.allOutputs;
    let names: readonly string[] = this.outputs.map((o) => o.name);
    if (outputNames.length > 0) {
      fetches = {};
      for (const name of outputNames) {
        if (!(name in this.allOutputs)) throw new RangeError(`'fetches' contains invalid output name: ${name}.`);
        fetches[name] = null;
      }
      names = outputNames;
    }
    for (const info of this.inputs) {
      if (!inputs.some((t) => t.name === info.name)) throw new Error(`input '${info.name}' is missing in 'feeds'.`);
    }
    return collect(this.session.run(feedsOf(inputs), fetches, {}), names);
  }

  async run(inputs: WireTensor[], outputNames: string[]): Promise<WireTensor[]> {
    return this.runSync(inputs, outputNames);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.session.dispose();
  }
}

function providers(names: string[]): ort.InferenceSession.ExecutionProviderConfig[] {
  return names.map((n) => n.toLowerCase() as ort.InferenceSession.ExecutionProviderConfig);
}

/**
 * Opens a session on `spec`'s model: through the direct native path when `direct` (default) and
 * onnxruntime-node exposes it, else through the public API. Both answer the same; only the
 * direct one offers `runSync`.
 */
export async function openOnnxruntime(spec: SessionSpec, direct = true): Promise<BackendSession> {
  const eps = spec.executionProviders.length > 0 ? spec.executionProviders : ['cpu'];
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: providers(eps),
    intraOpNumThreads: spec.intraOpThreads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    // Fatal only: a run that refuses a request's inputs (an index past an embedding table) is
    // answered to that client with onnxruntime's message; logged too, each bad request would
    // print a line to the server's stderr.
    logSeverityLevel: 4,
  };
  // The direct path serves CPU sessions; other execution providers keep the public API, which
  // also validates and falls back between them.
  const cpuOnly = eps.every((e) => e.toLowerCase() === 'cpu');
  // A model with outputs that are not tensors opens as it is served (those outputs replaced or left out).
  const model = spec.servedGraph ? encodeModel(servedModel(readModel(spec.modelPath))) : spec.modelPath;
  const session = direct && cpuOnly ? openDirect(model, options) : undefined;
  if (session) return new DirectSession(session);
  const create = (o: ort.InferenceSession.SessionOptions) => (typeof model === 'string' ? ort.InferenceSession.create(model, o) : ort.InferenceSession.create(model, o));
  try {
    return new OrtSession(await create(options));
  } catch (err) {
    const first = (err as Error).message.split('\n')[0]!;
    const cpuAt = eps.findIndex((e) => e.toLowerCase() === 'cpu');
    // Only a provider onnxruntime cannot set up is worked around: a model the CPU cannot open either fails as it is.
    if (!/ExecutionProvider|shared library|provider/i.test(first)) throw err;
    const asked = eps.map((e) => e.toLowerCase()).join(', ');
    if (cpuAt < 0) {
      throw new Error(`onnxruntime cannot use execution_providers [${asked}] on this host (${first}); list "cpu" after them to fall back to the CPU (Triton's instance_group kind KIND_GPU asks for ["cuda", "cpu"]), or run on the CPU (KIND_CPU)`);
    }
    // As onnxruntime's own Python API does with a list of providers: the next one that works, here the CPU.
    const fallback = eps.slice(cpuAt).map((e) => e.toLowerCase());
    const note = `execution_providers [${asked}]: onnxruntime could not set up ${eps.slice(0, cpuAt).map((e) => e.toLowerCase()).join(', ')} on this host (${first}), so the model runs on the CPU provider listed after it`;
    const cpu = fallback.every((e) => e === 'cpu') && direct ? openDirect(model, { ...options, executionProviders: providers(fallback) }) : undefined;
    const opened: BackendSession = cpu ? new DirectSession(cpu) : new OrtSession(await create({ ...options, executionProviders: providers(fallback) }));
    return Object.assign(opened, { providerNote: note });
  }
}

export const onnxruntimeBackend: Backend = {
  open: (spec) => openOnnxruntime(spec),
};
