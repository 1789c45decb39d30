// Deterministic key partitions for running one job as N shards (--shard I/N, or a Kubernetes
// Indexed Job's JOB_COMPLETION_INDEX with JOB_COMPLETIONS). Every machine computes the same
// partition from the key alone, so N shards together cover each key exactly once.
import { UmbraError } from '../errors.js';

export interface ShardSpec {
  /** 1-based shard number. */
  index: number;
  count: number;
}

export function parseShard(text: string, what = '--shard'): ShardSpec {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = m ? Number(m[1]) : Number.NaN;
  const count = m ? Number(m[2]) : Number.NaN;
  if (!m || count < 1 || index < 1 || index > count || !Number.isSafeInteger(count)) {
    throw new UmbraError('INVALID_ARGUMENT', `expected I/N with 1 <= I <= N (e.g. 2/4) for ${what} but received '${text}'`);
  }
  return { index, count };
}

/** The Indexed Job's shard when JOB_COMPLETION_INDEX (0-based) and JOB_COMPLETIONS are set. */
export function shardFromEnvironment(env: NodeJS.ProcessEnv = process.env): ShardSpec | undefined {
  const index = env.JOB_COMPLETION_INDEX;
  const count = env.JOB_COMPLETIONS;
  if (index === undefined || index === '') return undefined;
  if (count === undefined || count === '') {
    throw new UmbraError('INVALID_ARGUMENT', 'JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not: set JOB_COMPLETIONS to the Job\'s .spec.completions (see deploy/batch-indexed-job.yaml) or pass --shard I/N');
  }
  if (!/^\d+$/.test(index)) throw new UmbraError('INVALID_ARGUMENT', `expected a non-negative integer for JOB_COMPLETION_INDEX but received '${index}'`);
  return parseShard(`${Number(index) + 1}/${count}`, 'JOB_COMPLETION_INDEX/JOB_COMPLETIONS');
}

/** 0-based shard of a key: FNV-1a over the key's UTF-16 code units, modulo the shard count. */
export function shardOfKey(key: string, count: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % count;
}

export function describeShard(shard: ShardSpec | undefined): string {
  return shard ? `${shard.index}/${shard.count}` : '1/1';
}
