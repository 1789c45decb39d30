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
 * One data record: a quote-free CSV line (`text`, split lazily), parsed CSV fields (records with
 * quotes), or a JSON object; `error` when it could not be parsed.
 */
export interface InputRecord {
  /** 1-based line in the (decompressed) file, for reject reports. */
  line: number;
  text?: string;
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

function stripCr(line: string): string {
  return line.charCodeAt(line.length - 1) === 13 ? line.slice(0, -1) : line;
}

// Most CSV lines have no quotes: those are split directly, which is several times faster than a
// general parser on wide rows. A line with a quote is joined with the following lines until its
// quotes balance (a quoted field may hold newlines) and that record goes through csv-parse.
function csvRecords(text: Readable, delimiter: string, path: string): { columns: Promise<string[]>; records: AsyncIterable<InputRecord[]> } {
  const header = deferred<string[]>();
  const parseQuoted = (record: string, line: number): string[] => {
    try {
      const rows = parseSync(record, { delimiter, relax_column_count: true, relax_quotes: false }) as string[][];
      return rows[0] ?? [];
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `malformed CSV in ${path} at line ${line}: ${(err as Error).message}`, { cause: err });
    }
  };
  async function* records(): AsyncGenerator<InputRecord[]> {
    let line = 0;
    let first = true;
    let pending: string | undefined;
    let pendingLine = 0;
    try {
      for await (const chunk of lineChunks(text)) {
        const out: InputRecord[] = [];
        for (let raw of chunk) {
          line += 1;
          raw = stripCr(raw);
          if (line === 1 && raw.charCodeAt(0) === 0xfeff) raw = raw.slice(1);
          let fields: string[] | undefined;
          let at = line;
          if (pending !== undefined) {
            pending += '\n' + raw;
            if (quoteCount(pending) % 2 === 1) continue;
            fields = parseQuoted(pending, pendingLine);
            at = pendingLine;
            pending = undefined;
          } else if (raw.includes('"')) {
            if (quoteCount(raw) % 2 === 1) {
              pending = raw;
              pendingLine = line;
              continue;
            }
            fields = parseQuoted(raw, line);
          } else if (raw === '') {
            continue;
          } else if (first) {
            fields = raw.split(delimiter);
          } else {
            out.push({ line, text: raw });
            continue;
          }
          if (first) {
            first = false;
            header.resolve(fields.map((c) => c.trim()));
            continue;
          }
          out.push({ line: at, fields });
        }
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
