// Models given in a load request (Triton's load with overrides: a JSON config, and files such as
// file:1/model.onnx), kept in a folder of their own under the state directory so the repository
// itself may stay read-only. The manager serves them beside the repository's models: an override
// folder's config.json replaces the repository model's configuration, its version folders
// replace the repository model's versions. They persist across restarts, as the repository does;
// a load without overrides of a model the repository has goes back to the repository's.
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { cp, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UmbraError, describeValue } from '../errors.js';
import { isValidModelName, parseVersion } from './layout.js';

export interface LoadOverrides {
  /** The model configuration (Triton's fields, as config.json holds them). */
  config?: Record<string, unknown>;
  /** Files of the model, each at <version>/<path> inside the model folder. */
  files: { path: string; content: Buffer }[];
}

const FILE_PREFIX = 'file:';
const CONFIG_FILE = 'config.json';
/** Hidden folders beside the models: a swap's old folder, a load's files being written, a folder let go. */
const PREVIOUS = '.previous-';
const STAGING = '.staging-';
const RETIRED = '.retired-';

function bad(message: string): UmbraError {
  return new UmbraError('INVALID_INPUT', message);
}

/**
 * A load request's parameters as overrides; undefined when it has none (a plain load). `fileContent`
 * turns a file parameter's value into bytes (REST sends base64 text, gRPC sends bytes).
 */
export function readLoadOverrides(parameters: Record<string, unknown> | undefined, fileContent: (value: unknown, key: string) => Buffer): LoadOverrides | undefined {
  if (parameters === undefined) return undefined;
  const out: LoadOverrides = { files: [] };
  let any = false;
  for (const [key, value] of Object.entries(parameters)) {
    if (key === 'config') {
      out.config = readConfig(value);
      any = true;
    } else if (key.startsWith(FILE_PREFIX)) {
      out.files.push({ path: filePath(key), content: fileContent(value, key) });
      any = true;
    } else {
      throw bad(`expected "config" or "file:<version>/<name>" for a load parameter but received ${JSON.stringify(key)}`);
    }
  }
  if (!any) return undefined;
  if (out.files.length > 0 && out.config === undefined) throw bad('expected parameters.config with the files: a model given in the load request needs its configuration');
  return out;
}

function readConfig(value: unknown): Record<string, unknown> {
  if (typeof value !== 'string') throw bad(`expected the model configuration as JSON text for parameters.config but received ${describeValue(value)}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw bad(`expected the model configuration as JSON for parameters.config but it does not parse: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw bad(`expected a JSON object for parameters.config but received ${describeValue(parsed)}`);
  // JSON.parse takes any depth, but writing the config back (JSON.stringify) and reading it recurse,
  // and a config thousands of levels deep ran out of stack there: a 500 for a bad request.
  if (deeperThan(parsed, MAX_CONFIG_DEPTH)) throw bad(`expected a model configuration nested at most ${MAX_CONFIG_DEPTH} levels deep for parameters.config but received one nested deeper`);
  return parsed as Record<string, unknown>;
}

/** Far more than any model configuration needs (Triton's nest a handful of levels). */
const MAX_CONFIG_DEPTH = 64;

/** Whether objects and arrays in `value` nest more than `limit` levels (the value itself is level 1); iterative, so any depth can be measured. */
function deeperThan(value: unknown, limit: number): boolean {
  const pending: [unknown, number][] = [[value, 1]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, depth] = next;
    if (typeof item !== 'object' || item === null) continue;
    if (depth > limit) return true;
    for (const child of Object.values(item)) pending.push([child, depth + 1]);
  }
  return false;
}

/** "file:1/model.onnx" -> "1/model.onnx", refusing anything that could leave the model's folder. */
function filePath(key: string): string {
  const path = key.slice(FILE_PREFIX.length);
  const segments = path.split('/');
  const safe = segments.length >= 2 && segments.every((s) => s !== '' && s !== '.' && s !== '..' && !s.includes('\\') && !s.includes('\0'));
  if (!safe || !/^[1-9][0-9]{0,15}$/.test(segments[0]!)) {
    throw bad(`expected a file parameter named file:<version>/<name> (e.g. file:1/model.onnx) but received ${JSON.stringify(key)}`);
  }
  parseVersion(segments[0]);
  return segments.join('/');
}

