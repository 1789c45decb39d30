// `umbra profile`: the reference profile drift is measured against, built from reference data
// (e.g. the training set) and written to the state directory as MODEL.reference-profile.json,
// where `umbra serve` with the same state directory reads it.
import type { Command } from 'commander';
import { Umbra } from '../../core/umbra.js';
import { buildReferenceProfile, readReferenceData, type ReadOptions } from '../../monitor/reference-data.js';
import { DRIFT_DEFAULTS } from '../../monitor/drift.js';
import { stateProfilePath, writeProfile } from '../../monitor/profile.js';
import { existingRepository, resolveStateDir, UsageError } from '../settings.js';

interface ProfileFlags {
  repo?: string;
  model?: string;
  data?: string;
  label?: string;
  where?: string;
  columns?: string;
  stateDir?: string;
  out?: string;
}

export function registerProfile(program: Command): void {
  program.command('profile')
    .description('build a model\'s drift reference profile from reference data (CSV with a header, JSONL or Parquet)')
    .requiredOption('--repo <dir>', 'model repository')
    .requiredOption('--model <name>', 'model to profile (every version is run over the data to profile its outputs)')
    .requiredOption('--data <file>', 'reference data: a CSV, JSONL or Parquet file, e.g. the training set')
    .option('--label <column>', 'label column to leave out (default "label" when present)')
    .option('--where <column=value>', 'keep only matching rows, e.g. split=train')
    .option('--columns <a,b,...>', 'input columns in model input order (default: every numeric column but the label)')
    .option('--state-dir <dir>', 'state directory of the server that will use the profile (default ./.umbra-state) [env UMBRA_STATE_DIR]')
    .option('--out <file>', 'write the profile here instead, e.g. REPO/MODEL/reference-profile.json to ship it with the model')
    .action(async (flags: ProfileFlags) => profile(flags));
}

async function profile(flags: ProfileFlags): Promise<void> {
  const repo = existingRepository(flags.repo!);
  const target = flags.out ?? stateProfilePath(resolveStateDir(flags.stateDir ?? (process.env.UMBRA_STATE_DIR || undefined), repo), flags.model!);
  const read: ReadOptions = {};
  if (flags.label) read.label = flags.label;
  if (flags.columns) read.columns = flags.columns.split(',').map((s) => s.trim()).filter(Boolean);
  if (flags.where) {
    const eq = flags.where.indexOf('=');
    if (eq <= 0) throw new UsageError(`--where: expected column=value but received ${JSON.stringify(flags.where)}`);
    read.where = { column: flags.where.slice(0, eq), value: flags.where.slice(eq + 1) };
  }
  let data;
  try {
    data = await readReferenceData(flags.data!, read);
  } catch (err) {
    throw new UsageError(`--data: ${(err as Error).message}`);
  }
  const umbra = await Umbra.open({ repository: repo, workers: 1, loadAll: false });
  try {
    await umbra.manager.load(flags.model!);
    const built = await buildReferenceProfile(umbra, flags.model!, data, flags.data!, (version, why) => {
      process.stderr.write(`version ${version} is not profiled: ${why}; its drift takes its first live rows as the reference\n`);
    }, (line) => process.stderr.write(`${line}\n`));
    const path = writeProfile(target, built);
    process.stdout.write(`wrote ${path}: ${built.rows} rows, ${built.inputs.length} input features, outputs of versions ${Object.keys(built.outputs).join(', ')}\n`);
    if (built.rows < DRIFT_DEFAULTS.minSamples) process.stderr.write(`umbra profile: only ${built.rows} reference rows; drift verdicts stay inconclusive below --drift-min-samples (default ${DRIFT_DEFAULTS.minSamples}) rows in the reference, so give --data more rows (the training set)\n`);
  } finally {
    await umbra.close();
  }
}
