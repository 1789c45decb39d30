// Server settings from three sources, highest first: command-line flags, UMBRA_* environment
// variables, a JSON config file (--config). Every bad value is reported with the flag that sets it.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { usableCores } from '../cores.js';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { DEFAULTS } from '../server/defaults.js';
import type { ServerOptions } from '../server/server.js';
import { MONITOR_FIELDS, monitoringFromSettings, type MonitorField } from '../monitor/settings.js';
import { isValidModelName, MODEL_NAME_RULE } from '../repository/layout.js';
import { modelDirRepository } from '../repository/single-model.js';
import { realOrResolved } from '../real-path.js';

export class UsageError extends Error {
  readonly exitCode = 2;
}

/** A serve setting: the monitor's field shape, keyed by a server option. Two fields with one key are aliases. */
interface Field extends Omit<MonitorField, 'key'> {
  /** A server option, or a setting this file turns into one (adminTokenFile -> adminToken). */
  key: keyof ServerOptions | MonitorField['key'] | 'adminTokenFile' | 'modelName' | 'modelDir';
}

/** What `umbra serve` runs: the server's options, and the one model directory `--model-dir` names. */
export interface ServeSettings extends ServerOptions {
  /** `--model-name NAME --model-dir DIR` (KServe's runtime contract); `repository` is then the folder of links built for it. */
  modelDir?: { name: string; dir: string };
}

export const SERVE_FIELDS: Field[] = [
  { key: 'repository', flag: '--repo', env: 'UMBRA_REPO', kind: 'string' },
  { key: 'modelName', flag: '--model-name', env: 'UMBRA_MODEL_NAME', kind: 'string' },
  { key: 'modelDir', flag: '--model-dir', env: 'UMBRA_MODEL_DIR', kind: 'string' },
  { key: 'host', flag: '--host', env: 'UMBRA_HOST', kind: 'string' },
  { key: 'port', flag: '--port', env: 'UMBRA_PORT', kind: 'int', min: 0, max: 65535 },
  // KServe's runtimes name the HTTP port this way.
  { key: 'port', flag: '--http-port', env: 'UMBRA_HTTP_PORT', kind: 'int', min: 0, max: 65535 },
  { key: 'grpcPort', flag: '--grpc-port', env: 'UMBRA_GRPC_PORT', kind: 'int', min: 0, max: 65535 },
  { key: 'workers', flag: '--workers', env: 'UMBRA_WORKERS', kind: 'int', min: 1, max: 1024 },
  { key: 'adminToken', flag: '--admin-token', env: 'UMBRA_ADMIN_TOKEN', kind: 'string' },
  { key: 'adminTokenFile', flag: '--admin-token-file', env: 'UMBRA_ADMIN_TOKEN_FILE', kind: 'string' },
  { key: 'pollSeconds', flag: '--poll-seconds', env: 'UMBRA_POLL_SECONDS', kind: 'number', min: 0 },
  { key: 'drainSeconds', flag: '--drain-seconds', env: 'UMBRA_DRAIN_SECONDS', kind: 'number', min: 0 },
  { key: 'maxBodyBytes', flag: '--max-body-bytes', env: 'UMBRA_MAX_BODY_BYTES', kind: 'int', min: 1024 },
  { key: 'responseCompression', flag: '--response-compression', env: 'UMBRA_RESPONSE_COMPRESSION', kind: 'string' },
  { key: 'sharedMemory', flag: '--shared-memory', env: 'UMBRA_SHARED_MEMORY', kind: 'string' },
  { key: 'httpGuard', flag: '--http-guard', env: 'UMBRA_HTTP_GUARD', kind: 'string' },
  { key: 'wsMaxPayloadBytes', flag: '--ws-max-payload-bytes', env: 'UMBRA_WS_MAX_PAYLOAD_BYTES', kind: 'int', min: 1024 },
  { key: 'wsIdleSeconds', flag: '--ws-idle-seconds', env: 'UMBRA_WS_IDLE_SECONDS', kind: 'int', min: 0, max: 960,
    // The transport's idle timer cannot fire sooner than 8 s: a shorter setting would silently be 8.
    check: (n) => (n > 0 && n < 8 ? 'WebSocket connections can be closed for silence after 8 s at the soonest: give 0 (never) or 8..960' : undefined) },
  { key: 'wsMaxInFlight', flag: '--ws-max-in-flight', env: 'UMBRA_WS_MAX_IN_FLIGHT', kind: 'int', min: 1, max: 65536 },
  { key: 'wsBackpressureBytes', flag: '--ws-backpressure-bytes', env: 'UMBRA_WS_BACKPRESSURE_BYTES', kind: 'int', min: 1024 },
  { key: 'wsOrigins', flag: '--ws-origins', env: 'UMBRA_WS_ORIGINS', kind: 'string' },
  { key: 'store', flag: '--store', env: 'UMBRA_STORE', kind: 'string' },
  { key: 'stateDir', flag: '--state-dir', env: 'UMBRA_STATE_DIR', kind: 'string' },
  { key: 'intraOpThreads', flag: '--intra-op-threads', env: 'UMBRA_INTRA_OP_THREADS', kind: 'int', min: 1, max: 1024 },
  { key: 'ioThreads', flag: '--io-threads', env: 'UMBRA_IO_THREADS', kind: 'int', min: 1, max: 256 },
  { key: 'coreReads', flag: '--core-reads', env: 'UMBRA_CORE_READS', kind: 'string' },
  { key: 'ui', flag: '--ui', env: 'UMBRA_UI', kind: 'string' },
  ...MONITOR_FIELDS,
];

