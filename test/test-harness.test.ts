// The test harness itself: processes a test starts run as a user would start them, without tap's
// process tracker (test/helpers/untracked-children.mjs), so a spawned `umbra` costs what it costs
// a user and the suite's time goes to the tests.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { withoutTracker } from './helpers/untracked-children.mjs';

const TRACKER = '@tapjs/processinfo';

/** What a child node process reports of the flags it started with. */
function childFlags(env?: NodeJS.ProcessEnv): { nodeOptions: string; execArgv: string[]; tracked: boolean } {
  const out = execFileSync(process.execPath, ['-e', `process.stdout.write(JSON.stringify({ nodeOptions: process.env.NODE_OPTIONS ?? '', execArgv: process.execArgv, tracked: Object.keys(process.env).some((k) => k.startsWith('_TAPJS_PROCESSINFO_')) }))`], { encoding: 'utf8', ...(env ? { env } : {}) });
  return JSON.parse(out);
}

t.test('a spawned node process starts without the tracker, keeping every other flag', async (t) => {
  const plain = childFlags();
  t.notMatch(plain.nodeOptions, TRACKER, 'NODE_OPTIONS of a child with the inherited environment');
  t.notOk(plain.tracked, 'no tracker settings in its environment');
  const own = childFlags({ ...process.env, NODE_OPTIONS: '--max-old-space-size=300 --no-deprecation' });
  // (The tracker quotes each flag on its way; Node reads them alike.)
  t.equal(own.nodeOptions.replace(/"/g, ''), '--max-old-space-size=300 --no-deprecation', "a test's own NODE_OPTIONS reach the child");
  const shell = spawnSync('sh', ['-c', 'printf %s "$NODE_OPTIONS"'], { encoding: 'utf8' });
  t.notMatch(shell.stdout, TRACKER, 'nor through a shell');
  t.notMatch(process.env.NODE_OPTIONS ?? '', TRACKER, "nor in this process's environment, which other spawns copy");
});

t.test('withoutTracker removes only the tracker, quoted or not', async (t) => {
  const flag = `--import=file:///x/node_modules/${TRACKER}/dist/esm/import.mjs`;
  t.equal(withoutTracker(`"${flag}"`), undefined);
  t.equal(withoutTracker(`--inspect=0 "${flag}" --import="a b.mjs"`), '--inspect=0 --import="a b.mjs"');
  t.equal(withoutTracker(`${flag} --max-old-space-size=64`), '--max-old-space-size=64');
  t.equal(withoutTracker(undefined), undefined);
  t.equal(withoutTracker(''), '');
});
