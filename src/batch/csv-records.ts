// CSV records from a byte stream. Most lines have no quotes: those stay bytes in the buffer they
// were read into and the numbers are read straight from there (csv-line.ts), several times faster
// than a general parser on wide rows. A line with a quote is decoded and scanned for where its
// quotes leave off; a quoted field may hold newlines, so the record may go on over the next lines.
//
// Broken quoting must cost one row, not the job: a record whose quotes are malformed, never close
// (within MAX_QUOTED_RECORD_BYTES or before the end of the file), or close only after swallowing
// lines into a record of the wrong width is rejected at the line where it began, and the lines
// after that one are read again as records of their own. Which lines become which records depends
// only on the file's content, so a resumed job counts records exactly as the first run did.
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import type { parse as ParseSync } from 'csv-parse/sync';
import { UmbraError } from '../errors.js';
import type { InputRecord } from './reader.js';
import { isUtf8, notUtf8 } from './utf8.js';

// Loaded with the first quoted record: most inputs have none, and a reader thread starts sooner without it.
let parseSync: typeof ParseSync | undefined;
const require = createRequire(import.meta.url);

/** How far a quoted field may run over following lines before the record is given up as malformed. */
export const MAX_QUOTED_RECORD_BYTES = 1 << 20;

const FIELD_START = 0;
const UNQUOTED = 1;
const QUOTED = 2;
const QUOTE_IN_QUOTED = 3;

interface QuoteScan {
  /** The state after the text: QUOTED means the record goes on over the next line. */
  state: number;
  /** Fields begun so far in the record. */
  fields: number;
  /** Where a quote broke the rules (-1: nowhere). */
  malformedAt: number;
}

/**
 * RFC 4180 quoting over one line: a field is quoted only from its first character, a quote inside
 * a quoted field is doubled, and a closing quote is followed by a delimiter or the line end.
 */
function scanQuotes(text: string, delimiter: number, state: number, fields: number): QuoteScan {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    switch (state) {
      case FIELD_START:
        if (c === 34) state = QUOTED;
        else if (c === delimiter) fields += 1;
        else state = UNQUOTED;
        break;
      case UNQUOTED:
        if (c === delimiter) {
          state = FIELD_START;
          fields += 1;
        } else if (c === 34) {
          return { state, fields, malformedAt: i };
        }
        break;
      case QUOTED:
        if (c === 34) state = QUOTE_IN_QUOTED;
        break;
      default:
        if (c === 34) {
          state = QUOTED;
        } else if (c === delimiter) {
          state = FIELD_START;
          fields += 1;
        } else {
          return { state, fields, malformedAt: i };
        }
    }
  }
  return { state: state === QUOTE_IN_QUOTED ? UNQUOTED : state, fields, malformedAt: -1 };
}

/** A line decoded to be split as CSV (one with a quote, or read again after an abandoned record). */
interface TextLine {
  line: number;
  /** Without its line end. */
  text: string;
  /** Whether its line end was CRLF, not LF: inside a quoted field, the field keeps it. */
  crlf: boolean;
  /** Why the line is not UTF-8 (its text then has U+FFFD in place of those bytes). */
  notUtf8: string | undefined;
}

interface Pending {
  line: number;
  parts: TextLine[];
  bytes: number;
  fields: number;
  /** Why the first of its lines that is not UTF-8 is not: the record is then a reject. */
  notUtf8: string | undefined;
}

