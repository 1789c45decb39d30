#!/usr/bin/env node
// A pruned model against its dense original, both on `backend: auto` as a model config ships it:
// `umbra prune` at each sparsity, then every file opened in this process the way `umbra
// bench-model --backend auto` opens it (the backend resolved as a model config resolves it, each
// layer's format timed at load on the benched batch sizes), and measured in short windows that
// rotate across the models round by round, so load from elsewhere on the host falls on all of
// them alike (bench/rotating-windows.mjs). The figure per model and batch is the median window,
// in rows per wall second and in rows per CPU second of the process; "vs dense" is the median
// over rounds of the pruned / dense ratio of the same round. onnxruntime on each file
// rides in the same rounds, for reference. The dense file is opened a second time as "dense
// again", an A/A control: its ratio to the dense one is the noise of the run, the band within
// which a pruned model that runs the same kernels (every layer kept packed) differs from dense.
//
//   node bench/prune-auto.mjs [--model models/repository/digits/1/model.onnx] [--levels 0.5,0.8,0.9]
//     [--method global] [--batches 1,8,64] [--rounds 15] [--window 0.2] [--json out.json]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openBenchSession, resolveBenchBackend } from '../dist/cli/commands/bench-model.js';
import { median, pairedRatio, rotatingWindows } from './rotating-windows.mjs';

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

try {
  const load0 = loadavg()[0];
  const files = [{ name: 'dense', path: flags.model }, { name: 'dense again', path: flags.model }];
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
    const { wall, cpu } = await rotatingWindows(sessions.map((s) => s.session), batch, ROUNDS, WINDOW);
    const at = (model, backend) => sessions.findIndex((s) => s.model === model && s.backend === backend);
    const dense = at('dense', 'auto');
    for (const file of files) {
      const mine = at(file.name, 'auto');
      const ort = at(file.name, 'onnxruntime');
      rows.push({
        model: file.name, batch,
        autoRowsPerSecond: median(wall[mine]), vsDense: pairedRatio(wall[mine], wall[dense]), ratios: wall[mine].map((w, r) => w / wall[dense][r]),
        autoRowsPerCpuSecond: median(cpu[mine]), vsDenseCpu: pairedRatio(cpu[mine], cpu[dense]),
        ortRowsPerSecond: median(wall[ort]), ortRowsPerCpuSecond: median(cpu[ort]),
      });
    }
    log(`batch ${batch} done (load ${loadavg()[0].toFixed(1)})`);
  }
  const formats = (model) => (sessions.find((s) => s.model === model && s.backend === 'auto').session.layers?.() ?? []);
  const header = `${flags.model} pruned ${flags.method}; ${cpus().length} cores (${cpus()[0]?.model}); one thread; ${ROUNDS} rounds of ${WINDOW} s windows; load ${load0.toFixed(1)} -> ${loadavg()[0].toFixed(1)}`;
  process.stdout.write(`${header}\n| model | batch | auto rows/s (backend: layers) | auto / dense auto, wall | rows per CPU-s | auto / dense auto, CPU | onnxruntime rows/s | onnxruntime rows per CPU-s |\n|---|---:|---:|---:|---:|---:|---:|---:|\n`);
  for (const r of rows) {
    const s = sessions.find((x) => x.model === r.model && x.backend === 'auto');
    process.stdout.write(`| ${r.model} | ${r.batch} | ${r.autoRowsPerSecond.toFixed(0)} (${s.resolved}: ${formats(r.model).map((l) => l.format).join('/')}) | ${r.vsDense.toFixed(2)}x | ${r.autoRowsPerCpuSecond.toFixed(0)} | ${r.vsDenseCpu.toFixed(2)}x | ${r.ortRowsPerSecond.toFixed(0)} | ${r.ortRowsPerCpuSecond.toFixed(0)} |\n`);
  }
  for (const file of files) for (const l of formats(file.name)) process.stdout.write(`- ${file.name} ${l.name}: ${l.format} (${l.basis}: ${l.reason})\n`);
  if (flags.json) writeFileSync(flags.json, JSON.stringify({ header, rows, layers: Object.fromEntries(files.map((f) => [f.name, formats(f.name)])) }, null, 2));
  for (const s of sessions) await s.session.release();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
