#!/usr/bin/env node
// In-process sparse/dense ratios for several model pairs at once: each pair is a dense file run on
// onnxruntime and its pruned copy run on the native backend, every session opened in this
// process the way `umbra bench-model` opens it (one thread; the native one times its layers'
// formats at load on the benched batch sizes). Per batch size, each round gives every session one
// window, the order rotating, so load from elsewhere on a shared host falls on all of them
// alike (bench/rotating-windows.mjs); a pair's figure is the median over rounds of its sparse /
// dense ratio in the same round, in rows per wall second and per CPU second of the process.
// Separate processes measured one after another paired badly on a host at load 30 (the ratios of
// one pair's rounds ranged 1.2x to 24x).
//
//   node bench/native-pairs.mjs --pair NAME=dense.onnx:pruned.onnx [--pair ...] [--batches 64,1]
//     [--rounds 9] [--window 0.5] [--json out.json]
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { openBenchSession } from '../dist/cli/commands/bench-model.js';
import { median, pairedRatio, rotatingWindows } from './rotating-windows.mjs';

const { values: flags } = parseArgs({
  options: {
    pair: { type: 'string', multiple: true, default: [] },
    batches: { type: 'string', default: '64,1' },
    rounds: { type: 'string', default: '9' },
    window: { type: 'string', default: '0.5' },
    json: { type: 'string' },
  },
});
const BATCHES = flags.batches.split(',').map(Number);
const ROUNDS = Number(flags.rounds);
const WINDOW = Number(flags.window);
const pairs = flags.pair.map((spec) => {
  const match = /^([^=]+)=([^:]+):(.+)$/.exec(spec);
  if (!match) throw new Error(`--pair: expected NAME=dense.onnx:pruned.onnx but received ${JSON.stringify(spec)}`);
  return { name: match[1], dense: match[2], pruned: match[3] };
});
if (pairs.length === 0) throw new Error('--pair: give at least one NAME=dense.onnx:pruned.onnx');
const log = (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

const load0 = loadavg()[0];
const sessions = [];
for (const pair of pairs) {
  log(`opening ${pair.name}`);
  sessions.push({ pair: pair.name, side: 'dense', session: await openBenchSession(pair.dense, 'onnxruntime', 1) });
  sessions.push({ pair: pair.name, side: 'sparse', session: await openBenchSession(pair.pruned, 'native', 1, undefined, 'cpu', BATCHES) });
}
const rows = [];
for (const batch of BATCHES) {
  const { wall, cpu } = await rotatingWindows(sessions.map((s) => s.session), batch, ROUNDS, WINDOW);
  for (const pair of pairs) {
    const dense = sessions.findIndex((s) => s.pair === pair.name && s.side === 'dense');
    const sparse = sessions.findIndex((s) => s.pair === pair.name && s.side === 'sparse');
    rows.push({
      pair: pair.name, batch,
      denseRowsPerSecond: median(wall[dense]), sparseRowsPerSecond: median(wall[sparse]), ratio: pairedRatio(wall[sparse], wall[dense]),
      ratios: wall[sparse].map((w, r) => w / wall[dense][r]),
      denseRowsPerCpuSecond: median(cpu[dense]), sparseRowsPerCpuSecond: median(cpu[sparse]), cpuRatio: pairedRatio(cpu[sparse], cpu[dense]),
    });
  }
  log(`batch ${batch} done (load ${loadavg()[0].toFixed(1)})`);
}
const header = `${cpus().length} cores (${cpus()[0]?.model}); in-process, one thread; ${ROUNDS} rounds of ${WINDOW} s windows; load ${load0.toFixed(1)} -> ${loadavg()[0].toFixed(1)}`;
process.stdout.write(`${header}\n| pair | batch | onnxruntime dense rows/s | native sparse rows/s (layers) | sparse / dense, wall (median of rounds) | quartiles of rounds | dense rows per CPU-s | sparse rows per CPU-s | sparse / dense, CPU |\n|---|---:|---:|---:|---:|---|---:|---:|---:|\n`);
const quartiles = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return [s[Math.floor((s.length - 1) / 4)], s[Math.ceil((3 * (s.length - 1)) / 4)]];
};
for (const r of rows) {
  const layers = sessions.find((s) => s.pair === r.pair && s.side === 'sparse').session.layers?.() ?? [];
  const [q1, q3] = quartiles(r.ratios);
  process.stdout.write(`| ${r.pair} | ${r.batch} | ${r.denseRowsPerSecond.toFixed(1)} | ${r.sparseRowsPerSecond.toFixed(1)} (${layers.map((l) => l.format).join('/')}) | ${r.ratio.toFixed(2)}x | ${q1.toFixed(2)}-${q3.toFixed(2)} | ${r.denseRowsPerCpuSecond.toFixed(1)} | ${r.sparseRowsPerCpuSecond.toFixed(1)} | ${r.cpuRatio.toFixed(2)}x |\n`);
}
if (flags.json) writeFileSync(flags.json, JSON.stringify({ header, pairs, rows }, null, 2));
for (const s of sessions) await s.session.release();
