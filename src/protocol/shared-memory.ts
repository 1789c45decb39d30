// Triton's system shared-memory extension, the protocol's side: a tensor named by the parameters
// shared_memory_region / _offset / _byte_size is read from, or written to, a region a client on
// the same host registered (a slice of a POSIX shared-memory object, which Linux keeps under
// /dev/shm), instead of travelling in the request or the answer. The regions themselves are kept
// by the core (src/core/shared-memory.ts); every thread that parses requests reads them through a
// table of its own, and the objects' file descriptors are the process's, shared by every thread.
import { readSync, writeSync } from 'node:fs';
import { UmbraError } from '../errors.js';
import { markOwned } from '../owned-buffers.js';
import { tensorDataToBinary } from './binary-data.js';
import type { InferRequest, InferResponse, Tensor, TensorData } from './types.js';
import { badInput } from './validate.js';

/** A registered region: `byteSize` bytes from `offset` of the object `key`, open as `fd`. */
export interface SharedRegion {
  name: string;
  key: string;
  offset: number;
  byteSize: number;
  fd: number;
}

/** Where one tensor lies, as its shared_memory_* parameters say. */
export interface SharedRef {
  region: string;
  offset: number;
  byteSize: number;
}

/**
 * A byte count or offset of at least `min`, as a number or its decimal string (gRPC's int64_param
 * past 2^53 arrives as one); `code` says whose mistake it is (a request's, or a register call's).
 */
export function readByteCount(value: unknown, what: string, min = 0, code: 'INVALID_INPUT' | 'INVALID_ARGUMENT' = 'INVALID_INPUT'): number {
  const n = typeof value === 'string' && /^\d{1,16}$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
    const expected = min === 0 ? 'a non-negative integer' : `an integer of at least ${min}`;
    throw new UmbraError(code, `expected ${expected} for ${what} but received ${JSON.stringify(value) ?? String(value)}`);
  }
  return n;
}

/** The tensor's place in shared memory, or undefined when its parameters name none. */
export function readSharedRef(parameters: Record<string, unknown> | undefined, what: string): SharedRef | undefined {
  if (parameters === undefined) return undefined;
  const region = parameters['shared_memory_region'];
  const size = parameters['shared_memory_byte_size'];
  const offset = parameters['shared_memory_offset'];
  if (region === undefined && size === undefined && offset === undefined) return undefined;
  if (region === undefined || size === undefined) {
    throw badInput(`expected both parameters.shared_memory_region and parameters.shared_memory_byte_size for ${what} but received only ${region === undefined ? (size === undefined ? 'shared_memory_offset' : 'shared_memory_byte_size') : 'shared_memory_region'}`);
  }
  if (typeof region !== 'string' || region === '') {
    throw badInput(`expected a region name (a non-empty string) for ${what} parameters.shared_memory_region but received ${JSON.stringify(region)}`);
  }
  return {
    region,
    byteSize: readByteCount(size, `${what} parameters.shared_memory_byte_size`),
    offset: offset === undefined ? 0 : readByteCount(offset, `${what} parameters.shared_memory_offset`),
  };
}

/** The regions one thread may read and write, by name. */
export class SharedMemoryTable {
  private regions = new Map<string, SharedRegion>();

  /** Takes the core's list as it now stands (an I/O thread, on each catalog). */
  replace(regions: readonly SharedRegion[]): void {
    this.regions = new Map(regions.map((r) => [r.name, r]));
  }

  add(region: SharedRegion): void {
    this.regions.set(region.name, region);
  }

  delete(name: string): SharedRegion | undefined {
    const region = this.regions.get(name);
    this.regions.delete(name);
    return region;
  }

  get(name: string): SharedRegion | undefined {
    return this.regions.get(name);
  }

  list(): SharedRegion[] {
    return [...this.regions.values()];
  }