/** Base64 text as bytes (the REST form of a file parameter). */
export function base64File(value: unknown, key: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value.replace(/\s+/g, ''))) {
    throw bad(`expected the file's contents as base64 text for parameters["${key}"] but received ${describeValue(value)}`);
  }
  return Buffer.from(value, 'base64');
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The folder of models given in load requests: <dir>/<model>/{config.json, <version>/...}. */
export class OverrideStore {
  constructor(readonly dir: string) {}

  modelDir(name: string): string {
    return join(this.dir, name);
  }

  /** Models with an override folder. */
  names(): string[] {
    if (!isDirectory(this.dir)) return [];
    return readdirSync(this.dir).filter((n) => isValidModelName(n) && isDirectory(join(this.dir, n))).sort();
  }

  hasConfig(name: string): boolean {
    return existsSync(join(this.dir, name, CONFIG_FILE));
  }

  /** Whether the override holds the model's files (numeric version folders), not only its config. */
  hasVersions(name: string): boolean {
    const dir = join(this.dir, name);
    if (!isDirectory(dir)) return false;
    return readdirSync(dir).some((entry) => /^[1-9][0-9]{0,15}$/.test(entry) && isDirectory(join(dir, entry)));
  }

  /**
   * Puts `overrides` in place of the model's current override (files replace the whole folder; a
   * config alone replaces the config and keeps files given earlier). Returns how to undo it, for
   * a load that fails (the previous override comes back), and how to let the previous one go.
   */
  async apply(name: string, overrides: LoadOverrides): Promise<{ undo: () => Promise<void>; commit: () => Promise<void> }> {
    const configName = overrides.config?.['name'];
    if (configName !== undefined && configName !== name) throw bad(`expected the name "${name}" (or none) in parameters.config but received ${describeValue(configName)}`);
    const target = this.modelDir(name);
    const staged = await this.stage(name, async (dir) => {
      if (overrides.files.length === 0 && isDirectory(target)) await copyVersions(target, dir);
      if (overrides.config !== undefined) await writeFile(join(dir, CONFIG_FILE), JSON.stringify({ ...overrides.config, name }, null, 2));
      for (const f of overrides.files) {
        const path = join(dir, ...f.path.split('/'));
        await mkdir(dirname(path), { recursive: true });
        await writeFile(path, f.content);
      }
    });
    const previous = await this.setAside(name);
    await this.guard(name, () => rename(staged, target));
    return {
      undo: async () => {
        await rm(target, { recursive: true, force: true });
        if (previous) await rename(previous, target);
      },
      commit: async () => {
        if (previous) await this.discard(previous);
      },
    };
  }

  /** Removes the model's override; returns how to undo that (for a load that fails). */
  async remove(name: string): Promise<{ undo: () => Promise<void>; commit: () => Promise<void> }> {
    const previous = await this.setAside(name);
    return {
      undo: async () => {
        if (previous) await rename(previous, this.modelDir(name));
      },
      commit: async () => {
        if (previous) await this.discard(previous);
      },
    };
  }

  /**
   * Lets a set-aside folder go once its swap is final: renamed to `.retired-*` first (one atomic
   * step), so a removal that fails or is cut short leaves a folder the next start deletes, never
   * one it would take for an unfinished swap and put back.
   */
  private async discard(previous: string): Promise<void> {
    const retired = join(this.dir, `${RETIRED}${previous.slice(this.dir.length + 1 + PREVIOUS.length)}`);
    const gone = await rename(previous, retired).then(() => retired, () => previous);
    await rm(gone, { recursive: true, force: true }).catch((err: Error) => {
      // The change stands either way; left silent, the folder would take disk space unnoticed.
      const next = gone === retired ? 'the next start removes it' : 'delete it by hand before the next start, which would put it back';
      process.emitWarning(`umbra: cannot remove ${gone}, a folder of a model given in a load request that a reload or unload let go (${err.message}); it is never served: ${next}`);
    });
  }

