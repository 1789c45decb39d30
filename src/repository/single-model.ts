// One model directory served under a given name, as KServe hands a runtime its model:
// `--model-name NAME --model-dir DIR`, where DIR (KServe's /mnt/models, mounted read-only) holds
//   - a bare model file:            DIR/model.onnx (or the one *.onnx file there, or the file given
//                                   as --model-dir itself), served as version 1, with what lies
//                                   beside it (its external data: model.onnx.data, weights.bin)
//   - one model in Triton's layout: DIR/<version>/model.onnx, DIR/config.pbtxt|config.json
//   - a Triton repository holding the model: DIR/<model>/<version>/model.onnx
// Umbra serves repositories, so this builds a small one of links in a writable folder of its own:
// REPO/NAME is a real folder (the traffic state and the default prediction log are written beside
// the links, never into DIR) whose entries point into DIR.
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { UmbraError } from '../errors.js';
import { readModelConfig } from './config.js';
import { isValidModelName, MAX_VERSION, MODEL_NAME_RULE } from './layout.js';

export type ModelDirLayout = 'file' | 'versions' | 'repository';

export interface ModelDirPlan {
  name: string;
  /** The model directory as given, absolute. */
  dir: string;
  layout: ModelDirLayout;
  /** The folder whose entries REPO/NAME links to: DIR, or DIR/<model> for a repository. */
  source: string;
  /**
   * `file` layout: the model file in DIR and the name it is linked under in REPO/NAME/1/, and the
   * other entries of DIR linked beside it there, so external data the file names by a relative
   * location (`model.onnx.data`) is found where the link is.
   */
  file?: { path: string; linkedAs: string; beside: string[] };
}

const VERSION_DIR = /^[1-9][0-9]{0,15}$/;

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function visibleEntries(dir: string): string[] {
  return readdirSync(dir).filter((name) => !name.startsWith('.')).sort();
}

/** Numeric version folders of `dir` that hold a file named `filename`. */
function versionsWithFile(dir: string, filename: string): string[] {
  return visibleEntries(dir).filter((e) => VERSION_DIR.test(e) && Number(e) <= MAX_VERSION && existsSync(join(dir, e, filename)));
}

function configuredFilename(dir: string): string {
  return readModelConfig(dir).modelFilename;
}

/** A folder that is one model in Triton's layout: numeric versions holding the model file. */
function isModelFolder(dir: string): boolean {
  if (!isDirectory(dir)) return false;
  try {
    return versionsWithFile(dir, configuredFilename(dir)).length > 0;
  } catch {
    // A config that does not parse still marks a model folder; the load reports the config error.
    return visibleEntries(dir).some((e) => VERSION_DIR.test(e) && isDirectory(join(dir, e)));
  }
}

/**
 * What lies beside a bare model file in its folder that a repository's version folder should hold
 * with it: every visible entry but other model files and configs (its external data:
 * `model.onnx.data`, `weights.bin`, which it names by a location relative to itself).
 */
export function besideModelFile(file: string): string[] {
  const dir = dirname(file);
  const chosen = basename(file);
  return visibleEntries(dir).filter((e) => e !== chosen && !(e.endsWith('.onnx') && !isDirectory(join(dir, e))) && e !== 'config.json' && e !== 'config.pbtxt');
}

const EXPECTED = 'expected DIR/model.onnx, DIR/<version>/model.onnx (Triton layout, config.pbtxt or config.json beside the versions) or DIR/<model>/<version>/model.onnx';

/**
 * Finds which of the three layouts `dir` is in. Throws INVALID_ARGUMENT naming what was found
 * when it is none of them, or when it is ambiguous (a bare file beside version folders, several
 * model folders none of which is called `name`).
 */
