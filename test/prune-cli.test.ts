import t from 'tap';
import { execFile } from 'node:child_process';
import { copyFileSync, linkSync, mkdtempSync, readFileSync, rmSync, existsSync, symlinkSync, writeFileSync } from 'node:fs';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readModel, writeModel } from '../dist/onnx/model-io.js';
import { buildModel } from '../dist/onnx/builder.js';
import { tensorValues } from '../dist/onnx/tensor-data.js';
import { buildProgram } from '../dist/cli/main.js';
import { cudaStatus } from '../dist/native/cuda.js';
import { evalPlan, evaluateModel, evaluateNative, readEvalData } from '../dist/prune/index.js';

const DIGITS = 'models/repository/digits/1/model.onnx';
const CSV = 'models/digits.csv';
const dir = mkdtempSync(join(tmpdir(), 'umbra-prune-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function umbra(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/umbra.js', 'prune', ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Runs `umbra prune` in this process (spawning one per case is slow); returns exit code and message. */
async function inProcess(args: string[]): Promise<{ code: number; message: string }> {
  const program = await buildProgram();
  let written = '';
  program.commands.find((c) => c.name() === 'prune')!.configureOutput({ writeErr: (s) => { written += s; }, writeOut: () => undefined });
  try {
    await program.parseAsync(['node', 'umbra', 'prune', ...args]);
    return { code: 0, message: written };
  } catch (err) {
    const e = err as { exitCode?: number; message: string };
    return { code: e.exitCode ?? 1, message: `${e.message}\n${written}` };
  }
}

/** Accuracy of the digits MLP computed here in float64 from the file's weights, without onnxruntime. */
function independentAccuracy(path: string, split: string): number {
  const w = new Map((readModel(path).graph!.initializer ?? []).map((x) => [x.name!, tensorValues(x).data as Float32Array]));
  const scale = w.get('pixel_scale')![0]!;
  const [w1, b1, w2, b2] = ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'].map((n) => w.get(n)!);
  const lines = readFileSync(CSV, 'utf8').trim().split(/\r?\n/);
  const header = lines[0]!.split(',');
  const labelAt = header.indexOf('label');
  const splitAt = header.indexOf('split');
  let rows = 0;
  let correct = 0;
  for (const line of lines.slice(1)) {
    const cells = line.split(',');
    if (cells[splitAt] !== split) continue;
    const x = cells.slice(0, 64).map((v) => Number(v) * scale);
    const hidden = Array.from({ length: 32 }, (_, j) => Math.max(0, x.reduce((s, v, k) => s + v * w1![j * 64 + k]!, b1![j]!)));
    const logits = Array.from({ length: 10 }, (_, c) => hidden.reduce((s, v, k) => s + v * w2![c * 32 + k]!, b2![c]!));
    const best = logits.indexOf(Math.max(...logits));
    rows++;
    if (best === Number(cells[labelAt])) correct++;
  }
  return correct / rows;
}

t.test('--eval reads Parquet: the same rows, features and labels as the CSV, and the same report', async (t) => {
  const lines = readFileSync(CSV, 'utf8').trim().split(/\r?\n/).map((l) => l.split(','));
  const [header, ...rows] = lines as [string[], ...string[][]];
  const parquet = join(dir, 'digits-eval.parquet');
  writeFileSync(parquet, Buffer.from(parquetWriteBuffer({
    columnData: header.map((name, j) => (name === 'split'
      ? { name, data: rows.map((r) => r[j]!), type: 'STRING' as const }
      : { name, data: rows.map((r) => BigInt(r[j]!)), type: 'INT64' as const })),
    rowGroupSize: 600,
  })));
  const filter = { label: 'label', filter: { column: 'split', value: 'test' } };
  const [fromCsv, fromParquet] = [await readEvalData(CSV, filter), await readEvalData(parquet, filter)];
  t.same([fromParquet.columns, fromParquet.rows, Array.from(fromParquet.labels), Array.from(fromParquet.features)], [fromCsv.columns, fromCsv.rows, Array.from(fromCsv.labels), Array.from(fromCsv.features)], 'the same evaluation data');
  const report = async (data: string) => {
    const r = await umbra([DIGITS, join(dir, 'eval-pruned.onnx'), '--sparsity', '0.7', '--eval', data, '--label', 'label', '--eval-filter', 'split=test', '--json', '--threads', '1']);
    t.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).eval;
  };
  t.same(await report(parquet), await report(CSV), 'umbra prune --eval reports the same before and after');
});

t.test('--eval data with a missing value names its row and column; the column is never dropped', async (t) => {
  const lines = readFileSync(CSV, 'utf8').trim().split(/\r?\n/);
  const [header, ...rows] = lines as [string, ...string[]];
  for (const missing of ['', 'NaN']) {
    const file = join(dir, `eval-missing-${missing || 'blank'}.csv`);
    // The third data row's fourth feature: blank, or NaN.
    const cut = rows.map((l, i) => (i === 2 ? l.split(',').map((c, j) => (j === 3 ? missing : c)).join(',') : l));
    writeFileSync(file, [header, ...cut].join('\n') + '\n');
    const column = header.split(',')[3]!;
    await t.rejects(readEvalData(file, { label: 'label' }), { message: `${file}: row 3: expected a number for column ${JSON.stringify(column)} but received ${JSON.stringify(missing)} (a missing value; drop or fill the row)` }, `a ${missing || 'blank'} cell`);
  }
});

t.test('accuracy before and after matches an independent evaluation of the digits model', async (t) => {
  const out = join(dir, 'digits-pruned.onnx');
  const r = await umbra([DIGITS, out, '--sparsity', '0.7', '--eval', CSV, '--label', 'label', '--eval-filter', 'split=test', '--json', '--threads', '1']);
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.equal(report.eval.metric, 'accuracy');
  t.equal(report.eval.output, 'label');
  t.equal(report.eval.rows, 360);
  const before = independentAccuracy(DIGITS, 'test');
  const after = independentAccuracy(out, 'test');
  // Float32 onnxruntime and this float64 pass may disagree on a near-tie row at most.
  t.ok(Math.abs(report.eval.before - before) <= 1 / 360, `before ${report.eval.before} vs ${before}`);
  t.ok(Math.abs(report.eval.after - after) <= 1 / 360, `after ${report.eval.after} vs ${after}`);
  t.ok(report.eval.after < report.eval.before, 'pruning 70% costs some accuracy');
  t.same(report.layers.map((l: { name: string }) => l.name), ['fc1.weight', 'fc2.weight']);
  t.equal(report.totals.zerosAfter, Math.floor(0.7 * (2048 + 320) + 0.5));
  t.ok(report.skipped.some((s: { name: string }) => s.name === 'fc1.bias'), 'biases left alone');
});

t.test('table report and plain progress lines when not on a terminal', async (t) => {
  const out = join(dir, 'digits-nm.onnx');
  const r = await umbra([DIGITS, out, '--nm', '2:4']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /N:M 2:4 pruning/);
  t.match(r.stdout, /fc1\.weight\s+Gemm\s+\[32x64\] nxk\s+2:4\s+[\d.]+%\s+50\.00%/);
  t.match(r.stdout, /wrote .*digits-nm\.onnx/);
  t.match(r.stderr, /prune: reading/);
  t.notMatch(r.stderr, /\u001b\[/, 'no terminal escapes in plain mode');
});

t.test('a layer pruned whole is named with a warning and the flag that prevents it', async (t) => {
  // Two layers, the second's weights all far below the first's: global pruning at 0.5 takes it whole.
  const model = join(dir, 'small-second.onnx');
  writeModel(buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 4] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 4] }],
    nodes: [{ op: 'MatMul', inputs: ['x', 'big'], outputs: ['h'] }, { op: 'MatMul', inputs: ['h', 'small'], outputs: ['y'] }],
    initializers: [
      { name: 'big', datatype: 'FP32', dims: [4, 4], values: Array.from({ length: 16 }, (_, i) => 1 + i / 16) },
      { name: 'small', datatype: 'FP32', dims: [4, 4], values: Array.from({ length: 16 }, (_, i) => 0.01 + i / 1600) },
    ],
  }), model);
  const out = join(dir, 'small-second-pruned.onnx');
  const text = await umbra([model, out, '--sparsity', '0.5']);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^warning: small is pruned whole \(every weight zero\): its output no longer depends on its input; --max-layer-sparsity \(e\.g\. 0\.95\) keeps some of every layer$/m);
  const json = await umbra([model, out, '--sparsity', '0.5', '--json']);
  t.same(JSON.parse(json.stdout).wholeLayers, ['small']);
  const capped = await umbra([model, out, '--sparsity', '0.5', '--max-layer-sparsity', '0.75', '--json']);
  const report = JSON.parse(capped.stdout);
  t.same([report.wholeLayers, report.layers.map((l: { sparsityAfter: number }) => l.sparsityAfter)], [[], [0.25, 0.75]], 'capped: no layer whole, the total kept');
});