  /**
   * What an earlier run left in the folder, put right before any load or unload can start (so it
   * is synchronous): a swap set aside but never made final (the process ended between the two) is
   * undone, as a failed load is; staging and retired folders are removed. Returns a note for each.
   */
  recover(): string[] {
    if (!isDirectory(this.dir)) return [];
    const notes: string[] = [];
    const remove = (entry: string, why: string) => {
      try {
        rmSync(join(this.dir, entry), { recursive: true, force: true });
        notes.push(`removed ${entry} from ${this.dir}: ${why}`);
      } catch (err) {
        notes.push(`cannot remove ${entry} from ${this.dir} (${(err as Error).message}): ${why}; it is never served, delete it by hand`);
      }
    };
    const entries = readdirSync(this.dir).sort();
    for (const entry of entries) {
      if (entry.startsWith(STAGING)) remove(entry, 'files of a load that did not finish');
      else if (entry.startsWith(RETIRED)) remove(entry, 'a model folder replaced or unloaded earlier');
    }
    // The newest set-aside folder of each model is its state before the unfinished swap.
    const asides = new Map<string, { entry: string; mtime: number }[]>();
    for (const entry of entries) {
      const name = /^\.previous-(.+)-[0-9a-f]{8}$/.exec(entry)?.[1];
      if (!entry.startsWith(PREVIOUS)) continue;
      if (name === undefined || !isValidModelName(name)) {
        remove(entry, 'not a folder this server set aside');
        continue;
      }
      let mtime = 0;
      try {
        mtime = statSync(join(this.dir, entry)).mtimeMs;
      } catch {
        // Gone meanwhile: nothing to restore.
      }
      asides.set(name, [...(asides.get(name) ?? []), { entry, mtime }]);
    }
    for (const [name, list] of asides) {
      list.sort((a, b) => b.mtime - a.mtime);
      const [newest, ...older] = list;
      for (const o of older) remove(o.entry, `an older copy of model "${name}"`);
      try {
        rmSync(this.modelDir(name), { recursive: true, force: true });
        renameSync(join(this.dir, newest!.entry), this.modelDir(name));
        notes.push(`put back the model "${name}" given in a load request: a load or unload of it was cut short (the process ended before it finished), so it was undone as a failed one is`);
      } catch (err) {
        notes.push(`cannot put back the model "${name}" from ${join(this.dir, newest!.entry)} (${(err as Error).message}); move that folder to ${this.modelDir(name)} by hand, or delete it`);
      }
    }
    return notes;
  }

  /** The current override folder moved to a hidden name (still on the same file system). */
  private async setAside(name: string): Promise<string | undefined> {
    const target = this.modelDir(name);
    if (!isDirectory(target)) return undefined;
    const aside = join(this.dir, `${PREVIOUS}${name}-${randomBytes(4).toString('hex')}`);
    await this.guard(name, () => rename(target, aside));
    // Nothing keeps the old folder once the swap is done but the undo; a crash leaves a hidden
    // folder the next start puts back (recover).
    return aside;
  }

  private async stage(name: string, fill: (dir: string) => Promise<void>): Promise<string> {
    const dir = join(this.dir, `${STAGING}${name}-${randomBytes(4).toString('hex')}`);
    try {
      await this.guard(name, async () => {
        await mkdir(dir, { recursive: true });
        await fill(dir);
      });
    } catch (err) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }
    return dir;
  }

  /** File system failures as a clear error naming the folder and the fix. */
  private async guard(name: string, action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (err) {
      const message = (err as Error).message;
      throw new UmbraError('INTERNAL', `cannot write the model "${name}" given in the load request under ${this.dir}: ${message} (start the server with --state-dir set to a writable folder)`, { cause: err });
    }
  }
}

async function copyVersions(from: string, to: string): Promise<void> {
  for (const entry of readdirSync(from)) {
    if (/^[1-9][0-9]{0,15}$/.test(entry)) await cp(join(from, entry), join(to, entry), { recursive: true });
  }
}
