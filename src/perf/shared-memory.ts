// `umbra perf --shared-memory system`, as perf_analyzer's: the payloads' inputs are written once
// into a POSIX shared-memory object this process makes, registered with the server as a region,
// and every request names its slice instead of carrying the tensors; each output goes to a slot
// of --output-shared-memory-size bytes in a second region (one slot per output, shared by every
// request in flight, as perf_analyzer shares them). What is measured is then the server's side of
// the extension: nothing of a tensor crosses the socket, and the generator copies nothing.
import { randomBytes } from 'node:crypto';
import { UmbraError } from '../errors.js';
import { UmbraGrpcClient } from '../client/grpc.js';
import { UmbraHttpClient } from '../client/http.js';
import { SharedMemoryObject } from '../client/shared-memory.js';
import { sharedMemoryParameters } from '../client/tensors.js';
import type { Payload } from './payload.js';

/** perf_analyzer's default output slot. */
export const DEFAULT_OUTPUT_SHARED_MEMORY_BYTES = 100 * 1024;

export interface SharedPlacement {
  /** The payloads with every tensor named by region and slice. */
  payloads: Payload[];
  /** Unregisters the regions and removes the object. */
  release(): Promise<void>;
}

const align = (n: number) => Math.ceil(n / 64) * 64;

interface RegionCalls {
  register(name: string, key: string, byteSize: number, offset: number): Promise<void>;
  unregister(name: string): Promise<void>;
  close(): void;
}

function regionCalls(url: string, grpc: boolean): RegionCalls {
  if (grpc) {
    const client = new UmbraGrpcClient(url);
    return {
      register: (name, key, byteSize, offset) => client.registerSystemSharedMemory(name, key, byteSize, offset),
      unregister: (name) => client.unregisterSystemSharedMemory(name),
      close: () => client.close(),
    };
  }
  const client = new UmbraHttpClient(url);
  return {
    register: (name, key, byteSize, offset) => client.registerSystemSharedMemory(name, key, byteSize, offset),
    unregister: (name) => client.unregisterSystemSharedMemory(name),
    close: () => undefined,
  };
}

/** Writes the payloads' inputs into a new object, registers it, and rewrites the payloads to name it. */
export async function placeInSharedMemory(payloads: Payload[], outputs: string[], outputBytes: number, url: string, grpc: boolean): Promise<SharedPlacement> {
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const inRegion = `umbra_perf_${tag}_in`;
  const outRegion = `umbra_perf_${tag}_out`;
  let inputBytes = 0;
  const offsets = payloads.map((p) => p.tensors.map((t) => {
    const at = inputBytes;
    inputBytes = align(at + t.bytes.byteLength);
    return at;
  }));
  inputBytes = Math.max(inputBytes, 64);
  const outputsAt = inputBytes;
  const total = outputsAt + Math.max(1, outputs.length) * outputBytes;
  const object = SharedMemoryObject.create(`/umbra-perf-${tag}`, total);
  payloads.forEach((p, i) => p.tensors.forEach((t, j) => object.write(offsets[i]![j]!, t.bytes)));
  const calls = regionCalls(url, grpc);
  const registered: string[] = [];
  const release = async () => {
    try {
      for (const name of registered.splice(0)) await calls.unregister(name).catch(() => undefined);
    } finally {
      calls.close();
      object.destroy();
    }
  };
  try {
    await calls.register(inRegion, object.key, inputBytes, 0);
    registered.push(inRegion);
    if (outputs.length > 0) {
      await calls.register(outRegion, object.key, outputs.length * outputBytes, outputsAt);
      registered.push(outRegion);
    }
  } catch (err) {
    await release();
    throw new UmbraError('INVALID_ARGUMENT', `--shared-memory system: the server did not register the region (${(err as Error).message}); it needs --shared-memory on, and registering is an admin call (a loopback client when it has no admin token)`);
  }
  const requested = outputs.map((name, k) => ({ name, parameters: sharedMemoryParameters(outRegion, outputBytes, k * outputBytes) }));
  const placed = payloads.map((p, i): Payload => {
    const tensors = p.tensors.map((t, j) => ({ name: t.name, datatype: t.datatype, shape: t.shape, bytes: Buffer.alloc(0), parameters: sharedMemoryParameters(inRegion, t.bytes.byteLength, offsets[i]![j]!) }));
    const json = JSON.stringify({ inputs: tensors.map((t) => ({ name: t.name, shape: t.shape, datatype: t.datatype, parameters: t.parameters })), ...(requested.length > 0 ? { outputs: requested } : {}) });
    const header = Buffer.from(json);
    return { json, binary: { body: header, headerLength: header.byteLength }, tensors, outputs: requested };
  });
  return { payloads: placed, release };
}
