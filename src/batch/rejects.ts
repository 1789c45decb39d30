// The reject file: one JSON line per input row that could not be predicted. Lines are written
// just before the commit that covers them, and a resume truncates the file back to the length
// its checkpoint recorded, so a killed job never leaves a reject listed twice. Nothing touches the
// file before the first reject (or the job's end): a job that fails first leaves it as it was.
import { closeSync, ftruncateSync, fstatSync, mkdirSync, openSync, statSync, truncateSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { UmbraError } from '../errors.js';
import { sameFile } from '../real-path.js';

export interface Reject {
  line: number;
  key?: string;
  reason: string;
}

export class RejectFile {
  private fd: number | undefined;
  private length: number;

  /** `startAt`: the byte length a resume continues from (0 for a fresh run). Only checks the file. */
  constructor(readonly path: string, private readonly startAt: number) {
    this.length = startAt;
    try {
      const st = statSync(path, { throwIfNoEntry: false });
      if (st) checkLength(st.size, startAt);
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `cannot prepare the reject file ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  get bytes(): number {
    return this.length;
  }

  /**
   * Appends synchronously, so the bytes are in the file before the store commits the checkpoint.
   * The file, and the folders it goes in, are created with the first reject; what it held past
   * `startAt` (an earlier run's rejects, or a killed run's after its last checkpoint) goes then.
   */
  write(rejects: Reject[]): void {
    if (rejects.length === 0) return;
    let text = '';
    for (const r of rejects) text += JSON.stringify(r) + '\n';
    try {
      if (this.fd === undefined) {
        mkdirSync(dirname(this.path), { recursive: true });
        const fd = openSync(this.path, 'a');
        try {
          checkLength(fstatSync(fd).size, this.startAt);
          ftruncateSync(fd, this.startAt);
        } catch (err) {
          closeSync(fd);
          throw err;
        }
        this.fd = fd;
      }
      this.length += writeSync(this.fd, text);
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `cannot write the reject file ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Before the job's last commit: a job that wrote no reject still leaves the file as its
   * checkpoint says, without an earlier run's rejects (which would read as this run's).
   */
  finish(): void {
    if (this.fd !== undefined) return;
    try {
      const st = statSync(this.path, { throwIfNoEntry: false });
      if (st && st.size > this.startAt) truncateSync(this.path, this.startAt);
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `cannot write the reject file ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function checkLength(size: number, startAt: number): void {
  if (size < startAt) throw new Error(`it is shorter (${size} bytes) than the checkpoint records (${startAt} bytes); it was changed since the job ran`);
}

/**
 * Why the reject file cannot be `path`, or undefined where it can: it must not be a folder, the
 * input, or the SQLite store's file (or the journal files beside it). Rejects written there would
 * overwrite the very file the job reads or stores into.
 */
export function rejectsPathProblem(path: string, input: string, sqlitePath: string | undefined): string | undefined {
  if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) return `${path} is a folder`;
  if (sameFile(path, input)) return `${path} is the input file (--input ${input}); rejects written there would overwrite it`;
  if (sqlitePath !== undefined) {
    for (const [suffix, what] of [['', 'file'], ['-wal', 'write-ahead log'], ['-shm', 'shared-memory file'], ['-journal', 'journal']] as const) {
      if (sameFile(path, sqlitePath + suffix)) return `${path} is the SQLite store's ${what} (--store sqlite:${sqlitePath}); rejects written there would destroy the store`;
    }
  }
  return undefined;
}