/** The config file uses the flag names without dashes in camelCase, e.g. {"repo": "...", "adminToken": "..."}. */
function fileKey(field: Field): string {
  return field.flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The source a bad value came from, as a message's prefix: none where it is the flag the message names. */
function where(source: string, field: Field): string {
  return source === field.flag ? '' : `${source}: `;
}

function convert(field: Field, raw: unknown, source: string): unknown {
  if (field.kind === 'string') {
    if (typeof raw !== 'string' || raw === '') throw new UsageError(`${where(source, field)}expected a non-empty string for ${field.flag}`);
    return raw;
  }
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
  const ok = field.kind === 'int' ? Number.isSafeInteger(n) : Number.isFinite(n);
  const inRange = ok && (field.min === undefined || n >= field.min) && (field.max === undefined || n <= field.max);
  if (!inRange) {
    const range = `${field.min ?? '-inf'}..${field.max ?? 'inf'}`;
    throw new UsageError(`${where(source, field)}expected ${field.kind === 'int' ? 'an integer' : 'a number'} in ${range} for ${field.flag} but received ${JSON.stringify(raw)}`);
  }
  const refused = field.check?.(n);
  if (refused) throw new UsageError(`${where(source, field)}${field.flag} ${JSON.stringify(raw)}: ${refused}`);
  return n;
}

/** The token in FILE (`flag` names it, `what` says which token): its content without the line break an editor leaves at the end. */
function readTokenFile(path: string, flag: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
  const token = text.replace(/[\r\n]+$/, '');
  if (token.trim() === '') throw new UsageError(`${flag}: ${path} is empty; put the ${what} in it`);
  if (/[\r\n]/.test(token)) throw new UsageError(`${flag}: ${path} has more than one line; put only the ${what} in it`);
  return token;
}

export function resolveServeSettings(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): ServeSettings {
  let file: Record<string, unknown> = {};
  const configPath = (flags.config as string | undefined) ?? env.UMBRA_CONFIG;
  if (configPath) {
    let text: string;
    try {
      text = readFileSync(configPath, 'utf8');
    } catch (err) {
      throw new UsageError(`--config: cannot read ${configPath}: ${(err as Error).message}`);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('the top level must be an object');
      file = parsed as Record<string, unknown>;
    } catch (err) {
      throw new UsageError(`--config: ${configPath} is not a valid JSON settings file: ${(err as Error).message}`);
    }
    const known = new Set(SERVE_FIELDS.map(fileKey));
    for (const k of Object.keys(file)) if (!known.has(k)) throw new UsageError(`--config: unknown setting "${k}" in ${configPath} (known: ${[...known].join(', ')})`);
  }
  const out: Record<string, unknown> = {};
  // Where each setting came from: 0 flag, 1 environment, 2 file. Of two aliases the higher source
  // wins; two different values from one source are a mistake, not a choice.
  const setBy = new Map<string, { rank: number; source: string }>();
  for (const field of SERVE_FIELDS) {
    const name = fileKey(field);
    let found: { rank: number; raw: unknown; source: string } | undefined;
    if (flags[name] !== undefined) found = { rank: 0, raw: flags[name], source: field.flag };
    else if (env[field.env] !== undefined && env[field.env] !== '') found = { rank: 1, raw: env[field.env], source: `${field.env} (environment)` };
    else if (file[name] !== undefined) found = { rank: 2, raw: file[name], source: `${configPath} "${name}"` };
    if (!found) continue;
    const value = convert(field, found.raw, found.source);
    const earlier = setBy.get(field.key);
    if (earlier && earlier.rank < found.rank) continue;
    if (earlier && earlier.rank === found.rank && out[field.key] !== value) {
      throw new UsageError(`${earlier.source} and ${found.source} are one setting given two values (${JSON.stringify(out[field.key])} and ${JSON.stringify(value)}); give one`);
    }
    out[field.key] = value;
    setBy.set(field.key, { rank: found.rank, source: found.source });
  }
  if (out.coreReads !== undefined) {
    if (out.coreReads === 'on') out.coreReads = true;
    else if (out.coreReads === 'off') out.coreReads = false;
    else if (out.coreReads === 'auto') delete out.coreReads;
    else throw new UsageError(`--core-reads: expected on, off or auto but received ${JSON.stringify(out.coreReads)}`);
  }
  for (const [key, flag] of [['responseCompression', '--response-compression'], ['sharedMemory', '--shared-memory'], ['httpGuard', '--http-guard']] as const) {
    const value = out[key];
    if (value === undefined) continue;
    if (value === 'on') out[key] = true;
    else if (value === 'off') out[key] = false;
    else throw new UsageError(`${flag}: expected on or off but received ${JSON.stringify(value)}`);
  }
  if (out.wsOrigins !== undefined) out.wsOrigins = parseOrigins(out.wsOrigins as string);
  if (out.ui !== undefined) {
    if (out.ui === 'on') delete out.ui;
    else if (out.ui === 'off') out.ui = false;
    else throw new UsageError(`--ui: expected on or off but received ${JSON.stringify(out.ui)}`);
  }
  if (out.adminTokenFile !== undefined) {
    if (out.adminToken !== undefined) throw new UsageError('--admin-token-file: give the admin token one way, --admin-token-file or --admin-token, not both');
    out.adminToken = readTokenFile(out.adminTokenFile as string, '--admin-token-file', 'admin token');
    delete out.adminTokenFile;
  }
  if (out.feedbackTokenFile !== undefined) {
    out.feedbackToken = readTokenFile(out.feedbackTokenFile as string, '--feedback-token-file', 'feedback token');
    delete out.feedbackTokenFile;
  }
  const modelName = out.modelName as string | undefined;
  const modelDir = out.modelDir as string | undefined;
  delete out.modelName;
  delete out.modelDir;
  let single: ServeSettings['modelDir'];
  if ((modelName === undefined) !== (modelDir === undefined)) {
    throw new UsageError('--model-name and --model-dir go together: --model-dir is one model\'s folder (a model.onnx, or <version>/model.onnx folders) and --model-name the name it is served under');
  }
  if (modelName !== undefined && modelDir !== undefined) {
    if (out.repository !== undefined) {
      throw new UsageError(`${setBy.get('repository')!.source} and --model-dir both say what to serve: give --repo for a repository of models, or --model-dir with --model-name for one model`);
    }
    if (!isValidModelName(modelName)) throw new UsageError(`--model-name: "${modelName}" cannot name a model: use ${MODEL_NAME_RULE}`);
    single = { name: modelName, dir: modelDir };
    out.repository = modelDirRepository(modelName, modelDir);
  }
  if (out.repository === undefined) throw new UsageError('--repo is required: the model repository directory (or set UMBRA_REPO, or "repo" in --config); or serve one model with --model-dir DIR --model-name NAME');
  // One model served from a read-only mount (KServe) keeps its state beside its folder of links,
  // in the same private folder, unless told otherwise: the working directory may not be writable.
  if (single && out.stateDir === undefined) out.stateDir = `${out.repository as string}.state`;
  out.stateDir = resolveStateDir(out.stateDir as string | undefined, out.repository as string);
  try {
    out.monitoring = monitoringFromSettings(out, out.stateDir as string);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return {
    host: DEFAULTS.host,
    port: DEFAULTS.port,
    grpcPort: DEFAULTS.grpcPort,
    workers: usableCores(),
    ...out,
    ...(single ? { modelDir: single } : {}),
  } as ServeSettings;
}

/** Where `umbra` keeps what it writes when no --state-dir (UMBRA_STATE_DIR) is given: beside where it runs. */
export const DEFAULT_STATE_DIR = '.umbra-state';

/**
 * The state directory (prediction log, traffic state, reference profiles) as an absolute path:
 * `--state-dir`, else `.umbra-state` in the working directory. Never inside the model repository,
 * which may be read-only and is scanned for models.
 */
export function resolveStateDir(given: string | undefined, repository: string | undefined): string {
  const stateDir = resolve(given ?? DEFAULT_STATE_DIR);
  if (repository !== undefined) {
    const inside = relative(realOrResolved(repository), realOrResolved(stateDir));
    if (inside === '' || (inside !== '..' && !inside.startsWith(`..${sep}`) && !isAbsolute(inside))) {
      throw new UsageError(given === undefined
        ? `--state-dir: the default state directory ${stateDir} (${DEFAULT_STATE_DIR} in the working directory) is inside the model repository ${repository}; run umbra from another directory or pass --state-dir DIR outside the repository (or set UMBRA_STATE_DIR)`
        : `--state-dir: ${given} is inside the model repository ${repository}; give a directory outside it (the repository may be read-only, and Umbra never writes there)`);
    }
  }
  return stateDir;
}

/** `--repo` for commands that read a repository: it must be an existing directory (a typo is an error, never a new folder). */
export function existingRepository(repo: string): string {
  if (!existsSync(repo) || !statSync(repo).isDirectory()) {
    throw new UsageError(`--repo: ${repo} is not a directory; give the model repository (REPO/<model>/<version>/model.onnx)`);
  }
  return repo;
}

/** --ws-origins: comma-separated origins (scheme://host[:port]) or `*`, each written as browsers send it. */
function parseOrigins(list: string): string[] {
  return list.split(',').map((item) => item.trim()).filter((item) => item !== '').map((item) => {
    if (item === '*') return item;
    let url: URL | undefined;
    try {
      url = new URL(item);
    } catch {
      url = undefined;
    }
    if (url === undefined || url.host === '' || url.origin !== item.toLowerCase().replace(/\/$/, '')) {
      throw new UsageError(`--ws-origins: expected origins like https://app.example.com (scheme, host and port only) or * but received ${JSON.stringify(item)}`);
    }
    return url.origin;
  });
}
