// Streams input records from CSV or JSON Lines, optionally gzip-compressed, so inputs far larger
// than memory work: the consumer pulls records and the file stream pauses while it does not.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import { parse as parseSync } from 'csv-parse/sync';
import { UmbraError } from '../errors.js';

export type InputFormat = 'csv' | 'jsonl';

/**
 * One data record: a quote-free CSV line (its bytes, read in place), parsed CSV fields (records
 * with quotes), or a JSON object; `error` when it could not be parsed.
 */
export interface InputRecord {
  /** 1-based line in the (decompressed) file, for reject reports. */
  line: number;
  /** A quote-free CSV line is `bytes[start, end)` (UTF-8, no line end); the records of one read share its buffer. */
  bytes?: Uint8Array;
  start?: number;
  end?: number;
  fields?: string[];
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

/** Format from the name (.csv, .tsv, .jsonl, .ndjson, with optional .gz); gzip from the magic bytes. */
export async function openInput(path: string, format?: InputFormat): Promise<InputStream> {
  let head: Buffer;
  let totalBytes: number;
  try {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (st.isDirectory()) throw new Error('it is a directory');
      totalBytes = st.size;
      head = Buffer.alloc(2);
      await fh.read(head, 0, 2, 0);
    } finally {
      await fh.close();
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new UmbraError('INVALID_ARGUMENT', `cannot read the input file ${path} (--input): ${why}`, { cause: err });
  }
  const gzip = head[0] === 0x1f && head[1] === 0x8b;
  const bare = path.replace(/\.gz$/i, '').toLowerCase();
  const chosen: InputFormat = format ?? (/\.(jsonl|ndjson|json)$/.test(bare) ? 'jsonl' : /\.(csv|tsv|txt)$/.test(bare) ? 'csv' : 'unknown' as InputFormat);
  if (chosen !== 'csv' && chosen !== 'jsonl') {
    throw new UmbraError('INVALID_ARGUMENT', `cannot tell the format of ${path} from its name: expected .csv, .tsv, .jsonl or .ndjson (optionally .gz), or pass --format csv|jsonl`);
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
  const delimiter = bare.endsWith('.tsv') ? '\t' : ',';
  const state = chosen === 'csv' ? csvRecords(text, delimiter, path) : jsonlRecords(text, path);
  return {
    format: chosen,
    gzip,
    delimiter,
    columns: () => state.columns,
    records: state.records,
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

/**
 * The text's lines, a chunk at a time (one array per chunk read), without the line ends (LF or
 * CRLF). Handing records over a chunk at a time keeps the per-record cost to a loop step.
 */
async function* lineChunks(text: Readable): AsyncGenerator<string[]> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of text as AsyncIterable<Buffer>) {
    const lines = (rest + decoder.write(chunk)).split('\n');
    rest = lines.pop()!;
    yield lines;
  }
  rest += decoder.end();
  if (rest !== '') yield [rest];
}

// Most CSV lines have no quotes: those stay bytes in the buffer they were read into, and the
// numbers are read straight from there (no UTF-8 decoding, no string per line or field), which is
// several times faster than a general parser on wide rows. The header and any line with a quote
// are decoded; a quoted line is joined with the following lines until its quotes balance (a quoted
// field may hold newlines) and that record goes through csv-parse.
function csvRecords(stream: Readable, delimiter: string, path: string): { columns: Promise<string[]>; records: AsyncIterable<InputRecord[]> } {
  const header = deferred<string[]>();
  const parseQuoted = (record: string, line: number): string[] => {
    try {
      const rows = parseSync(record, { delimiter, relax_column_count: true, relax_quotes: false }) as string[][];
      return rows[0] ?? [];
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `malformed CSV in ${path} at line ${line}: ${(err as Error).message}`, { cause: err });
    }
  };
  let line = 0;
  let first = true;
  let pending: string | undefined;
  let pendingLine = 0;
  // The next '"' at or after the current line in the current buffer (Infinity: none), so finding
  // quotes costs one pass over each buffer, not one search per line.
  let nextQuote = -1;
  const takeLine = (bytes: Buffer, start: number, end: number, out: InputRecord[]): void => {
    line += 1;
    if (end > start && bytes[end - 1] === 13) end -= 1;
    if (line === 1 && end - start >= 3 && bytes[start] === 0xef && bytes[start + 1] === 0xbb && bytes[start + 2] === 0xbf) start += 3;
    if (nextQuote < start) {
      const q = bytes.indexOf(34, start);
      nextQuote = q < 0 ? Number.POSITIVE_INFINITY : q;
    }
    if (pending === undefined && !first && nextQuote >= end) {
      if (end > start) out.push({ line, bytes, start, end });
      return;
    }
    const raw = bytes.toString('utf8', start, end);
    let fields: string[];
    let at = line;
    if (pending !== undefined) {
      pending += '\n' + raw;
      if (quoteCount(pending) % 2 === 1) return;
      fields = parseQuoted(pending, pendingLine);
      at = pendingLine;
      pending = undefined;
    } else if (nextQuote < end) {
      if (quoteCount(raw) % 2 === 1) {
        pending = raw;
        pendingLine = line;
        return;
      }
      fields = parseQuoted(raw, line);
    } else if (raw === '') {
      return;
    } else {
      fields = raw.split(delimiter);
    }
    if (first) {
      first = false;
      header.resolve(fields.map((c) => c.trim()));
      return;
    }
    out.push({ line: at, fields });
  };
  async function* records(): AsyncGenerator<InputRecord[]> {
    let rest: Buffer | undefined;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        const last = chunk.lastIndexOf(10);
        if (last < 0) {
          rest = rest ? Buffer.concat([rest, chunk]) : chunk;
          continue;
        }
        const out: InputRecord[] = [];
        let start = 0;
        if (rest) {
          // Only the line that straddles two reads is copied into a buffer of its own.
          const end = chunk.indexOf(10);
          const joined = Buffer.concat([rest, chunk.subarray(0, end)]);
          nextQuote = -1;
          takeLine(joined, 0, joined.length, out);
          start = end + 1;
        }
        rest = last + 1 < chunk.length ? chunk.subarray(last + 1) : undefined;
        nextQuote = -1;
        while (start <= last) {
          const end = chunk.indexOf(10, start);
          takeLine(chunk, start, end, out);
          start = end + 1;
        }
        if (out.length > 0) yield out;
      }
      if (rest) {
        nextQuote = -1;
        const out: InputRecord[] = [];
        takeLine(rest, 0, rest.length, out);
        if (out.length > 0) yield out;
      }
      if (pending !== undefined) throw new UmbraError('INVALID_ARGUMENT', `malformed CSV in ${path} at line ${pendingLine}: a quoted field is not closed before the end of the file`);
    } catch (err) {
      throw readFailure(path, err);
    } finally {
      if (first) header.resolve([]);
    }
  }
  return { columns: header.promise, records: records() };
}

