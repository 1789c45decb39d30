// Streams input records from CSV or JSON Lines, optionally gzip-compressed, or Parquet (parquet.ts),
// so inputs far larger than memory work: the consumer pulls records and the file stream pauses
// while it does not.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { UmbraError } from '../errors.js';
import { csvRecords } from './csv-records.js';
import { openParquet } from './parquet.js';
import { isUtf8, notUtf8 } from './utf8.js';

export type InputFormat = 'csv' | 'jsonl' | 'parquet';
export const INPUT_FORMATS: InputFormat[] = ['csv', 'jsonl', 'parquet'];

/**
 * One data record: a quote-free CSV line (its bytes, read in place), parsed CSV fields (records
 * with quotes), or a JSON line (parsed where the record is parsed, which may be another thread);
 * `error` when it could not be read.
 */
export interface InputRecord {
  /** 1-based line in the (decompressed) file, for reject reports. */
  line: number;
  /** A quote-free CSV line is `bytes[start, end)` (UTF-8, no line end); the records of one read share its buffer. */
  bytes?: Uint8Array;
  start?: number;
  end?: number;
  /** The record's values in column order: CSV's field texts, or a Parquet row's values. */
  fields?: unknown[];
  /** A JSON Lines record's text; `object` once parsed (the text is kept: a key may be read from it). */
  json?: string;
  object?: Record<string, unknown>;
  error?: string;
}

export interface InputStream {
  format: InputFormat;
  gzip: boolean;
  /** CSV field delimiter (for records delivered as unsplit `text`). */
  delimiter: string;
  /** Column names: the CSV header, or the keys of the first JSON object in file order. */
  columns(): Promise<string[]>;
  /** Records in file order, a chunk (an array) at a time. */
  records: AsyncIterable<InputRecord[]>;
  /** Bytes read from the file so far (compressed bytes for gzip), for progress and ETA. */
  readonly bytesRead: number;
  readonly totalBytes: number;
  destroy(): void;
}

/** What an input file is, found without reading it: its format, whether it is gzip, its size. */
export interface InputKind {
  format: InputFormat;
  gzip: boolean;
  delimiter: string;
  totalBytes: number;
}

/**
 * Format from the name (.csv, .tsv, .jsonl, .ndjson, with optional .gz), or `format`; gzip from
 * the magic bytes. Throws, naming --input, when the file cannot be read or its format told.
 */
export async function inspectInput(path: string, format?: InputFormat): Promise<InputKind> {
  let head: Buffer;
  let totalBytes: number;
  try {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (st.isDirectory()) throw new Error('it is a directory');
      totalBytes = st.size;
      head = Buffer.alloc(4);
      await fh.read(head, 0, 4, 0);
    } finally {
      await fh.close();
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new UmbraError('INVALID_ARGUMENT', `cannot read the input file ${path} (--input): ${why}`, { cause: err });
  }
  const gzip = head[0] === 0x1f && head[1] === 0x8b;
  // Every Parquet file starts (and ends) with PAR1, whatever its name.
  const parquet = head.toString('latin1') === 'PAR1';
  const bare = path.replace(/\.gz$/i, '').toLowerCase();
  const chosen: InputFormat = format ?? (parquet || /\.(parquet|pq)$/.test(bare) ? 'parquet' : /\.(jsonl|ndjson|json)$/.test(bare) ? 'jsonl' : /\.(csv|tsv|txt)$/.test(bare) ? 'csv' : 'unknown' as InputFormat);
  if (!INPUT_FORMATS.includes(chosen)) {
    throw new UmbraError('INVALID_ARGUMENT', `cannot tell the format of ${path} from its name: expected .csv, .tsv, .jsonl, .ndjson (optionally .gz) or .parquet, or pass --format csv|jsonl|parquet`);
  }
  if (chosen === 'parquet' && !parquet) {
    throw new UmbraError('INVALID_ARGUMENT', `${path} is not a Parquet file (it does not start with PAR1)${gzip ? '; it is gzip data: Parquet compresses its pages itself' : ''}; pass --format csv or jsonl if it is one of those`);
  }
  return { format: chosen, gzip, delimiter: bare.endsWith('.tsv') ? '\t' : ',', totalBytes };
}

/** Opens the input as a stream of records (see inspectInput for what is checked first). */
export async function openInput(path: string, format?: InputFormat): Promise<InputStream> {
  const { format: chosen, gzip, delimiter, totalBytes } = await inspectInput(path, format);
  if (chosen === 'parquet') {
    const parquet = await openParquet(path, true);
    return {
      format: chosen, gzip: false, delimiter,
      columns: async () => parquet.columns,
      records: readingFrom(path, parquet.records),
      get bytesRead() { return parquet.bytesRead; },
      totalBytes,
      destroy() {},
    };
  }
  const file = createReadStream(path, { highWaterMark: 256 * 1024 });
  let bytesRead = 0;
  file.on('data', (chunk) => { bytesRead += chunk.length; });
  let text: Readable = file;
  if (gzip) {
    const gunzip = createGunzip();
    file.on('error', (err) => gunzip.destroy(err));
    text = file.pipe(gunzip);
  }
  const state = chosen === 'csv' ? csvRecords(text, delimiter, path) : jsonlRecords(text);
  return {
    format: chosen,
    gzip,
    delimiter,
    columns: () => state.columns,
    records: readingFrom(path, state.records),
    get bytesRead() { return bytesRead; },
    totalBytes,
    destroy() {
      file.destroy();
      text.destroy();
    },
  };
}

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => { resolve = r; });
  return { promise, resolve };
}

