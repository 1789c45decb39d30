// The C++ kernel and pruning tests (native/tests, CMake target umbra_kernel_tests, built in the
// addon's build tree): every kernel against a plain double-precision reference, run once per ISA
// with that ISA forced, so the portable and AVX2 code is checked on an AVX-512 CPU too. Each group
// of a run (gemm, spmm, elementwise, monitor-stats, prune) is one assertion here, whatever its number of C++
// checks, with its first failures in the message.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BINARY = join(ROOT, 'build', 'tests', 'umbra_kernel_tests');
const GROUPS = ['gemm', 'spmm', 'elementwise', 'monitor-stats', 'prune'];
const ISAS = ['portable', 'avx2', 'avx512'];

interface GroupLine {
  isa: string;
  group?: string;
  supported: boolean;
  checks?: number;
  failures?: number;
  first_failures?: string[];
}

// scripts/ensure-built.js has built it before `npm test`; building again here is a no-op then, and
// keeps a direct `npx tap test/cpp-kernels.test.ts` after a source edit from testing old code.
const build = existsSync(join(ROOT, 'build', 'CMakeCache.txt'))
  ? spawnSync('cmake', ['--build', join(ROOT, 'build'), '--target', 'umbra_kernel_tests'], { encoding: 'utf8', timeout: 100_000 })
  : undefined;
const built = build?.status === 0 && existsSync(BINARY);
const output = build ? `${build.stdout}${build.stderr}${build.error?.message ?? ''}`.trim().split('\n').slice(-15).join('\n') : '';
t.ok(built, build
  ? `the C++ tests build (cmake --build build --target umbra_kernel_tests)${built ? '' : `:\n${output}`}`
  : 'the C++ tests build: build/ has no CMake cache (node scripts/ensure-built.js configures it)');

if (built) {
  for (const isa of ISAS) {
    t.test(`kernels and pruning with ${isa} forced`, async (t) => {
      const run = spawnSync(BINARY, ['--isa', isa, '--json'], { encoding: 'utf8', timeout: 100_000 });
      const lines = run.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as GroupLine);
      if (lines.length === 1 && lines[0]!.supported === false) {
        t.skip(`${isa} is not supported by this CPU or was not compiled in`);
        return;
      }
      for (const line of lines) {
        const shown = (line.first_failures ?? []).join('; ');
        t.ok(line.failures === 0 && (line.checks ?? 0) > 0,
          `${line.group} on ${isa}: ${line.failures} of ${line.checks} checks differ from the reference${shown ? ` (first: ${shown})` : ''}`);
      }
      // A crash, or a group that stopped reporting, fails here with what the run printed.
      t.same(lines.map((l) => l.group), GROUPS, `every group reported (exit ${run.status ?? run.signal}; stderr: ${run.stderr.slice(-500)})`);
    });
  }
}
