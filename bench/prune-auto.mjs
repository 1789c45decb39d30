#!/usr/bin/env node
// A pruned model against its dense original, both on `backend: auto` as a model config ships it:
// `umbra prune` at each sparsity, then every file opened in this process the way `umbra
// bench-model --backend auto` opens it (the backend resolved as a model config resolves it, each
// layer's format timed at load on the benched batch sizes), and measured in short windows that
// rotate across the models round by round, so load from elsewhere on the host falls on all of
// them alike. The figure per model and batch is the median window in rows/s; "vs dense" is the
// median over rounds of the pruned / dense ratio of the same round. onnxruntime on each file
// rides in the same rounds, for reference.
//
//   node bench/prune-auto.mjs [--model models/repository/digits/1/model.onnx] [--levels 0.5,0.8,0.9]
//     [--method global] [--batches 1,8,64] [--rounds 15] [--window 0.2] [--json out.json]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchInputs, measureWindow, openBenchSession, resolveBenchBackend } from '../dist/cli/commands/bench-model.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({
  options: {
    model: { type: 'string', default: join(ROOT, 'models', 'repository', 'digits', '1', 'model.onnx') },
    levels: { type: 'string', default: '0.5,0.8,0.9' },
    method: { type: 'string', default: 'global' },
    batches: { type: 'string', default: '1,8,64' },
    rounds: { type: 'string', default: '15' },
    window: { type: 'string', default: '0.2' },
    json: { type: 'string' },
  },
});
const LEVELS = flags.levels.split(',').map(Number);
const BATCHES = flags.batches.split(',').map(Number);
const ROUNDS = Number(flags.rounds);
const WINDOW = Number(flags.window);
const dir = mkdtempSync(join(tmpdir(), 'umbra-prune-auto-'));
const log = (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

function umbra(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'umbra.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`umbra ${args.join(' ')} exited ${code}: ${stderr.slice(-600)}`))));
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

try {
  const load0 = loadavg()[0];
  const files = [{ name: 'dense', path: flags.model }];
  for (const level of LEVELS) {
    const path = join(dir, `pruned-${level}.onnx`);
    await umbra(['prune', flags.model, path, '--sparsity', String(level), '--method', flags.method]);
    files.push({ name: `${Math.round(level * 100)}%`, path });
  }
  const sessions = [];
  for (const file of files) {
    const backend = await resolveBenchBackend(file.path, 'auto');
    sessions.push({ model: file.name, backend: 'auto', resolved: backend, session: await openBenchSession(file.path, backend, 1, undefined, 'cpu', BATCHES) });
    sessions.push({ model: file.name, backend: 'onnxruntime', resolved: 'onnxruntime', session: await openBenchSession(file.path, 'onnxruntime', 1) });
  }
  const rows = [];
  for (const batch of BATCHES) {
    const inputs = sessions.map((s) => benchInputs(s.session, batch));
    for (const [i, s] of sessions.entries()) await measureWindow(s.session, inputs[i], batch, WINDOW);
    const windows = sessions.map(() => []);
    for (let round = 0; round < ROUNDS; round++) {
      for (let j = 0; j < sessions.length; j++) {
        const i = (j + round) % sessions.length;
        windows[i].push((await measureWindow(sessions[i].session, inputs[i], batch, WINDOW)).rowsPerSecond);
      }
    }
    const at = (model, backend) => sessions.findIndex((s) => s.model === model && s.backend === backend);
    const dense = windows[at('dense', 'auto')];
    for (const file of files) {
      const mine = windows[at(file.name, 'auto')];
      const ratios = mine.map((w, r) => w / dense[r]);
      rows.push({ model: file.name, batch, autoRowsPerSecond: median(mine), ortRowsPerSecond: median(windows[at(file.name, 'onnxruntime')]), vsDense: median(ratios), ratios });
    }
    log(`batch ${batch} done (load ${loadavg()[0].toFixed(1)})`);
  }
  const formats = (model) => (sessions.find((s) => s.model === model && s.backend === 'auto').session.layers?.() ?? []);
  const header = `${flags.model} pruned ${flags.method}; ${cpus().length} cores (${cpus()[0]?.model}); one thread; ${ROUNDS} rounds of ${WINDOW} s windows; load ${load0.toFixed(1)} -> ${loadavg()[0].toFixed(1)}`;
  process.stdout.write(`${header}\n| model | batch | auto rows/s (backend: layers) | auto / dense auto (median of rounds) | onnxruntime rows/s |\n|---|---:|---:|---:|---:|\n`);
  for (const r of rows) {
    const s = sessions.find((x) => x.model === r.model && x.backend === 'auto');
    process.stdout.write(`| ${r.model} | ${r.batch} | ${r.autoRowsPerSecond.toFixed(0)} (${s.resolved}: ${formats(r.model).map((l) => l.format).join('/')}) | ${r.vsDense.toFixed(2)}x | ${r.ortRowsPerSecond.toFixed(0)} |\n`);
  }
  for (const file of files) for (const l of formats(file.name)) process.stdout.write(`- ${file.name} ${l.name}: ${l.format} (${l.basis}: ${l.reason})\n`);
  if (flags.json) writeFileSync(flags.json, JSON.stringify({ header, rows, layers: Object.fromEntries(files.map((f) => [f.name, formats(f.name)])) }, null, 2));
  for (const s of sessions) await s.session.release();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
