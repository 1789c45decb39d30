// The request path only appends a reference to a bounded buffer; a timer hands batches to the
// writer thread (log-writer.ts), which encodes and inserts them in one transaction each.
import { Worker } from 'node:worker_threads';
import { threadOptions } from '../core/threads.js';
import type { LabelRecord, LoggedPrediction } from './log-store.js';
import { PredictionPacker, type PackSource } from './log-packing.js';
import type { FromWriter, ToWriter, WriterData } from './log-writer.js';
import { seededRandom } from '../random.js';

export interface PredictionLogOptions {
  /** `sqlite:PATH` or `postgres://...`. */
  url: string;
  /** Fraction of predictions logged, 0..1 (default 1). */
  sample?: number;
  /** Log input tensors too (default true); outputs are always logged. */
  inputs?: boolean;
  /** Of the logged predictions, the fraction whose inputs are logged too (default LOG_DEFAULTS.inputsSample). */
  inputsSample?: number;
  /** Flush at least this often (default 100 ms) or when batchRows are waiting. */
  flushMs?: number;
  batchRows?: number;
  /** Rows held while the database is slow; beyond this rows are dropped and counted. */
  bufferRows?: number;
  /** Days rows are kept (default 30; 0 = forever). */
  retentionDays?: number;
  /** Most predictions kept; the oldest beyond are deleted with the retention check (default LOG_DEFAULTS.maxRows; 0 = no cap). */
  maxRows?: number;
  /** A tensor with more values than this is logged as its summary (tensor-summary.ts); 0 logs every value (default LOG_DEFAULTS.tensorMaxValues). */
  tensorMaxValues?: number;
}

export const LOG_DEFAULTS = {
  sample: 1,
  /**
   * Every prediction's outputs are logged (feedback joins need them); its inputs for one in ten.
   * Inputs are most of a row's bytes for all but the smallest models (16 floats already make a
   * row 48% bigger) and add a fifth to the writer's CPU per row (bench/RESULTS-monitoring.md).
   */
  inputsSample: 0.1,
  retentionDays: 30,
  /** About 1.8 GB of SQLite for a 16-input model with inputs sampled at 0.1 (175 bytes a row). */
  maxRows: 10_000_000,
  /**
   * 64 Ki values: an answer of 1,000 class scores for 64 rows is logged whole. Above it a tensor
   * is logged as its type, shape, min, max, mean and count of non-finite values: a 64 x 4096 FP32
   * output (1 MiB) logged whole cost the log's thread 6.5 ms and the disk 1 MiB per request, more
   * than a pruned model spent computing it (bench/RESULTS-sparse.md), and the row-bounded buffer
   * of a slow database would have held gigabytes.
   */
  tensorMaxValues: 65_536,
};

export interface LogCounters {
  written(n: number): void;
  dropped(n: number): void;
  failed(n: number): void;
  /** Tensors logged as summaries (over the value cap). */
  summarized?(n: number): void;
}

/** A prediction waiting to be written: the packer's own input shape. */
export type PendingPrediction = PackSource;

export class PredictionLog {
  private readonly worker: Worker;
  private readonly ready: Promise<void>;
  private readonly packer: PredictionPacker;
  /** Tensors over this many values are logged as summaries; 0 = every value. */
  readonly tensorMaxValues: number;
  private labels: LabelRecord[] = [];
  private readonly sample: number;
  private readonly inputsSample: number;
  /** `--log-inputs off` wins over every per-model sample. */
  private readonly logsInputs: boolean;
  /** Which predictions (and inputs) are sampled: seeded, so a run's log is repeatable. */
  private readonly random = seededRandom(0x5eed);
  private readonly batchRows: number;
  private readonly bufferRows: number;
  private readonly timer: NodeJS.Timeout;
  private seq = 0;
  private readonly waiters = new Map<number, () => void>();
  private readonly lookups = new Map<number, (rows: LoggedPrediction[]) => void>();
  private inFlight: Promise<void> | undefined;
  /** Rows of the batch handed to the writer and not yet written. */
  private handedRows = 0;
  private flushQueued = false;
  private closed = false;
  private failure: string | undefined;
  /** The writer thread's OS id, once it is ready. */
  writerThreadId = 0;