t.test('a model with no prunable weight says which weights were left alone and why', async (t) => {
  // Tied weights as PyTorch exports them without constant folding: h = x @ W, y = h @ W.t().
  const model = join(dir, 'tied.onnx');
  writeModel(buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', dims: ['batch', 4] }],
    outputs: [{ name: 'y', datatype: 'FP32', dims: ['batch', 4] }],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'W'], outputs: ['h'], name: 'encode' },
      { op: 'Add', inputs: ['h', 'b'], outputs: ['hb'] },
      { op: 'Transpose', inputs: ['W'], outputs: ['Wt'], name: 'tie' },
      { op: 'MatMul', inputs: ['hb', 'Wt'], outputs: ['y'], name: 'decode' },
    ],
    initializers: [
      { name: 'W', datatype: 'FP32', dims: [4, 2], values: Array.from({ length: 8 }, (_, i) => i / 8 - 0.5) },
      { name: 'b', datatype: 'FP32', dims: [2], values: [0.1, 0.2] },
    ],
  }), model);
  const r = await inProcess([model, join(dir, 'tied-pruned.onnx'), '--sparsity', '0.5']);
  t.equal(r.code, 1, 'a model problem');
  t.match(r.message, /^expected \S+tied\.onnx to have prunable weights \(FP32 initializers read only as MatMul\/Gemm\/Conv weights\) but it has none; left alone: "W" \(also read as input 0 of Transpose tie\)$/m, 'names the tied weight and its other reader, not the bias');
});

