// `umbra bench-model`: reports one point per batch size for either backend, as a table or JSON,
// and refuses bad flags. Checks shape and sanity only, never speed.
import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const UMBRA = new URL('../bin/umbra.js', import.meta.url).pathname;
const DIGITS = new URL('../models/repository/digits/1/model.onnx', import.meta.url).pathname;

for (const backend of ['native', 'onnxruntime']) {
  t.test(`bench-model --backend ${backend} --json`, async (t) => {
    const { stdout } = await run(process.execPath, [UMBRA, 'bench-model', DIGITS, '--backend', backend, '--batch', '1,4', '--seconds', '0.2', '--repeats', '2', '--json']);
    const report = JSON.parse(stdout);
    t.equal(report.backend, backend);
    t.same(report.points.map((p: { batch: number }) => p.batch), [1, 4]);
    for (const p of report.points) {
      t.ok(p.rowsPerSecond > 0 && Number.isFinite(p.rowsPerSecond), 'a positive rate');
      t.equal(p.windows.length, 2, 'one figure per window');
      t.ok(p.runs >= 2, 'every window ran at least once');
    }
    if (backend === 'native') t.same(report.layers.map((l: { format: string }) => l.format), ['packed', 'packed'], 'layer formats reported');
  });
}

t.test('bench-model --backend auto picks as a model config does and shows each layer\'s format', async (t) => {
  const { stdout } = await run(process.execPath, [UMBRA, 'bench-model', DIGITS, '--backend', 'auto', '--batch', '1,3', '--seconds', '0.1', '--repeats', '1']);
  t.match(stdout, /on native \(auto\), 1 thread/);
  t.match(stdout, /layer formats:\n  gemm_1 \[32x64\] 93\.1% non-zero: packed \(too-dense: /);
  const json = JSON.parse((await run(process.execPath, [UMBRA, 'bench-model', DIGITS, '--backend', 'auto', '--batch', '2', '--seconds', '0.1', '--repeats', '1', '--json'])).stdout);
  t.equal(json.backend, 'native');
  t.same(json.layers.map((l: { basis: string }) => l.basis), ['too-dense', 'too-dense']);
});

t.test('bench-model table output and bad flags', async (t) => {
  const { stdout } = await run(process.execPath, [UMBRA, 'bench-model', DIGITS, '--batch', '2', '--seconds', '0.1', '--repeats', '1']);
  t.match(stdout, /on native, 1 thread/);
  t.match(stdout, /^\s+2\s+\d/m);
  await t.rejects(run(process.execPath, [UMBRA, 'bench-model', DIGITS, '--backend', 'tpu']), /expected native, onnxruntime or auto/);
  await t.rejects(run(process.execPath, [UMBRA, 'bench-model', DIGITS, '--batch', '0']), /--batch: expected a positive integer/);
  await t.rejects(run(process.execPath, [UMBRA, 'bench-model', '/nonexistent.onnx']), /does not exist/);
});

const PYTORCH = new URL('./fixtures/pytorch/', import.meta.url).pathname;

t.test('bench-model on PyTorch exports whose inputs are not a row of floats', async (t) => {
  // INT64 token ids [batch, length]: index inputs get values every index accepts (they were floats, which a BigInt array refuses).
  const text = JSON.parse((await run(process.execPath, [UMBRA, 'bench-model', `${PYTORCH}text.onnx`, '--backend', 'auto', '--batch', '1,4', '--seconds', '0.1', '--repeats', '1', '--json'])).stdout);
  t.equal(text.backend, 'onnxruntime', 'auto picks onnxruntime for an INT64 input');
  t.match(text.backend_note, /^backend auto chose onnxruntime: the native backend cannot run this model \(.*input "ids" is INT64/, 'and says why');
  t.same(text.points.map((p: { batch: number; runs: number }) => [p.batch, p.runs > 0]), [[1, true], [4, true]]);
  // No batch dimension: rows/s at batch 8 would count 8 rows for each call of the one shape.
  const fixed = await run(process.execPath, [UMBRA, 'bench-model', `${PYTORCH}fixed.onnx`, '--backend', 'onnxruntime', '--batch', '1,8', '--seconds', '0.1', '--repeats', '1', '--json']);
  t.same(JSON.parse(fixed.stdout).points.map((p: { batch: number }) => p.batch), [1], 'only batch 1 is measured');
  t.match(fixed.stderr, /fixed\.onnx has no batch dimension \(x \[3, 4\]\): each run is one call of that shape, so only batch 1 is measured/);
  // The default backend is native: the refusal names the flag that fixes it.
  await t.rejects(run(process.execPath, [UMBRA, 'bench-model', `${PYTORCH}text.onnx`, '--seconds', '0.1']), /--backend native: input "ids" is INT64; the native backend serves FP32 inputs only; use --backend onnxruntime, or --backend auto to pick/);
  await t.rejects(run(process.execPath, [UMBRA, 'bench-model', `${PYTORCH}cnn.onnx`, '--seconds', '0.1']), /--backend native: node "[^"]+" \(Conv\) is not supported; .*use --backend onnxruntime, or --backend auto to pick/);
});

t.test('bench-model --shape runs a sequence model at the length given; without it, says it runs length 1', async (t) => {
  const TEXT = new URL('./fixtures/pytorch/text.onnx', import.meta.url).pathname;
  const args = [UMBRA, 'bench-model', TEXT, '--backend', 'onnxruntime', '--batch', '1,2', '--seconds', '0.1', '--repeats', '1', '--json'];
  const shaped = await run(process.execPath, [...args, '--shape', 'ids:12']);
  t.same(JSON.parse(shaped.stdout).inputs, [{ name: 'ids', shape: [-1, 12] }], 'ids run at length 12');
  t.equal(shaped.stderr, '', 'no note where the length is given');
  const plain = await run(process.execPath, args);
  t.same(JSON.parse(plain.stdout).inputs, [{ name: 'ids', shape: [-1, 1] }]);
  t.match(plain.stderr, /input ids has shape \[-1, -1\]; its free dims past the batch are run as 1 \(a sequence of one\): give --shape ids:N/);
  const bad = await run(process.execPath, [...args, '--shape', 'ids:1,2,3']).catch((e: { stderr: string; code: number }) => e);
  t.same([(bad as { code: number }).code, /--shape ids:1,2,3 gives 3 dims, but input ids has shape \[-1, -1\]/.test((bad as { stderr: string }).stderr)], [2, true], 'a shape that does not fit is a usage error naming the flag');
});
