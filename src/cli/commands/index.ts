// Every `umbra` subcommand, one file each. A new command adds its file and one line here.
import type { Command } from 'commander';
import { registerServe } from './serve.js';
import { registerBatch } from './batch.js';
import { registerPerf } from './perf.js';
import { registerProfile } from './profile.js';
import { registerExportLog } from './export-log.js';
import { registerBenchModel } from './bench-model.js';
import { registerPrune } from './prune.js';

export const COMMANDS: ((program: Command) => void)[] = [
  registerServe,
  registerBatch,
  registerPerf,
  registerProfile,
  registerExportLog,
  registerPrune,
  registerBenchModel,
];
