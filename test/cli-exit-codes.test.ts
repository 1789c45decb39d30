// Exit status of `umbra` as the docs give it: 0 for help and version, 2 for every usage error
// (commander's own: unknown command or option, missing argument or required option, no command;
// and Umbra's: a bad flag value), with a message on stderr.
import t from 'tap';
import { runUmbra } from './helpers/cli-process.js';

t.test('usage errors exit 2, help and version 0', async (t) => {
  const cases: [string[], number, RegExp][] = [
    [['--help'], 0, /Usage: umbra/],
    [['serve', '--help'], 0, /--state-dir/],
    [['--version'], 0, /\d+\.\d+\.\d+/],
    [[], 2, /Usage: umbra/],
    [['frobnicate'], 2, /unknown command 'frobnicate'/],
    [['serve', '--repo', 'models/repository', '--frobnicate'], 2, /unknown option '--frobnicate'/],
    [['profile', '--repo', 'models/repository', '--data', 'models/digits.csv'], 2, /required option '--model <name>' not specified/],
    [['perf', '--url', 'http://127.0.0.1:9'], 2, /required option '-m, --model <name>' not specified/],
    [['prune'], 2, /missing required argument 'in'/],
    [['bench-model'], 2, /missing required argument 'model'/],
    [['export-log', '--format', 'xml', '--log-db', 'sqlite:models/digits.csv'], 2, /--format: expected csv or jsonl/],
    [['serve', '--repo', 'models/repository', '--port', 'eighty'], 2, /--port/],
    [['perf', '--url', 'http://127.0.0.1:9', '-m', 'digits', '--protocol', 'smoke'], 2, /--protocol: expected one of/],
  ];
  for (const [args, status, message] of cases) {
    const r = runUmbra(args);
    t.equal(r.status, status, `umbra ${args.join(' ')} exits ${status}`);
    t.match(status === 0 ? r.stdout : r.stderr, message, `umbra ${args.join(' ')} says why`);
  }
});
