// One batch being formed on the job's thread from parsed segments: rows are copied in runs (the
// valid rows of a segment lie one after another), keys and rejects kept beside them in input order.
import { typedArrayFor, uninitializedTypedArrayFor } from '../protocol/datatype.js';
import type { TensorData } from '../protocol/types.js';
import type { WireTensor } from '../workers/messages.js';
import type { PlanSummary } from './messages.js';
import type { Reject } from './rejects.js';

export class BatchAssembly {
  readonly keys: string[] = [];
  /** Each key's line in the file. */
  readonly lines: number[] = [];
  readonly rejects: Reject[] = [];
  /** Records consumed once this batch is stored. */
  recordsDone: number;
  final = false;
  private data: TensorData[] | undefined;
  private rows = 0;

  constructor(private readonly inputs: PlanSummary['inputs'], private readonly capacity: number, recordsDone: number) {
    this.recordsDone = recordsDone;
  }

  /**
   * Takes a whole segment's rows as they are, without a copy: for an empty batch and a segment of
   * exactly `capacity` rows, each input's data exactly that size (the common case of a clean file).
   */
  adopt(from: TensorData[], count: number): boolean {
    if (this.rows !== 0 || count !== this.capacity || from.some((d, j) => d.length !== count * this.inputs[j]!.rowElements)) return false;
    this.data = from;
    this.rows = count;
    return true;
  }

  /** Copies `count` parsed rows, from row `first` of a segment's data (one array per input). */
  addRows(from: TensorData[], first: number, count: number): void {
    if (count === 0) return;
    // Every slot is written before it is sent, so the storage need not be cleared first.
    this.data ??= this.inputs.map((p) => (p.datatype === 'BYTES' ? typedArrayFor(p.datatype, this.capacity * p.rowElements) : uninitializedTypedArrayFor(p.datatype, this.capacity * p.rowElements)));
    for (let j = 0; j < this.inputs.length; j++) {
      const n = this.inputs[j]!.rowElements;
      const source = from[j]!;
      const target = this.data[j]!;
      if (Array.isArray(source)) {
        for (let i = 0; i < count * n; i++) (target as string[])[this.rows * n + i] = source[first * n + i]!;
      } else {
        (target as Float32Array).set((source as Float32Array).subarray(first * n, (first + count) * n), this.rows * n);
      }
    }
    this.rows += count;
  }

  /** The rows as request tensors; each owns its buffer, so the pool transfers it without a copy. */
  tensors(): WireTensor[] {
    const data = this.data ?? [];
    return this.inputs.map((p, j) => {
      const used = this.rows * p.rowElements;
      const all = data[j]!;
      const view = all.length === used ? all : (Array.isArray(all) ? all.slice(0, used) : all.slice(0, used)) as TensorData;
      return { name: p.name, datatype: p.datatype, shape: [this.rows, ...p.rowDims], data: view };
    });
  }
}
