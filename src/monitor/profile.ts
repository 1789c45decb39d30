// Reference profiles: per feature, the bins live data is counted into and the reference counts
// in them. Built from reference data (`umbra profile`) or from the first live rows.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const PROFILE_FILENAME = 'reference-profile.json';
const PROFILE_FORMAT = 1;

/** At most this many bins per numeric feature (plus one above the last edge). */
export const MAX_BINS = 20;
/** Numeric features with at most this many distinct values are compared as categories (as Evidently does). */
const CATEGORICAL_MAX_DISTINCT = 5;

export interface FeatureProfile {
  name: string;
  kind: 'numeric' | 'categorical';
  /** numeric: bin i holds edges[i-1] < x <= edges[i]; the last bin holds x > the last edge. */
  edges?: number[];
  /** categorical: the reference's values; anything else counts in one extra "other" bin. */
  values?: number[];
  /** Reference rows per bin (edges.length + 1 or values.length + 1 bins). */
  counts: number[];
}

export interface ReferenceProfile {
  format: number;
  model: string;
  /** Where it came from: a file name, or "live" for the first live rows. */
  source: string;
  createdAt: string;
  rows: number;
  inputs: FeatureProfile[];
  /** Output features per version (outputs depend on the version's weights). */
  outputs: Record<string, FeatureProfile[]>;
}

export function binCount(f: FeatureProfile): number {
  return f.counts.length;
}

/** Bin of one value: binary search over the edges, or a linear scan over a few categories. */
export function binOf(f: FeatureProfile, x: number): number {
  if (f.values) {
    const v = f.values;
    for (let i = 0; i < v.length; i++) if (v[i] === x) return i;
    return v.length;
  }
  const e = f.edges!;
  if (!(x <= e[e.length - 1]!)) return e.length; // also NaN
  let lo = 0;
  let hi = e.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x <= e[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Profiles one column. `categorical` forces categories (class outputs); otherwise a column with
 * few distinct values is categorical, one with up to MAX_BINS distinct values gets a bin per value
 * (exact KS), and any other gets quantile bins.
 */
export function profileColumn(name: string, column: ArrayLike<number>, categorical = false): FeatureProfile {
  const sorted = Float64Array.from(column).filter((x) => !Number.isNaN(x)).sort();
  const distinct: number[] = [];
  for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) distinct.push(sorted[i]!);
  let profile: FeatureProfile;
  if (categorical || distinct.length <= CATEGORICAL_MAX_DISTINCT) {
    profile = { name, kind: 'categorical', values: distinct.slice(0, 64), counts: [] };
  } else if (distinct.length <= MAX_BINS) {
    profile = { name, kind: 'numeric', edges: distinct, counts: [] };
  } else {
    const edges: number[] = [];
    for (let q = 1; q < MAX_BINS; q++) {
      const edge = sorted[Math.min(sorted.length - 1, Math.floor((q * sorted.length) / MAX_BINS))]!;
      if (edges.length === 0 || edge > edges[edges.length - 1]!) edges.push(edge);
    }
    profile = { name, kind: 'numeric', edges, counts: [] };
  }
  const size = profile.values ? profile.values.length + 1 : profile.edges!.length + 1;
  const counts = new Array<number>(size).fill(0);
  for (let i = 0; i < column.length; i++) counts[binOf(profile, column[i]!)]! += 1;
  profile.counts = counts;
  return profile;
}

/** A profile shipped beside the model, in the (possibly read-only) repository. */
export function profilePath(repository: string, model: string): string {
  return join(repository, model, PROFILE_FILENAME);
}

/** Where `umbra profile` writes a model's profile: the state directory, never the repository. */
export function stateProfilePath(stateDir: string, model: string): string {
  return join(stateDir, `${model}.${PROFILE_FILENAME}`);
}

/** The profile file in effect: the state directory's (what `umbra profile` wrote), else one shipped beside the model. */
export function profileFileOf(repository: string, model: string, stateDir?: string): string | undefined {
  return [stateDir === undefined ? undefined : stateProfilePath(stateDir, model), profilePath(repository, model)]
    .find((p): p is string => p !== undefined && existsSync(p));
}

/** Reads a model's profile (profileFileOf); undefined when there is none. A malformed file is an error worth seeing. */
export function readProfile(repository: string, model: string, stateDir?: string): ReferenceProfile | undefined {
  const path = profileFileOf(repository, model, stateDir);
  if (!path) return undefined;
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as ReferenceProfile;
  if (parsed.format !== PROFILE_FORMAT || !Array.isArray(parsed.inputs)) throw new Error(`${path} is not an Umbra reference profile (format ${PROFILE_FORMAT}); rebuild it with \`umbra profile\``);
  return parsed;
}

/** Writes atomically (temp file + rename) so a server never reads half a profile; creates the folder. */
export function writeProfile(path: string, profile: ReferenceProfile): string {
  mkdirSync(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(profile)}\n`);
  renameSync(temp, path);
  return path;
}

export function newProfile(model: string, source: string, rows: number, inputs: FeatureProfile[], outputs: Record<string, FeatureProfile[]> = {}): ReferenceProfile {
  return { format: PROFILE_FORMAT, model, source, createdAt: new Date().toISOString(), rows, inputs, outputs };
}
