// The on-disk layout of a model repository: REPO/<model>/<version>/model.onnx with positive
// integer versions, plus the name checks every path built from a request goes through.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { invalid, UmbraError } from '../errors.js';

export const DEFAULT_MODEL_FILENAME = 'model.onnx';
export const MODEL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Versions past this are refused so they stay exact numbers and sortable. */
export const MAX_VERSION = Number.MAX_SAFE_INTEGER;

export type VersionPolicy =
  | { kind: 'latest'; numVersions: number }
  | { kind: 'all' }
  | { kind: 'specific'; versions: number[] };

export const DEFAULT_VERSION_POLICY: VersionPolicy = { kind: 'latest', numVersions: 1 };

/** True when `name` can name a model: it is also a safe single path segment. */
export function isValidModelName(name: string): boolean {
  return MODEL_NAME_PATTERN.test(name) && !name.includes('..');
}

/** Throws INVALID_INPUT (400) unless `name` is a valid model name. Returns it for chaining. */
export function validateModelName(name: unknown): string {
  if (typeof name !== 'string' || !isValidModelName(name)) {
    throw invalid('INVALID_INPUT', 'a model name of 1-128 letters, digits, "_", "." or "-" (starting with a letter or digit, no "..")', 'the model name', name);
  }
  return name;
}

/** Parse a version from a URL or folder name: a positive integer in plain decimal. INVALID_INPUT otherwise. */
export function parseVersion(text: unknown): number {
  if (typeof text === 'number' && Number.isSafeInteger(text) && text > 0) return text;
  if (typeof text === 'string' && /^[1-9][0-9]{0,15}$/.test(text)) {
    const n = Number(text);
    if (n <= MAX_VERSION) return n;
  }
  throw invalid('INVALID_INPUT', 'a positive integer', 'the model version', text);
}

export function modelNotFound(name: string): UmbraError {
  return new UmbraError('MODEL_NOT_FOUND', `model "${name}" is not in the repository`);
}

export function versionNotFound(name: string, version: number | string): UmbraError {
  return new UmbraError('VERSION_NOT_FOUND', `version ${version} of model "${name}" is not available`);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** REPO/<model>; validates the name first so a request can never leave the repository. */
export function modelDir(repo: string, model: string): string {
  return join(repo, validateModelName(model));
}

export function versionDir(repo: string, model: string, version: number): string {
  return join(modelDir(repo, model), String(parseVersion(version)));
}

export function modelFilePath(repo: string, model: string, version: number, filename = DEFAULT_MODEL_FILENAME): string {
  return join(versionDir(repo, model, version), filename);
}

/** Model folders in the repository, sorted. Hidden folders and invalid names are skipped. */
export function listModels(repo: string): string[] {
  if (!isDirectory(repo)) throw new UmbraError('INVALID_ARGUMENT', `model repository ${repo} is not a folder`);
  return readdirSync(repo, { withFileTypes: true })
    .filter((entry) => (entry.isDirectory() || (entry.isSymbolicLink() && isDirectory(join(repo, entry.name)))))
    .map((entry) => entry.name)
    .filter(isValidModelName)
    .sort();
}

/**
 * Versions of `model` that have a model file, ascending. Folders that are not positive integers
 * (e.g. "latest", "01") and versions without the file are skipped. MODEL_NOT_FOUND if no folder.
 */
export function listVersions(repo: string, model: string, filename = DEFAULT_MODEL_FILENAME): number[] {
  const dir = modelDir(repo, model);
  if (!isDirectory(dir)) throw modelNotFound(model);
  const versions: number[] = [];
  for (const entry of readdirSync(dir)) {
    if (!/^[1-9][0-9]{0,15}$/.test(entry)) continue;
    const version = Number(entry);
    if (version > MAX_VERSION) continue;
    if (existsSync(join(dir, entry, filename))) versions.push(version);
  }
  return versions.sort((a, b) => a - b);
}

/** The versions a policy serves, ascending. `specific` versions that are absent are left out. */
export function selectVersions(versions: readonly number[], policy: VersionPolicy): number[] {
  const sorted = [...new Set(versions)].sort((a, b) => a - b);
  switch (policy.kind) {
    case 'all':
      return sorted;
    case 'latest':
      return policy.numVersions <= 0 ? [] : sorted.slice(-policy.numVersions);
    case 'specific': {
      const wanted = new Set(policy.versions);
      return sorted.filter((v) => wanted.has(v));
    }
  }
}
