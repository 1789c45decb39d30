// The retrain/alert webhook fires once per crossing, retries failed deliveries with backoff and
// gives up after its bound.
import t from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import { getEventListeners } from 'node:events';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer } from './helpers/server.js';
import { Webhook } from '../dist/monitor/webhook.js';
import { resolveServeSettings } from '../dist/cli/settings.js';
import { affineModel, tempRepo } from './helpers/repo.js';

const ROOT = new URL('..', import.meta.url).pathname;
const TEST = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').trim().split(/\r?\n/).slice(1).map((l) => {
  const c = l.split(',');
  return { x: c.slice(0, 64).map(Number), y: Number(c[64]), split: c[65]! };
}).filter((r) => r.split === 'test');

/** A receiver on loopback that answers the first `failures` posts with 500. */
async function receiver(t: { teardown(fn: () => unknown): void }, failures: number) {
  const events: Record<string, unknown>[] = [];
  let attempts = 0;
  const server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      attempts += 1;
      if (attempts <= failures) {
        res.writeHead(500).end();
        return;
      }
      events.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => server.close(r)));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}/hook`, events, attempts: () => attempts };
}

t.test('retries with backoff, then delivers once', async (t) => {
  const rx = await receiver(t, 2);
  const results: string[] = [];
  const hook = new Webhook({ url: rx.url, backoffMs: 5, attempts: 4 }, { result: (r: string) => results.push(r) });
  hook.send({ type: 'drift', model: 'm', version: '1', time: new Date(0).toISOString() });
  await hook.idle();
  t.equal(rx.attempts(), 3);
  t.equal(rx.events.length, 1);
  t.match(rx.events[0], { type: 'drift', model: 'm', attempt: 3 });
  t.same(results, ['retried', 'retried', 'delivered']);
  await hook.close();
});

t.test('gives up after the bound; the queue is bounded', async (t) => {
  const rx = await receiver(t, 1000);
  const results: string[] = [];
  const hook = new Webhook({ url: rx.url, backoffMs: 1, attempts: 3, maxQueue: 2 }, { result: (r: string) => results.push(r) });
  for (let i = 0; i < 4; i++) hook.send({ type: 'accuracy', model: 'm', version: String(i), time: '' });
  await hook.idle();
  // The first is taken at once; of the three queued behind it the oldest is dropped.
  t.equal(results.filter((r) => r === 'dropped').length, 1);
  t.equal(results.filter((r) => r === 'failed').length, 3);
  t.equal(rx.attempts(), 9);
  // Six backoff waits ran; a webhook that is down for days must not keep a listener per wait.
  const signal = (hook as unknown as { hurry: AbortController }).hurry.signal;
  t.equal(getEventListeners(signal, 'abort').length, 0, 'no abort listener left behind by the retries');
  await hook.close();
});

t.test('server: drift and accuracy alerts fire once per crossing and re-arm', async (t) => {
  const rx = await receiver(t, 1);
  const dir = mkdtempSync(join(tmpdir(), 'umbra-webhook-'));
  const stateDir = `${dir}.state`;
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  });
  cpSync(join(ROOT, 'models/repository/digits'), join(dir, 'digits'), { recursive: true });
  const p = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'profile', '--repo', dir, '--state-dir', stateDir, '--model', 'digits', '--data', join(ROOT, 'models/digits.csv'), '--where', 'split=train'], { encoding: 'utf8' });
  t.equal(p.status, 0, p.stderr);
  const s = await startTestServer(t, {
    repository: dir,
    stateDir,
    monitoring: { webhook: { url: rx.url, backoffMs: 5 }, accuracyThreshold: 0.5, minLabels: 8, feedback: { accuracyWindow: 8 } },
  });
  const monitor = s.server.monitor!;
  const infer = async (rows: number[][], id?: string) => {
    const body: Record<string, unknown> = { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [rows.length, 64], data: rows.flat() }] };
    if (id) body.id = id;
    const r = await s.post('/v2/models/digits/versions/2/infer', body);
    t.equal(r.status, 200);
    return r.json;
  };
  // Shifted pixels: the drift alert fires on the first evaluation that sees drift, once.
  const shifted = TEST.map((r) => r.x.map((v) => Math.min(16, v + 4)));
  for (let i = 0; i < shifted.length; i += 16) await infer(shifted.slice(i, i + 16));
  t.equal((await s.get('/v2/models/digits/versions/2/drift')).json.verdict, 'drift');
  monitor.evaluateAll();
  await s.get('/metrics');
  await monitor.webhook.idle();
  const drift = rx.events.filter((e) => e.type === 'drift');
  t.equal(drift.length, 1, 'one event per crossing, however often it is evaluated');
  t.match(drift[0], { model: 'digits', version: '2', verdict: 'drift', attempt: 2 });
  t.ok((drift[0]!.drifted as unknown[]).length > 32);

  // Accuracy: 8 wrong labels cross below 0.5 (one event), 8 right ones re-arm, 8 wrong fire again.
  const label = async (truthOf: (predicted: number) => number, n: number) => {
    for (let i = 0; i < n; i++) {
      const answer = await infer([TEST[i]!.x]);
      const predicted = answer.outputs.find((o: { name: string }) => o.name === 'label').data[0] as number;
      const r = await s.post('/v2/models/digits/feedback', { id: answer.id, truth: truthOf(predicted) });
      t.equal(r.json.accepted, 1);
    }
  };
  await label((p) => (p + 1) % 10, 8);
  await label((p) => (p + 1) % 10, 4);
  await monitor.webhook.idle();
  t.equal(rx.events.filter((e) => e.type === 'accuracy').length, 1);
  t.match(rx.events.find((e) => e.type === 'accuracy'), { model: 'digits', version: '2', accuracy: 0, task: 'classification' });
  await label((p) => p, 8);
  await label((p) => (p + 1) % 10, 8);
  await monitor.webhook.idle();
  t.equal(rx.events.filter((e) => e.type === 'accuracy').length, 2, 'fires again after recovering');
});

t.test('server: --error-threshold alerts when a regression model\'s live error rises above it', async (t) => {
  const rx = await receiver(t, 0);
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  // y = 2x + 1, one value per row: a regression.
  repo.addVersion('price', 1, affineModel(2, 1, 1));
  // As `umbra serve --webhook URL --error-threshold 1.5` resolves them.
  const settings = resolveServeSettings({ repo: repo.dir, logDb: 'off', webhook: rx.url, errorThreshold: '1.5' }, {});
  t.ok(settings.monitoring, 'monitoring on');
  if (!settings.monitoring) return;
  const s = await startTestServer(t, { repository: repo.dir, monitoring: { ...settings.monitoring, webhook: { ...settings.monitoring.webhook!, backoffMs: 5 } } });
  const rows = Array.from({ length: 50 }, (_, i) => i);
  const answer = await s.post('/v2/models/price/infer', { inputs: [{ name: 'x', shape: [50, 1], datatype: 'FP32', data: rows }] });
  t.equal(answer.status, 200, answer.text);
  // Every truth 2 away from its prediction: a mean absolute error of 2, above 1.5.
  const feedback = await s.post('/v2/models/price/feedback', { id: answer.json.id, truth: rows.map((x) => 2 * x + 1 + 2) });
  t.equal(feedback.json.accepted, 1, feedback.text);
  await s.server.monitor!.webhook!.idle();
  t.match(rx.events, [{ type: 'accuracy', model: 'price', version: '1', task: 'regression', window: 50, meanAbsoluteError: 2, errorThreshold: 1.5 }], 'one alert naming the error and the threshold');
});

/** A receiver on loopback that answers only when the test says: `answer(status)` answers every request held and every later one. */
async function heldReceiver(t: { teardown(fn: () => unknown): void }) {
  const events: Record<string, unknown>[] = [];
  const held: { body: string; res: import('node:http').ServerResponse }[] = [];
  let status: number | undefined;
  let arrived: () => void = () => undefined;
  const reply = (body: string, res: import('node:http').ServerResponse, code: number) => {
    if (code < 300) events.push(JSON.parse(body) as Record<string, unknown>);
    res.writeHead(code).end();
  };
  const server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (status === undefined) held.push({ body, res });
      else reply(body, res, status);
      arrived();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    events,
    requests: () => held.length + events.length,
    /** Resolves once `n` requests have arrived in all. */
    arrivals: (n: number) => new Promise<void>((resolve) => {
      const check = () => {
        if (held.length + events.length >= n) resolve();
      };
      arrived = check;
      check();
    }),
    answer(code: number) {
      status = code;
      for (const h of held.splice(0)) reply(h.body, h.res, code);
    },
  };
}

t.test('stop: events waiting on a backoff get their final attempt at once, within the grace', async (t) => {
  const rx = await heldReceiver(t);
  const results: string[] = [];
  const notices: string[] = [];
  // A backoff far longer than the test: the events are delivered at close only if close cuts it short.
  const hook = new Webhook({ url: rx.url, backoffMs: 600_000 }, { result: (r: string) => results.push(r) }, (m: string) => notices.push(m));
  for (let i = 0; i < 3; i++) hook.send({ type: 'drift', model: 'm', version: String(i), time: '' });
  await rx.arrivals(1);
  rx.answer(500);
  // The first event failed once and now waits on its backoff; two wait behind it.
  await until(() => results.length === 1);
  rx.answer(204);
  await hook.close(60_000);
  t.same(rx.events.map((e) => [e.version, e.attempt]), [['0', 2], ['1', 1], ['2', 1]], 'each delivered, the waiting one on its next attempt');
  t.same(results, ['retried', 'delivered', 'delivered', 'delivered'], 'counted delivered');
  t.same(notices, [], 'nothing lost, nothing said');
});

t.test('stop: what the grace cannot deliver is counted as dropped and said once', async (t) => {
  const rx = await heldReceiver(t);
  const results: string[] = [];
  const notices: string[] = [];
  const hook = new Webhook({ url: rx.url }, { result: (r: string) => results.push(r) }, (m: string) => notices.push(m));
  for (let i = 0; i < 3; i++) hook.send({ type: 'drift', model: 'm', version: String(i), time: '' });
  // The receiver holds the first event's request and never answers it.
  await rx.arrivals(1);
  await hook.close(50);
  t.same(results, ['dropped', 'dropped', 'dropped'], 'the one in flight and the two queued behind it');
  t.equal(rx.requests(), 1, 'the queued ones were not sent after the grace');
  t.same(notices, [`umbra webhook: 3 alert events not delivered to 127.0.0.1:${new URL(rx.url).port} within the 50 ms a stop gives the webhook; counted as dropped in umbra_webhook_deliveries_total`], 'one line says how many');
  hook.send({ type: 'drift', model: 'm', version: '3', time: '' });
  t.same(results.slice(3), ['dropped'], 'an event sent after the stop is counted as dropped too');
});

t.test('server stop: an alert the receiver has not taken is counted as dropped and logged', async (t) => {
  const rx = await heldReceiver(t);
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('price', 1, affineModel(2, 1, 1));
  const s = await startTestServer(t, { repository: repo.dir, monitoring: { webhook: { url: rx.url } } });
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const monitor = s.server.monitor!;
  monitor.recordRollout({ model: 'price', candidate: '1', baseline: '1', event: 'start', step: 0, state: 'running', verdict: 'pass', reason: 'test', at: new Date(0).toISOString() });
  await rx.arrivals(1);
  await s.server.stop();
  const dropped = (await monitor.metrics.webhookDeliveries.get()).values.find((v) => v.labels.result === 'dropped');
  t.equal(dropped?.value, 1, 'umbra_webhook_deliveries_total{result="dropped"} counts it');
  t.match(warnings, [/^umbra webhook: 1 alert event not delivered to 127\.0\.0\.1:\d+ within the 2000 ms a stop gives the webhook/], 'the stop says so');
});

/** Polls a condition the test cannot await directly (a counter the webhook bumps). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}