/** The header's columns and the data records, a chunk (one array per read) at a time. */
export function csvRecords(stream: Readable, delimiter: string, path: string): { columns: Promise<string[]>; records: AsyncIterable<InputRecord[]> } {
  let resolveHeader!: (columns: string[]) => void;
  const header = new Promise<string[]>((resolve) => { resolveHeader = resolve; });
  const delimiterCode = delimiter.charCodeAt(0);
  /** The header's column count, once read (-1 before). */
  let width = -1;
  let line = 0;
  let pending: Pending | undefined;
  // The next '"' at or after the current line in the current buffer (Infinity: none), so finding
  // quotes costs one pass over each buffer, not one search per line.
  let nextQuote = -1;

  /** The record's fields, or why csv-parse would not split it (not expected once scanQuotes accepted it). */
  const fieldsOf = (text: string): string[] | string => {
    parseSync ??= (require('csv-parse/sync') as { parse: typeof ParseSync }).parse;
    try {
      return (parseSync(text, { delimiter, relax_column_count: true, relax_quotes: false }) as string[][])[0] ?? [''];
    } catch (err) {
      return (err as Error).message;
    }
  };
  // Quoted records complete on their first line, in the order read: csv-parse splits them all in
  // one call when the read's records are handed on (splitDeferred). A call costs about 80 µs
  // whatever its length; a PyTorch-style feature file with one quoted text column read at 6.4 µs a
  // row unquoted and 77 µs a row quoted, one call per row.
  let deferred: { record: InputRecord; text: string }[] = [];
  const splitDeferred = (): void => {
    if (deferred.length === 0) return;
    const given = deferred;
    deferred = [];
    let all: string[][] | undefined;
    if (given.length > 1) {
      parseSync ??= (require('csv-parse/sync') as { parse: typeof ParseSync }).parse;
      try {
        all = parseSync(given.map((d) => d.text).join('\n'), { delimiter, relax_column_count: true, relax_quotes: false }) as string[][];
      } catch {
        all = undefined;
      }
    }
    // Each text is one whole record (scanQuotes closed its quotes on its line); where the one call
    // does not give one record each, each is split alone, so an error names its own line.
    const together = all !== undefined && all.length === given.length;
    given.forEach(({ record, text }, i) => {
      const fields = together ? all![i]! : fieldsOf(text);
      if (typeof fields === 'string') record.error = `malformed CSV quoting: ${fields}`;
      else record.fields = fields;
    });
  };
  const emit = (fields: string[], at: number, out: InputRecord[]): void => {
    if (width < 0) {
      width = fields.length;
      resolveHeader(fields.map((c) => c.trim()));
      return;
    }
    out.push({ line: at, fields });
  };
  const reject = (at: number, reason: string, out: InputRecord[]): void => {
    if (width < 0) throw new UmbraError('INVALID_ARGUMENT', `malformed CSV header in ${path} at line ${at}: ${reason}`);
    out.push({ line: at, error: `malformed CSV quoting: ${reason}` });
  };
  /**
   * A record that is not UTF-8 (`why`, notUtf8's reason) is a reject; the header must be. Its
   * quotes, delimiters and line ends are ASCII, so its extent is still what the bytes say.
   */
  const notText = (at: number, why: string, out: InputRecord[]): void => {
    if (width < 0) throw new UmbraError('INVALID_ARGUMENT', `cannot read the header of ${path}: ${why}`);
    out.push({ line: at, error: why });
  };
  /** A record whose first line has a quote in it. */
  const begin = (part: TextLine, out: InputRecord[]): void => {
    const { text, line: at, notUtf8: invalid } = part;
    const scan = scanQuotes(text, delimiterCode, FIELD_START, 1);
    if (scan.malformedAt >= 0) {
      reject(at, `unexpected quote at column ${scan.malformedAt + 1} of the line (a field is quoted only from its first character, and a quote inside it is doubled)`, out);
    } else if (scan.state === QUOTED) {
      pending = { line: at, parts: [part], bytes: text.length, fields: scan.fields, notUtf8: invalid };
    } else if (invalid !== undefined) {
      notText(at, invalid, out);
    } else if (width >= 0) {
      const record: InputRecord = { line: at };
      out.push(record);
      deferred.push({ record, text });
    } else {
      const fields = fieldsOf(text);
      if (typeof fields === 'string') reject(at, fields, out);
      else emit(fields, at, out);
    }
  };
  /** Gives the pending record up: its first line is rejected, the lines after it are read again. */
  const abandon = (reason: string, out: InputRecord[]): void => {
    const given = pending!;
    pending = undefined;
    const last = given.parts[given.parts.length - 1]!.line;
    reject(given.line, `${reason}; line ${given.line} is rejected and reading goes on at line ${given.line + 1}${last > given.line ? ` (lines ${given.line + 1}-${last} are read again as rows of their own)` : ''}`, out);
    for (let i = 1; i < given.parts.length; i++) takeText(given.parts[i]!, out);
  };
  const goOn = (part: TextLine, out: InputRecord[]): void => {
    const { text, line: at } = part;
    const p = pending!;
    const previous = p.parts[p.parts.length - 1]!;
    p.parts.push(part);
    p.notUtf8 ??= part.notUtf8;
    p.bytes += (previous.crlf ? 2 : 1) + text.length;
    const scan = scanQuotes(text, delimiterCode, QUOTED, p.fields);
    p.fields = scan.fields;
    if (scan.malformedAt >= 0) {
      abandon(`the quoted field opened on line ${p.line} meets an unexpected quote on line ${at}`, out);
    } else if (width >= 0 && scan.fields > width) {
      abandon(`the quoted field opened on line ${p.line} runs over into line ${at} and past the header's ${width} columns`, out);
    } else if (scan.state === QUOTED) {
      if (p.bytes > MAX_QUOTED_RECORD_BYTES) abandon(`the quoted field opened on line ${p.line} is not closed within ${MAX_QUOTED_RECORD_BYTES >> 20} MiB`, out);
    } else {
      // The line ends inside the quotes are the field's, as the file has them (RFC 4180).
      let record = p.parts[0]!.text;
      for (let i = 1; i < p.parts.length; i++) record += (p.parts[i - 1]!.crlf ? '\r\n' : '\n') + p.parts[i]!.text;
      const fields = fieldsOf(record);
      if (typeof fields === 'string') {
        abandon(`the record from line ${p.line} to ${at} cannot be read: ${fields}`, out);
      } else if (width >= 0 && fields.length !== width) {
        abandon(`the quoted field opened on line ${p.line} closes on line ${at} in a record of ${fields.length} columns, not the header's ${width}`, out);
      } else {
        pending = undefined;
        if (p.notUtf8 !== undefined) notText(p.line, p.notUtf8, out);
        else emit(fields, p.line, out);
      }
    }
  };
  /**
   * A decoded line: lines read again after an abandoned record, every line with a quote, and every
   * line that is not UTF-8.
   */
  const takeText = (part: TextLine, out: InputRecord[]): void => {
    const { text, line: at, notUtf8: invalid } = part;
    if (pending) {
      goOn(part, out);
    } else if (text.includes('"')) {
      begin(part, out);
    } else if (text !== '') {
      if (invalid !== undefined) {
        notText(at, invalid, out);
      } else if (width < 0) {
        emit(text.split(delimiter), at, out);
      } else {
        const bytes = Buffer.from(text);
        out.push({ line: at, bytes, start: 0, end: bytes.length });
      }
    }
  };
  /** `utf8`: the line is known to be UTF-8 (the read it is in was); otherwise it is checked. */
  const takeLine = (bytes: Buffer, start: number, end: number, out: InputRecord[], utf8: boolean): void => {
    line += 1;
    const crlf = end > start && bytes[end - 1] === 13;
    if (crlf) end -= 1;
    if (line === 1 && end - start >= 3 && bytes[start] === 0xef && bytes[start + 1] === 0xbb && bytes[start + 2] === 0xbf) start += 3;
    const invalid = utf8 ? undefined : notUtf8(bytes, start, end, line);
    if (nextQuote < start) {
      const q = bytes.indexOf(34, start);
      nextQuote = q < 0 ? Number.POSITIVE_INFINITY : q;
    }
    if (pending === undefined && width >= 0 && nextQuote >= end && invalid === undefined) {
      if (end > start) out.push({ line, bytes, start, end });
      return;
    }
    takeText({ line, text: bytes.toString('utf8', start, end), crlf, notUtf8: invalid }, out);
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
          takeLine(joined, 0, joined.length, out, false);
          start = end + 1;
        }
        rest = last + 1 < chunk.length ? chunk.subarray(last + 1) : undefined;
        nextQuote = -1;
        // The read's whole lines, checked at once (a line end never falls inside a character).
        const utf8 = isUtf8(chunk.subarray(start, last + 1));
        while (start <= last) {
          const end = chunk.indexOf(10, start);
          takeLine(chunk, start, end, out, utf8);
          start = end + 1;
        }
        splitDeferred();
        if (out.length > 0) yield out;
      }
      const out: InputRecord[] = [];
      if (rest) {
        nextQuote = -1;
        takeLine(rest, 0, rest.length, out, false);
      }
      // Each abandoned record gives up at least its first line, so this ends.
      while (pending) abandon(`the quoted field opened on line ${pending.line} is not closed before the end of the file`, out);
      splitDeferred();
      if (out.length > 0) yield out;
    } finally {
      if (width < 0) resolveHeader([]);
    }
  }
  return { columns: header, records: records() };
}
