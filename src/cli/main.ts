// `umbra` command line. Each command has --help; bad flags name the flag and the fix.
import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import { COMMANDS } from './commands/index.js';

export function buildProgram(): Command {
  const program = new Command('umbra')
    .description('Umbra: an inference server for ONNX models (Open Inference Protocol v2)')
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');

  for (const register of COMMANDS) register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not failures; commander has already printed them.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return;
      process.exitCode = err.exitCode || 2;
      return;
    }
    throw err;
  }
}
