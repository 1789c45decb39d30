// bench/RESULTS.md from one run's results: tables and the words around them, nothing judged here
// (targets.mjs evaluates the targets; contenders.mjs says what each server is).
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { CORES, NODE_PEERS, PEERS, UMBRA_DIGITS, VERSIONS } from './contenders.mjs';
import { ROOT, at, elapsedSeconds, ratio } from './harness.mjs';
import { PAIRED } from './suites/paired.mjs';
import { SWEEP } from './suites/serving.mjs';
import { SPARE_THREADS } from './suites/batching.mjs';
import { bestNodePeer } from './targets.mjs';

const f1 = (v) => (v === undefined || v === null ? '-' : Number(v).toFixed(1));
const f2 = (v) => (v === undefined || v === null ? '-' : Number(v).toFixed(2));
const f3 = (v) => (v === undefined || v === null ? '-' : Number(v).toFixed(3));
const LABELS = Object.fromEntries([...Object.values(PEERS), ...Object.values(UMBRA_DIGITS)].map((c) => [c.key, c.label]));

function machine() {
  const cpu = cpus();
  let gpu = 'none';
  try {
    gpu = execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || 'none';
  } catch { /* no NVIDIA driver */ }
  return `${cpu.length} x ${cpu[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}, Node ${process.version}, GPU: ${gpu}`;
}

/**
 * The commit the run measured, and whether the checkout had uncommitted changes besides the files
 * runs write (results, plots), or why it is unknown.
 */
