#!/usr/bin/env node
// `npm run bench`: every benchmark of the project against its peers in one run, written to
// bench/RESULTS.md (and bench/results-<mode>.json, bench/serving.svg). The suites:
//   serving    the serving sweep on digits: references (generator ceiling, bare uWS), Umbra as
//              shipped and configured otherwise, the Node peers (node:http and Fastify, one
//              process and a cluster of one per core), FastAPI + PyTorch, in-process onnxruntime
//   paired     the servers the headline and the serving targets compare, measured in turn
//   batching   batched Umbra on compute-bound models against in-process onnxruntime at its best
//   others     the self-contained benches (bench/native/*.mjs, ws, monitoring, batch)
// Servers are named in bench/contenders.mjs, targets in bench/targets.mjs, the tables in
// bench/report.mjs.
//
//   node bench/run.mjs --quick     (npm run bench; about 14 minutes on two cores: 810 s in the run RESULTS.md records)
//   node bench/run.mjs --full      (npm run bench:full)
//   --only=serving,paired,batching,others runs a subset (serving includes paired), written to files
//   of its own (bench/RESULTS-paired.md, results-quick-paired.json, ...): RESULTS.md is always a
//   whole run. --serving-only is the older spelling of --only=serving,batching. --rounds=N sets the number of paired rounds (5 quick, 7 full).
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIGITS_FILE, REPO, ROOT, elapsedSeconds, log, removeDir, settings } from './harness.mjs';
import { digitsRepos, servingSuite } from './suites/serving.mjs';
import { WRK, pairedSuite } from './suites/paired.mjs';
import { batchingSuite } from './suites/batching.mjs';
import { otherBenches } from './suites/others.mjs';
import { evaluateTargets } from './targets.mjs';
import { report } from './report.mjs';

const SUITES = ['serving', 'paired', 'batching', 'others'];

function chosenSuites(argv) {
  const only = argv.find((a) => a.startsWith('--only='));
  if (!only) return new Set(argv.includes('--serving-only') ? ['serving', 'paired', 'batching'] : SUITES);
  const names = only.slice('--only='.length).split(',').filter(Boolean);
  const unknown = names.filter((n) => !SUITES.includes(n));
  if (unknown.length > 0 || names.length === 0) {
    process.stderr.write(`bench: expected a comma-separated list of ${SUITES.join(', ')} for --only but received "${only.slice('--only='.length)}"\n`);
    process.exit(2);
  }
  const chosen = new Set(names);
  if (chosen.has('serving')) chosen.add('paired');
  return chosen;
}

if (!existsSync(join(ROOT, 'dist', 'perf', 'index.js'))) {
  process.stderr.write('bench: build first (npx tsc -p tsconfig.json)\n');
  process.exit(1);
}
const run = settings(process.argv.includes('--full'));
const roundsArg = process.argv.find((a) => a.startsWith('--rounds='));
if (roundsArg) {
  run.rounds = Number(roundsArg.slice('--rounds='.length));
  if (!Number.isInteger(run.rounds) || run.rounds < 1) {
    process.stderr.write(`bench: expected a positive integer for --rounds but received "${roundsArg.slice('--rounds='.length)}"\n`);
    process.exit(2);
  }
}
const suites = chosenSuites(process.argv);
const loadAtStart = loadavg();
const extra = process.argv.slice(2).filter((a) => a.startsWith('--only=') || a.startsWith('--rounds='));
const command = extra.length === 0 ? `npm run ${run.full ? 'bench:full' : 'bench'}  (node bench/run.mjs --${run.mode})` : `node bench/run.mjs --${run.mode} ${extra.join(' ')}`;

// Each Umbra server of a run logs to a fresh SQLite file (the default would be REPO/.umbra, which
// grows from run to run), so every run starts from the same state.
const logDir = mkdtempSync(join(tmpdir(), 'umbra-bench-log-'));
const context = { modelFile: DIGITS_FILE, repos: digitsRepos(REPO), logDir };
const cleanUp = () => {
  removeDir(logDir);
  removeDir(context.repos.ort);
  removeDir(context.repos.unbatched);
};
process.on('exit', cleanUp);

const results = {};
if (suites.has('serving')) results.serving = await servingSuite(run, context);
if (suites.has('paired')) results.paired = await pairedSuite(run, context);
if (suites.has('batching')) results.batching = await batchingSuite(run, logDir);
if (suites.has('others')) results.others = await otherBenches(run);

const targets = evaluateTargets(results, WRK);
// A subset writes its own files (RESULTS-paired.md, ...), so the record of a whole run is never
// replaced by a run that left suites out.
const whole = SUITES.every((s) => suites.has(s));
const suffix = whole ? '' : `-${SUITES.filter((s) => suites.has(s)).join('-')}`;
const svgFile = `serving${suffix}.svg`;
if (results.serving) {
  const { latencyThroughputSvg } = await import('../dist/perf/index.js');
  const plotted = [['bare uWS', 'uws'], ['Umbra', 'umbra'], ['Umbra (onnxruntime)', 'umbraOrt'], ['node:http+ORT', 'nodeHttp'],
    ['node:http+ORT cluster', 'nodeHttpCluster'], ['Fastify+ORT', 'fastify'], ['Fastify+ORT cluster', 'fastifyCluster']];
  const series = plotted.filter(([, key]) => results.serving[key]?.results).map(([label, key]) => ({ label, results: results.serving[key].results }));
  writeFileSync(join(ROOT, 'bench', svgFile), latencyThroughputSvg(series, `digits: latency vs throughput (${run.mode})`));
}
const resultsFile = `RESULTS${suffix}.md`;
writeFileSync(join(ROOT, 'bench', resultsFile), report({ run, command, loadAtStart, wrk: WRK, ran: [...suites], results, targets, svgFile }));
writeFileSync(join(ROOT, 'bench', `results-${run.mode}${suffix}.json`), `${JSON.stringify({ ...results, targets }, null, 2)}\n`);
log(`wrote bench/${resultsFile} in ${elapsedSeconds().toFixed(0)} s`);
