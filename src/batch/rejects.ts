// The reject file: one JSON line per input row that could not be predicted. Lines are written
// just before the commit that covers them, and a resume truncates the file back to the length
// its checkpoint recorded, so a killed job never leaves a reject listed twice.
import { closeSync, existsSync, mkdirSync, openSync, statSync, truncateSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { UmbraError } from '../errors.js';

export interface Reject {
  line: number;
  key?: string;
  reason: string;
}

export class RejectFile {
  private fd: number | undefined;
  private length: number;

  /** `startAt`: the byte length a resume continues from (0 for a fresh run). */
  constructor(readonly path: string, startAt: number) {
    this.length = startAt;
    try {
      if (existsSync(path)) {
        if (statSync(path).size < startAt) {
          throw new Error(`it is shorter (${statSync(path).size} bytes) than the checkpoint records (${startAt} bytes); it was changed since the job ran`);
        }
        truncateSync(path, startAt);
      }
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `cannot prepare the reject file ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  get bytes(): number {
    return this.length;
  }

  /**
   * Appends synchronously, so the bytes are in the file before the store commits the checkpoint.
   * The file, and the folders it goes in, are created with the first reject.
   */
  write(rejects: Reject[]): void {
    if (rejects.length === 0) return;
    let text = '';
    for (const r of rejects) text += JSON.stringify(r) + '\n';
    try {
      if (this.fd === undefined) {
        mkdirSync(dirname(this.path), { recursive: true });
        this.fd = openSync(this.path, 'a');
      }
      this.length += writeSync(this.fd, text);
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `cannot write the reject file ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