t.test('a weight on the left of a MatMul (W·x) is named as a layer weight left alone, not counted among the biases', async (t) => {
  // As PyTorch exports torch.matmul(W, x) followed by a Linear: MatMul(W, x), Relu, Gemm.
  const initializers = [
    { name: 'W', datatype: 'FP32' as const, dims: [16, 8], values: Array.from({ length: 128 }, (_, i) => Math.sin(i + 1)) },
    { name: 'fc.weight', datatype: 'FP32' as const, dims: [3, 4], values: Array.from({ length: 12 }, (_, i) => Math.cos(i + 1)) },
    { name: 'fc.bias', datatype: 'FP32' as const, dims: [3], values: [0.1, 0.2, 0.3] },
  ];
  const nodes = [
    { op: 'MatMul', inputs: ['W', 'x'], outputs: ['h'], name: '/MatMul' },
    { op: 'Relu', inputs: ['h'], outputs: ['r'] },
    { op: 'Gemm', inputs: ['r', 'fc.weight', 'fc.bias'], outputs: ['y'], name: '/fc/Gemm', attributes: { transB: 1 } },
  ];
  const model = join(dir, 'left.onnx');
  writeModel(buildModel({ inputs: [{ name: 'x', datatype: 'FP32', dims: [8, 4] }], outputs: [{ name: 'y', datatype: 'FP32', dims: [16, 3] }], nodes, initializers }), model);
  const reason = 'the left operand of MatMul /MatMul (W·x); only a product\'s right-hand weight (x·W, Gemm B, Conv W) is pruned';
  const r = await umbra([model, join(dir, 'left-pruned.onnx'), '--sparsity', '0.9']);
  t.equal(r.code, 0, 'the right-hand weight is pruned');
  t.match(r.stdout, /^fc\.weight\s+Gemm\s+\[3x4\] nxk/m, 'the table: the right-hand weight');
  // It read "left alone: 2 other initializers (biases, norms, constants; ...)", W among them.
  t.match(r.stdout, `left alone: 1 layer weight: "W" (${reason})\nleft alone: 1 other initializer (biases, norms, constants;`, 'W named with why, the bias counted apart');
  // With no right-hand weight at all, the refusal named nothing ("... but it has none").
  const alone = join(dir, 'left-only.onnx');
  writeModel(buildModel({ inputs: [{ name: 'x', datatype: 'FP32', dims: [8, 4] }], outputs: [{ name: 'h', datatype: 'FP32', dims: [16, 4] }], nodes: nodes.slice(0, 1), initializers: initializers.slice(0, 1) }), alone);
  const none = await inProcess([alone, join(dir, 'left-only-pruned.onnx'), '--sparsity', '0.9']);
  t.match(none.message, `but it has none; left alone: "W" (${reason})`, 'a model whose only weight is on the left says so');
});

