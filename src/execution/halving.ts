// Finding the requests (or rows) a model refuses inside a batch it failed: the batch runs again in
// halves, down to single items where a half fails too. k refused items among n cost about
// 2k·log2(n) runs instead of n, and the halves that run are answered as batches. Used by the
// online executor (requests) and batch jobs (rows).
import { ModelRunError } from '../errors.js';

/**
 * Runs `items` (a batch the model failed) in halves. `run` runs a part and answers one result
 * per item of it, or rejects with a ModelRunError when the model refuses the part. Resolves with,
 * per item in order, its result or the ModelRunError it failed with alone. Any other error
 * (a lost worker, a closed pool) rejects.
 */
export async function runInHalves<T, R>(items: readonly T[], run: (part: T[]) => Promise<R[]>): Promise<(R | ModelRunError)[]> {
  const mid = items.length >> 1;
  const parts = await Promise.all([items.slice(0, mid), items.slice(mid)].map(async (part): Promise<(R | ModelRunError)[]> => {
    try {
      return await run(part);
    } catch (err) {
      if (!(err instanceof ModelRunError)) throw err;
      return part.length === 1 ? [err] : runInHalves(part, run);
    }
  }));
  return parts.flat();
}
