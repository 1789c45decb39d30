// What the in-process batch tests share: a repository with the affine model (y = 2x + 1 over 4
// values) and any others asked for, Umbra open on it, a scratch folder of unique file names, and
// the check that every row's stored value is its own.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Umbra } from '../../dist/core/umbra.js';
import type { PredictionStore } from '../../dist/batch/index.js';
import type { Row } from '../fixtures/batch/data.js';
import { tempRepo, affineModel } from './repo.js';

export async function batchFixture(prefix: string, extra: (repo: ReturnType<typeof tempRepo>) => void = () => undefined) {
  const repo = tempRepo();
  repo.addVersion('affine', 1, affineModel(2, 1, 4));
  extra(repo);
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const umbra = await Umbra.open({ repository: repo.dir, workers: 2 });
  t.teardown(async () => {
    await umbra.close();
    repo.remove();
    rmSync(dir, { recursive: true, force: true });
  });
  let counter = 0;
  return { umbra, dir, path: (name: string) => join(dir, `${counter++}-${name}`) };
}

/** The stored outputs of `keys` (version 1), by key. */
export async function allRows(store: PredictionStore, model: string, keys: string[]): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const k of keys) {
    const p = await store.get(model, '1', k);
    if (p) out.set(k, p.outputs);
  }
  return out;
}

/** Every row stored, each with 2x + 1 of its own values. */
export function checkAffine(t: Tap.Test, rows: Row[], stored: Map<string, unknown>) {
  t.equal(stored.size, rows.length, 'every key stored');
  let bad = 0;
  for (const r of rows) {
    const outputs = stored.get(r.key) as { name: string; datatype: string; shape: number[]; data: number[] }[];
    const y = outputs?.[0];
    if (!y || y.name !== 'y' || y.datatype !== 'FP32' || y.shape.join() !== '1,4' || y.data.some((v, i) => v !== r.x[i]! * 2 + 1)) bad += 1;
  }
  t.equal(bad, 0, 'every stored value is 2x + 1 of its own row');
}

/** One line of a job's reject file. */
export interface Reject {
  line: number;
  key?: string;
  reason: string;
}

/** A job's reject file, line by line ([] when the job wrote none). */
export const readRejects = (file: string): Reject[] => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Reject) : []);

/** The stored x of `key` for the affine model (inverting y = 2x + 1), or undefined. */
export async function storedX(store: PredictionStore, key: string): Promise<number[] | undefined> {
  const p = await store.get('affine', '1', key);
  return (p?.outputs[0]?.data as number[] | undefined)?.map((y) => (y - 1) / 2);
}