export function inspectModelDir(name: string, dir: string): ModelDirPlan {
  if (!isValidModelName(name)) {
    throw new UmbraError('INVALID_ARGUMENT', `"${name}" cannot name a model: use ${MODEL_NAME_RULE}`);
  }
  const given = resolve(dir);
  // A model file named itself: its folder in the file layout, that file chosen.
  const named = given.endsWith('.onnx') && existsSync(given) && !isDirectory(given) ? basename(given) : undefined;
  const abs = named ? dirname(given) : given;
  if (!isDirectory(abs)) throw new UmbraError('INVALID_ARGUMENT', `${abs} is not a directory${existsSync(abs) ? '' : ' (it does not exist)'}; ${EXPECTED}, or the .onnx file itself`);
  const entries = visibleEntries(abs);
  const filename = configuredFilename(abs);
  const versions = versionsWithFile(abs, filename);
  const onnxFiles = entries.filter((e) => e.endsWith('.onnx') && !isDirectory(join(abs, e)));
  const beside = (chosen: string) => besideModelFile(join(abs, chosen));
  if (named) return { name, dir: given, layout: 'file', source: abs, file: { path: given, linkedAs: filename, beside: beside(named) } };
  if (versions.length > 0) {
    if (onnxFiles.length > 0) {
      throw new UmbraError('INVALID_ARGUMENT', `${abs} holds both version folders (${versions.join(', ')}) and a bare model file (${onnxFiles.join(', ')}); keep one layout`);
    }
    return { name, dir: abs, layout: 'versions', source: abs };
  }
  if (onnxFiles.length > 0) {
    const chosen = onnxFiles.includes(filename) ? filename : onnxFiles.length === 1 ? onnxFiles[0]! : undefined;
    if (!chosen) throw new UmbraError('INVALID_ARGUMENT', `${abs} holds several model files (${onnxFiles.join(', ')}) and none is ${filename}; keep one, or name it in the config's default_model_filename`);
    return { name, dir: abs, layout: 'file', source: abs, file: { path: join(abs, chosen), linkedAs: filename, beside: beside(chosen) } };
  }
  const models = entries.filter((e) => isValidModelName(e) && isModelFolder(join(abs, e)));
  if (models.length === 1 || models.includes(name)) {
    const model = models.includes(name) ? name : models[0]!;
    return { name, dir: abs, layout: 'repository', source: join(abs, model) };
  }
  if (models.length > 1) {
    throw new UmbraError('INVALID_ARGUMENT', `${abs} is a repository of ${models.length} models (${models.join(', ')}) and none is called "${name}"; point at one model's folder, or serve the repository with --repo`);
  }
  throw new UmbraError('INVALID_ARGUMENT', `${abs} holds no model (found: ${entries.length ? entries.join(', ') : 'nothing'}); ${EXPECTED}`);
}

/**
 * The folder under which the links for one (name, dir) pair live: the same on every start, so
 * the traffic state and the prediction log persist across restarts on one machine. It sits in a
 * folder only this user can write, so no one else can plant links in it.
 */
export function modelDirRepository(name: string, dir: string, base: string = tmpdir()): string {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const hash = createHash('sha256').update(resolve(dir)).digest('hex').slice(0, 12);
  return join(base, `umbra-${uid}`, `${name}-${hash}`);
}

function ensurePrivateFolder(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const s = lstatSync(path);
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  if (!s.isDirectory() || (uid !== undefined && s.uid !== uid) || (s.mode & 0o022) !== 0) {
    throw new UmbraError('INVALID_ARGUMENT', `${path} is not a private folder of this user (owner uid ${s.uid}, mode ${(s.mode & 0o777).toString(8)}); remove it or set TMPDIR elsewhere`);
  }
}

function onlyLinks(dir: string): boolean {
  return readdirSync(dir).every((entry) => lstatSync(join(dir, entry)).isSymbolicLink());
}

/** Points `link` at `target`, replacing a link that points elsewhere. Never touches a real file. */
function linkTo(target: string, link: string): void {
  let existing;
  try {
    existing = lstatSync(link);
  } catch {
    symlinkSync(target, link);
    return;
  }
  if (existing.isSymbolicLink()) {
    if (readlinkSync(link) === target) return;
    rmSync(link);
    symlinkSync(target, link);
    return;
  }
  throw new UmbraError('INVALID_ARGUMENT', `${link} exists and is not a link; remove it (it is in Umbra's own folder for --model-dir)`);
}

