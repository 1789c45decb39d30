// Models given in a load request (Triton's load with overrides: a JSON config, and files such as
// file:1/model.onnx), kept in a folder of their own under the state directory so the repository
// itself may stay read-only. The manager serves them beside the repository's models: an override
// folder's config.json replaces the repository model's configuration, its version folders
// replace the repository model's versions. They persist across restarts, as the repository does;
// a load without overrides of a model the repository has goes back to the repository's.
import { existsSync, readdirSync, statSync } from 'node:fs';
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
        if (previous) await rm(previous, { recursive: true, force: true });
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
        if (previous) await rm(previous, { recursive: true, force: true });
      },
    };
  }

  /** The current override folder moved to a hidden name (still on the same file system). */
  private async setAside(name: string): Promise<string | undefined> {
    const target = this.modelDir(name);
    if (!isDirectory(target)) return undefined;
    const aside = join(this.dir, `.previous-${name}-${randomBytes(4).toString('hex')}`);
    await this.guard(name, () => rename(target, aside));
    // Nothing keeps the old folder once the swap is done but the undo; a crash leaves a hidden
    // folder the manager never reads.
    return aside;
  }

  private async stage(name: string, fill: (dir: string) => Promise<void>): Promise<string> {
    const dir = join(this.dir, `.staging-${name}-${randomBytes(4).toString('hex')}`);
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
