// An ONNX file opened for pruning: its prunable weights as Float32Arrays that the native pruner
// changes in place, and a writer that leaves everything else exactly as it was.
//
// Writing: when every initializer lives inside the .onnx file, the output is the input's bytes
// with only the pruned weights' raw_data overwritten (same lengths, so no other byte moves and
// fields unknown to onnx-proto survive). When the model has external data, every external tensor
// goes into one file `<OUT>.data` next to OUT (pruned ones with their zeros, the rest copied byte
// for byte) and the model is re-encoded with the new locations; inline tensors stay inline.
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { basename, dirname, isAbsolute, join, normalize, resolve } from 'node:path';
import { UmbraError } from '../errors.js';
import { encodeModel, externalDataReferences, onnx, readModel, type ExternalDataReference, type ModelProto } from '../onnx/model-io.js';
import type pkg from 'onnx-proto';
import { findPrunable, type PrunableWeight, type SkippedInitializer } from './model-weights.js';

type Storage =
  | { kind: 'file-view' }                     // values alias the file buffer: nothing to copy back
  | { kind: 'file-copy'; offset: number }     // raw_data inside the file at an unaligned offset
  | { kind: 'raw-detached' }                  // raw_data not backed by the file buffer
  | { kind: 'float-data' }                    // values in the float_data field
  | { kind: 'external'; ref: ExternalDataReference };

/** Alignment of tensors in the written external data file (lets readers map them directly). */
const EXTERNAL_ALIGNMENT = 64;

export class PrunableModel {
  readonly path: string;
  readonly model: ModelProto;
  readonly weights: readonly PrunableWeight[];
  readonly skipped: readonly SkippedInitializer[];
  /** Working values, one per weight, pruned in place. */
  readonly values: readonly Float32Array[];
  private readonly bytes: Uint8Array;
  private readonly storage: readonly Storage[];
  private readonly externalRefs: readonly ExternalDataReference[];
  private originals: Float32Array[] | null = null;

  private constructor(path: string, bytes: Uint8Array, model: ModelProto) {
    this.path = path;
    this.bytes = bytes;
    this.model = model;
    const { prunable, skipped } = findPrunable(model);
    this.weights = prunable;
    this.skipped = skipped;
    this.externalRefs = externalDataReferences(model);
    const loaded = prunable.map((w) => this.load(w));
    this.values = loaded.map((l) => l.values);
    this.storage = loaded.map((l) => l.storage);
  }

