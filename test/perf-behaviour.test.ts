// The generator's rules and bookkeeping: the stability rule, error accounting by status,
// transport failures, sweeps and thresholds, request encodings, and the JSON/CSV schema. Whether
// a live steady server's windows agree depends on the host: test/timing/perf-windows.test.ts.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isStable, parseShapes, parseSweep, runPerf, toCsv, CSV_COLUMNS, type PerfOptions } from '../dist/perf/index.js';
import { startSynthetic } from './helpers/perf-servers.js';

const run = promisify(execFile);
const quick: Partial<PerfOptions> = { warmupMs: 100, serverStats: false, model: 'synthetic' };

t.test('sweeps: single, geometric, linear, lists; bad specs say what was expected', async (t) => {
  t.same(parseSweep('8', 'c', { integer: true }), [8]);
  t.same(parseSweep('1:64:x2', 'c', { integer: true }), [1, 2, 4, 8, 16, 32, 64]);
  t.same(parseSweep('1:20:x4', 'c', { integer: true }), [1, 4, 16, 20], 'the end is always measured');
  t.same(parseSweep('100:400:+100', 'r', { integer: false }), [100, 200, 300, 400]);
  t.same(parseSweep('1:3', 'c', { integer: true }), [1, 2, 3]);
  t.same(parseSweep('1,4,16', 'c', { integer: true }), [1, 4, 16]);
  t.throws(() => parseSweep('0:4', '--concurrency', { integer: true }), /expected a positive integer for --concurrency but received/);
  t.throws(() => parseSweep('8:4', '--concurrency', { integer: true }), /END of at least START/);
  t.throws(() => parseSweep('1:4:x1', '--concurrency', { integer: true }), /factor above 1/);
});

t.test('stability: the last 3 windows must agree within the percentage, throughput and latency both', async (t) => {
  const s = (throughput: number, latencyMs: number) => ({ throughput, latencyMs });
  t.notOk(isStable([s(100, 10), s(100, 10)], 10), 'fewer than 3 windows is never stable');
  t.ok(isStable([s(50, 90), s(100, 10), s(105, 10.5), s(96, 9.6)], 10), 'only the last 3 count');
  t.notOk(isStable([s(100, 10), s(100, 10), s(130, 10)], 10), 'throughput off by 30%');
  t.notOk(isStable([s(100, 10), s(100, 10), s(100, 13)], 10), 'latency off by 30%');
  t.ok(isStable([s(100, 10), s(100, 10), s(100, 13)], 25), 'a looser bound accepts it');
});

t.test('errors are counted by status, kept out of latency and throughput', async (t) => {
  const server = await startSynthetic({
    delay: { kind: 'uniform', base: 2, spread: 1, seed: 3 },
    failures: [{ every: 4, status: 503 }, { every: 10, status: 400 }],
  });
  t.teardown(() => server.close());
  // The shares below need about a hundred answers; how long that takes depends on the host, so a
  // loaded one gets a longer window (doubled up to 6.4 s) rather than a failure.
  let r: Awaited<ReturnType<typeof runPerf>>[number] | undefined;
  let statuses: Record<string, number> = {};
  for (let durationS = 0.8; durationS <= 6.4; durationS *= 2) {
    [r] = await runPerf({
      ...quick, url: server.url, concurrency: [4], durationS,
      onMeasure: (phase) => (phase === 'start' ? server.mark() : server.stop()),
    } as PerfOptions);
    statuses = await server.statuses();
    if (!r || r.completed + r.errors > 100) break;
  }
  if (!r) return t.fail('no result');
  const total = r.completed + r.errors;
  t.ok(total > 100, `enough requests (${total})`);
  t.same(Object.keys(r.errors_by_status).sort(), ['400', '503']);
  // Every 10th is 400 (status 400 wins over 503 on multiples of 20): 10% and 25% - 5% = 20%.
  t.ok(Math.abs(r.errors_by_status['400']! / total - 0.1) < 0.03, `400s: ${r.errors_by_status['400']} of ${total}`);
  t.ok(Math.abs(r.errors_by_status['503']! / total - 0.2) < 0.03, `503s: ${r.errors_by_status['503']} of ${total}`);
  t.equal(r.errors, r.errors_by_status['400']! + r.errors_by_status['503']!);
  t.ok(Math.abs(r.error_rate - 0.3) < 0.03, `error rate ${r.error_rate}`);
  t.ok(Math.abs(r.completed - (statuses['200'] ?? 0)) <= 8, `successes ${r.completed} match the server's 200s ${statuses['200']} (up to those in flight at the edges)`);
  t.ok(Math.abs(r.throughput - r.completed / r.duration_s) < 1, 'throughput counts successes only');
  t.match(r.first_error, /^(400|503) \{"error":"synthetic failure"\}$/, 'the first failure as the server worded it');
});

