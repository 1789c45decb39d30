// `umbra` command line. Each command has --help; bad flags name the flag and the fix.
import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import { COMMANDS } from './commands/index.js';

/**
 * The command line: with `command` one of Umbra's commands, that command alone (what running it
 * needs); otherwise every command (the root help lists them all, and a mistyped name gets
 * commander's suggestion).
 */
export async function buildProgram(command?: string): Promise<Command> {
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

  const loaders = command !== undefined && Object.hasOwn(COMMANDS, command) ? [COMMANDS[command]!] : Object.values(COMMANDS);
  for (const register of await Promise.all(loaders.map((load) => load()))) register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = await buildProgram(argv[2]);
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
