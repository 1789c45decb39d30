// `umbra export-log`: the prediction log with ground-truth labels joined, as CSV or JSONL, for
// retraining. Reads the database directly; the server may keep writing meanwhile.
import type { Command } from 'commander';
import { createWriteStream, existsSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { describeLogUrl, openLogStore, type ExportFilter, type ExportedRow } from '../../monitor/log-store.js';
import { defaultLogDb, legacyLogPath } from '../../monitor/settings.js';
import { existingRepository, resolveStateDir, UsageError } from '../settings.js';
import { stringifyExact } from '../../protocol/json-bigint.js';

interface ExportFlags {
  logDb?: string;
  repo?: string;
  stateDir?: string;
  out?: string;
  format?: string;
  model?: string;
  since?: string;
  labelled?: boolean;
}

export function registerExportLog(program: Command): void {
  program.command('export-log')
    .description('export the prediction log with labels joined (CSV or JSONL) for retraining')
    .option('--log-db <url>', 'sqlite:PATH or postgres://... (default: the log `umbra serve` writes in the state directory) [env UMBRA_LOG_DB]')
    .option('--state-dir <dir>', 'state directory of the server whose log to read (default ./.umbra-state) [env UMBRA_STATE_DIR]')
    .option('--repo <dir>', 'model repository; its REPO/.umbra/predictions.sqlite (where earlier versions logged) is read when the state directory has no log')
    .option('--out <file>', 'output file (default stdout)')
    .option('--format <csv|jsonl>', 'output format (default from --out\'s extension, else jsonl)')
    .option('--model <name>', 'only this model')
    .option('--since <time>', 'only predictions at or after this ISO time')
    .option('--labelled', 'only predictions that have a label')
    .action(async (flags: ExportFlags) => exportLog(flags));
}

async function exportLog(flags: ExportFlags): Promise<void> {
  const url = logUrl(flags);
  let where: ReturnType<typeof describeLogUrl>;
  try {
    where = describeLogUrl(url);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  // Reading a log must never create one: a mistyped path is an error, not an empty export.
  if (where.kind === 'sqlite' && !existsSync(where.path)) {
    throw new UsageError(`${flags.logDb ?? process.env.UMBRA_LOG_DB ? '--log-db' : '--state-dir'}: no prediction log at ${where.path}; give --log-db sqlite:PATH, or --state-dir DIR where \`umbra serve\` kept its state (run export-log from where serve ran)`);
  }
  const format = flags.format ?? formatOfName(flags.out);
  if (format !== 'csv' && format !== 'jsonl') throw new UsageError(`--format: expected csv or jsonl but received ${JSON.stringify(format)}`);
  const filter: ExportFilter = {};
  if (flags.model) filter.model = flags.model;
  if (flags.labelled) filter.labelledOnly = true;
  if (flags.since) {
    const t = Date.parse(flags.since);
    if (Number.isNaN(t)) throw new UsageError(`--since: expected an ISO time but received ${JSON.stringify(flags.since)}`);
    filter.sinceMs = t;
  }
  if (flags.out !== undefined && !existsSync(dirname(resolve(flags.out)))) throw new UsageError(`--out: the folder ${dirname(resolve(flags.out))} does not exist; create it first`);
  let store: Awaited<ReturnType<typeof openLogStore>>;
  try {
    store = await openLogStore(url);
  } catch (err) {
    // A database that cannot be reached or read: say which log and which flag points at it.
    const flag = flags.logDb ?? process.env.UMBRA_LOG_DB ? '--log-db' : '--state-dir';
    throw new UsageError(`${flag}: cannot read the prediction log at ${describeSource(url)}: ${(err as Error).message}; check the URL, the credentials and that the database is running`);
  }
  const out: Writable = flags.out ? createWriteStream(flags.out) : process.stdout;
  // A reader that stops early (| head) closes the pipe: the export ends there, quietly.
  let closed = false;
  if (!flags.out) process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    closed = true;
  });
  let rows = 0;
  let labelled = 0;
  let labelledWithoutInputs = 0;
  try {
    // The header even when no row matches: an empty file is not a CSV that readers can open.
    if (format === 'csv') await write(out, `${CSV_COLUMNS.join(',')}\n`, () => closed);
    for await (const row of store.exportRows(filter)) {
      if (closed) break;
      await write(out, format === 'csv' ? csvLine(row) : `${stringifyExact(row)}\n`, () => closed);
      rows += 1;
      if (row.truth !== null && row.truth !== undefined) {
        labelled += 1;
        if (row.inputs === null || row.inputs === undefined) labelledWithoutInputs += 1;
      }
    }
  } finally {
    await store.close();
    if (flags.out) {
      out.end();
      await once(out, 'finish');
    }
  }
  if (flags.out) process.stderr.write(`exported ${rows} predictions to ${flags.out}\n`);
  if (rows === 0 && filter.model !== undefined) process.stderr.write(`umbra export-log: no prediction of model '${filter.model}' in ${describeSource(url)}${filter.sinceMs !== undefined || filter.labelledOnly ? ' that matches --since and --labelled' : ''}; check the name (it is the model's folder name)\n`);
  // Retraining needs inputs; say plainly when the log kept only a sample of them.
  if (labelledWithoutInputs > 0) {
    process.stderr.write(`${labelledWithoutInputs} of ${labelled} labelled predictions have no inputs: the server logged inputs for a sample of predictions (--log-inputs-sample, default 0.1). To keep every input of a model, set "parameters": {"log_inputs_sample": "1"} in its config.json, or serve with --log-inputs-sample 1 for all models.\n`);
  }
}

