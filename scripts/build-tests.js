// The test files are TypeScript; tap runs them as the JavaScript esbuild writes here into .test/,
// a folder beside test/ at the same depth, so every path a test names relative to itself
// (../dist, ../models, ./fixtures, ./helpers) reads the same from either; files that are not
// TypeScript (fixtures' data, JavaScript helpers; 0.2 MB) are copied as they are. Compiled once per run
// (about half a second for the whole suite) instead of by a loader in each test process: a
// TypeScript loader (tsx) cost each of the suite's ~190 test processes 0.5-1 s of CPU more.
// Inline source maps keep stack traces and tap's failure reports on the .ts lines.
//
//   node scripts/build-tests.js        (scripts/ensure-built.js runs it before every `npm test`)
import { build } from 'esbuild';
import { cpSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const TEST_SOURCES = 'test';
export const TEST_BUILD = '.test';

/** Every file under `dir`. */
function sources(dir) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      found.push(...sources(path));
    } else if (entry.isFile()) {
      found.push(path);
    }
  }
  return found;
}

/** The compiled path of a test source: test/a/b.test.ts -> .test/a/b.test.js. */
export function compiledTestPath(source) {
  return join(TEST_BUILD, relative(TEST_SOURCES, source)).replace(/\.ts$/, '.js');
}

export async function buildTests() {
  rmSync(TEST_BUILD, { recursive: true, force: true });
  const files = sources(TEST_SOURCES);
  const typescript = (f) => f.endsWith('.ts') && !f.endsWith('.d.ts');
  await build({
    entryPoints: files.filter(typescript),
    outdir: TEST_BUILD,
    outbase: TEST_SOURCES,
    format: 'esm',
    platform: 'node',
    target: `node${process.versions.node.split('.')[0]}`,
    sourcemap: 'inline',
    logLevel: 'warning',
  });
  for (const f of files.filter((f) => !typescript(f))) {
    const to = join(TEST_BUILD, relative(TEST_SOURCES, f));
    mkdirSync(dirname(to), { recursive: true });
    cpSync(f, to);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildTests();
}
