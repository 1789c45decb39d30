// `npm test` (and `npm run test:perf`) build what is missing or stale before the tests run:
// - the native addon when it is absent or a native source is newer than it (a stale .node would
//   test old kernels while the C++ tests, built below from the new sources, pass);
// - the standalone C++ kernel and pruning tests (CMake target umbra_kernel_tests, in the addon's
//   build tree, so the kernels compile once for both); ninja/make decide what is out of date.
//   When they cannot be built the other tests still run: test/cpp-kernels.test.ts builds the same
//   target again and fails with the compiler's output;
// - the TypeScript, always (tsc is incremental enough on this tree and a stale dist/ would test
//   old code);
// - tap's plugin set, when package.json's "tap.plugin" changes it (it drops @tapjs/typescript:
//   the tests run compiled, below). tap rebuilds itself on such a change, but only after it has
//   chosen the loaders of the run it is starting: on a fresh install the first run's test
//   processes would still load ts-node, whose resolver fails on some packages' exports;
// - the test files, always, into .test/ (scripts/build-tests.js).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { buildTests } from './build-tests.js';

const ADDON = 'build/Release/umbra.node';

/** The newest modification time (ms) of the files under `dir`, skipping the folders in `skip`. */
function newestMtime(dir, skip = []) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!skip.includes(path)) newest = Math.max(newest, newestMtime(path, skip));
    } else if (entry.isFile()) {
      newest = Math.max(newest, statSync(path).mtimeMs);
    }
  }
  return newest;
}

/** Newest input of the addon: native sources (not the standalone tests) and the CMake files. */
function newestAddonSource() {
  return Math.max(newestMtime('native', [join('native', 'tests')]), statSync('CMakeLists.txt').mtimeMs);
}

const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit' });

function ensureAddon() {
  if (!existsSync(ADDON)) {
    process.stderr.write(`ensure-built: ${ADDON} is missing: building it\n`);
    run('npx', ['cmake-js', 'compile']);
  } else if (newestAddonSource() > statSync(ADDON).mtimeMs) {
    process.stderr.write(`ensure-built: a native source is newer than ${ADDON}: rebuilding it\n`);
    run('npx', ['cmake-js', 'compile']);
    // The build succeeded, so the addon is current even where no object changed (a touched file,
    // a source the addon does not compile): mark it so, or every run would compile again.
    const now = new Date();
    utimesSync(ADDON, now, now);
  }
}

function ensureKernelTests() {
  try {
    // An addon copied in without its build tree (or built by node-gyp) has no CMake cache yet.
    if (!existsSync('build/CMakeCache.txt')) execFileSync('npx', ['cmake-js', 'configure'], { stdio: 'pipe' });
    execFileSync('cmake', ['--build', 'build', '--target', 'umbra_kernel_tests'], { stdio: 'pipe' });
  } catch {
    process.stderr.write('ensure-built: could not build the C++ kernel tests; test/cpp-kernels.test.ts will show why\n');
  }
}

/** Runs `tap build` when the plugins tap is built with are not those package.json names. */
function ensureTapPlugins() {
  const built = 'node_modules/@tapjs/test/test-built/dist/esm/index.js';
  const wanted = JSON.parse(readFileSync('package.json', 'utf8')).tap?.plugin ?? [];
  let signature = '';
  try {
    signature = /export const signature = `([^`]*)`/.exec(readFileSync(built, 'utf8'))?.[1] ?? '';
  } catch {
    // Not built at all: tap builds it.
  }
  const has = new Set(signature.split('\n'));
  const stale = !signature || wanted.some((p) => (p.startsWith('!') ? has.has(p.slice(1)) : !has.has(p)));
  if (stale) {
    process.stderr.write('ensure-built: tap is built with other plugins than package.json names: tap build\n');
    run('npx', ['tap', 'build']);
  }
}

ensureAddon();
ensureKernelTests();
ensureTapPlugins();
run('npx', ['tsc', '-p', 'tsconfig.json']);
await buildTests();
