// The on-disk layout of a model repository: REPO/<model>/<version>/model.onnx with positive
// integer versions, plus the name checks every path built from a request goes through.
import { existsSync, readdirSync, statSync, type Dirent } from 'node:fs';
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
/** The naming rule as every message words it (isValidModelName checks it). */
export const MODEL_NAME_RULE = '1-128 letters, digits, "_", "." or "-", starting with a letter or digit, with no ".."';

export function isValidModelName(name: string): boolean {
  return MODEL_NAME_PATTERN.test(name) && !name.includes('..');
}

/** Throws INVALID_INPUT (400) unless `name` is a valid model name. Returns it for chaining. */
export function validateModelName(name: unknown): string {
  if (typeof name !== 'string' || !isValidModelName(name)) {
    throw invalid('INVALID_INPUT', `a model name of ${MODEL_NAME_RULE}`, 'the model name', name);
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

/**
 * Folders of the repository that cannot be models because of their names (not hidden ones):
 * listModels skips them, and a user who named one `fraud model` should hear why it is not served.
 */
export function misnamedFolders(repo: string): string[] {
  if (!isDirectory(repo)) return [];
  return readdirSync(repo, { withFileTypes: true })
    .filter((entry) => !entry.name.startsWith('.') && (entry.isDirectory() || (entry.isSymbolicLink() && isDirectory(join(repo, entry.name)))))
    .map((entry) => entry.name)
    .filter((name) => !isValidModelName(name))
    .sort();
}

/** What a repository skips when a folder's name cannot name a model, and the fix. */
export function misnamedFolderNote(name: string): string {
  return `folder ${JSON.stringify(name)} of the repository is not served: a model name is ${MODEL_NAME_RULE}; rename the folder`;
}

/**
 * Model files at the top of the repository (`REPO/fraud.onnx`, not hidden): no model is a file,
 * so listModels skips them, and a user who exported straight into the repository should hear
 * where the file goes instead of finding an empty server.
 */
export function looseModelFiles(repo: string): string[] {
  if (!isDirectory(repo)) return [];
  return readdirSync(repo, { withFileTypes: true })
    .filter((entry) => !entry.name.startsWith('.') && entry.name.toLowerCase().endsWith('.onnx') && !isDirectory(join(repo, entry.name)))
    .map((entry) => entry.name)
    .sort();
}

/** What a repository skips when a model file lies at its top, and where the file goes. */
export function looseModelFileNote(name: string): string {
  const stem = name.slice(0, -'.onnx'.length);
  const model = isValidModelName(stem) ? stem : '<model>';
  return `file ${JSON.stringify(name)} at the top of the repository is not served: each model has its own folder with numbered versions; move it to ${model}/1/${DEFAULT_MODEL_FILENAME}`;
}

/**
 * Everything at the top of the repository that looks meant to be served but is not, each with
 * its note (misnamed folders, loose model files), keyed by its name there.
 */
export function unservedEntries(repo: string): Map<string, string> {
  const notes = new Map<string, string>();
  for (const name of misnamedFolders(repo)) notes.set(name, misnamedFolderNote(name));
  for (const name of looseModelFiles(repo)) notes.set(name, looseModelFileNote(name));
  return notes;
}

/**
 * Why a model folder yields no version, for the load's error: what is there instead of
 * DIR/<n>/FILENAME (a model file beside the versions, folders that are not versions, version
 * folders holding another .onnx file), each with its fix.
 */
export function noVersionReason(name: string, dir: string, filename: string): string {
  const head = `model '${name}' has no numeric version directory with a ${filename}`;
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return head;
  }
  const hints: string[] = [];
  const loose = entries.filter((e) => e.isFile() && e.name.toLowerCase().endsWith('.onnx')).map((e) => e.name);
  if (loose.length > 0) hints.push(`${loose.join(', ')} ${loose.length === 1 ? 'is' : 'are'} in the model folder itself: a model file goes in a numbered version folder, e.g. ${name}/1/${filename}`);
  const folders = entries.filter((e) => e.isDirectory()).map((e) => e.name);
  const numbered = (f: string) => /^[1-9][0-9]*$/.test(f);
  const notVersions = folders.filter((f) => !numbered(f) && !f.startsWith('.'));
  if (notVersions.length > 0) hints.push(`folder${notVersions.length === 1 ? '' : 's'} ${notVersions.join(', ')} ${notVersions.length === 1 ? 'is not a version' : 'are not versions'}: a version folder is a positive integer without leading zeros (1, 2, ...)`);
  // Numbered, but past what a version may be: told so, not that they are no positive integer.
  const tooLarge = folders.filter((f) => numbered(f) && !(Number(f) <= MAX_VERSION));
  if (tooLarge.length > 0) hints.push(`folder${tooLarge.length === 1 ? '' : 's'} ${tooLarge.join(', ')} ${tooLarge.length === 1 ? 'is' : 'are'} past the largest version, ${MAX_VERSION}: number versions 1, 2, ...`);
  for (const f of folders.filter((x) => numbered(x) && Number(x) <= MAX_VERSION)) {
    let others: string[] = [];
    try {
      others = readdirSync(join(dir, f)).filter((n) => n.toLowerCase().endsWith('.onnx') && n !== filename);
    } catch {
      continue;
    }
    if (others.length > 0) hints.push(`${f}/ holds ${others.join(', ')}, not ${filename}: rename it, or set "default_model_filename": "${others[0]}" in ${name}/config.json`);
    else hints.push(`${f}/ holds no ${filename}`);
  }
  if (hints.length === 0) hints.push(`put the model at ${name}/1/${filename}`);
  return `${head}: ${hints.join('; ')}`;
}

/** Model folders in the repository, sorted. Hidden folders and invalid names are skipped (misnamedFolders lists the latter). */
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
