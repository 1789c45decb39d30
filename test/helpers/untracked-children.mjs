// Loaded into every test process (package.json "tap"."node-arg"). tap's process tracker
// (@tapjs/processinfo, which tap loads into every test whether coverage is on or not) also puts
// its module hook into NODE_OPTIONS of every process a test starts: each `umbra` command, server
// and peer a test spawns then loads every module through a loader thread that records it. That
// doubles what such a process costs: `umbra --help` 0.8 -> 2.0 s of CPU, `umbra serve` on the
// bundled models 1.9 -> 3.9 s to ready. The tests cover no child's code (coverage is off), so
// here the children start as a user starts them: without the tracker, every other flag kept.
//
// The tracker adds itself through process-on-spawn, whose state is a global singleton that every
// copy of that package shares; a listener added after the tracker's runs after it, on every spawn.

const TRACKER = '@tapjs/processinfo';

/** NODE_OPTIONS without the tracker's flags (quoted or not); undefined when nothing is left. */
export function withoutTracker(nodeOptions) {
  if (!nodeOptions) return nodeOptions;
  const kept = (nodeOptions.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? []).filter((flag) => !flag.includes(TRACKER));
  return kept.length ? kept.join(' ') : undefined;
}

function strip(env) {
  const options = withoutTracker(env.NODE_OPTIONS);
  if (options === undefined) delete env.NODE_OPTIONS;
  else env.NODE_OPTIONS = options;
}

strip(process.env);
const spawnHooks = globalThis[Symbol.for('process-on-spawn@*:singletonId')];
if (spawnHooks && Array.isArray(spawnHooks.listeners)) {
  spawnHooks.listeners.push((opts) => {
    const env = { ...opts.env };
    strip(env);
    // The tracker's own settings, which only its hook reads.
    for (const name of Object.keys(env)) if (name.startsWith('_TAPJS_PROCESSINFO_')) delete env[name];
    opts.env = env;
  });
}
