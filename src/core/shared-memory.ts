// The system shared-memory regions clients have registered (Triton's shared-memory extension):
// the one list every transport and thread reads. Registering opens the object once; its file
// descriptor is the process's, so every thread reads it through its own table (see
// src/protocol/shared-memory.ts). Off unless the server is started with it: a client that may
// register a region makes the server read and write a memory object of its choosing.
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { UmbraError } from '../errors.js';
import { readByteCount, SharedMemoryTable, type SharedRegion } from '../protocol/shared-memory.js';

/** Where Linux keeps POSIX shared-memory objects (shm_open's names, without their slash). */
export const SHM_DIR = '/dev/shm';

/** A region as the status calls report it. */
export interface RegionStatus {
  name: string;
  key: string;
  offset: number;
  byte_size: number;
}

const OFF_MESSAGE = 'client shared memory is off on this server: start it with --shared-memory on (UMBRA_SHARED_MEMORY=on) to register regions';

function invalidArgument(message: string): UmbraError {
  return new UmbraError('INVALID_ARGUMENT', message);
}


export class SharedMemoryRegistry {
  /** The core thread's own table (the transports on this thread parse with it). */
  readonly table = new SharedMemoryTable();
  private readonly listeners: (() => Promise<void> | void)[] = [];

  constructor(public enabled = false) {}

  /**
   * Called after every change, before the change's call returns: the I/O threads take the new
   * list there, so a client's next request, on any connection, sees what it registered, and a
   * region unregistered is closed only once no thread can reach it.
   */
  onChange(listener: () => Promise<void> | void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** The regions for the I/O threads' catalog; none while the extension is off. */
  regions(): SharedRegion[] {
    return this.table.list();
  }

  status(name?: string): RegionStatus[] {
    this.requireEnabled();
    const regions = name === undefined ? this.table.list() : [this.table.get(name)];
    return regions.map((r) => {
      if (r === undefined) throw new UmbraError('NOT_FOUND', `no system shared memory region named ${JSON.stringify(name)} is registered`);
      return { name: r.name, key: r.key, offset: r.offset, byte_size: r.byteSize };
    });
  }

  /** Registers `byteSize` bytes from `offset` of the object `key` (shm_open's name, e.g. "/input0") as `name`. */
  async register(name: string, key: unknown, offset: unknown, byteSize: unknown): Promise<void> {
    this.requireEnabled();
    if (name === '' || name.length > 255) throw invalidArgument(`expected a region name of 1 to 255 characters but received ${JSON.stringify(name)}`);
    if (typeof key !== 'string' || !/^\/?[^/\0]{1,255}$/.test(key) || key.replace(/^\//, '') === '.' || key.replace(/^\//, '') === '..') {
      throw invalidArgument(`expected a shared memory key as shm_open takes it (one "/" then a name, e.g. "/input0") for "key" but received ${JSON.stringify(key) ?? String(key)}`);
    }
    const start = readByteCount(offset ?? 0, '"offset"', 0, 'INVALID_ARGUMENT');
    const size = readByteCount(byteSize, '"byte_size"', 1, 'INVALID_ARGUMENT');
    if (this.table.get(name) !== undefined) {
      throw new UmbraError('CONFLICT', `a system shared memory region named ${JSON.stringify(name)} is already registered: unregister it first`);
    }
    const path = join(SHM_DIR, key.replace(/^\//, ''));
    let fd: number;
    try {
      // Not through a link: a name under /dev/shm must not lead the server to some other file.
      fd = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw invalidArgument(`the shared memory key ${JSON.stringify(key)} names a symbolic link (${path}), which the server does not follow: register the object itself`);
      if (code === 'ENOENT') throw invalidArgument(`no shared memory object ${JSON.stringify(key)} exists (${path}): create it (shm_open) before registering it`);
      if (code === 'EACCES' || code === 'EPERM') throw invalidArgument(`the server may not read and write the shared memory object ${JSON.stringify(key)} (${path}): give its user access`);
      throw invalidArgument(`could not open the shared memory object ${JSON.stringify(key)} (${path}): ${(err as Error).message}`);
    }
    try {
      const stat = fstatSync(fd);
      if (!stat.isFile()) throw invalidArgument(`expected a shared memory object for "key" but ${path} is not one`);
      if (start + size > stat.size) {
        throw invalidArgument(`expected the region to lie inside the shared memory object ${JSON.stringify(key)} (${stat.size} bytes) but offset ${start} + byte_size ${size} runs past its end`);
      }
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    // Checked again: another call may have taken the name meanwhile (nothing above awaits, but keep it so).
    if (this.table.get(name) !== undefined) {
      closeSync(fd);
      throw new UmbraError('CONFLICT', `a system shared memory region named ${JSON.stringify(name)} is already registered: unregister it first`);
    }
    this.table.add({ name, key, offset: start, byteSize: size, fd });
    await this.changed();
  }

  /** Unregisters `name`, or every region when none is named; an unknown name is not an error. */
  async unregister(name?: string): Promise<void> {
    this.requireEnabled();
    const gone = name === undefined ? this.table.list().map((r) => this.table.delete(r.name)!) : [this.table.delete(name)].filter((r): r is SharedRegion => r !== undefined);
    if (gone.length === 0) return;
    try {
      await this.changed();
    } finally {
      for (const r of gone) closeSync(r.fd);
    }
  }

  /** Closes every region (the server is stopping). */
  close(): void {
    for (const r of this.table.list()) {
      this.table.delete(r.name);
      try {
        closeSync(r.fd);
      } catch {
        // Already closed.
      }
    }
  }

  private async changed(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l()));
  }

  private requireEnabled(): void {
    if (!this.enabled) throw new UmbraError('FORBIDDEN', OFF_MESSAGE);
  }
}
