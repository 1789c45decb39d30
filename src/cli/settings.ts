// Server settings from three sources, highest first: command-line flags, UMBRA_* environment
// variables, a JSON config file (--config). Every bad value is reported with the flag that sets it.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { DEFAULTS, type ServerOptions } from '../server/server.js';
import { MONITOR_FIELDS, monitoringFromSettings, type MonitorField } from '../monitor/settings.js';

export class UsageError extends Error {
  readonly exitCode = 2;
}

/** A serve setting: the monitor's field shape, keyed by a server option. */
interface Field extends Omit<MonitorField, 'key'> {
  /** A server option, or a setting this file turns into one (adminTokenFile -> adminToken). */
  key: keyof ServerOptions | MonitorField['key'] | 'adminTokenFile';
}

export const SERVE_FIELDS: Field[] = [
  { key: 'repository', flag: '--repo', env: 'UMBRA_REPO', kind: 'string' },
  { key: 'host', flag: '--host', env: 'UMBRA_HOST', kind: 'string' },
  { key: 'port', flag: '--port', env: 'UMBRA_PORT', kind: 'int', min: 0, max: 65535 },
  { key: 'workers', flag: '--workers', env: 'UMBRA_WORKERS', kind: 'int', min: 1, max: 1024 },
  { key: 'adminToken', flag: '--admin-token', env: 'UMBRA_ADMIN_TOKEN', kind: 'string' },
  { key: 'adminTokenFile', flag: '--admin-token-file', env: 'UMBRA_ADMIN_TOKEN_FILE', kind: 'string' },
  { key: 'pollSeconds', flag: '--poll-seconds', env: 'UMBRA_POLL_SECONDS', kind: 'number', min: 0 },
  { key: 'drainSeconds', flag: '--drain-seconds', env: 'UMBRA_DRAIN_SECONDS', kind: 'number', min: 0 },
  { key: 'maxBodyBytes', flag: '--max-body-bytes', env: 'UMBRA_MAX_BODY_BYTES', kind: 'int', min: 1024 },
  { key: 'wsMaxPayloadBytes', flag: '--ws-max-payload-bytes', env: 'UMBRA_WS_MAX_PAYLOAD_BYTES', kind: 'int', min: 1024 },
  { key: 'wsIdleSeconds', flag: '--ws-idle-seconds', env: 'UMBRA_WS_IDLE_SECONDS', kind: 'int', min: 0, max: 960 },
  { key: 'wsMaxInFlight', flag: '--ws-max-in-flight', env: 'UMBRA_WS_MAX_IN_FLIGHT', kind: 'int', min: 1, max: 65536 },
  { key: 'wsBackpressureBytes', flag: '--ws-backpressure-bytes', env: 'UMBRA_WS_BACKPRESSURE_BYTES', kind: 'int', min: 1024 },
  { key: 'store', flag: '--store', env: 'UMBRA_STORE', kind: 'string' },
  { key: 'stateDir', flag: '--state-dir', env: 'UMBRA_STATE_DIR', kind: 'string' },
  { key: 'intraOpThreads', flag: '--intra-op-threads', env: 'UMBRA_INTRA_OP_THREADS', kind: 'int', min: 1, max: 1024 },
  { key: 'ioThreads', flag: '--io-threads', env: 'UMBRA_IO_THREADS', kind: 'int', min: 1, max: 256 },
  ...MONITOR_FIELDS,
];

/** The config file uses the flag names without dashes in camelCase, e.g. {"repo": "...", "adminToken": "..."}. */
function fileKey(field: Field): string {
  return field.flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function convert(field: Field, raw: unknown, source: string): unknown {
  if (field.kind === 'string') {
    if (typeof raw !== 'string' || raw === '') throw new UsageError(`${source}: expected a non-empty string for ${field.flag}`);
    return raw;
  }
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
  const ok = field.kind === 'int' ? Number.isSafeInteger(n) : Number.isFinite(n);
  const inRange = ok && (field.min === undefined || n >= field.min) && (field.max === undefined || n <= field.max);
  if (!inRange) {
    const range = `${field.min ?? '-inf'}..${field.max ?? 'inf'}`;
    throw new UsageError(`${source}: expected ${field.kind === 'int' ? 'an integer' : 'a number'} in ${range} for ${field.flag} but received ${JSON.stringify(raw)}`);
  }
  return n;
}

/** The token in FILE: its content without the line break an editor leaves at the end. */
function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--admin-token-file: cannot read ${path}: ${(err as Error).message}`);
  }
  const token = text.replace(/[\r\n]+$/, '');
  if (token.trim() === '') throw new UsageError(`--admin-token-file: ${path} is empty; put the admin token in it`);
  if (/[\r\n]/.test(token)) throw new UsageError(`--admin-token-file: ${path} has more than one line; put only the admin token in it`);
  return token;
}

export function resolveServeSettings(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): ServerOptions {
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
  for (const field of SERVE_FIELDS) {
    const flagName = fileKey(field);
    if (flags[flagName] !== undefined) out[field.key] = convert(field, flags[flagName], field.flag);
    else if (env[field.env] !== undefined && env[field.env] !== '') out[field.key] = convert(field, env[field.env], `${field.env} (environment)`);
    else if (file[flagName] !== undefined) out[field.key] = convert(field, file[flagName], `${configPath} "${flagName}"`);
  }
  if (out.repository === undefined) throw new UsageError('--repo is required: the model repository directory (or set UMBRA_REPO, or "repo" in --config)');
  if (out.adminTokenFile !== undefined) {
    if (out.adminToken !== undefined) throw new UsageError('--admin-token-file: give the admin token one way, --admin-token-file or --admin-token, not both');
    out.adminToken = readTokenFile(out.adminTokenFile as string);
    delete out.adminTokenFile;
  }
  try {
    out.monitoring = monitoringFromSettings(out, out.repository as string);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return {
    host: DEFAULTS.host,
    port: DEFAULTS.port,
    workers: availableParallelism(),
    ...out,
  } as ServerOptions;
}
