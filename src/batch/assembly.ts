// One batch being formed on the job's thread from parsed segments: rows are copied in runs (the
// valid rows of a segment lie one after another), keys and rejects kept beside them in input order.
import { typedArrayFor, uninitializedTypedArrayFor } from '../protocol/datatype.js';
import type { TensorData } from '../protocol/types.js';
import type { WireTensor } from '../workers/messages.js';
import type { PlanSummary, PlannedInput } from './messages.js';
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
  /** Some input's rows vary in length: rows are kept with their lengths and run in groups of one length (groups()). */
  readonly ragged: boolean;
  /** Ragged: per input, each row's values (views into the segments' data) and counts. */
  private readonly rowValues: TensorData[][];

  constructor(private readonly inputs: PlanSummary['inputs'], private readonly capacity: number, recordsDone: number) {
    this.recordsDone = recordsDone;
    this.ragged = inputs.some((p) => p.variable);
    this.rowValues = inputs.map(() => []);
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

  /**
   * Copies `count` parsed rows, from row `first` of a segment's data (one array per input); a
   * ragged batch takes each row's values as views, `offsets` (raggedOffsets of the segment) saying
   * where each row starts.
   */
  addRows(from: TensorData[], first: number, count: number, offsets?: Int32Array[]): void {
    if (count === 0) return;
    if (this.ragged) {
      for (let j = 0; j < this.inputs.length; j++) {
        const source = from[j]!;
        const at = offsets![j]!;
        for (let r = first; r < first + count; r++) {
          this.rowValues[j]!.push(Array.isArray(source) ? source.slice(at[r]!, at[r + 1]!) : (source as Float32Array).subarray(at[r]!, at[r + 1]!));
        }
      }
      this.rows += count;
      return;
    }
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

  /**
   * A ragged batch's rows by length: each group's rows (indices into the batch, in input order)
   * and their tensors, one run each, the free dim set to the group's length.
   */
  groups(): { rows: number[]; tensors: WireTensor[] }[] {
    const byLength = new Map<string, number[]>();
    for (let r = 0; r < this.rows; r++) {
      const key = this.rowValues.map((values) => values[r]!.length).join(',');
      const rows = byLength.get(key);
      if (rows) rows.push(r);
      else byLength.set(key, [r]);
    }
    return [...byLength.values()].map((rows) => ({
      rows,
      tensors: this.inputs.map((p, j) => {
        const values = this.rowValues[j]!;
        const per = values[rows[0]!]!.length;
        const data = p.datatype === 'BYTES' ? typedArrayFor(p.datatype, rows.length * per) : uninitializedTypedArrayFor(p.datatype, rows.length * per);
        rows.forEach((r, i) => {
          const row = values[r]!;
          if (Array.isArray(data)) for (let k = 0; k < per; k++) data[i * per + k] = (row as string[])[k]!;
          else (data as Float32Array).set(row as Float32Array, i * per);
        });
        return { name: p.name, datatype: p.datatype, shape: [rows.length, ...rowDimsOf(p, per)], data };
      }),
    }));
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

/** A row's dims with `values` values: a variable input's free dim resolved, a fixed input's own. */
function rowDimsOf(p: PlannedInput, values: number): number[] {
  return p.variable ? p.variable.dims.map((d) => (d < 0 ? values / p.variable!.perPosition : d)) : p.rowDims;
}

/** Per input, where each row of a ragged segment starts in its data (and where the last ends). */
export function raggedOffsets(lengths: Int32Array[]): Int32Array[] {
  return lengths.map((l) => {
    const at = new Int32Array(l.length + 1);
    for (let r = 0; r < l.length; r++) at[r + 1] = at[r]! + l[r]!;
    return at;
  });
}