/** Writes `text` to `path` (replacing a link there) unless it already holds exactly that. */
function writeIfChanged(path: string, text: string): void {
  try {
    if (!lstatSync(path).isSymbolicLink() && readFileSync(path, 'utf8') === text) return;
  } catch {
    // absent: written below
  }
  rmSync(path, { force: true });
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/**
 * The config entries of REPO/NAME. A config whose `name` is the model's own folder name (a
 * Triton repository's model served under the InferenceService's name) is written as a
 * config.json carrying NAME instead, since Umbra, like Triton, holds a config to its folder's name.
 */
function configEntries(plan: ModelDirPlan): { links: Map<string, string>; renamed?: string } {
  const links = new Map<string, string>();
  const file = readModelConfig(plan.source);
  const configured = file.raw.name;
  if (file.path && typeof configured === 'string' && configured !== '' && configured !== plan.name) {
    return { links, renamed: `${JSON.stringify({ ...file.raw, name: plan.name }, null, 2)}\n` };
  }
  for (const config of ['config.json', 'config.pbtxt']) if (existsSync(join(plan.source, config))) links.set(config, join(plan.source, config));
  return { links };
}

/** The repository that serves one model directory; `refresh()` picks up versions added to it since. */
export interface ModelDirRepository {
  /** Pass as `repository` to the server. */
  readonly repository: string;
  readonly plan: ModelDirPlan;
  refresh(): void;
}

/**
 * Builds (or rebuilds) the repository of links for `plan` under `repository`. Links from an
 * earlier start whose targets are gone are removed; the traffic state and the prediction log,
 * which are real files, stay.
 */
export function linkModelDir(plan: ModelDirPlan, repository: string): ModelDirRepository {
  const refresh = () => {
    ensurePrivateFolder(join(repository, '..'));
    ensurePrivateFolder(repository);
    const modelFolder = join(repository, plan.name);
    mkdirSync(modelFolder, { recursive: true });
    const configs = configEntries(plan);
    const wanted = new Map<string, string>(configs.links);
    if (plan.layout !== 'file') {
      for (const entry of visibleEntries(plan.source)) {
        if (entry !== 'config.json' && entry !== 'config.pbtxt') wanted.set(entry, join(plan.source, entry));
      }
    }
    for (const entry of readdirSync(modelFolder)) {
      const path = join(modelFolder, entry);
      const s = lstatSync(path);
      if (s.isSymbolicLink() && !wanted.has(entry)) rmSync(path);
      // A version folder an earlier start made for a bare file, now that the layout differs.
      else if (s.isDirectory() && VERSION_DIR.test(entry) && (!plan.file || entry !== '1') && onlyLinks(path)) rmSync(path, { recursive: true });
    }
    for (const [entry, target] of wanted) linkTo(target, join(modelFolder, entry));
    if (configs.renamed !== undefined) writeIfChanged(join(modelFolder, 'config.json'), configs.renamed);
    else if (!wanted.has('config.json') && existsSync(join(modelFolder, 'config.json')) && !lstatSync(join(modelFolder, 'config.json')).isSymbolicLink()) rmSync(join(modelFolder, 'config.json'));
    if (plan.file) {
      const versionFolder = join(modelFolder, '1');
      mkdirSync(versionFolder, { recursive: true });
      const inVersion = new Map([[plan.file.linkedAs, plan.file.path], ...plan.file.beside.map((e): [string, string] => [e, join(plan.source, e)])]);
      for (const entry of readdirSync(versionFolder)) {
        if (!inVersion.has(entry) && lstatSync(join(versionFolder, entry)).isSymbolicLink()) rmSync(join(versionFolder, entry));
      }
      for (const [entry, target] of inVersion) linkTo(target, join(versionFolder, entry));
    }
  };
  refresh();
  return { repository, plan, refresh };
}
