#!/usr/bin/env node
// Before anything else is loaded: V8's allocation-site pretenuring guesses from a few young
// collections which allocation sites make long-lived objects and from then on allocates theirs
// in the old generation. A burst of requests in flight at one collection (a server's first
// moments, say) can make it so pick the sites of per-request objects, which live microseconds:
// every request is then born old and keeps what it references alive through young collections
// until a full one. Measured at c64: 1.5 MB promoted per young collection and ~2.5x the time in
// young collections when it happens (test/gc-promotion.test.ts, README "Embedding").
import { setFlagsFromString } from 'node:v8';
import { serveHeapFlag, startWithServeHeap } from './serve-heap.js';

if (process.argv[2] === 'serve' && startWithServeHeap(process)) {
  // This process only relays signals and the exit status: `umbra serve` runs in the child.
} else {
  setFlagsFromString('--no-allocation-site-pretenuring');
  serveHeapFlag.guardParent(process);
  const { main } = await import('../dist/cli/main.js');

  main(process.argv).catch((err) => {
    process.stderr.write(`umbra: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(typeof err?.exitCode === 'number' ? err.exitCode : 1);
  });
}
