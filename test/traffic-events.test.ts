// Rollouts say what they do: every start, step change, pause, resume, promotion and rollback is
// a log line with its reason, a webhook event and a count in umbra_rollout_events_total.
import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tempRepo, affineModel } from './helpers/repo.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { parseExposition, total } from './helpers/prometheus.js';
import { seededRandom } from '../dist/random.js';

const TOKEN = 'events-token';
const ADMIN = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

/** A webhook receiver on loopback that keeps every event it is sent. */
async function receiver(t: Tap.Test): Promise<{ url: string; events: Record<string, unknown>[] }> {
  const events: Record<string, unknown>[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      events.push(JSON.parse(body));
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, events };
}

/** Lines the server writes to standard output while `fn` runs (the rollout log goes there, as `umbra serve` logs). */
function captureStdout(t: Tap.Test): string[] {
  const lines: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    if (text.includes(' rollout of ')) {
      lines.push(text.trim());
      return true;
    }
    return (write as (c: unknown, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  t.teardown(() => {
    process.stdout.write = write;
  });
  return lines;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const QUICK = {
  steps: [{ shadow: true, min_requests: 30 }, { weight: 0.5, min_requests: 20 }, { weight: 1, min_requests: 20 }],
  // Latency on a shared test machine is noise at this scale; the simulation test judges latency.
  analysis: { max_latency_ratio: 50, max_error_rate: 0.05, warmup: 0 },
};

async function drive(s: TestServer, random: () => number, done: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    const data = Array.from({ length: 4 }, () => Math.round(random() * 100) / 10);
    await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data }] });
    if (i % 10 === 9 && (await done())) return;
  }
}

t.test('every rollout decision is logged with its reason, sent to the webhook and counted', async (t) => {
  const hook = await receiver(t);
  const lines = captureStdout(t);
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.writeConfig('affine', { version_policy: { all: {} } });
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.addVersion('affine', 2, affineModel(2, 1));
  repo.addVersion('affine', 3, affineModel(2, 1.5));
  const s = await startTestServer(t, { repository: repo.dir, workers: 1, adminToken: TOKEN, monitoring: { webhook: { url: hook.url, backoffMs: 10 } } });
  await s.request('PUT', '/v2/models/affine/traffic', JSON.stringify({ primary: '1' }), ADMIN);
  const random = seededRandom(5);
  const state = async () => (await s.get('/v2/models/affine/rollout')).json.state as string;

  t.equal((await s.post('/v2/models/affine/rollout', { candidate: '2', ...QUICK }, ADMIN)).status, 201);
  await drive(s, random, async () => (await state()) !== 'running');
  t.equal(await state(), 'promoted');
  t.equal((await s.post('/v2/models/affine/rollout', { candidate: '3', ...QUICK }, ADMIN)).status, 201);
  await drive(s, random, async () => (await state()) !== 'running');
  t.equal(await state(), 'rolled_back');
  // A step that can never gather its traffic: inconclusive at max_seconds, again, then paused.
  const starved = { candidate: '3', steps: [{ shadow: true, min_requests: 1_000_000, max_seconds: 0.05 }], analysis: QUICK.analysis };
  t.equal((await s.post('/v2/models/affine/rollout', starved, ADMIN)).status, 201);
  await until(async () => (await state()) === 'paused', 'the starved rollout to pause');
  t.equal((await s.post('/v2/models/affine/rollout/resume', undefined, ADMIN)).json.state, 'running');
  t.equal((await s.post('/v2/models/affine/rollout/abort', undefined, ADMIN)).json.state, 'rolled_back');

  const expected = ['start', 'advance', 'advance', 'promote', 'start', 'rollback', 'start', 'retry', 'pause', 'resume', 'rollback'];
  t.same(lines.map((l) => /: (\w+) at step/.exec(l)?.[1]), expected, 'one log line per decision, in order');
  t.match(lines[0], /^\d{4}-\d\d-\d\dT[\d:.]+Z rollout of affine version 2 over 1: start at step 0 \(running\): rollout of version 2 over primary 1 with 3 steps/);
  t.match(lines[1], /advance at step 0 -> 1 \(running\): step 0 passed after \d+ shadow runs \(error_rate 0, latency [\d.]+, agreement 1\)/);
  t.match(lines[5], /rollback at step 0 \(rolled_back\): step 0 failed: agreement: \d+ of \d+ compared rows agree with the primary: at most [\d.]+% \(99.9% confidence\), under 95%/);
  t.match(lines[8], /pause at step 0 \(paused\): step 0 inconclusive 2 times in a row \(only \d+ of 1000000 shadow runs/);

  await until(() => hook.events.filter((e) => e.type === 'rollout').length === expected.length, 'every webhook event');
  const sent = hook.events.filter((e) => e.type === 'rollout');
  t.same(sent.map((e) => e.event), expected, 'the webhook gets the same events in the same order');
  t.match(sent[3], { type: 'rollout', model: 'affine', version: '2', candidate: '2', baseline: '1', event: 'promote', state: 'promoted', step: 2, verdict: 'pass', reason: /every step passed/ });
  t.match(sent[5], { event: 'rollback', state: 'rolled_back', verdict: 'fail', reason: /agreement/ });

  const samples = parseExposition((await s.get('/metrics')).text);
  const count = (event: string) => total(samples, 'umbra_rollout_events_total', { model: 'affine', event });
  t.same([count('start'), count('advance'), count('promote'), count('rollback'), count('retry'), count('pause'), count('resume')], [3, 2, 1, 2, 1, 1, 1], 'umbra_rollout_events_total by event');
});