function readFailure(path: string, err: unknown): UmbraError {
  const e = err as NodeJS.ErrnoException;
  if (isUmbraErrorLike(err)) return err as UmbraError;
  const what = e.code === 'Z_DATA_ERROR' || e.code === 'Z_BUF_ERROR' ? 'it is not valid gzip data' : e.message;
  return new UmbraError('INVALID_ARGUMENT', `cannot read the input file ${path}: ${what}`, { cause: err });
}

function isUmbraErrorLike(err: unknown): boolean {
  return err instanceof UmbraError;
}

/** A line that is not UTF-8 text, where lineChunks would give its text. */
interface NotText {
  bytes: Uint8Array;
}

/**
 * The text's lines, a chunk at a time (one array per chunk read), without their line ends (LF;
 * a CR before it stays, JSON's whitespace). Handing records over a chunk at a time keeps the
 * per-record cost to a loop step. A read is decoded at once when it is all UTF-8 (nearly always);
 * otherwise each line is, and one that is not UTF-8 is handed on as its bytes (utf8.ts).
 */
async function* lineChunks(text: Readable): AsyncGenerator<(string | NotText)[]> {
  let rest: Buffer | undefined;
  const lineOf = (bytes: Buffer, start: number, end: number): string | NotText =>
    (isUtf8(bytes.subarray(start, end)) ? bytes.toString('utf8', start, end) : { bytes: bytes.subarray(start, end) });
  for await (const chunk of text as AsyncIterable<Buffer>) {
    const last = chunk.lastIndexOf(10);
    if (last < 0) {
      rest = rest ? Buffer.concat([rest, chunk]) : chunk;
      continue;
    }
    let start = 0;
    let straddling: string | NotText | undefined;
    if (rest) {
      // Only the line that straddles two reads is copied into a buffer of its own.
      const end = chunk.indexOf(10);
      const joined = Buffer.concat([rest, chunk.subarray(0, end)]);
      straddling = lineOf(joined, 0, joined.length);
      start = end + 1;
    }
    rest = last + 1 < chunk.length ? chunk.subarray(last + 1) : undefined;
    let lines: (string | NotText)[] = [];
    if (start <= last) {
      if (isUtf8(chunk.subarray(start, last))) {
        lines = chunk.toString('utf8', start, last).split('\n');
      } else {
        for (let end = chunk.indexOf(10, start); start <= last; start = end + 1, end = chunk.indexOf(10, start)) lines.push(lineOf(chunk, start, end));
      }
    }
    if (straddling !== undefined) lines.unshift(straddling);
    yield lines;
  }
  if (rest) yield [lineOf(rest, 0, rest.length)];
}

/** A JSON Lines record's object, or why the line is not one. */
export function jsonObject(text: string): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return `malformed JSON: ${(err as Error).message}`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'expected a JSON object per line';
  return value as Record<string, unknown>;
}

// Lines are parsed here only until the first object gives the columns; after that each record is
// the line's text, parsed by whichever thread parses the record.
function jsonlRecords(text: Readable): { columns: Promise<string[]>; records: AsyncIterable<InputRecord[]> } {
  const header = deferred<string[]>();
  let known = false;
  async function* records(): AsyncGenerator<InputRecord[]> {
    let line = 0;
    try {
      for await (const chunk of lineChunks(text)) {
        const out: InputRecord[] = [];
        for (const raw of chunk) {
          line += 1;
          if (typeof raw !== 'string') {
            out.push({ line, error: notUtf8(raw.bytes, 0, raw.bytes.length, line)! });
            continue;
          }
          if (raw.trim() === '') continue;
          if (known) {
            out.push({ line, json: raw });
            continue;
          }
          const value = jsonObject(raw);
          if (typeof value === 'string') {
            out.push({ line, error: value });
            continue;
          }
          known = true;
          header.resolve(Object.keys(value));
          // The text stays with the object: a number key past 2^53 is read from it (keys.ts).
          out.push({ line, json: raw, object: value });
        }
        if (out.length > 0) yield out;
      }
    } finally {
      if (!known) header.resolve([]);
    }
  }
  return { columns: header.promise, records: records() };
}

/** The records, with a failure to read the file (an I/O error, bad gzip data) worded for the user. */
async function* readingFrom(path: string, records: AsyncIterable<InputRecord[]>): AsyncGenerator<InputRecord[]> {
  try {
    yield* records;
  } catch (err) {
    throw readFailure(path, err);
  }
}
