// Finding the vendor BLAS (cuBLASLt) at run time: where the addon looks, what it reports when it
// finds a library, one that lacks the entry points, none, or is told not to look. Real libraries
// need a GPU host; here stand-in libraries built with the system C compiler export the same
// symbols, which is all the loader checks. (On a GPU host the GEMM checks in native-cuda.test.ts
// compare cuBLASLt's answers with Umbra's kernels and the CPU.)
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cudaStatus } from '../dist/native/cuda.js';

const status = cudaStatus();
const ENTRY_POINTS = ['cublasLtCreate', 'cublasLtMatmulDescCreate', 'cublasLtMatmulDescSetAttribute', 'cublasLtMatmulDescDestroy',
  'cublasLtMatrixLayoutCreate', 'cublasLtMatrixLayoutDestroy', 'cublasLtMatmulPreferenceCreate', 'cublasLtMatmulPreferenceSetAttribute',
  'cublasLtMatmulPreferenceDestroy', 'cublasLtMatmulAlgoGetHeuristic', 'cublasLtMatmul'];

function hasCompiler(): boolean {
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const skip = !status.compiled ? 'the addon was built without CUDA' : !hasCompiler() ? 'no C compiler (cc) to build the stand-in libraries' : false;

/** cudaStatus().blas in a fresh process (the addon looks once per process) with `env`. */
function blasIn(env: Record<string, string>): typeof status.blas {
  const script = `import('${new URL('../dist/native/cuda.js', import.meta.url).href}').then((m) => process.stdout.write(JSON.stringify(m.cudaStatus().blas)))`;
  const base = { ...process.env };
  for (const k of ['UMBRA_CUBLASLT', 'UMBRA_CUBLASLT_PATH', 'CUDA_HOME', 'CUDA_PATH', 'VIRTUAL_ENV', 'CONDA_PREFIX']) delete base[k];
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...base, ...env }, encoding: 'utf8' }));
}

t.test('the loader finds cuBLASLt where users have it, and says where it looked when it does not', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-blas-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const build = (file: string, symbols: string[]) => {
    const source = `${file}.c`;
    writeFileSync(source, `#include <stddef.h>\nsize_t cublasLtGetVersion(void) { return 130101; }\n${symbols.map((s) => `int ${s}(void) { return 0; }`).join('\n')}\n`);
    execFileSync('cc', ['-shared', '-fPIC', '-o', file, source]);
    return file;
  };
  const full = build(join(dir, 'libcublasLt.so.13'), ENTRY_POINTS);
  const partial = build(join(dir, 'libpartial.so'), ['cublasLtCreate']);

  const none = blasIn({ HOME: dir });
  t.equal(none.library, 'cuBLASLt');
  t.same(none.tried.slice(0, 3), ['libcublasLt.so.13', 'libcublasLt.so.12', 'libcublasLt.so'], 'the loader\'s own search first, newest major first');
  if (none.found) {
    t.ok(none.path.length > 0 && none.version > 0, `this host has one: ${none.path} (${none.version})`);
  } else {
    t.match(none.reason, /no cuBLASLt library found.*UMBRA_CUBLASLT_PATH/, 'none: the reason names the ways to point at one');
    t.ok(none.tried.some((p) => p.includes('/usr/local/cuda')), 'the toolkit folders were searched');
    t.ok(none.tried.length >= 3);
  }

  const explicit = blasIn({ UMBRA_CUBLASLT_PATH: full });
  t.same({ found: explicit.found, path: explicit.path, version: explicit.version, reason: explicit.reason }, { found: true, path: full, version: 130101, reason: '' }, 'UMBRA_CUBLASLT_PATH: that file, its version');

  if (!none.found) {
    // A CUDA_HOME laid out as the toolkit installs it.
    const home = join(dir, 'cuda');
    mkdirSync(join(home, 'lib64'), { recursive: true });
    build(join(home, 'lib64', 'libcublasLt.so.13'), ENTRY_POINTS);
    const toolkit = blasIn({ CUDA_HOME: home });
    t.equal(toolkit.found, true, 'found under CUDA_HOME/lib64');
    t.equal(toolkit.path, join(home, 'lib64', 'libcublasLt.so.13'));
    // The nvidia-cublas wheel inside a virtual environment.
    const venv = join(dir, 'venv');
    const wheel = join(venv, 'lib', 'python3.11', 'site-packages', 'nvidia', 'cublas', 'lib');
    mkdirSync(wheel, { recursive: true });
    build(join(wheel, 'libcublasLt.so.12'), ENTRY_POINTS);
    const fromWheel = blasIn({ VIRTUAL_ENV: venv });
    t.equal(fromWheel.path, join(wheel, 'libcublasLt.so.12'), 'found in the nvidia-cublas wheel of VIRTUAL_ENV');
    // A virtual environment that is not activated but whose bin folder is on PATH (as when its
    // python3 is the one users run), with a CUDA 13 wheel's layout.
    const venv13 = join(dir, 'torch-venv');
    const wheel13 = join(venv13, 'lib', 'python3.12', 'site-packages', 'nvidia', 'cu13', 'lib');
    mkdirSync(wheel13, { recursive: true });
    mkdirSync(join(venv13, 'bin'));
    build(join(wheel13, 'libcublasLt.so.13'), ENTRY_POINTS);
    const onPath = blasIn({ PATH: `${join(venv13, 'bin')}:${process.env.PATH}` });
    t.equal(onPath.path, join(wheel13, 'libcublasLt.so.13'), 'found in the wheel of a virtual environment on PATH');
  }

  const lacking = blasIn({ UMBRA_CUBLASLT_PATH: partial });
  t.equal(lacking.found, false, 'a library without every entry point is not used');
  t.match(lacking.reason, /could not be loaded/);
  t.match(lacking.tried[0], /lacks cuBLASLt entry points/);

  const missing = blasIn({ UMBRA_CUBLASLT_PATH: join(dir, 'nope.so') });
  t.equal(missing.found, false);
  t.match(missing.reason, /UMBRA_CUBLASLT_PATH=.*nope\.so could not be loaded/, 'a wrong explicit path is named, not silently replaced');

  const off = blasIn({ UMBRA_CUBLASLT: 'off', UMBRA_CUBLASLT_PATH: full });
  t.same({ found: off.found, tried: off.tried }, { found: false, tried: [] }, 'UMBRA_CUBLASLT=off: nothing is loaded');
  t.match(off.reason, /turned off/);
});

t.test('an addon built without CUDA reports no BLAS, with the reason', { skip: status.compiled ? 'the addon has CUDA' : false }, async (t) => {
  t.equal(status.blas.found, false);
  t.match(status.blas.reason, /built without CUDA|predates/);
});