/** --log-db, else UMBRA_LOG_DB, else the state directory's log (or an earlier version's log in --repo). */
function logUrl(flags: ExportFlags): string {
  const repo = flags.repo === undefined ? undefined : existingRepository(flags.repo);
  const explicit = flags.logDb ?? (process.env.UMBRA_LOG_DB || undefined);
  if (explicit !== undefined) return explicit;
  const url = defaultLogDb(resolveStateDir(flags.stateDir ?? (process.env.UMBRA_STATE_DIR || undefined), repo));
  const legacy = repo === undefined ? undefined : legacyLogPath(repo);
  if (legacy !== undefined && !existsSync(url.slice('sqlite:'.length)) && existsSync(legacy)) {
    process.stderr.write(`umbra export-log: reading ${legacy}, where earlier versions logged (the state directory has no log)\n`);
    return `sqlite:${legacy}`;
  }
  return url;
}

const CSV_COLUMNS: (keyof ExportedRow)[] = ['id', 'model', 'version', 'role', 'time', 'latency_ms', 'inputs', 'outputs', 'truth'];

/** Tensors and labels are JSON inside one quoted CSV cell each. */
function csvLine(row: ExportedRow): string {
  return `${CSV_COLUMNS.map((c) => {
    const v = row[c];
    const s = v === null || v === undefined ? '' : typeof v === 'string' || typeof v === 'number' ? String(v) : stringifyExact(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }).join(',')}\n`;
}

/** Writes, waiting for the stream to drain; `gone()` says the reader went away (no drain will come). */
async function write(out: Writable, text: string, gone: () => boolean): Promise<void> {
  if (gone() || out.write(text)) return;
  // once() rejects on 'error' (EPIPE, say), which the stream's error handler has judged already.
  const settled = (event: string) => once(out, event).catch(() => undefined);
  await Promise.race([settled('drain'), settled('close'), settled('error')]);
}

/** The format an --out name asks for: .csv, or .jsonl/.ndjson/.json (JSON Lines, also for stdout); another extension is refused. */
function formatOfName(out: string | undefined): string {
  if (out === undefined) return 'jsonl';
  const ext = extname(out).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '' || ext === '.jsonl' || ext === '.ndjson' || ext === '.json') return 'jsonl';
  throw new UsageError(`--out ${out}: export-log writes CSV or JSON Lines, not ${ext}; name the file .csv or .jsonl, or give --format csv|jsonl`);
}

/** The log's location for a message, without a password. */
function describeSource(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
