// The self-contained benches beside this suite (bench/native/*.mjs, bench/ws.mjs,
// bench/monitoring.mjs, bench/batch.mjs, bench/grpc.mjs), each run as a child process that writes its own
// bench/RESULTS-<name>.md. Quick mode shares what is left of a 3-minute budget among them.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, elapsedSeconds, log, oneLine, runChild } from '../harness.mjs';

/** A one-line result for the table, where the bench prints one (bench/grpc.mjs: its medians). */
function summaryOf(name, stdout) {
  if (name !== 'grpc') return '';
  try {
    const m = JSON.parse(stdout).medians;
    return `ModelInfer / HTTP binary ${m.grpc_over_http_binary.median}x, ModelStreamInfer / HTTP binary ${m.stream_over_http_binary.median}x, bare node:http2 echo / HTTP binary ${m.bare_http2_over_http_binary.median}x (one quick round; umbra perf, digits, c64)`;
  } catch {
    return '';
  }
}

// bench/native scripts that need arguments of their own (a model file) and so are not benches this
// suite can run with only --quick or --full.
const NATIVE_TOOLS = new Set(['layer-plan.mjs']);

export async function otherBenches(run) {
  const others = [];
  const candidates = [];
  const nativeDir = join(ROOT, 'bench', 'native');
  if (existsSync(nativeDir)) {
    for (const f of readdirSync(nativeDir).filter((f) => f.endsWith('.mjs') && !NATIVE_TOOLS.has(f)).sort()) candidates.push([`native/${f}`, f.replace(/\.mjs$/, '')]);
  }
  for (const name of ['ws', 'monitoring', 'batch', 'grpc']) candidates.push([`${name}.mjs`, name]);
  let left = candidates.filter(([file]) => existsSync(join(ROOT, 'bench', file))).length;
  for (const [file, name] of candidates) {
    const path = join(ROOT, 'bench', file);
    if (!existsSync(path)) {
      others.push({ name, file, status: 'not present' });
      continue;
    }
    log(`bench/${file}`);
    const budgetMs = run.full ? 600_000 : Math.max(15_000, Math.min(60_000, (170_000 - elapsedSeconds() * 1000) / Math.max(1, left)));
    left -= 1;
    const t0 = Date.now();
    const r = await runChild('node', [path, run.full ? '--full' : '--quick'], budgetMs, { UMBRA_BENCH_MODE: run.mode });
    const status = r.code === 0 ? 'ok' : r.signal ? `stopped at the ${run.mode} budget of ${(budgetMs / 1000).toFixed(0)} s` : `exit ${r.code}`;
    const resultsFile = existsSync(join(ROOT, 'bench', `RESULTS-${name}.md`)) ? `RESULTS-${name}.md` : null;
    others.push({ name, file, status, seconds: (Date.now() - t0) / 1000, resultsFile, tail: r.code === 0 ? summaryOf(name, r.stdout) : oneLine(r.stderr || r.stdout) });
  }
  return others;
}
