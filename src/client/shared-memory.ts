// `umbra/client/shared-memory` (Node only): POSIX shared-memory objects for Triton's system
// shared-memory extension, made as shm_open makes them on Linux (a file under /dev/shm), for a
// client on the server's host: create one, register it (or a slice of it) with the server as a
// region, write inputs into it and read outputs from it.
import { closeSync, constants, fstatSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { UmbraClientError, tensorBytes, tensorFromBytes, type ClientTensor, type ClientTensorData, type DataType } from './tensors.js';

const SHM_DIR = '/dev/shm';

function pathOf(key: string): string {
  if (!/^\/?[^/\0]{1,255}$/.test(key) || key.replace(/^\//, '') === '.' || key.replace(/^\//, '') === '..') {
    throw new UmbraClientError(`expected a shared memory key as shm_open takes it (one "/" then a name, e.g. "/input0") but received ${JSON.stringify(key)}`, 0);
  }
  return join(SHM_DIR, key.replace(/^\//, ''));
}

export class SharedMemoryObject {
  private fd: number | undefined;

  private constructor(readonly key: string, readonly byteSize: number, fd: number) {
    this.fd = fd;
  }

  /** A new object of `byteSize` zero bytes named `key` ("/name"); fails if one of that name exists. */
  static create(key: string, byteSize: number): SharedMemoryObject {
    const path = pathOf(key);
    const name = key.startsWith('/') ? key : `/${key}`;
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Left by a client that ended without destroy(), or another client's: the raw EEXIST named neither.
      throw new UmbraClientError(`the shared memory object ${name} (${path}) already exists: choose another key, or, if nothing uses it, remove it (SharedMemoryObject.open(${JSON.stringify(name)}).destroy(), or rm ${path}) and create it again`, 0);
    }
    try {
      ftruncateSync(fd, byteSize);
    } catch (err) {
      closeSync(fd);
      unlinkSync(path);
      throw err;
    }
    return new SharedMemoryObject(name, byteSize, fd);
  }

  /** An object another process made. */
  static open(key: string): SharedMemoryObject {
    const fd = openSync(pathOf(key), 'r+');
    return new SharedMemoryObject(key.startsWith('/') ? key : `/${key}`, fstatSync(fd).size, fd);
  }

  /** Writes a tensor's bytes (as the binary tensor extension has them) at `offset`; returns how many. */
  write(offset: number, tensor: ClientTensor | Uint8Array): number {
    const bytes = tensor instanceof Uint8Array ? tensor : tensorBytes(tensor);
    this.check(offset, bytes.byteLength);
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(this.open(), bytes, done, bytes.byteLength - done, offset + done);
    return bytes.byteLength;
  }

  /** `byteSize` bytes at `offset` as a tensor of `datatype` and `shape` (a copy). */
  read(offset: number, byteSize: number, datatype: DataType, shape: number[]): ClientTensorData {
    this.check(offset, byteSize);
    const out = new Uint8Array(byteSize);
    let done = 0;
    while (done < byteSize) {
      const n = readSync(this.open(), out, done, byteSize - done, offset + done);
      if (n === 0) throw new UmbraClientError(`the shared memory object ${this.key} ends at ${offset + done}, before ${offset + byteSize}`, 0);
      done += n;
    }
    return tensorFromBytes(out, 0, byteSize, datatype, shape);
  }

  /** Closes this process's handle; the object stays for others (and the server) until destroyed. */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** Closes and removes the object (unregister it from the server first). */
  destroy(): void {
    this.close();
    try {
      unlinkSync(pathOf(this.key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  private open(): number {
    if (this.fd === undefined) throw new UmbraClientError(`the shared memory object ${this.key} is closed`, 0);
    return this.fd;
  }

  private check(offset: number, bytes: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + bytes > this.byteSize) {
      throw new UmbraClientError(`expected ${bytes} bytes at offset ${offset} to lie inside the shared memory object ${this.key} (${this.byteSize} bytes)`, 0);
    }
  }
}
