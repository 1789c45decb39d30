// Every `umbra` subcommand, one file each. A new command adds its file and one line here.
// Each is imported when it is named on the command line (the others are not loaded at all, so
// `umbra perf` does not load the server, nor `umbra serve` the batch readers and the load
// generator); the root help and an unknown command load them all.
import type { Command } from 'commander';

type Register = (program: Command) => void;

/** Each command's name and how to load its registration, in the order the help lists them. */
export const COMMANDS: Record<string, () => Promise<Register>> = {
  serve: async () => (await import('./serve.js')).registerServe,
  batch: async () => (await import('./batch.js')).registerBatch,
  perf: async () => (await import('./perf.js')).registerPerf,
  profile: async () => (await import('./profile.js')).registerProfile,
  'export-log': async () => (await import('./export-log.js')).registerExportLog,
  prune: async () => (await import('./prune.js')).registerPrune,
  'bench-model': async () => (await import('./bench-model.js')).registerBenchModel,
};
