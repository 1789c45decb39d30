// tuneAllocator(): glibc keeps freed megabyte buffers for reuse instead of unmapping them, so a
// server that allocates a tensor buffer per request stops paying a page fault per 4 KiB of it.
// Counted, not timed: minor page faults (/proc/self/stat) per fresh 1 MiB buffer, each freed
// (gc()) before the next, in a child process with the tuning on and one with it off.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tuneAllocator } from '../dist/native/addon.js';

const addon = new URL('../dist/native/addon.js', import.meta.url).href;
const probe = `
import { readFileSync } from 'node:fs';
const { tuneAllocator } = await import('${addon}');
const tuning = tuneAllocator();
const faults = () => Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[7]);
const src = Buffer.alloc(1 << 20, 1);
for (let i = 0; i < 10; i++) { src.copy(Buffer.allocUnsafeSlow(1 << 20)); globalThis.gc(); }
const before = faults();
for (let i = 0; i < 100; i++) { src.copy(Buffer.allocUnsafeSlow(1 << 20)); globalThis.gc(); }
process.stdout.write(JSON.stringify({ tuning, faultsPerMiB: (faults() - before) / 100 }));
`;

function run(env: Record<string, string>): { tuning: { applied: boolean; detail: string }; faultsPerMiB: number } {
  const base = { ...process.env };
  delete base.UMBRA_MALLOC_TUNING;
  return JSON.parse(execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', probe], { env: { ...base, ...env }, encoding: 'utf8' }));
}

t.test('UMBRA_MALLOC_TUNING=off leaves the allocator alone and says so', async (t) => {
  const r = tuneAllocator({ UMBRA_MALLOC_TUNING: 'off' });
  t.same(r, { applied: false, detail: 'left as it is (UMBRA_MALLOC_TUNING=off)' });
});

const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
t.test('with glibc, a fresh 1 MiB buffer reuses freed memory instead of faulting its pages in', { skip: glibc && existsSync('/proc/self/stat') ? false : 'needs glibc and /proc' }, async (t) => {
  const tuned = run({});
  const untuned = run({ UMBRA_MALLOC_TUNING: 'off' });
  t.equal(tuned.tuning.applied, true, tuned.tuning.detail);
  t.equal(untuned.tuning.applied, false);
  t.ok(tuned.faultsPerMiB < 32, `tuned: ${tuned.faultsPerMiB} page faults per fresh MiB (of its 256 pages)`);
  t.ok(tuned.faultsPerMiB < untuned.faultsPerMiB, `glibc's defaults: ${untuned.faultsPerMiB} per MiB`);
});