function build() {
  const git = (...args) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const written = [':(exclude)bench/RESULTS*.md', ':(exclude)bench/results-*.json', ':(exclude)bench/*.svg'];
    const changed = git('status', '--porcelain', '--untracked-files=no', '--', '.', ...written) !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${changed ? ' with uncommitted changes' : ''}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

/** A target's figure: a paired { median, min, max, n } or a sweep number. */
function shown(target) {
  if (target.value === undefined) return '-';
  const m = target.measured;
  return typeof m === 'object' ? `${f2(m.median)} (paired, median of ${m.n} rounds; ${f2(m.min)}-${f2(m.max)})` : f2(m);
}

function wantedText(wanted) {
  if (!wanted) return 'no target set';
  return 'atLeast' in wanted ? `>= ${wanted.atLeast.toFixed(2)}` : `<= ${wanted.atMost.toFixed(2)}`;
}

function targetsTable(targets) {
  const lines = ['| target | measured | wanted | met |', '|---|---:|---:|:-:|'];
  for (const t of targets) {
    const met = t.value === undefined ? 'not measured' : t.met === undefined ? '-' : t.met ? 'yes' : '**no**';
    lines.push(`| ${t.name} | ${shown(t)} | ${wantedText(t.wanted)} | ${met} |`);
  }
  return lines.join('\n');
}

function headlineRounds(paired, wrk) {
  if (!paired.rounds?.length) return '';
  const lines = [
    '| round | load (1 min) | Umbra, onnxruntime backend c64 req/s | best Node peer c64 (req/s) | ratio | Umbra, onnxruntime backend c1 p50 ms | best Node peer c1 (p50 ms) | ratio |',
    '|---:|---:|---:|---|---:|---:|---|---:|',
  ];
  const row = (r, i, suffix) => {
    const t = bestNodePeer(r, 'throughput', suffix);
    const l = bestNodePeer(r, 'p50', suffix);
    const mine = at(r[`umbraOrt${suffix}`], 64)?.throughput;
    const mineP50 = at(r[`umbraOrt${suffix}`], 1)?.p50_ms;
    return `| ${i + 1}${suffix ? ' (wrk)' : ''} | ${f1(r.load)} | ${f1(mine)} | ${t ? `${LABELS[t.key]} (${f1(t.value)})` : '-'} | ${f2(ratio(mine, t?.value))} | ${f3(mineP50)} | ${l ? `${LABELS[l.key]} (${f3(l.value)})` : '-'} | ${f2(ratio(mineP50, l?.value))} |`;
  };
  paired.rounds.forEach((r, i) => lines.push(row(r, i, '')));
  if (wrk) paired.rounds.forEach((r, i) => lines.push(row(r, i, ':wrk')));
  return lines.join('\n');
}

function contendersTable() {
  const lines = ['| server | configuration |', '|---|---|'];
  for (const c of [PEERS.ceiling, ...SWEEP, ...PAIRED.filter((p) => !SWEEP.includes(p)), PEERS.python]) lines.push(`| ${c.label} | ${c.configuration} |`);
  return lines.join('\n');
}

function servingTable(serving) {
  const rows = [
    [LABELS.uws, serving.uws],
    ['**Umbra** as shipped, HTTP JSON', serving.umbra],
    ['**Umbra** as shipped, HTTP binary', serving.umbra?.binary ? { results: serving.umbra.binary } : { skipped: 'not run' }],
    ['**Umbra** as shipped, WebSocket', serving.umbra?.ws ? { results: serving.umbra.ws } : { skipped: serving.umbra?.wsSkipped ?? 'not run' }],
    ...SWEEP.filter((c) => !['uws', 'umbra'].includes(c.key)).map((c) => [c.family === 'umbra' ? `**${c.label}**, HTTP JSON` : c.label, serving[c.key]]),
    [LABELS.python, serving.python],
  ];
  const lines = ['| server | concurrency | req/s | p50 ms | p99 ms | errors | server queue ms | server compute ms | generator CPU | stable |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|'];
  for (const [name, entry] of rows) {
    if (!entry || entry.skipped) {
      lines.push(`| ${name} | - | skipped: ${entry?.skipped ?? 'not run'} | | | | | | | |`);
      continue;
    }
    for (const r of entry.results) {
      lines.push(`| ${name} | ${r.concurrency} | ${f1(r.throughput)} | ${f3(r.p50_ms)} | ${f3(r.p99_ms)} | ${r.errors} | ${f3(r.server_queue_ms)} | ${f3(r.server_compute_ms)} | ${f1(r.client_cpu_pct)}% | ${r.stable ? 'yes' : 'no'} |`);
    }
  }
  return lines.join('\n');
}

function pairedTable(paired, run, wrk) {
  if (!paired.rounds?.length) return `Not run${paired.skipped ? ` (${paired.skipped})` : ''}.`;
  const table = (suffix) => {
    const lines = [
      `| round | ${PAIRED.map((c) => `${c.label} c64 req/s`).join(' | ')} | ${PAIRED.map((c) => `${c.label} c1 p50 ms`).join(' | ')} |`,
      `|---:|${PAIRED.map(() => '---:').join('|')}|${PAIRED.map(() => '---:').join('|')}|`,
    ];
    paired.rounds.forEach((r, i) => {
      lines.push(`| ${i + 1} | ${PAIRED.map((c) => f1(at(r[c.key + suffix], 64)?.throughput)).join(' | ')} | ${PAIRED.map((c) => f3(at(r[c.key + suffix], 1)?.p50_ms)).join(' | ')} |`);
    });
    return lines.join('\n');
  };
  if (!wrk) return `${table('')}\n\nSecond generator: wrk is not installed (\`apt-get install wrk\`), so these rounds ran with umbra perf only.`;
  return [table(''), '', `The same rounds, the same servers, measured right after their umbra perf turn with wrk (one thread, ${run.wrkSeconds} s after 1 s of warm-up per level, the first digits request):`, '', table(':wrk')].join('\n');
}

function batchingTable(batching) {
  const lines = ['| model | configuration | requests in flight | rows/s | p50 ms | p99 ms | errors |', '|---|---|---:|---:|---:|---:|---:|'];
  for (const key of ['wide', 'heavy']) {
    const entry = batching[key];
    if (!entry || entry.skipped) {
      lines.push(`| ${key} | - | - | skipped: ${entry?.skipped ?? 'not run'} | | | |`);
      continue;
    }
    for (const e of Object.values(entry).filter((e) => e?.label)) {
      if (e.skipped || !e.results) {
        lines.push(`| ${key} | ${e.label} | - | skipped: ${e.skipped ?? 'not run'} | | | |`);
        continue;
      }
      for (const r of e.results) lines.push(`| ${key} | ${e.label} | ${r.concurrency} | ${f1(r.inferences_per_s)} | ${f3(r.p50_ms)} | ${f3(r.p99_ms)} | ${r.errors} |`);
    }
    if (entry.inprocess?.points) {
      const b = entry.inprocess.best;
      for (const p of entry.inprocess.points) {
        const best = b && p.batch === b.batch && (p.threads ?? 1) === (b.threads ?? 1) && (p.sessions ?? 1) === (b.sessions ?? 1) ? ' **(best)**' : '';
        const layout = (p.sessions ?? 1) > 1 ? `${p.sessions} sessions at once, 1 intra-op thread each` : `${p.threads ?? 1} intra-op thread${(p.threads ?? 1) > 1 ? 's' : ''}`;
        lines.push(`| ${key} | in-process onnxruntime-node, batch ${p.batch}, ${layout}${best} | - | ${f1(p.rows_per_s)} | ${f3(p.p50_ms)} | - | 0 |`);
      }
    } else if (entry.inprocess?.skipped) {
      lines.push(`| ${key} | in-process onnxruntime-node | - | skipped: ${entry.inprocess.skipped} | | | |`);
    }
  }
  return lines.join('\n');
}

function pairedBatchingTable(batching, wrk) {
  const p = batching.heavy?.paired;
  if (!p || p.skipped || !p.rounds) return `Paired rounds for \`heavy\`: not run${p?.skipped ? ` (${p.skipped})` : ''}.`;
  const layout = p.inprocess.sessions > 1 ? `${p.inprocess.sessions} single-thread sessions at once` : `one session of ${p.inprocess.threads} intra-op thread(s)`;
  const lines = [
    `Paired rounds for \`heavy\` (the target row): Umbra's best contender of the sweep (${p.contenderLabel}, ${p.level} in flight) and the best in-process configuration (batch ${p.inprocess.batch}, ${layout}), measured in turn, each round starting with the other.`,
    '',
    '| round | in-process rows/s | Umbra rows/s (umbra perf) | Umbra / in-process | Umbra rows/s (wrk) | Umbra (wrk) / in-process |',
    '|---:|---:|---:|---:|---:|---:|',
  ];
  p.rounds.forEach((r, i) => lines.push(`| ${i + 1} | ${f1(r.inprocess)} | ${f1(r.umbra)} | ${f2(ratio(r.umbra, r.inprocess))} | ${f1(r.umbraWrk)} | ${f2(ratio(r.umbraWrk, r.inprocess))} |`));
  if (!wrk) lines.push('', 'wrk is not installed (`apt-get install wrk`): no second-generator column.');
  return lines.join('\n');
}

export function report({ run, command, loadAtStart, wrk, ran, results, targets, svgFile }) {
  const { serving = {}, paired = { rounds: [] }, batching = {}, others = [] } = results;
  const ceiling = serving.ceiling?.results?.[0];
  const inproc = serving.inprocess?.points?.[0];
  const share = (entry) => (entry?.results ? entry.results.map((r) => {
    const v = ratio(r.throughput, at(serving.uws?.results, r.concurrency)?.throughput);
    return `concurrency ${r.concurrency}: ${v === undefined ? '-' : `${(v * 100).toFixed(0)}%`}`;
  }).join(', ') : '-');
  const out = [
    '# Umbra benchmarks',
    '',
    `- **Date:** ${new Date().toISOString()}`,
    `- **Command:** \`${command}\` (${run.mode} mode${ran.length < 4 ? `; suites: ${ran.join(', ')}` : ''}; ${elapsedSeconds().toFixed(0)} s)`,
    `- **Build:** ${build()}`,
    `- **Machine:** ${machine()}`,
    `- **Shared host:** other work runs on this machine during the run (other builds and tests; load average at start ${loadAtStart.map((v) => v.toFixed(1)).join(' / ')}, at end ${loadavg().map((v) => v.toFixed(1)).join(' / ')}, 1/5/15 min), so absolute rates move from minute to minute. Compare ratios of one run, measured in the same paired round, not rates across runs.`,
    `- **Load generator:** \`umbra perf\` (src/perf), closed loop, one thread, raw keep-alive HTTP/1.1; levels ${run.levels.join(', ')}; warm-up ${run.perf.warmupMs} ms, windows of ${run.perf.windowMs} ms until the last 3 agree within ${run.perf.stabilityPct}% (at most ${run.perf.maxWindows}); figures are the last 3 windows.`,
    `- **Second generator:** ${wrk ? `wrk (${wrk}, C, one thread) in the paired rounds, for every paired server (bench/wrk.mjs); its rows in the tables start with "wrk:". On this shared host each generator's CPU is taken from the server it loads; against bare uWS answering fixed bytes at c64, wrk used 13.5 µs of CPU per request and umbra perf 21 µs.` : 'wrk is not installed (`apt-get install wrk`): umbra perf only.'}`,
    `- **Generator ceiling:** ${ceiling ? `${f1(ceiling.throughput)} req/s at concurrency 64 against bare uWS answering fixed bytes (generator CPU ${f1(ceiling.client_cpu_pct)}% of one core)` : `not measured (${serving.ceiling?.skipped ?? 'suite not run'})`}. The generator and every server share the same ${CORES} cores, so no server figure here can exceed this.`,
    '',
    '## Headline: Umbra serving through onnxruntime against the best Node peer',
    '',
    `Umbra serves digits with \`"backend": "onnxruntime"\` (so its own kernels do not flatter the figure: the model runs in the same onnxruntime-node ${VERSIONS.onnxruntime} as in the peers), with \`umbra serve\` defaults otherwise. The peers are what a Node team would deploy: node:http and Fastify, each as one process and as a node:cluster of one onnxruntime-node process per core (${CORES} here). In each paired round the best Node peer is the fastest of the four at concurrency 64 (and the quickest at concurrency 1); the ratio is taken within the round and the median round is shown.`,
    '',
    targetsTable(targets.headline),
    '',
    headlineRounds(paired, wrk),
    '',
    '## The servers and their configuration',
    '',
    contendersTable(),
    '',
    'Every server runs as its own process tree, with the same generator and the same 16 seeded random digits requests (64 FP32 pixels each).',
    '',
    '## Serving sweep: requests/s and latency (one server at a time)',
    '',
    servingTable(serving),
    '',
    `Share of the bare uWS figure: Umbra as shipped ${share(serving.umbra)}; Umbra on onnxruntime ${share(serving.umbraOrt)}; ${NODE_PEERS.map((k) => `${LABELS[k]} ${share(serving[k])}`).join('; ')}.`,
    '',
    `In-process onnxruntime-node on digits (compute limit, no network): ${inproc ? `${f1(inproc.runs_per_s)} sequential runs/s, p50 ${f3(inproc.p50_ms)} ms per run` : `not measured (${serving.inprocess?.skipped ?? 'suite not run'})`}.`,
    '',
    '## Paired rounds (the headline and the serving targets)',
    '',
    `The servers the headline and the serving targets compare, started together and measured in turn (${run.rounds} rounds, each starting with the next server; levels 1 and 64, same windows as above). A target is a ratio within one round; the tables of targets take the median round.`,
    '',
    pairedTable(paired, run, wrk),
    '',
    '## Targets (foundation issue)',
    '',
    `"${LABELS.nodeHttp}" is the single-process peer these targets were set against; the headline above compares with the best of the Node peers.`,
    '',
    targetsTable(targets.foundation),
    '',
    '## Batching: `heavy` (512-4096-4096-10 MLP, generated at run time; compute-bound) and `wide` (256-512-512-10, bundled)',
    '',
    `Clients send one row per request (JSON unless it says binary); the server may batch them. The batched \`heavy\` rows run at 64, 128 and 256 requests in flight (at 64, a 64-row batch leaves the model idle while its answers go out and the next requests arrive; at 128 one batch fills while another runs; at 256 each of two workers has one running and one filling); the target row takes the best. Rows/s is requests/s x rows per request. The in-process rows are onnxruntime-node with whole batches handed to it: one session at 1 intra-op thread and at one thread per core, and one single-thread session per core, each in its own thread, all running at once; the best of them is the compute limit the target compares with. Umbra runs \`umbra serve\` defaults (one model worker per core, 1 intra-op thread each), also with binary tensors and monitoring off, and as one worker using every core per run (\`--workers 1 --intra-op-threads ${CORES}\`)${SPARE_THREADS > 0 ? `, and as one worker of ${SPARE_THREADS} threads (a core left to the event loop and one to the generator)` : ''}; \`heavy\` has max_batch_size 64 and waits up to 2 ms for a batch of 64. The Node peers run one request at a time per process, as in the serving rows.`,
    '',
    batchingTable(batching),
    '',
    pairedBatchingTable(batching, wrk),
    '',
    '## Other benchmarks (their own files)',
    '',
    '| bench | status | seconds | results |',
    '|---|---|---:|---|',
    ...others.map((o) => `| bench/${o.file} | ${o.status}${o.tail ? ` (${o.tail})` : ''} | ${o.seconds === undefined ? '-' : o.seconds.toFixed(0)} | ${o.resultsFile ? `[${o.resultsFile}](${o.resultsFile})` : '-'} |`),
    '',
    '## Notes',
    '',
    `- The machine has ${CORES} cores shared by the generator and the server under test; nothing is pinned.`,
    '- Server queue/compute times come from the server\'s statistics endpoint (`GET /v2/models/{m}/stats`) where it has one; "-" where it does not.',
    '- Code: bench/run.mjs (entry), bench/suites/ (serving sweep, paired rounds, batching, other benches), bench/contenders.mjs (every server by name, with its configuration), bench/targets.mjs (the headline and targets, as data), bench/report.mjs (this file), bench/peers/ (the peer servers).',
    results.serving ? `- Plot of the serving sweep: [${svgFile}](${svgFile}).` : '- Plot of the serving sweep: not drawn (suite not run).',
    '- Earlier runs of these targets, and the 16-core host: [RESULTS-history.md](RESULTS-history.md) (kept by hand; this file is rewritten by every run).',
    '',
  ];
  return out.join('\n');
}
