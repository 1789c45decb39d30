// What a fresh large buffer costs on this host, beside one reused: each request's 602 KB tensor
// read (pread) from a shared-memory object into a buffer allocated for it, as the shared-memory
// extension and the HTTP body path both do, against the same read into one kept buffer. The gap
// is the allocator's page faults (glibc hands buffers this large out as fresh mappings, or trims
// them back to the OS once freed). Run it under other malloc settings to compare, e.g.
// MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=268435456 node bench/fresh-buffers.mjs
//
//   node bench/fresh-buffers.mjs [--bytes 602112] [--reads 3000] [--rounds 3]
import { closeSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { bytes: { type: 'string', default: '602112' }, reads: { type: 'string', default: '3000' }, rounds: { type: 'string', default: '3' } } });
const bytes = Number(values.bytes);
const reads = Number(values.reads);
const path = `/dev/shm/umbra-fresh-buffers-${process.pid}`;
writeFileSync(path, Buffer.alloc(bytes, 7));
const fd = openSync(path, 'r');
const kept = Buffer.allocUnsafe(bytes);
const results = { fresh: [], reused: [] };
try {
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const mode of ['fresh', 'reused']) {
      // A few requests' tensors alive at once, as on a server.
      const live = [];
      const start = performance.now();
      for (let i = 0; i < reads; i++) {
        const into = mode === 'fresh' ? Buffer.allocUnsafe(bytes) : kept;
        readSync(fd, into, 0, bytes, 0);
        live.push(into);
        if (live.length > 8) live.shift();
      }
      results[mode].push(((performance.now() - start) / reads) * 1000);
    }
  }
} finally {
  closeSync(fd);
  rmSync(path, { force: true });
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`${bytes} bytes a read, ${reads} reads a round, median of ${values.rounds} rounds`);
console.log(`fresh buffer each read: ${median(results.fresh).toFixed(1)} µs (${results.fresh.map((x) => x.toFixed(0)).join(', ')})`);
console.log(`one reused buffer:      ${median(results.reused).toFixed(1)} µs (${results.reused.map((x) => x.toFixed(0)).join(', ')})`);