t.test('a run where every request fails shows what the server said and exits 1', async (t) => {
  const server = await startSynthetic({ delay: { kind: 'uniform', base: 1, spread: 1, seed: 5 }, failures: [{ every: 1, status: 400 }] });
  t.teardown(() => server.close());
  const failed = await run(process.execPath, ['bin/umbra.js', 'perf', '--url', server.url, '-m', 'synthetic', '--concurrency', '2', '--duration', '0.3', '--warmup-ms', '100'])
    .then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
  t.equal(failed.code, 1, 'a measurement of nothing is a failed run');
  t.match(failed.stderr, /concurrency 2: \d+ of \d+ requests failed; the first: 400 \{"error":"synthetic failure"\}/, 'the server\'s own words');
  t.match(failed.stderr, /umbra perf: every request failed at concurrency 2: nothing was measured/);
});

t.test('a run where no request is answered within the measurement exits 1, saying why', async (t) => {
  const silent = await startSynthetic({ delay: { kind: 'never' } });
  t.teardown(() => silent.close());
  // It printed 0.0 req/s, "stable yes", and exited 0: a gate passed on nothing measured.
  const empty = await run(process.execPath, ['bin/umbra.js', 'perf', '--url', silent.url, '-m', 'synthetic', '--duration', '0.2', '--warmup-ms', '0'])
    .then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
  t.same([empty.code, /no request was answered within the measurement at concurrency 1: nothing was measured; measure longer \(--duration/.test(empty.stderr)], [1, true]);
});

t.test('transport failures: refused connections and unanswered requests are errors by cause', async (t) => {
  const silent = await startSynthetic({ delay: { kind: 'never' } });
  t.teardown(() => silent.close());
  const [timeouts] = await runPerf({ ...quick, url: silent.url, concurrency: [2], durationS: 0.6, timeoutMs: 100 } as PerfOptions);
  t.equal(timeouts?.completed, 0);
  t.ok((timeouts?.errors_by_status['timeout'] ?? 0) >= 2, `timeouts counted: ${JSON.stringify(timeouts?.errors_by_status)}`);
  // A port that was just closed refuses connections.
  const gone = await startSynthetic({ delay: { kind: 'never' } });
  const url = gone.url;
  await gone.close();
  const [refused] = await runPerf({ ...quick, url, concurrency: [1], durationS: 0.3, payloads: [{ json: '{"inputs":[]}', binary: { body: Buffer.from('{}'), headerLength: 2 } }] } as PerfOptions);
  t.equal(refused?.completed, 0);
  t.ok((refused?.errors_by_status['ECONNREFUSED'] ?? 0) > 0, `refusals counted: ${JSON.stringify(refused?.errors_by_status)}`);
});

t.test('requests: random inputs from metadata as JSON and Triton binary; chunked answers are read', async (t) => {
  const server = await startSynthetic({ delay: { kind: 'uniform', base: 1, spread: 0, seed: 1 }, keepBodies: true, chunked: true });
  t.teardown(() => server.close());
  const [json] = await runPerf({ ...quick, url: server.url, concurrency: [1], durationS: 0.2, batchSize: 3 } as PerfOptions);
  t.ok((json?.completed ?? 0) > 5, 'chunked answers complete');
  t.equal(json?.errors, 0);
  const [binary] = await runPerf({ ...quick, url: server.url, concurrency: [1], durationS: 0.2, protocol: 'http-binary' } as PerfOptions);
  t.equal(binary?.errors, 0);
  const bodies = await server.bodies();
  const first = bodies.find((b) => b.headers['content-type'] === 'application/json')!;
  const request = JSON.parse(Buffer.from(first.body, 'base64').toString()) as { inputs: { name: string; shape: number[]; datatype: string; data: number[] }[] };
  t.same(request.inputs.map((i) => [i.name, i.shape, i.datatype]), [['x', [3, 4], 'FP32']]);
  t.ok(request.inputs[0]!.data.every((v) => Number.isFinite(v)) && new Set(request.inputs[0]!.data).size > 6, 'random, varied values');
  const bin = bodies.find((b) => b.headers['content-type'] === 'application/octet-stream')!;
  const raw = Buffer.from(bin.body, 'base64');
  const headerLength = Number(bin.headers['inference-header-content-length']);
  const header = JSON.parse(raw.subarray(0, headerLength).toString()) as { inputs: { shape: number[]; parameters: { binary_data_size: number } }[]; parameters: Record<string, unknown> };
  t.same(header.inputs[0]!.shape, [1, 4]);
  t.equal(header.inputs[0]!.parameters.binary_data_size, 16);
  t.equal(raw.byteLength, headerLength + 16, 'header then 4 FP32 values');
  t.equal(header.parameters['binary_data_output'], true);
});

t.test('--shape sets the free dims of a sequence model\'s inputs; without it perf says they are sent as 1', async (t) => {
  const metadata = { name: 'synthetic', versions: ['1'], inputs: [{ name: 'ids', datatype: 'INT64', shape: [-1, -1] }, { name: 'frames', datatype: 'FP32', shape: [-1, -1, 3] }], outputs: [] };
  const server = await startSynthetic({ delay: { kind: 'uniform', base: 1, spread: 0, seed: 1 }, keepBodies: true, metadata });
  t.teardown(() => server.close());
  const notes: string[] = [];
  const options = { ...quick, url: server.url, concurrency: [1], durationS: 0.2, batchSize: 2, log: (l: string) => notes.push(l) } as PerfOptions;
  const [shaped] = await runPerf({ ...options, shapes: parseShapes(['ids:7', 'frames:2,5,3']) });
  t.equal(shaped?.errors, 0);
  t.same(notes, [], 'no note where every free dim is given');
  const sent = (await server.bodies()).map((b) => (JSON.parse(Buffer.from(b.body, 'base64').toString()) as { inputs: { shape: number[]; data: unknown[] }[] }).inputs);
  t.same([...new Set(sent.map((inputs) => JSON.stringify(inputs.map((i) => i.shape))))], ['[[2,7],[2,5,3]]'],
    'ids: the batch (-b) then the length given; frames: its whole shape as given');
  t.same(sent[0]!.map((i) => i.data.length), [14, 30]);
  await runPerf(options);
  t.same(notes.map((n) => /--shape (\S+)/.exec(n)?.[1]), ['ids:N', 'frames:N,3'], 'each input sent with 1 in a free dim is named, with the flag to change it');
  t.same(parseShapes(['a::b:3,4']), new Map([['a::b', [3, 4]]]), 'a name may hold colons (onnx::Gemm_0)');
  for (const [bad, why] of [[['ids'], /expected NAME:DIMS/], [['ids:0'], /positive integers/], [['ids:x'], /positive integers/]] as const) {
    t.throws(() => parseShapes([...bad]), why, `--shape ${bad[0]} is refused`);
  }
  for (const [shapes, why] of [[['nope:3'], /one of the model inputs \(ids, frames\) for the input named by --shape/], [['ids:1,2,3'], /gives 3 dims, but input ids has shape \[-1, -1\]; give the 1 dim after the batch dim/], [['frames:2,5,4'], /dim 2 of input frames is fixed at 3/]] as const) {
    await t.rejects(runPerf({ ...options, shapes: parseShapes([...shapes]) }), why, `--shape ${shapes[0]} does not fit the model`);
  }
  // Checked once perf has the model's metadata, still the command line's mistake: exit 2, the flag named.
  const cli = async (shape: string) => run(process.execPath, ['bin/umbra.js', 'perf', '--url', server.url, '-m', 'synthetic', '--shape', shape, '--duration', '0.2', '--warmup-ms', '0'])
    .then(() => ({ code: 0, stderr: '' }), (e: { stderr: string; code: number }) => ({ code: e.code, stderr: e.stderr }));
  const misfits = await Promise.all(['nosuch:3', 'frames:2,5,4'].map(cli));
  t.same(misfits.map((o) => o.code), [2, 2], '--shape naming no input, or dims that do not fit, is a usage error');
  t.match(misfits.map((o) => o.stderr).join(''), /for the input named by --shape but received the string "nosuch"[^]*--shape frames:2,5,4: dim 2 of input frames is fixed at 3/);
  const dir = mkdtempSync(join(tmpdir(), 'umbra-perf-input-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const requests = join(dir, 'requests.json');
  writeFileSync(requests, JSON.stringify({ data: [{ nope: [1, 2] }] }));
  const unfit = await run(process.execPath, ['bin/umbra.js', 'perf', '--url', server.url, '-m', 'synthetic', '--input-data', requests, '--duration', '0.2', '--warmup-ms', '0'])
    .then(() => ({ code: 0, stderr: '' }), (e: { stderr: string; code: number }) => ({ code: e.code, stderr: e.stderr }));
  t.same([unfit.code, /expected one of the model inputs \(ids, frames\) for an input name in --input-data .*requests\.json but received the string "nope"/.test(unfit.stderr)], [2, true], 'an --input-data file naming no input of the model is a usage error');
});

t.test('a latency threshold stops the sweep after the first level past it', async (t) => {
  const server = await startSynthetic({ delay: { kind: 'uniform', base: 20, spread: 2, seed: 5 } });
  t.teardown(() => server.close());
  const results = await runPerf({ ...quick, url: server.url, concurrency: [1, 2, 4], durationS: 0.3, latencyThresholdMs: 10 } as PerfOptions);
  t.equal(results.length, 1);
  // --percentile 75 is judged at p75 itself, not at the next of p50/p90/p95/p99.
  const [p75] = await runPerf({ ...quick, url: server.url, concurrency: [1], durationS: 0.3, percentile: 75 } as PerfOptions);
  t.equal(p75!.percentile, 75);
  t.ok(p75!.percentile_ms! >= p75!.p50_ms && p75!.percentile_ms! <= p75!.p90_ms, `p75 ${p75!.percentile_ms} ms lies between p50 ${p75!.p50_ms} and p90 ${p75!.p90_ms}`);
});

t.test('umbra perf --json prints one array with the documented fields; --csv and --plot write files', async (t) => {
  const server = await startSynthetic({ delay: { kind: 'uniform', base: 1, spread: 1, seed: 9 } });
  const dir = mkdtempSync(join(tmpdir(), 'umbra-perf-'));
  t.teardown(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const csv = join(dir, 'out.csv');
  const svg = join(dir, 'out.svg');
  const { stdout } = await run(process.execPath, ['bin/umbra.js', 'perf', '--url', server.url, '-m', 'synthetic', '--concurrency', '1:2:x2',
    '--duration', '0.3', '--warmup-ms', '100', '--json', '--csv', csv, '--plot', svg]);
  const parsed = JSON.parse(stdout) as Record<string, unknown>[];
  t.ok(Array.isArray(parsed));
  t.same(parsed.map((r) => r['concurrency']), [1, 2]);
  for (const r of parsed) {
    for (const key of ['throughput', 'p50_ms', 'p90_ms', 'p95_ms', 'p99_ms', 'max_ms', 'errors']) t.type(r[key], 'number', key);
    t.ok((r['p50_ms'] as number) <= (r['p99_ms'] as number) && (r['p99_ms'] as number) <= (r['max_ms'] as number), 'percentiles ordered');
  }
  const lines = readFileSync(csv, 'utf8').trim().split('\n');
  t.equal(lines[0], CSV_COLUMNS.join(','));
  t.equal(lines.length, 3, 'header and one row per level');
  t.equal(lines[1]!.split(',').length, CSV_COLUMNS.length);
  t.match(readFileSync(svg, 'utf8'), /^<svg[^>]*>[\s\S]*<polyline[\s\S]*<\/svg>\n$/);
  t.equal(toCsv([]), `${CSV_COLUMNS.join(',')}\n`);
});

t.test('bad flags are named with what was expected', async (t) => {
  const err = await run(process.execPath, ['bin/umbra.js', 'perf', '--url', 'http://127.0.0.1:1', '-m', 'x', '--protocol', 'smtp']).catch((e: { stderr: string; code: number }) => e);
  t.match((err as { stderr: string }).stderr, /--protocol: expected one of http, http-binary, ws, grpc, grpc-stream but received "smtp"/);
  const usage = async (args: string[]) => run(process.execPath, ['bin/umbra.js', 'perf', '--url', 'http://127.0.0.1:1', '-m', 'x', ...args]).then(() => ({ code: 0, stderr: '' }), (e: { stderr: string; code: number }) => ({ code: e.code, stderr: e.stderr }));
  const outcomes = await Promise.all([['--concurrency', '0'], ['--request-rate', 'abc'], ['--percentile', '200']].map(usage));
  t.same(outcomes.map((o) => o.code), [2, 2, 2], 'usage errors exit 2, as every command\'s do');
  t.match(outcomes[0]!.stderr, /expected a positive integer for --concurrency/);
  t.match(outcomes[2]!.stderr, /--percentile: expected a percentile between 0 and 100 \(e\.g\. 95\) but received "200"/);
  // Checked before anything is measured (the files are written after the sweep), not after it.
  const missing = await usage(['--input-data', '/umbra-no-such-folder/requests.json']);
  t.same([missing.code, /--input-data: \/umbra-no-such-folder\/requests\.json does not exist; give "random" or a JSON file/.test(missing.stderr)], [2, true], 'an --input-data file that does not exist is a usage error');
  const unwritable = await Promise.all([['--csv', '/umbra-no-such-folder/levels.csv'], ['--plot', '.']].map(usage));
  t.same(unwritable.map((o) => o.code), [2, 2], 'a --csv or --plot that cannot be written is a usage error');
  t.match(unwritable.map((o) => o.stderr).join(''), /--csv: the folder \/umbra-no-such-folder does not exist; create it first[^]*--plot: \. is a folder; give the file to write/);
});

t.test('the WebSocket transport: masked frames on a real Umbra stream, answers matched by id, errors by status', async (t) => {
  const { startTestServer } = await import('./helpers/server.js');
  const { tempRepo, affineModel } = await import('./helpers/repo.js');
  const { encodePayload } = await import('../dist/perf/payload.js');
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, monitoring: false });
  const good = encodePayload([{ name: 'x', datatype: 'FP32', shape: [1, 4], data: new Float32Array([1, 2, 3, 4]) }]);
  // A request the model refuses (wrong width): answered with an error frame, the connection stays.
  const bad = encodePayload([{ name: 'x', datatype: 'FP32', shape: [1, 3], data: new Float32Array([1, 2, 3]) }]);
  const base = { ...quick, url: s.url, model: 'affine', protocol: 'ws', windowMs: 150, maxWindows: 3, stabilityPct: 100 } as PerfOptions;
  const [ok] = await runPerf({ ...base, payloads: [good], concurrency: [16] });
  t.ok(ok!.completed > 0, `${ok!.completed} answers over one connection`);
  t.equal(ok!.errors, 0, 'every answer matched its request');
  const [mixed] = await runPerf({ ...base, payloads: [good, bad], concurrency: [4] });
  t.ok(mixed!.completed > 0 && mixed!.errors > 0);
  t.same(Object.keys(mixed!.errors_by_status), ['400'], 'refused requests count under the status their answer carries');
  t.ok(Math.abs(mixed!.completed - mixed!.errors) <= 4, 'alternating payloads: as many answers as errors (up to those in flight at the edges)');
  const [missing] = await runPerf({ ...base, model: 'nope', payloads: [good], concurrency: [2] });
  t.equal(missing!.completed, 0);
  t.same(Object.keys(missing!.errors_by_status), ['404']);
});
