// Truncated and mutated protobuf against the gRPC port (bench/grpc-fuzz.mjs's run, seeded and
// bounded here; the bench sends 100k): every malformed message is refused with a status that says
// so (INVALID_ARGUMENT, or NOT_FOUND for a mangled name), never INTERNAL or UNKNOWN, and the
// server still answers afterwards. Then the HTTP/2 level: wrong content-type or method, unknown
// paths, cut and oversized length prefixes, compression flags, resets and broken frames.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
// @ts-expect-error: a JavaScript bench module without type declarations
import { fuzzRun, hostileRun } from '../bench/grpc-fuzz.mjs';

const EXAMPLES = new URL('../models/repository/', import.meta.url).pathname;

t.setTimeout(300_000);

t.test('3000 seeded mutations: no INTERNAL, no UNKNOWN, the server lives on', async (t) => {
  const s = await startTestServer(t, { repository: EXAMPLES, grpcPort: 'any' });
  const result = await fuzzRun({ address: `127.0.0.1:${s.server.grpcPort}`, messages: 3000, seed: 7, inFlight: 16 });
  t.same(result.bad, [], 'no INTERNAL or UNKNOWN answers');
  t.ok(result.liveAfter, 'ServerLive answers afterwards');
  t.ok((result.statuses[3] ?? 0) > 500, `${result.statuses[3]} INVALID_ARGUMENT`);
  t.ok((result.statuses[0] ?? 0) > 0, `${result.statuses[0]} mutations still valid and answered`);
  t.ok(result.streamSent > 100 && result.streamErrors > 0, `${result.streamSent} on the stream, ${result.streamErrors} refused in-band`);
});

t.test('HTTP/2-level hostility: each case gets its status (or its connection closed), the server lives on', async (t) => {
  const s = await startTestServer(t, { repository: EXAMPLES, grpcPort: 'any' });
  const result = await hostileRun({ address: `127.0.0.1:${s.server.grpcPort}` });
  t.ok(result.cases.length >= 20, `${result.cases.length} cases`);
  for (const c of result.cases) t.ok(c.ok, `${c.name}: expected ${c.expected}, got ${c.got}${c.message ? ` (${c.message})` : ''}`);
  t.ok(result.liveAfter, 'ServerLive answers afterwards');
  t.same(s.server.grpc?.streamStats(), { streams: 0, outstanding: 0 }, 'nothing left open');
});
