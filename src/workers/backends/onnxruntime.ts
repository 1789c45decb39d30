// onnxruntime-node backend. `session.run` blocks its thread, which is why it only runs in workers.
import * as ort from 'onnxruntime-node';
import { ortTypeToDatatype, datatypeToOrtType } from '../../protocol/index.js';
import type { DataType, TensorData } from '../../protocol/types.js';
import type { SessionSpec, WireTensor } from '../messages.js';
import type { Backend, BackendSession, TensorInfo } from './backend.js';

function describe(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorInfo[] {
  return meta.map((m) => {
    if (!m.isTensor) return { name: m.name, datatype: 'BYTES' as DataType, shape: [] };
    return {
      name: m.name,
      datatype: ortTypeToDatatype(m.type),
      shape: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)),
    };
  });
}

class OrtSession implements BackendSession {
  readonly inputs: TensorInfo[];
  readonly outputs: TensorInfo[];

  constructor(private readonly session: ort.InferenceSession) {
    this.inputs = describe(session.inputMetadata);
    this.outputs = describe(session.outputMetadata);
  }

  async run(inputs: WireTensor[], outputNames: string[]): Promise<WireTensor[]> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const t of inputs) {
      feeds[t.name] = new ort.Tensor(datatypeToOrtType(t.datatype) as 'float32', t.data as Float32Array, t.shape);
    }
    const names = outputNames.length > 0 ? outputNames : this.session.outputNames;
    const results = await this.session.run(feeds, names as string[]);
    const out: WireTensor[] = [];
    for (const name of names) {
      const r = results[name];
      if (!r) throw new Error(`onnxruntime returned no output named ${name}`);
      out.push({ name, datatype: ortTypeToDatatype(r.type), shape: r.dims.map(Number), data: r.data as TensorData });
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function providers(names: string[]): ort.InferenceSession.ExecutionProviderConfig[] {
  return names.map((n) => n.toLowerCase() as ort.InferenceSession.ExecutionProviderConfig);
}

export const onnxruntimeBackend: Backend = {
  async open(spec: SessionSpec): Promise<BackendSession> {
    const session = await ort.InferenceSession.create(spec.modelPath, {
      executionProviders: providers(spec.executionProviders.length > 0 ? spec.executionProviders : ['cpu']),
      intraOpNumThreads: spec.intraOpThreads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
    return new OrtSession(session);
  },
};