t.test('sweep prints the curve and writes an SVG', async (t) => {
  const svg = join(dir, 'sweep.svg');
  const r = await umbra([DIGITS, '--sweep', '0.5,0.9', '--eval', CSV, '--label', 'label', '--plot', svg, '--json']);
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.same(report.sweep.map((p: { sparsity: number }) => p.sparsity), [0.5, 0.9]);
  t.ok(report.sweep[1].value <= report.sweep[0].value + 0.05, 'accuracy falls with sparsity');
  t.ok(Math.abs(report.sweep[0].totalSparsity - 0.5) < 0.01);
  const text = readFileSync(svg, 'utf8');
  t.match(text, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.equal((text.match(/<circle /g) ?? []).length, 3, 'dense point plus two sweep points');
});

t.test('bad flags name the flag and the fix, and exit 2', async (t) => {
  const out = join(dir, 'never.onnx');
  const cases: [string[], RegExp][] = [
    [[DIGITS, out], /--sparsity: required/],
    [[DIGITS, out, '--sparsity', '1.5'], /--sparsity: expected a number in \[0, 1\] but received "1.5"/],
    [[DIGITS, out, '--sparsity', '0.5', '--method', 'random'], /--method: expected one of global, layer, nm, structured/],
    [[DIGITS, out, '--nm', '5:4'], /--nm: expected N:M/],
    [[DIGITS, out, '--method', 'layer', '--nm', '2:4'], /--nm: only applies to --method nm/],
    [[DIGITS, out, '--sparsity', '0.5', '--norm', 'l3'], /--norm: expected l1 or l2/],
    [[DIGITS, out, '--sparsity', '0.5', '--layer', 'fc1.weight'], /--layer: expected NAME=S/],
    [[DIGITS, out, '--sparsity', '0.5', '--layer', 'nothing*=0.5'], /--layer: expected "nothing\*" to match a prunable weight.*fc1\.weight/],
    [[DIGITS, out, '--sparsity', '0.5', '--exclude', 'fc1.bias'], /--exclude: .*matches none/],
    [[DIGITS, out, '--sparsity', '0.5', '--method', 'layer', '--min-layer-sparsity', '0.1'], /only apply to --method global/],
    [[DIGITS, out, '--sparsity', '0.5', '--max-layer-sparsity', '0.3'], /--max-layer-sparsity: 0.3 is below --sparsity 0.5/],
    [[DIGITS, '--sweep', '0.5'], /--sweep: needs --eval/],
    [[DIGITS, out, '--sparsity', '0.5', '--eval', CSV], /--eval: needs --label/],
    [[DIGITS, out, '--sparsity', '0.5', '--eval', CSV, '--label', 'label', '--eval-output', 'nosuch'], /--eval-output: expected one of the model's outputs \(probabilities, label\) but received "nosuch"/],
    [[DIGITS, out, '--sparsity', '0.5', '--precision', 'bf16'], /--precision: scores the model at each precision on --eval DATA\.csv; add --eval and --label/],
    [[DIGITS, out, '--sparsity', '0.5', '--eval', CSV, '--label', 'label', '--precision', 'fp16'], /--precision: expected a comma-separated list of fp32, tf32, bf16 but received "fp16"/],
    ...(cudaStatus().available ? [] : [[[DIGITS, out, '--sparsity', '0.5', '--eval', CSV, '--label', 'label', '--precision', 'bf16'], /--precision: scores on a CUDA GPU through the native backend, but no CUDA .*; drop --precision to score on the CPU/] as [string[], RegExp]]),
    [[DIGITS, out, '--sparsity', '0.5', '--plot', 'x.svg'], /--plot: draws the --sweep curve/],
    [[DIGITS, out, '--sparsity', '0.5', '--threads', '0'], /--threads: expected an integer/],
    [[DIGITS], /OUT: missing the output model path/],
    [[join(dir, 'missing.onnx'), out, '--sparsity', '0.5'], /IN: .* does not exist/],
    [[DIGITS, out, '--sparsity', '0.5', '--frobnicate'], /unknown option '--frobnicate'/],
  ];
  for (const [args, message] of cases) {
    const r = await inProcess(args);
    t.equal(r.code, 2, `exit 2 for ${args.slice(1).join(' ')}`);
    t.match(r.message, message);
  }
  t.notOk(existsSync(out), 'nothing written');
});

t.test('OUT a symlink or hard link to IN is refused before any work, as OUT equal to IN is', async (t) => {
  const d = mkdtempSync(join(dir, 'linked-'));
  const input = join(d, 'model.onnx');
  copyFileSync(DIGITS, input);
  symlinkSync('model.onnx', join(d, 'current.onnx'));
  linkSync(input, join(d, 'hard.onnx'));
  const model = readFileSync(input);
  // It pruned first, then failed with exit 1 and a message naming no flag.
  const viaSymlink = await umbra([input, join(d, 'current.onnx'), '--sparsity', '0.5']);
  t.equal(viaSymlink.code, 2, 'a symlink: exit 2');
  t.equal(viaSymlink.stderr, `umbra: OUT: ${join(d, 'current.onnx')} is the input model (a link to ${input}); write the pruned model to another path (umbra prune IN.onnx OUT.onnx)\n`, 'a symlink: the usage error alone, nothing pruned before it');
  const viaHardLink = await inProcess([input, join(d, 'hard.onnx'), '--sparsity', '0.5']);
  t.equal(viaHardLink.code, 2, 'a hard link: exit 2');
  t.match(viaHardLink.message, `OUT: ${join(d, 'hard.onnx')} is the input model (a link to ${input}); write the pruned model to another path`, 'a hard link: names OUT and the fix');
  t.same(readFileSync(input), model, 'the input model is untouched');
});

t.test('the real command exits 2 on a bad flag and prints the message', async (t) => {
  for (const [args, message] of [
    [[DIGITS, join(dir, 'never.onnx'), '--sparsity', '1.5'], /umbra: --sparsity: expected a number in \[0, 1\]/],
    [[DIGITS, join(dir, 'never.onnx'), '--sparsity', '0.5', '--frobnicate'], /unknown option '--frobnicate'/],
  ] as [string[], RegExp][]) {
    const r = await umbra(args);
    t.equal(r.code, 2);
    t.match(r.stderr, message);
  }
});

t.test('an eval label column that does not exist is a clear error', async (t) => {
  const r = await umbra([DIGITS, join(dir, 'x.onnx'), '--sparsity', '0.5', '--eval', CSV, '--label', 'target']);
  t.not(r.code, 0);
  t.match(r.stderr, /label column named "target"/);
});

t.test('--eval labels that name no class are refused instead of scored as wrong answers', async (t) => {
  const model = readModel(DIGITS);
  const data = await readEvalData(CSV, { label: 'label', filter: { column: 'split', value: 'test' } });
  data.labels[4] = 10;
  await t.rejects(evaluateModel(DIGITS, evalPlan(model, data, 'probabilities'), data, 1),
    { message: /^expected each label to name one of its 10 classes \(an integer from 0 to 9: output "probabilities" gives 10 scores per row, the argmax is the class\) but scored row 5 has label 10; check --label/ },
    'a class past the output\'s scores (1-based labels)');
  data.labels[4] = 2.5;
  await t.rejects(evaluateModel(DIGITS, evalPlan(model, data), data, 1),
    { message: /^expected each label to name a class of integer output "label" but scored row 5 has label 2\.5;/ },
    'a fractional label against an integer output');
  // A regression target given to a classifier: every row's label is fractional.
  const lines = readFileSync(CSV, 'utf8').trim().split(/\r?\n/);
  const at = lines[0]!.split(',').indexOf('label');
  const csv = join(dir, 'eval-float-labels.csv');
  writeFileSync(csv, [lines[0], ...lines.slice(1).map((l) => l.split(',').map((c, i) => (i === at ? `${c}.5` : c)).join(','))].join('\n'));
  const r = await umbra([DIGITS, join(dir, 'float-labels.onnx'), '--sparsity', '0.5', '--eval', csv, '--label', 'label', '--eval-filter', 'split=test']);
  t.equal(r.code, 1, 'the command fails');
  t.match(r.stderr, /scored row 1 has label \d\.5; check --label/, 'naming the row and the label');
  t.notOk(existsSync(join(dir, 'float-labels.onnx')), 'before writing anything');
});

t.test('the docs score on held-out rows: every --eval command in docs/prune.md filters split=test', async (t) => {
  const commands = readFileSync('docs/prune.md', 'utf8').replace(/\\\n\s*/g, ' ').split('\n')
    .filter((line) => line.startsWith('umbra prune') && line.includes('--eval '))
    .map((line) => line.replace(/\s+#.*$/, ''));
  t.ok(commands.length >= 2, 'the accuracy and sweep examples');
  for (const c of commands) t.match(c, /--eval-filter split=test/, c);
  const sweep = commands.find((c) => c.includes('--sweep'))!;
  const args = sweep.split(/\s+/).slice(2);
  args[args.indexOf('--plot') + 1] = join(dir, 'docs-curve.svg');
  const r = await umbra([...args, '--json']);
  t.equal(r.code, 0, r.stderr);
  const testRows = readFileSync(CSV, 'utf8').trim().split(/\r?\n/).filter((line) => line.endsWith(',test')).length;
  t.equal(JSON.parse(r.stdout).eval.rows, testRows, `scored on the ${testRows} test rows, none of the training rows`);
});

t.test('structured: the output layer stays dense unless --include-output-layer', async (t) => {
  const kept = await umbra([DIGITS, join(dir, 's-kept.onnx'), '--method', 'structured', '--sparsity', '0.25', '--json']);
  t.equal(kept.code, 0, kept.stderr);
  t.match(JSON.parse(kept.stdout).layers, [{ name: 'fc1.weight', status: 'pruned' }, { name: 'fc2.weight', status: 'excluded', excludedBy: 'output-layer', sparsityAfter: 0 }]);
  const all = await umbra([DIGITS, join(dir, 's-all.onnx'), '--method', 'structured', '--sparsity', '0.25', '--include-output-layer', '--json']);
  t.equal(all.code, 0, all.stderr);
  t.match(JSON.parse(all.stdout).layers, [{ name: 'fc1.weight', status: 'pruned' }, { name: 'fc2.weight', status: 'pruned', prunedOutputs: 3 }]);
  const misuse = await inProcess([DIGITS, join(dir, 'never.onnx'), '--sparsity', '0.5', '--include-output-layer']);
  t.equal(misuse.code, 2);
  t.match(misuse.message, /--include-output-layer: only applies to --method structured/);
});

t.test('scoring through the native backend gives what onnxruntime gives on the same rows', async (t) => {
  const data = await readEvalData(CSV, { label: 'label', filter: { column: 'split', value: 'test' } });
  for (const path of [DIGITS, 'models/repository/digits/2/model.onnx']) {
    const plan = evalPlan(readModel(path), data);
    const ort = await evaluateModel(path, plan, data, 1);
    const native = await evaluateNative(path, plan, data, { device: 'cpu', precision: 'fp32' }, 1);
    t.same({ ...native, value: undefined }, { ...ort, value: undefined }, `${path}: the same metric, output and rows`);
    // Float32 kernels may split a near-tie row differently, at most one.
    t.ok(Math.abs(native.value - ort.value) <= 1 / data.rows, `${path}: native ${native.value} vs onnxruntime ${ort.value}`);
  }
});

t.test('--precision scores before and after on the GPU at each precision', { skip: cudaStatus().available ? false : `no GPU: ${cudaStatus().reason}` }, async (t) => {
  const out = join(dir, 'digits-precisions.onnx');
  const r = await umbra([DIGITS, out, '--sparsity', '0.5', '--eval', CSV, '--label', 'label', '--eval-filter', 'split=test', '--precision', 'fp32,bf16', '--json', '--threads', '1']);
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.same(report.eval.precisions.map((p: { precision: string }) => p.precision), ['fp32', 'bf16']);
  const fp32 = report.eval.precisions[0];
  t.ok(Math.abs(fp32.before - report.eval.before) <= 1 / 360 && Math.abs(fp32.after - report.eval.after) <= 1 / 360, 'fp32 on the GPU agrees with onnxruntime');
});

t.test('--eval feeds a CNN its image: the 64 pixel columns fill [1, 8, 8] (a PyTorch export)', async (t) => {
  const cnn = 'test/fixtures/pytorch/cnn.onnx';
  const exported = JSON.parse(readFileSync('test/fixtures/pytorch/cnn.json', 'utf8')) as { test_accuracy: number };
  const data = await readEvalData(CSV, { label: 'label', filter: { column: 'split', value: 'test' } });
  const plan = evalPlan(readModel(cnn), data);
  t.same(plan.rowDims, [1, 8, 8]);
  const before = await evaluateModel(cnn, plan, data, 1);
  // PyTorch scored the same 360 test rows at export.
  t.ok(Math.abs(before.value - exported.test_accuracy) <= 1 / 360, `accuracy ${before.value} vs PyTorch's ${exported.test_accuracy}`);
  const out = join(dir, 'cnn-pruned.onnx');
  const r = await umbra([cnn, out, '--sparsity', '0.5', '--eval', CSV, '--label', 'label', '--eval-filter', 'split=test', '--json', '--threads', '1']);
  t.equal(r.code, 0, r.stderr);
  t.equal(JSON.parse(r.stdout).eval.before, before.value);
  // Columns that cannot fill the input say what would.
  const three = { columns: ['f0', 'f1', 'f2'], features: new Float32Array(3), labels: new Float64Array(1), rows: 1 };
  t.throws(() => evalPlan(readModel(cnn), three), /expected input "image" to take the 3 feature columns per row \(\[batch, 3\], or dims past the batch one whose product is 3\) but it is \[-1, 1, 8, 8\]; the features are every numeric column but --label and --eval-filter's \(f0, f1, f2\): drop the others from the data$/);
  // An id column is numeric too: the message names the columns taken, so it shows.
  const columns = ['id', ...Array.from({ length: 64 }, (_, i) => `p${i}`)];
  const withId = { columns, features: new Float32Array(65), labels: new Float64Array(1), rows: 1 };
  t.throws(() => evalPlan(readModel(DIGITS), withId), /take the 65 feature columns .*\(id, p0, p1, \.\.\., p61, p62, p63\): drop the others from the data$/, 'an id column taken as a feature is named');
});
