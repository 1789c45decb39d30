// A reader thread: reads the whole input, numbers its records, and parses the segments that are
// its share (every one with one reader) into rows, sending each to the job as soon as the job
// allows: the job's allowance is the bounded queue between reading and computing, and while it
// is used up this thread stops pulling, so the file stream pauses.
import { parentPort, workerData } from 'node:worker_threads';
import { UmbraError } from '../errors.js';
import type { FeaturePlan } from './features.js';
import type { FromReader, ReaderSetup, ToReader } from './messages.js';
import { parseSegment, planFor } from './parse.js';
import { openInput, type InputRecord, type InputStream } from './reader.js';
import { threadCpuMicros } from '../thread-cpu.js';
import { stopOnRequest } from './thread.js';

const setup = workerData as ReaderSetup;
const port = parentPort!;
const send = (message: FromReader, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

let resumeAfter = -1;
let segmentRecords = 1;
let allowed = 0;
let wake: (() => void) | undefined;
port.on('message', (message: ToReader) => {
  if (stopOnRequest(message)) return;
  if (message.kind === 'start') {
    resumeAfter = message.resumeAfter;
    segmentRecords = message.segmentRecords;
  } else {
    allowed = Math.max(allowed, message.upTo);
  }
  wake?.();
});
const until = async (ready: () => boolean): Promise<void> => {
  while (!ready()) await new Promise<void>((resolve) => { wake = resolve; });
  wake = undefined;
};

/**
 * Reads until the columns are known: the CSV header, or the first JSON object (lines before it
 * can only be rejects). Returns the records read meanwhile, to be counted as usual.
 */
async function readColumns(input: InputStream, records: AsyncIterator<InputRecord[]>): Promise<{ early: InputRecord[][]; done: boolean; columns: string[] }> {
  const early: InputRecord[][] = [];
  for (;;) {
    const next = await records.next();
    if (next.done) return { early, done: true, columns: await input.columns() };
    early.push(next.value);
    if (next.value.some((r) => r.error === undefined)) return { early, done: false, columns: await input.columns() };
  }
}

async function run(): Promise<void> {
  const input = await openInput(setup.input, setup.format);
  const records = input.records[Symbol.asyncIterator]();
  const { early, done, columns } = await readColumns(input, records);
  let plan: FeaturePlan | undefined;
  if (columns.length > 0) {
    // Every reader reads the whole input, so each sees the same first record and plans alike.
    const sample = early.flat().find((r) => r.error === undefined);
    const parse = { signature: setup.signature, columns, keyColumn: setup.keyColumn, delimiter: input.delimiter, ...(sample ? { sample } : {}) };
    plan = planFor(setup.mapping ? { ...parse, mapping: setup.mapping } : parse);
  }
  if (setup.thread === 0) {
    const summary = plan && { description: plan.describe(), inputs: plan.inputs.map(({ name, datatype, rowDims, rowElements, variable, freeDims, perPosition }) => ({ name, datatype, rowDims, rowElements, ...(variable ? { variable: { dims: freeDims, perPosition } } : {}) })) };
    send({ kind: 'plan', plan: summary, empty: done && early.every((chunk) => chunk.length === 0), totalBytes: input.totalBytes });
  }
  await until(() => resumeAfter >= 0);

  const size = segmentRecords;
  let row = 0;
  let segment: InputRecord[] = [];
  /** The segment `segment` collects. */
  let segmentIndex = 0;
  const flush = async (): Promise<void> => {
    await until(() => allowed > segmentIndex);
    const firstRow = resumeAfter + 1 + segmentIndex * size;
    const parsed = parseSegment(plan, setup.shard, segment, firstRow, setup.keyRules);
    segment = [];
    const transfer = [parsed.status.buffer as ArrayBuffer, ...parsed.data.filter((d) => !Array.isArray(d)).map((d) => (d as Float32Array).buffer as ArrayBuffer), ...(parsed.lengths ?? []).map((l) => l.buffer as ArrayBuffer)];
    send({ kind: 'segment', segment: { index: segmentIndex, firstRow, ...parsed, bytesRead: input.bytesRead } }, transfer);
  };
  const take = async (chunk: InputRecord[]): Promise<void> => {
    for (let i = 0; i < chunk.length; i++) {
      row += 1;
      if (row <= resumeAfter) continue;
      const index = Math.floor((row - resumeAfter - 1) / size);
      if (index % setup.threads !== setup.thread) continue;
      segmentIndex = index;
      segment.push(chunk[i]!);
      if (segment.length === size) await flush();
    }
  };
  for (const chunk of early) await take(chunk);
  if (!done) {
    for (let next = await records.next(); !next.done; next = await records.next()) await take(next.value);
  }
  if (segment.length > 0) await flush();
  send({ kind: 'end', records: row, cpuMicros: threadCpuMicros() });
}

run().catch((err: unknown) => {
  send({ kind: 'error', message: err instanceof Error ? err.message : String(err), invalid: err instanceof UmbraError && err.code === 'INVALID_ARGUMENT' });
});