  /** Reads and decodes `path`, and loads every prunable weight (external data included). */
  static open(path: string): PrunableModel {
    if (endianness() !== 'LE') throw new UmbraError('INTERNAL', 'pruning reads ONNX little-endian weights in place and needs a little-endian host');
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      throw new UmbraError('LOAD_FAILED', `cannot read ONNX model ${path}: ${(err as Error).message}`, { cause: err });
    }
    return new PrunableModel(path, bytes, readModel(bytes, path));
  }

  get hasExternalData(): boolean {
    return this.externalRefs.length > 0;
  }

  /** Keeps a copy of the loaded values so reset() can start again (sweeps). */
  keepOriginals(): void {
    this.originals ??= this.values.map((v) => v.slice());
  }

  reset(): void {
    if (!this.originals) throw new UmbraError('INTERNAL', 'reset() needs keepOriginals() first');
    this.values.forEach((v, i) => v.set(this.originals![i]!));
  }

  /** Unpruned values of weight `i` (the loaded ones when originals are kept, else the current ones). */
  originalValues(i: number): Float32Array {
    return this.originals?.[i] ?? this.values[i]!;
  }

  /** Writes the model (and `<out>.data` when it has external data); returns the paths written. */
  write(out: string): string[] {
    const target = resolve(out);
    if (sameFile(target, this.path)) throw new UmbraError('INVALID_ARGUMENT', `expected an output path other than the input for OUT but received ${out}`);
    // Written last, over a file the input still reads: the input model would lose its weights.
    if (this.reads(target)) {
      throw new UmbraError('INVALID_ARGUMENT', `expected an output path other than the input's external data for OUT but received ${out}, which holds the weights of ${this.path}; write the pruned model to another path`);
    }
    mkdirSync(dirname(target), { recursive: true });
    const reencode = this.hasExternalData || this.storage.some((s) => s.kind === 'raw-detached' || s.kind === 'float-data');
    this.storage.forEach((s, i) => this.storeBack(this.weights[i]!.tensor, s, this.values[i]!));
    if (!reencode) {
      writeFileSync(target, this.bytes);
      return [target];
    }
    const written = [target];
    if (this.hasExternalData) written.push(this.writeExternal(target));
    writeFileSync(target, encodeModel(this.model));
    return written;
  }

  private load(w: PrunableWeight): { values: Float32Array; storage: Storage } {
    const t = w.tensor;
    const byteLength = w.size * 4;
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
      const ref = this.externalRefs.find((r) => r.tensor === w.name)!;
      const values = new Float32Array(w.size);
      readExact(this.externalPath(ref), new Uint8Array(values.buffer), ref.offset, `external data of "${w.name}"`);
      return { values, storage: { kind: 'external', ref } };
    }
    const raw = t.rawData;
    if (raw && raw.length > 0) {
      if (raw.length !== byteLength) throw new UmbraError('LOAD_FAILED', `tensor "${w.name}" should hold ${byteLength} bytes but holds ${raw.length}`);
      if (raw.buffer === this.bytes.buffer) {
        // protobufjs decodes bytes fields as views into the file buffer: prune them where they lie.
        if (raw.byteOffset % 4 === 0) return { values: new Float32Array(raw.buffer, raw.byteOffset, w.size), storage: { kind: 'file-view' } };
        const values = new Float32Array(w.size);
        new Uint8Array(values.buffer).set(raw);
        return { values, storage: { kind: 'file-copy', offset: raw.byteOffset - this.bytes.byteOffset } };
      }
      const values = new Float32Array(w.size);
      new Uint8Array(values.buffer).set(raw);
      return { values, storage: { kind: 'raw-detached' } };
    }
    const floats = t.floatData ?? [];
    if (floats.length !== w.size) throw new UmbraError('LOAD_FAILED', `tensor "${w.name}" should hold ${w.size} values but holds ${floats.length}`);
    return { values: Float32Array.from(floats), storage: { kind: 'float-data' } };
  }

  private storeBack(tensor: pkg.onnx.ITensorProto, storage: Storage, values: Float32Array): void {
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    switch (storage.kind) {
      case 'file-view': case 'external': return;
      case 'file-copy': this.bytes.set(bytes, storage.offset); return;
      case 'raw-detached': tensor.rawData = bytes.slice(); return;
      case 'float-data': tensor.floatData = Array.from(values); return;
    }
  }

  private externalPath(ref: ExternalDataReference): string {
    const normalized = normalize(ref.location);
    // A model must not make us read files outside its folder.
    if (!ref.location || isAbsolute(ref.location) || normalized.startsWith('..')) {
      throw new UmbraError('LOAD_FAILED', `tensor "${ref.tensor}" has external location ${JSON.stringify(ref.location)}, which is not inside the model folder`);
    }
    return join(dirname(this.path), normalized);
  }

  /** Whether `path` is a file the input's external tensors are read from. */
  private reads(path: string): boolean {
    return this.externalRefs.some((r) => sameFile(this.externalPath(r), path));
  }

  private writeExternal(target: string): string {
    const dataName = `${basename(target)}.data`;
    const dataPath = join(dirname(target), dataName);
    if (this.reads(dataPath)) {
      throw new UmbraError('INVALID_ARGUMENT', `expected OUT whose data file ${dataPath} is not one the input reads but received ${target}`);
    }
    const pruned = new Map(this.weights.map((w, i) => [w.name, this.values[i]!]));
    const tensors = new Map((this.model.graph!.initializer ?? []).map((t) => [t.name ?? '', t]));
    const fd = openSync(dataPath, 'w');
    try {
      let offset = 0;
      for (const ref of this.externalRefs) {
        const values = pruned.get(ref.tensor);
        const bytes = values
          ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
          : readRange(this.externalPath(ref), ref.offset, ref.length, `external data of "${ref.tensor}"`);
        offset = Math.ceil(offset / EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT;
        writeAll(fd, bytes, offset);
        const tensor = tensors.get(ref.tensor)!;
        const kept = (tensor.externalData ?? []).filter((e) => !['location', 'offset', 'length', 'checksum'].includes(e.key ?? ''));
        tensor.externalData = [
          onnx.StringStringEntryProto.create({ key: 'location', value: dataName }),
          onnx.StringStringEntryProto.create({ key: 'offset', value: String(offset) }),
          onnx.StringStringEntryProto.create({ key: 'length', value: String(bytes.length) }),
          ...kept,
        ];
        offset += bytes.length;
      }
    } finally {
      closeSync(fd);
    }
    return dataPath;
  }
}

/**
 * Whether two paths name one file: the same path, or a symlink or hard link to an existing file
 * (writing through one would overwrite the input the docs promise never to touch).
 */
function sameFile(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true;
  const sa = statSync(a, { throwIfNoEntry: false });
  const sb = statSync(b, { throwIfNoEntry: false });
  return sa !== undefined && sb !== undefined && sa.dev === sb.dev && sa.ino === sb.ino;
}

function readExact(path: string, into: Uint8Array, offset: number, what: string): void {
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < into.length) {
      const n = readSync(fd, into, done, Math.min(into.length - done, 1 << 30), offset + done);
      if (n === 0) throw new UmbraError('LOAD_FAILED', `${what} ends after ${done} of ${into.length} bytes (${path})`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

function readRange(path: string, offset: number, length: number, what: string): Uint8Array {
  let size = length;
  if (size < 0) {
    const fd = openSync(path, 'r');
    try {
      size = fstatSync(fd).size - offset;
    } finally {
      closeSync(fd);
    }
  }
  const out = new Uint8Array(Math.max(0, size));
  readExact(path, out, offset, what);
  return out;
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30), position + done);
}
