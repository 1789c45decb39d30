// One copy of a version's weights for all of its sessions. onnxruntime memory-maps initializers
// kept in an external data file at aligned offsets instead of copying them into each session, so
// the sessions of one version (every model worker, the inline session, each I/O thread's replica)
// read the same pages of the page cache. A model whose weights are inline in its .onnx file (every
// model under 2 GB that an exporter wrote in one file) had a copy per session: four sessions of a
// 256 MB recommendation model held 1.2 GB. Such a model is written once, under the state
// directory, as a copy with its large initializers in one aligned data file, and served from it.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeModel, onnx, readModel } from './model-io.js';

/** Inline weights below this stay as they are: a copy per session costs little. */
export const SHARED_WEIGHTS_MIN_BYTES = 16 * 1024 * 1024;
/** Initializers at least this large go to the data file; smaller ones stay in the graph. */
const EXTERNAL_MIN_BYTES = 4096;
/** Offsets in the data file are multiples of this: a page on every host (64 KiB pages included). */
const ALIGNMENT = 64 * 1024;
const DATA_FILE = 'weights.bin';

export interface SharedWeights {
  /** The copy's model file, served in place of the original. */
  path: string;
  /** Bytes of the data file (the weights, with the padding that aligns them). */
  bytes: number;
  /** Whether this call wrote the copy (false: an earlier load's copy of the same file). */
  written: boolean;
}

/**
 * The copy of `modelPath` with its weights in an aligned data file, under `dir` (written now
 * unless an earlier load wrote it for the same file, size and modification time), or undefined
 * where the model's inline weights are under `minBytes` or some are external already.
 */
export async function sharedWeightsCopy(modelPath: string, dir: string, minBytes = SHARED_WEIGHTS_MIN_BYTES): Promise<SharedWeights | undefined> {
  const stat = statSync(modelPath);
  // The model file alone holds every inline weight: a smaller file cannot reach the bound.
  if (stat.size < minBytes) return undefined;
  const key = createHash('sha256').update(`${realpathSync(modelPath)}\0${stat.size}\0${stat.mtimeMs}`).digest('hex').slice(0, 16);
  const target = join(dir, key);
  const path = join(target, 'model.onnx');
  if (existsSync(path)) return { path, bytes: statSync(join(target, DATA_FILE)).size, written: false };

  const model = readModel(modelPath);
  const initializers = model.graph?.initializer ?? [];
  if (initializers.some((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)) return undefined;
  const moved = initializers.filter((t) => (t.rawData?.byteLength ?? 0) >= EXTERNAL_MIN_BYTES);
  const total = moved.reduce((sum, t) => sum + t.rawData!.byteLength, 0);
  if (total < minBytes) return undefined;

  // Written beside the target and renamed into place, so a copy is whole or absent.
  mkdirSync(dir, { recursive: true });
  const partial = `${target}.${process.pid}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial);
  const data = await open(join(partial, DATA_FILE), 'w');
  let offset = 0;
  try {
    for (const tensor of moved) {
      offset = Math.ceil(offset / ALIGNMENT) * ALIGNMENT;
      const bytes = tensor.rawData!;
      await data.write(bytes, 0, bytes.byteLength, offset);
      tensor.externalData = [
        { key: 'location', value: DATA_FILE },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(bytes.byteLength) },
      ];
      tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      tensor.rawData = new Uint8Array(0);
      offset += bytes.byteLength;
    }
  } finally {
    await data.close();
  }
  await writeFile(join(partial, 'model.onnx'), encodeModel(model));
  rmSync(target, { recursive: true, force: true });
  renameSync(partial, target);
  forgetOlderCopies(dir, key);
  return { path, bytes: statSync(join(target, DATA_FILE)).size, written: true };
}

/**
 * Removes copies of earlier files of the same version, keeping the newest other one: the version
 * it served may still be draining, and sessions reopened for it read that copy.
 */
function forgetOlderCopies(dir: string, keep: string): void {
  const others = readdirSync(dir)
    .filter((name) => name !== keep)
    .map((name) => ({ name, mtime: statSync(join(dir, name)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  for (const old of others.slice(1)) rmSync(join(dir, old.name), { recursive: true, force: true });
}
