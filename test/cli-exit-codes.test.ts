// Exit status of `umbra` as the docs give it: 0 for help and version, 2 for every usage error
// (commander's own: unknown command or option, missing argument or required option, no command;
// and Umbra's: a bad flag value), with a message on stderr.
import t from 'tap';
import { runUmbra, umbraInProcess as inProcess } from './helpers/cli-process.js';

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
    // A file that is not ONNX: named, whichever backend was asked for (not "use another backend").
    [['bench-model', 'models/digits.csv'], 2, /^umbra: model: models\/digits\.csv is not a valid ONNX model: .*; give the path of an \.onnx file\n$/],
    [['bench-model', 'models/digits.csv', '--backend', 'onnxruntime'], 2, /^umbra: model: models\/digits\.csv is not a valid ONNX model/],
    [['prune', 'models/digits.csv', '/tmp/umbra-never-written.onnx', '--sparsity', '0.5'], 1, /^umbra: models\/digits\.csv is not a valid ONNX model/],
    [['export-log', '--format', 'xml', '--log-db', 'sqlite:models/digits.csv'], 2, /--format: expected csv or jsonl/],
    [['export-log', '--log-db', 'mysql://db/log'], 2, /--log-db but received a mysql:\/\/ URL; the prediction log is kept in SQLite or PostgreSQL/],
    // Nothing listens on port 1: the flag, the log (password hidden) and what to check.
    [['export-log', '--log-db', 'postgres://umbra:secret@127.0.0.1:1/log'], 2, /^umbra: --log-db: cannot read the prediction log at postgres:\/\/umbra:\*\*\*@127\.0\.0\.1:1\/log: connect ECONNREFUSED 127\.0\.0\.1:1; check the URL, the credentials and that the database is running\n$/],
    [['export-log', '--log-db', 'sqlite:models/digits.csv', '--out', '/tmp/umbra-never.parquet'], 2, /--out \/tmp\/umbra-never\.parquet: export-log writes CSV or JSON Lines, not \.parquet; name the file \.csv or \.jsonl, or give --format/],
    [['export-log', '--log-db', 'sqlite:models/digits.csv', '--out', '/umbra-no-such-folder/log.csv'], 2, /--out: the folder \/umbra-no-such-folder does not exist; create it first/],
    [['perf', '--url', 'http://127.0.0.1:9', '-m', 'digits', '--concurrency', '0'], 2, /expected a positive integer for --concurrency/],
    [['prune', 'models/repository/digits/1/model.onnx', './models/repository/digits/1/model.onnx', '--sparsity', '0.5'], 2, /OUT: \.\/models\/repository\/digits\/1\/model\.onnx is the input model; write the pruned model to another path/],
    [['prune', 'models/repository/digits/1/model.onnx', '/tmp/umbra-never-written.onnx', '--sparsity', '0.5', '--layer', 'a.weight=2'], 2, /--layer a\.weight: expected a number in \[0, 1\] but received "2"; e\.g\. --layer "a\.weight=0\.9"/],
    [['serve', '--repo', 'models/repository', '--port', 'eighty'], 2, /--port/],
    [['perf', '--url', 'http://127.0.0.1:9', '-m', 'digits', '--protocol', 'smoke'], 2, /--protocol: expected one of/],
    // A batch past what a typed array holds: it ended with the bare "Invalid typed array length" and 1.
    [['bench-model', 'models/repository/digits/2/model.onnx', '--batch', '100000000', '--seconds', '0.05', '--repeats', '1'], 2, /^umbra: --batch 100000000: the inputs cannot be allocated \(Invalid typed array length: \d+\); give a smaller batch\n$/],
    [['bench-model', 'models/repository/digits/2/model.onnx', '--backend', 'onnxruntime', '--batch', '100000000', '--seconds', '0.05', '--repeats', '1'], 2, /^umbra: --batch 100000000: the inputs cannot be allocated/],
  ];
  for (const [args, status, message] of cases) {
    const r = await inProcess(args);
    t.equal(r.status, status, `umbra ${args.join(' ')} exits ${status}`);
    t.match(status === 0 ? r.stdout : r.stderr, message, `umbra ${args.join(' ')} says why`);
  }
});

t.test('the real command: exit 2 on a usage error, 0 for help', async (t) => {
  const unknown = runUmbra(['serve', '--repo', 'models/repository', '--frobnicate']);
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /unknown option '--frobnicate'/);
  const none = runUmbra([]);
  t.equal(none.status, 2, 'no command at all');
  t.equal(runUmbra(['prune', '--help']).status, 0);
});

t.test('export-log into a reader that stops early (| head) ends quietly with 0', async (t) => {
  const { spawn } = await import('node:child_process');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { openLogStore } = await import('../dist/monitor/log-store.js');
  const { BIN } = await import('./helpers/cli-process.js');
  const dir = mkdtempSync(join(tmpdir(), 'umbra-export-pipe-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const db = `sqlite:${join(dir, 'log.sqlite')}`;
  const store = await openLogStore(db);
  // Far more than a pipe holds, so the export is still writing when the reader goes.
  const rows = Array.from({ length: 4000 }, (_, i) => ({ id: `p${i}`, model: 'm', version: '1', role: 'primary', timeMs: 1000 + i, latencyMs: 0.5, outputs: [{ name: 'y', shape: [1, 16], data: Float64Array.from({ length: 16 }, (_, k) => i + k / 16) }] }));
  await store.insert(rows, []);
  await store.close();
  const child = spawn(process.execPath, [BIN, 'export-log', '--log-db', db], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { stderr += d; });
  child.stdout.once('data', () => child.stdout.destroy());
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  t.equal(code, 0, stderr);
  t.notMatch(stderr, /EPIPE/, 'no error for a reader that had enough');
});
