#!/usr/bin/env node
// Drift counting on the serving thread: what VersionDrift.observe costs per request for a model
// with W input columns (drift watches the first 256) and 10 output scores, R rows a request, with the addon's counting
// (native/src/cpu/drift_count.cc) and with the JavaScript loop, in alternating rounds of the same
// process (the same tables, the same requests). --dist points at another build's dist/ (a `git
// worktree` of an earlier commit) to time its observe in the same rounds, and its addon's argmax
// of 64-row answers (feedback's predicted class) beside this build's. Last, the NaN gate on a
// 64 x 4096 FP32 input: the addon's finiteness check against the statistics pass it replaced.
//
//   node bench/drift-count.mjs [--widths 64,2048] [--rows 1,4,8,64] [--rounds 5] [--ms 300] [--dist DIR]
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';

const { values: flags } = parseArgs({
  options: {
    widths: { type: 'string', default: '64,2048' },
    rows: { type: 'string', default: '1,4,8,64' },
    rounds: { type: 'string', default: '5' },
    ms: { type: 'string', default: '300' },
    dist: { type: 'string' },
  },
});
const here = new URL('../dist/', import.meta.url);
const { VersionDrift } = await import(new URL('monitor/drift.js', here));
const { useMonitorStats } = await import(new URL('native/monitor-stats.js', here));
const other = flags.dist ? await import(pathToFileURL(resolve(flags.dist, 'monitor/drift.js')).href) : undefined;

let seed = 1;
const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
/** Columns of differing scale and offset, so the profiles' grids differ column to column. */
const OUTPUTS = 10;
const tensor = (rows, width) => Float32Array.from({ length: rows * width }, (_, i) => random() * 2 - 1 + (i % width) * 0.01);

function setUp(Drift, width, rows) {
  const signature = { name: 'm', maxBatchSize: 64, inputs: [{ name: 'x', datatype: 'FP32', dims: [width] }], outputs: [{ name: 'y', datatype: 'FP32', dims: [OUTPUTS] }] };
  const d = new Drift('m', '1', signature, undefined, {});
  const request = (n) => ({
    request: { parameters: {}, inputs: [{ name: 'x', datatype: 'FP32', shape: [n, width], data: tensor(n, width) }] },
    response: { model_name: 'm', model_version: '1', outputs: [{ name: 'y', datatype: 'FP32', shape: [n, OUTPUTS], data: tensor(n, OUTPUTS) }] },
  });
  // The first 1,000 rows become the reference (captured live, all different), then counting starts.
  for (let i = 0; d.evaluate().reference.source === 'capturing' && i < 10_000; i++) {
    const { request: q, response: a } = request(50);
    d.observe(q, a);
  }
  if (d.evaluate().reference.source === 'capturing') throw new Error('the reference was never captured');
  return { d, requests: Array.from({ length: 8 }, () => request(rows)) };
}

/** µs per observe over `ms` milliseconds. */
function time({ d, requests }, ms) {
  for (let i = 0; i < 200; i++) d.observe(requests[i % 8].request, requests[i % 8].response);
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < ms) {
    for (let i = 0; i < 50; i++, n++) d.observe(requests[n % 8].request, requests[n % 8].response);
  }
  return ((performance.now() - start) * 1000) / n;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`${cpus().length} cores (${cpus()[0]?.model}); ${flags.rounds} rounds of ${flags.ms} ms each way; µs of one observe (inputs and outputs counted), median of rounds`);
console.log(`| columns (watched + outputs) | rows a request | values counted | JavaScript | addon | JS / addon |${other ? ' other build |' : ''}`);
console.log(`|---:|---:|---:|---:|---:|---:|${other ? '---:|' : ''}`);
for (const width of flags.widths.split(',').map(Number)) {
  for (const rows of flags.rows.split(',').map(Number)) {
    const mine = setUp(VersionDrift, width, rows);
    const theirs = other ? setUp(other.VersionDrift, width, rows) : undefined;
    const js = [], addon = [], before = [];
    for (let r = 0; r < Number(flags.rounds); r++) {
      useMonitorStats(false);
      js.push(time(mine, Number(flags.ms)));
      useMonitorStats(true);
      addon.push(time(mine, Number(flags.ms)));
      if (theirs) before.push(time(theirs, Number(flags.ms)));
    }
    const perRow = Math.min(width, 256) + OUTPUTS; // MAX_INPUT_COLUMNS
    const step = Math.max(1, Math.ceil((rows * perRow) / 8192)); // DRIFT_DEFAULTS.maxValuesPerRequest
    const counted = Math.ceil(rows / step) * perRow;
    console.log(`| ${width} (${Math.min(width, 256)} + ${OUTPUTS}) | ${rows} | ${counted} | ${median(js).toFixed(1)} | ${median(addon).toFixed(1)} | ${(median(js) / median(addon)).toFixed(2)} |${theirs ? ` ${median(before).toFixed(1)} |` : ''}`);
  }
}

// Feedback's argmax over FP32 answers of 64 rows, in this build's addon and the other build's.
const { native } = await import(new URL('native/addon.js', here));
const addons = [['this build', native()]];
if (flags.dist) addons.push(['other build', createRequire(import.meta.url)(resolve(flags.dist, '../build/Release/umbra.node'))]);
console.log(`\n| argmax of 64 rows, width | ${addons.map(([name]) => name).join(' | ')} |`);
console.log(`|---:|${addons.map(() => '---:').join('|')}|`);
for (const width of [10, 1000, 2048, 4096]) {
  const data = tensor(64, width);
  const out = new Float64Array(64);
  const each = addons.map(() => []);
  for (let r = 0; r < Number(flags.rounds); r++) {
    addons.forEach(([, addon], i) => {
      for (let k = 0; k < 100; k++) addon.argmaxRowsF32(data, 64, width, out);
      const start = performance.now();
      let n = 0;
      while (performance.now() - start < Number(flags.ms) / 3) {
        for (let k = 0; k < 20; k++, n++) addon.argmaxRowsF32(data, 64, width, out);
      }
      each[i].push(((performance.now() - start) * 1000) / n);
    });
  }
  console.log(`| ${width} | ${each.map((xs) => `${median(xs).toFixed(2)} µs`).join(' | ')} |`);
}

// The NaN gate on a 1 MiB FP32 input (src/protocol/validate.ts allFinite).
{
  const addon = native();
  const data = tensor(64, 4096);
  const out = new Float64Array(4);
  const ways = [['allFiniteF32 (this build)', () => addon.allFiniteF32(data)], ['tensorStatsF32 (the gate before)', () => addon.tensorStatsF32(data, out)]];
  const each = ways.map(() => []);
  for (let r = 0; r < Number(flags.rounds); r++) {
    ways.forEach(([, run], i) => {
      for (let k = 0; k < 20; k++) run();
      const start = performance.now();
      let n = 0;
      while (performance.now() - start < Number(flags.ms) / 3) {
        for (let k = 0; k < 10; k++, n++) run();
      }
      each[i].push(((performance.now() - start) * 1000) / n);
    });
  }
  console.log(`\n| NaN gate, 64 x 4096 FP32 | µs |\n|---|---:|`);
  ways.forEach(([name], i) => console.log(`| ${name} | ${median(each[i]).toFixed(1)} |`));
}