  constructor(options: PredictionLogOptions, private readonly counters: LogCounters) {
    this.sample = options.sample ?? LOG_DEFAULTS.sample;
    this.logsInputs = options.inputs !== false;
    this.inputsSample = options.inputsSample ?? LOG_DEFAULTS.inputsSample;
    this.tensorMaxValues = options.tensorMaxValues ?? LOG_DEFAULTS.tensorMaxValues;
    this.packer = new PredictionPacker(this.tensorMaxValues);
    this.batchRows = options.batchRows ?? 1000;
    this.bufferRows = options.bufferRows ?? 50_000;
    const data: WriterData = { url: options.url, retentionMs: (options.retentionDays ?? LOG_DEFAULTS.retentionDays) * 86_400_000, maxRows: options.maxRows ?? LOG_DEFAULTS.maxRows };
    this.worker = new Worker(new URL('./log-writer.js', import.meta.url), threadOptions({ workerData: data }));
    this.worker.unref();
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (m: FromWriter) => {
        if (m.type === 'ready') {
          this.writerThreadId = m.tid;
          resolve();
        }
        else if (m.type === 'open-failed') {
          this.failure = m.message;
          reject(new Error(`prediction log: cannot open ${describe(options.url)}: ${m.message}`));
        } else if (m.type === 'done') {
          if (m.error) {
            this.failure = m.error;
            this.counters.failed(m.written);
          } else this.counters.written(m.written);
          this.waiters.get(m.seq)?.();
          this.waiters.delete(m.seq);
        } else if (m.type === 'found') {
          if (m.error) this.failure = m.error;
          this.lookups.get(m.seq)?.(m.rows);
          this.lookups.delete(m.seq);
        } else if (m.type === 'closed') this.waiters.get(-1)?.();
      });
      this.worker.on('error', (err) => {
        this.failure = err.message;
        reject(err);
      });
    });
    this.ready.catch(() => undefined);
    this.timer = setInterval(() => void this.flush(), options.flushMs ?? 100);
    this.timer.unref();
  }

  /** What the log keeps, in words, with the flags that change it: the server says it at start. */
  describeKept(): string {
    const percent = (p: number) => `${Number((p * 100).toPrecision(3))}%`;
    const rows = this.sample >= 1 ? 'every prediction' : `${percent(this.sample)} of predictions`;
    const inputs = !this.logsInputs ? 'no inputs (--log-inputs off)' : `inputs of ${this.inputsSample >= 1 ? 'every one' : percent(this.inputsSample)} (--log-inputs-sample; a model's parameters.log_inputs_sample wins)`;
    const cap = this.tensorMaxValues > 0
      ? `tensors over ${this.tensorMaxValues.toLocaleString('en-US')} values as type, shape, min, max and mean only (--log-tensor-max-values 0 keeps every value)`
      : 'every tensor value (--log-tensor-max-values 0)';
    return `outputs of ${rows}, ${inputs}; ${cap}`;
  }

  /** Resolves once the database is open; rejects with the reason it could not be. */
  whenReady(): Promise<void> {
    return this.ready;
  }

  /** Rows waiting to be written: buffered here, and in the batch the writer thread is writing. */
  get backlog(): number {
    return this.packer.rows + this.handedRows;
  }

  /** The last database error, if any (the log keeps trying with later batches). */
  get lastError(): string | undefined {
    return this.failure;
  }

  /**
   * Hot path: the prediction's values are copied into flat arrays (a tensor over the value cap is
   * summarized instead); encoding and writing happen on the writer thread. `inputsSample`
   * overrides the log's for this prediction's model.
   */
  push(p: PendingPrediction, inputsSample = this.inputsSample): void {
    if (this.closed) return;
    if (this.sample < 1 && this.random() >= this.sample) return;
    if (this.packer.rows >= this.bufferRows) {
      this.counters.dropped(1);
      return;
    }
    const withInputs = this.logsInputs && (inputsSample >= 1 || (inputsSample > 0 && this.random() < inputsSample));
    const summarized = this.packer.add(p, withInputs);
    if (summarized > 0) this.counters.summarized?.(summarized);
    if (this.packer.rows >= this.batchRows && !this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => void this.flush());
    }
  }

  pushLabels(labels: LabelRecord[]): void {
    if (!this.closed) this.labels.push(...labels);
  }

  /**
   * Logged predictions of `model` with these ids, newest per id. Writes buffered before the call
   * are flushed first, so a prediction answered a moment ago is found too.
   */
  async lookup(model: string, ids: string[]): Promise<LoggedPrediction[]> {
    if (this.closed || ids.length === 0) return [];
    await this.flush();
    try {
      await this.ready;
    } catch {
      return [];
    }
    const seq = ++this.seq;
    const found = new Promise<LoggedPrediction[]>((resolve) => this.lookups.set(seq, resolve));
    this.worker.postMessage({ type: 'lookup', seq, model, ids } satisfies ToWriter);
    return found;
  }

  /** Hands everything buffered to the writer; one batch in flight at a time keeps order. */
  flush(): Promise<void> {
    this.flushQueued = false;
    if (this.inFlight) return this.inFlight.then(() => this.flush());
    if (this.packer.rows === 0 && this.labels.length === 0) return Promise.resolve();
    const packed = this.packer.take();
    this.handedRows = packed.rows;
    const labels = this.labels;
    this.labels = [];
    this.inFlight = this.ready.then(() => {
      const seq = ++this.seq;
      const done = new Promise<void>((resolve) => this.waiters.set(seq, resolve));
      const message: ToWriter = { type: 'batch', seq, predictions: packed, labels };
      // The flat arrays move to the writer without a copy.
      const transfer = [packed.idEnds, packed.model, packed.version, packed.role, packed.timeMs, packed.latencyMs, packed.inputsAt, packed.inputsCount, packed.outputsAt, packed.outputsCount, packed.tensorName, packed.tensorRank, packed.tensorDimsAt, packed.tensorValuesAt, packed.tensorLength, packed.dims, packed.values, packed.values32, packed.tensorKind].map((a) => a.buffer as ArrayBuffer);
      this.worker.postMessage(message, transfer);
      return done;
    }, () => this.counters.failed(packed.rows)).finally(() => {
      this.inFlight = undefined;
      this.handedRows = 0;
    });
    return this.inFlight;
  }

  /** Writes what is buffered, then closes the database and the thread. */
  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.timer);
    // Hold the process open until the last batch is written.
    this.worker.ref();
    await this.flush();
    this.closed = true;
    try {
      await this.ready;
    } catch {
      await this.worker.terminate();
      return;
    }
    const closed = new Promise<void>((resolve) => this.waiters.set(-1, resolve));
    this.worker.postMessage({ type: 'close' } satisfies ToWriter);
    await closed;
    await this.worker.terminate();
  }
}

/** Never print a password from a PostgreSQL URL. */
function describe(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
