// Parquet input for batch jobs (what Spark, pandas, pyarrow and feature stores write), read with
// hyparquet: one row group at a time, so memory holds one group's rows, not the file's. Each row
// becomes a record like a JSON Lines object (column name -> value), numbered from 1 in file order,
// so mapping, keys, rejects and exactly-once resume work as they do for JSON Lines. Snappy, gzip,
// zstd, brotli and LZ4 pages are read (hyparquet-compressors).
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema, type FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { UmbraError } from '../errors.js';
import type { InputRecord } from './reader.js';

/** Records handed on at a time: a row group is split so that parsing starts before all of it is handed over. */
const CHUNK_ROWS = 4096;

export interface ParquetInput {
  columns: string[];
  records: AsyncIterable<InputRecord[]>;
  /** Compressed bytes of the row groups read so far. */
  readonly bytesRead: number;
}

/** A value as a JSON Lines record would hold it: int64 as a number (a string past 2^53), timestamps as ISO text, bytes and lists as arrays. */
function plain(value: unknown): unknown {
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value instanceof Date) return value.toISOString();
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>);
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return value;
}

function unreadable(path: string, err: unknown): UmbraError {
  return new UmbraError('INVALID_ARGUMENT', `cannot read the input file ${path} as Parquet: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

export async function openParquet(path: string): Promise<ParquetInput> {
  let metadata: FileMetaData;
  const file = await asyncBufferFromFile(path);
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (err) {
    throw unreadable(path, err);
  }
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  let bytesRead = 0;
  async function* records(): AsyncGenerator<InputRecord[]> {
    let rowStart = 0;
    for (const group of metadata.row_groups) {
      const rows = Number(group.num_rows);
      let objects: Record<string, unknown>[];
      try {
        objects = await parquetReadObjects({ file, metadata, rowStart, rowEnd: rowStart + rows, compressors });
      } catch (err) {
        throw unreadable(path, err);
      }
      for (let at = 0; at < objects.length; at += CHUNK_ROWS) {
        const chunk: InputRecord[] = [];
        for (let i = at; i < Math.min(at + CHUNK_ROWS, objects.length); i++) {
          const row = objects[i]!;
          const object: Record<string, unknown> = {};
          for (const name of columns) object[name] = plain(row[name]);
          chunk.push({ line: rowStart + i + 1, object });
        }
        yield chunk;
      }
      bytesRead += group.columns.reduce((n, c) => n + Number(c.meta_data?.total_compressed_size ?? 0), 0);
      rowStart += rows;
    }
  }
  return { columns, records: records(), get bytesRead() { return bytesRead; } };
}
