#!/usr/bin/env node
// A pruned model against its dense original, both on `backend: auto` as a model config ships it,
// measured the way a user would: `umbra prune` at each sparsity, then `umbra bench-model --backend
// auto` (in-process rows/s, one thread, each layer's format measured at load). Each round runs
// every model once, the order rotating, so load from elsewhere on the host falls on all alike; the
// figure per model and batch is the median over rounds of pruned / dense rows/s. onnxruntime on
// each file is measured in the same rounds, for reference.
//
//   node bench/prune-auto.mjs [--model models/repository/digits/1/model.onnx] [--levels 0.5,0.8,0.9]
//     [--method global] [--batches 1,8,64] [--rounds 5] [--seconds 1.5] [--json out.json]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({
  options: {
    model: { type: 'string', default: join(ROOT, 'models', 'repository', 'digits', '1', 'model.onnx') },
    levels: { type: 'string', default: '0.5,0.8,0.9' },
    method: { type: 'string', default: 'global' },
    batches: { type: 'string', default: '1,8,64' },
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '1.5' },
    json: { type: 'string' },
  },
});
const LEVELS = flags.levels.split(',').map(Number);
const ROUNDS = Number(flags.rounds);
const dir = mkdtempSync(join(tmpdir(), 'umbra-prune-auto-'));
const log = (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

function umbra(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'umbra.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`umbra ${args.join(' ')} exited ${code}: ${stderr.slice(-600)}`))));
  });
}

async function bench(path, backend) {
  const out = await umbra(['bench-model', path, '--backend', backend, '--batch', flags.batches, '--seconds', flags.seconds, '--repeats', '3', '--json']);
  return JSON.parse(out);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

try {
  const load0 = loadavg()[0];
  const models = [{ name: 'dense', sparsity: 0, path: flags.model }];
  for (const level of LEVELS) {
    const path = join(dir, `pruned-${level}.onnx`);
    await umbra(['prune', flags.model, path, '--sparsity', String(level), '--method', flags.method]);
    models.push({ name: `${level * 100}%`, sparsity: level, path });
  }
  const runs = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = models.map((_, i) => models[(i + round) % models.length]);
    for (const model of order) {
      for (const backend of ['auto', 'onnxruntime']) {
        const report = await bench(model.path, backend);
        runs.push({ round, model: model.name, backend, resolved: report.backend, layers: report.layers, points: report.points.map((p) => ({ batch: p.batch, rowsPerSecond: p.rowsPerSecond })) });
      }
    }
    log(`round ${round + 1}/${ROUNDS} done (load ${loadavg()[0].toFixed(1)})`);
  }
  const rate = (model, backend, round, batch) => runs.find((r) => r.model === model && r.backend === backend && r.round === round).points.find((p) => p.batch === batch).rowsPerSecond;
  const batches = flags.batches.split(',').map(Number);
  const rows = [];
  for (const model of models) {
    for (const batch of batches) {
      const rounds = [...Array(ROUNDS).keys()];
      const ratios = rounds.map((r) => rate(model.name, 'auto', r, batch) / rate('dense', 'auto', r, batch));
      rows.push({
        model: model.name, batch,
        autoRowsPerSecond: median(rounds.map((r) => rate(model.name, 'auto', r, batch))),
        ortRowsPerSecond: median(rounds.map((r) => rate(model.name, 'onnxruntime', r, batch))),
        vsDense: median(ratios), ratios,
        formats: (runs.find((r) => r.model === model.name && r.backend === 'auto').layers ?? []).map((l) => l.format).join('/'),
      });
    }
  }
  const header = `${flags.model} pruned ${flags.method}; ${cpus().length} cores (${cpus()[0]?.model}); ${ROUNDS} rounds, bench-model ${flags.seconds} s x 3 windows per point; load ${load0.toFixed(1)} -> ${loadavg()[0].toFixed(1)}`;
  process.stdout.write(`${header}\n| model | batch | auto rows/s (layers) | auto / dense auto (median) | per round | onnxruntime rows/s |\n|---|---:|---:|---:|---|---:|\n`);
  for (const r of rows) {
    process.stdout.write(`| ${r.model} | ${r.batch} | ${r.autoRowsPerSecond.toFixed(0)} (${r.formats}) | ${r.vsDense.toFixed(2)}x | ${r.ratios.map((x) => x.toFixed(2)).join(', ')} | ${r.ortRowsPerSecond.toFixed(0)} |\n`);
  }
  const reasons = runs.filter((r) => r.backend === 'auto' && r.round === 0);
  for (const r of reasons) for (const l of r.layers ?? []) process.stdout.write(`- ${r.model} ${l.name}: ${l.format} (${l.basis}: ${l.reason})\n`);
  if (flags.json) writeFileSync(flags.json, JSON.stringify({ header, rows, runs }, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
