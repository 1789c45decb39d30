// `npm test` builds what is missing: the native addon when absent, the TypeScript always
// (tsc is incremental enough on this tree and a stale dist/ would test old code).
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit' });
if (!existsSync('build/Release/umbra.node')) run('npx', ['cmake-js', 'compile']);
run('npx', ['tsc', '-p', 'tsconfig.json']);
