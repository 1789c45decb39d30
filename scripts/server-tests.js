// Prints, one a line, the test files that start servers through test/helpers/server.ts, directly or
// through another module of test/ that imports it, as tap runs them: compiled, in .test/
// (scripts/build-tests.js). CI runs these again with UMBRA_TEST_IO_THREADS=1
// (one thread reads and answers every request) and with UMBRA_TEST_CORE_READS=on (the core's thread
// one of two that read), so a server test written tomorrow is covered by every setting without
// anyone keeping a list. The files `npm test` leaves
// out (test/timing/, fixtures) are left out here too.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { compiledTestPath } from './build-tests.js';

const TEST_DIR = resolve('test');
const SERVER_HELPER = join(TEST_DIR, 'helpers', 'server.ts');
const SKIPPED_DIRS = new Set([join(TEST_DIR, 'timing'), join(TEST_DIR, 'fixtures')]);
// Static imports and re-exports (`from '...'`) and dynamic ones (`import('...')`).
const SPECIFIER = /\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g;

function testFiles(dir) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && !SKIPPED_DIRS.has(path) && entry.name !== 'node_modules') found.push(...testFiles(path));
    else if (entry.isFile() && entry.name.endsWith('.test.ts')) found.push(path);
  }
  return found;
}

/** The modules of test/ that `file` imports by a relative specifier ('./x.js' is x.ts on disk). */
function localImports(file) {
  const imports = [];
  for (const match of readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
    const specifier = match[1] ?? match[2];
    if (!specifier.startsWith('.')) continue;
    const target = resolve(dirname(file), specifier.replace(/\.js$/, '.ts'));
    if (target.startsWith(TEST_DIR) && existsSync(target)) imports.push(target);
  }
  return imports;
}

const reaches = new Map();
/** Whether `file` imports the server helper, following imports within test/. */
function startsServers(file, visiting = new Set()) {
  if (file === SERVER_HELPER) return true;
  if (reaches.has(file)) return reaches.get(file);
  if (visiting.has(file)) return false;
  visiting.add(file);
  const result = localImports(file).some((imported) => startsServers(imported, visiting));
  reaches.set(file, result);
  return result;
}

const chosen = testFiles(TEST_DIR).filter((file) => startsServers(file)).map((file) => compiledTestPath(relative(process.cwd(), file))).sort();
if (chosen.length === 0) {
  process.stderr.write('server-tests: no test file imports test/helpers/server.ts; expected at least one\n');
  process.exit(1);
}
process.stdout.write(`${chosen.join('\n')}\n`);