function quoteCount(text: string): number {
  let n = 0;
  for (let i = text.indexOf('"'); i >= 0; i = text.indexOf('"', i + 1)) n += 1;
  return n;
}

function jsonlRecords(text: Readable, path: string): { columns: Promise<string[]>; records: AsyncIterable<InputRecord[]> } {
  const header = deferred<string[]>();
  let known = false;
  async function* records(): AsyncGenerator<InputRecord[]> {
    let line = 0;
    try {
      for await (const chunk of lineChunks(text)) {
        const out: InputRecord[] = [];
        for (const raw of chunk) {
          line += 1;
          if (raw.trim() === '') continue;
          let value: unknown;
          try {
            value = JSON.parse(raw);
          } catch (err) {
            out.push({ line, error: `malformed JSON: ${(err as Error).message}` });
            continue;
          }
          if (typeof value !== 'object' || value === null || Array.isArray(value)) {
            out.push({ line, error: 'expected a JSON object per line' });
            continue;
          }
          if (!known) {
            known = true;
            header.resolve(Object.keys(value));
          }
          out.push({ line, object: value as Record<string, unknown> });
        }
        if (out.length > 0) yield out;
      }
    } catch (err) {
      throw readFailure(path, err);
    } finally {
      if (!known) header.resolve([]);
    }
  }
  return { columns: header.promise, records: records() };
}
