// `npm install`'s step for the native addon. Installed as a dependency from a packed tarball, the
// package carries the addon built where it was packed; when that loads here, nothing is compiled
// (no C++ toolchain, no minutes of build). Otherwise (a development checkout, another platform,
// an addon that does not load) it builds with cmake-js, or node-gyp when CMake is missing.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { execSync } from 'node:child_process';
import { resolve } from 'node:path';

const ADDON = resolve('build/Release/umbra.node');
// npm runs this in the package's folder; INIT_CWD is where `npm install` was typed.
const asDependency = process.env.INIT_CWD !== undefined && resolve(process.env.INIT_CWD) !== process.cwd();

if (asDependency && existsSync(ADDON)) {
  try {
    createRequire(import.meta.url)(ADDON);
    process.stdout.write('umbra: using the native addon that came with the package\n');
    process.exit(0);
  } catch (err) {
    process.stdout.write(`umbra: the native addon that came with the package does not load here (${err.message.split('\n')[0]}); building it\n`);
  }
}
execSync('cmake-js compile || node-gyp rebuild', { stdio: 'inherit' });
