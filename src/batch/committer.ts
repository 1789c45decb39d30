// Storing computed batches, strictly in input order: each batch's rows (one-row response JSON per
// key) and the checkpoint that says how far the input is done go into the store in one
// transaction; the batch's rejects are appended just before, so a resume's truncation point is exact.
import { UmbraError } from '../errors.js';
import type { BatchToStore } from './messages.js';
import { outputsPerRow } from './output-rows.js';
import type { RejectFile } from './rejects.js';
import type { Checkpoint, PredictionRow, PredictionStore } from './store.js';

export class BatchCommitter {
  constructor(
    private readonly store: PredictionStore,
    private readonly model: string,
    private readonly version: string,
    private readonly rejects: RejectFile,
    private readonly checkpoint: Checkpoint,
  ) {}

  /**
   * Stores one batch (the caller waits for each before the next); resolves with the new
   * checkpoint. `rows`: the batch's rows from rowsOf, when the caller formed them ahead.
   */
  async commit(batch: BatchToStore, rows: PredictionRow[] = rowsOf(batch)): Promise<Checkpoint> {
    this.rejects.write(batch.rejects);
    if (batch.final) this.rejects.finish();
    const next: Checkpoint = {
      ...this.checkpoint,
      recordsDone: batch.recordsDone,
      rejectBytes: this.rejects.bytes,
      rowsStored: this.checkpoint.rowsStored + rows.length,
      rejected: this.checkpoint.rejected + batch.rejects.length,
      finished: batch.final,
    };
    try {
      await this.store.commit(this.model, this.version, rows, new Date(), next);
    } catch (err) {
      throw new UmbraError('INTERNAL', `cannot store a batch in ${this.store.description}: ${(err as Error).message}; rerun with --resume to continue after the last stored batch`, { cause: err });
    }
    Object.assign(this.checkpoint, next);
    return next;
  }
}

/**
 * A batch's rows as stored: one-row response JSON per key, a key twice in one batch keeping its
 * later row, as it would across batches (upsert). Needs nothing of the store, so the writer forms
 * the next batch's rows while the store is still committing the one before.
 */
export function rowsOf(batch: BatchToStore): PredictionRow[] {
  const texts = batch.rowOutputs ? batch.rowOutputs.map((outputs) => outputsPerRow(outputs, 1)[0]!) : outputsPerRow(batch.outputs, batch.keys.length);
  const rows: PredictionRow[] = [];
  const seen = new Map<string, number>();
  for (let i = 0; i < batch.keys.length; i++) {
    const key = batch.keys[i]!;
    const at = seen.get(key);
    if (at === undefined) {
      seen.set(key, rows.length);
      rows.push({ key, outputs: texts[i]! });
    } else {
      rows[at] = { key, outputs: texts[i]! };
    }
  }
  return rows;
}