  /** The region `ref` names, with the tensor's bytes inside it; throws naming what is wrong. */
  resolve(ref: SharedRef, what: string): SharedRegion {
    const region = this.regions.get(ref.region);
    if (region === undefined) {
      throw badInput(`expected a registered shared memory region for ${what} parameters.shared_memory_region but received ${JSON.stringify(ref.region)} (register it first: POST /v2/systemsharedmemory/region/${encodeURIComponent(ref.region)}/register)`);
    }
    if (ref.offset + ref.byteSize > region.byteSize) {
      throw badInput(`expected ${what} to lie inside shared memory region ${JSON.stringify(region.name)} (${region.byteSize} bytes) but shared_memory_offset ${ref.offset} + shared_memory_byte_size ${ref.byteSize} runs past its end`);
    }
    return region;
  }

  /** A copy of the tensor's bytes (the client may write the region again as soon as it has its answer). */
  read(ref: SharedRef, what: string): Buffer {
    const region = this.resolve(ref, what);
    const out = Buffer.allocUnsafe(ref.byteSize);
    // Read for this request alone: it may go to the core's thread by transfer.
    markOwned(out.buffer, 'always');
    let done = 0;
    try {
      while (done < ref.byteSize) {
        const n = readSync(region.fd, out, done, ref.byteSize - done, region.offset + ref.offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (err) {
      throw new UmbraError('INVALID_INPUT', `could not read ${what} from shared memory region ${JSON.stringify(region.name)} (object ${region.key}): ${(err as Error).message}`);
    }
    if (done < ref.byteSize) {
      throw badInput(`expected ${ref.byteSize} bytes for ${what} in shared memory region ${JSON.stringify(region.name)} but its object ${region.key} ends after ${done} of them (was it truncated after it was registered?)`);
    }
    return out;
  }

  /** Writes an output's bytes where `ref` says; the region slice must hold all of them. */
  write(ref: SharedRef, bytes: Uint8Array, what: string): void {
    const region = this.resolve(ref, what);
    if (bytes.byteLength > ref.byteSize) {
      throw badInput(`expected shared_memory_byte_size of at least ${bytes.byteLength} for ${what} (the answer's size) but received ${ref.byteSize}`);
    }
    let done = 0;
    try {
      while (done < bytes.byteLength) done += writeSync(region.fd, bytes, done, bytes.byteLength - done, region.offset + ref.offset + done);
    } catch (err) {
      throw new UmbraError('INVALID_INPUT', `could not write ${what} to shared memory region ${JSON.stringify(region.name)} (object ${region.key}): ${(err as Error).message}`);
    }
  }
}

/** An output the answer left in shared memory: its name, type and shape, with no data in the body. */
export function isSharedOutput(t: Tensor): boolean {
  return t.data.length === 0 && t.parameters !== undefined && t.parameters['shared_memory_region'] !== undefined;
}

function emptyLike(data: TensorData): TensorData {
  return Array.isArray(data) ? [] : new (data.constructor as new (n: number) => Exclude<TensorData, string[]>)(0);
}

/**
 * Writes the outputs the request asked for in shared memory into their regions, and returns the
 * answer with those outputs' data taken out (their parameters say where it went and how many
 * bytes it is). The answer passed in is left as it was (the hooks may hold it).
 */
export function placeSharedOutputs(request: InferRequest, response: InferResponse, table: SharedMemoryTable): InferResponse {
  const wanted = request.outputs;
  if (wanted === undefined || !wanted.some((o) => o.sharedMemory !== undefined)) return response;
  const outputs = response.outputs.map((t) => {
    const ref = wanted.find((o) => o.name === t.name)?.sharedMemory;
    // Already written where the request was parsed again (a version of another signature).
    if (ref === undefined || isSharedOutput(t)) return t;
    const bytes = tensorDataToBinary(t);
    table.write(ref, bytes, `output ${JSON.stringify(t.name)}`);
    const parameters: Record<string, unknown> = { ...t.parameters, shared_memory_region: ref.region, shared_memory_byte_size: bytes.byteLength };
    if (ref.offset !== 0) parameters['shared_memory_offset'] = ref.offset;
    const placed: Tensor = { name: t.name, datatype: t.datatype, shape: t.shape, data: emptyLike(t.data), parameters };
    return placed;
  });
  const out: InferResponse = { model_name: response.model_name, model_version: response.model_version, outputs };
  if (response.id !== undefined) out.id = response.id;
  if (response.parameters !== undefined) out.parameters = response.parameters;
  return out;
}
