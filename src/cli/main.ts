// `umbra` command line. Each command has --help; bad flags name the flag and the fix.
import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import { COMMANDS } from './commands/index.js';

export function buildProgram(): Command {
  const program = new Command('umbra')
    .description('Umbra: an inference server for ONNX models (Open Inference Protocol v2)')
    .version(VERSION)
    // Inherited by every command: commander's own mistakes (unknown command or option, missing
    // argument or required option, no command at all) exit 2 like every usage error; asked-for
    // help and version stay 0.
    .exitOverride((err) => {
      throw err.exitCode === 0 ? err : new CommanderError(2, err.code, err.message);
    })
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
      // Commander has already printed the message (or the help).
      process.exitCode = err.exitCode;
      return;
    }
    throw err;
  }
}
