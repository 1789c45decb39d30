// The data behind the ops page, without a browser: the time series (rates, percentiles, shadow
// copies kept out of a model's totals, bounded rings, late series lined up), the server summary,
// the tick event stream, the drift histograms of one feature, the page's files, and `--ui off`.
import t from 'tap';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Timeline, BATCH_BOUNDS } from '../dist/ui/index.js';
import { resolveServeSettings } from '../dist/cli/settings.js';
import { startTestServer } from './helpers/server.js';

const ROOT = new URL('..', import.meta.url).pathname;

function event(model: string, version: string, opts: { ms?: number; role?: string; outcome?: string; rows?: number; batchRows?: number } = {}) {
  const timing = opts.batchRows ? { queueMs: 0, computeMs: 0, rows: opts.rows ?? 1, batchRows: opts.batchRows } : undefined;
  return { model, version, role: opts.role ?? 'primary', outcome: opts.outcome ?? 'success', context: {}, durationMs: opts.ms ?? 1, ...(timing ? { timing } : {}) } as Parameters<Timeline['observe']>[0];
}

function sources(extra: Partial<ConstructorParameters<typeof Timeline>[0]> = {}): ConstructorParameters<typeof Timeline>[0] {
  return { queueDepth: () => 0, shadowAgreement: () => undefined, accuracy: () => undefined, meanAbsoluteError: () => undefined, loaded: () => [], ...extra };
}

t.test('a step: rates per second, percentiles within a bin, errors apart, shadows not in the model total', async (t) => {
  const tl = new Timeline(sources({ shadowAgreement: (_m, v) => (v === '2' ? 0.75 : undefined), accuracy: () => 0.9, queueDepth: (_m, v) => (v === '1' ? 3 : 0) }), { stepMs: 500, capacity: 4 });
  // 100 answers of v1: 1..100 ms; 2 errors; 50 shadow copies on v2.
  for (let i = 1; i <= 100; i++) tl.observe(event('m', '1', { ms: i, batchRows: 4, rows: 1 }));
  tl.observe(event('m', '1', { outcome: 'invalid' }));
  tl.observe(event('m', '1', { outcome: 'internal' }));
  for (let i = 0; i < 50; i++) tl.observe(event('m', '2', { role: 'shadow', ms: 2 }));
  const point = tl.sample(1_000);
  const v1 = point.models.m!.versions['1']!;
  t.equal(v1.requests_per_s, 204, '102 requests in half a second');
  t.equal(v1.errors_per_s, 4);
  // Bins are 25% wide: the geometric middle of the bin is within 12% of the exact percentile.
  t.ok(Math.abs(v1.p50_ms! - 50) / 50 < 0.12, `p50 ${v1.p50_ms}`);
  t.ok(Math.abs(v1.p99_ms! - 99) / 99 < 0.12, `p99 ${v1.p99_ms}`);
  t.equal(v1.queue_depth, 3);
  t.equal(v1.accuracy, 0.9);
  t.equal(v1.mean_absolute_error, null, 'a classifier has no error series');
  t.equal(v1.shadow_agreement, null);
  t.equal(point.models.m!.versions['2']!.shadow_agreement, 0.75);
  t.equal(point.models.m!.versions['2']!.requests_per_s, 100, 'the shadow version carries its copies');
  t.equal(point.models.m!.requests_per_s, 204, 'the model total counts client requests only');
  t.equal(point.models.m!.errors_per_s, 4);
  // 100 requests each a quarter of a 4-row execution: 25 executions of size 3-4.
  const batches = (tl.view('m').models as any).m.batch_sizes;
  t.same(batches.le, [...BATCH_BOUNDS, null]);
  t.equal(batches.executions[2], 25);
  t.equal(batches.executions.reduce((a: number, b: number) => a + b, 0), 25);
  // The next step is empty: zero rates, no latency.
  const idle = tl.sample(1_500).models.m!.versions['1']!;
  t.equal(idle.requests_per_s, 0);
  t.equal(idle.p50_ms, null);
});

t.test('a regression version: its live mean absolute error is a series beside accuracy', async (t) => {
  const tl = new Timeline(sources({ meanAbsoluteError: () => 0.25, loaded: () => [{ model: 'r', versions: ['1'] }] }), { stepMs: 1000, capacity: 4 });
  const v1 = tl.sample(1_000).models.r!.versions['1']!;
  t.same([v1.mean_absolute_error, v1.accuracy], [0.25, null], 'the error in the point, no accuracy');
  t.same(((tl.view('r').models as any).r.versions['1'].mean_absolute_error), [0.25], 'and in the view');
});

t.test('rings stay at their capacity; a series born late is padded to the shared time axis', async (t) => {
  const tl = new Timeline(sources({ loaded: () => [{ model: 'a', versions: ['1'] }] }), { stepMs: 1000, capacity: 5 });
  for (let s = 0; s < 3; s++) tl.sample(s * 1000);
  tl.observe(event('b', '7'));
  tl.sample(3000);
  let view = tl.view() as any;
  t.same(view.times, [0, 1000, 2000, 3000]);
  t.same(view.models.b.versions['7'].requests_per_s, [null, null, null, 1], 'padded with nulls before it was born');
  t.same(view.models.a.versions['1'].requests_per_s, [0, 0, 0, 0], 'loaded versions get points without traffic');
  for (let s = 4; s < 40; s++) {
    tl.observe(event('a', '1'));
    tl.sample(s * 1000);
  }
  view = tl.view() as any;
  t.equal(view.times.length, 5);
  t.same(view.times, [35_000, 36_000, 37_000, 38_000, 39_000], 'the oldest points were overwritten');
  for (const series of Object.values(view.models.a.versions) as any[]) for (const values of Object.values(series) as any[]) t.equal(values.length, 5);
  t.notOk('b' in view.models, 'a version never loaded leaves once its one request is out of the window');
  t.same(tl.latest('a'), { requests_per_s: 1, errors_per_s: 0 });
  t.same(tl.latest('ghost'), { requests_per_s: null, errors_per_s: null });
});

t.test('versions and models no longer loaded leave once their last point is out of the window', async (t) => {
  // A server that serves a new model name or version now and then (loads with a config and files,
  // a repository whose versions advance) holds series only for what the window can still show.
  let loaded = [{ model: 'keep', versions: ['1'] }];
  const tl = new Timeline(sources({ loaded: () => loaded }), { stepMs: 1000, capacity: 3 });
  let step = 0;
  const models = () => Object.keys((tl.view() as any).models).sort();
  for (let round = 0; round < 50; round++) {
    loaded = [{ model: 'keep', versions: [String(round + 2)] }, { model: `gone-${round}`, versions: ['1'] }];
    tl.observe(event(`gone-${round}`, '1'));
    tl.observe(event('keep', String(round + 2)));
    tl.sample(step++ * 1000);
    loaded = [{ model: 'keep', versions: ['1'] }];
    tl.sample(step++ * 1000);
  }
  t.same(models(), ['gone-49', 'keep'], 'models whose last point is still in the window, no others');
  t.same(Object.keys((tl.view('keep') as any).models.keep.versions).sort(), ['1', '51'], 'retired versions leave too');
  for (let i = 0; i < 3; i++) tl.sample(step++ * 1000);
  t.same(models(), ['keep'], 'back to the loaded model alone');
  t.same(Object.keys((tl.view('keep') as any).models.keep.versions), ['1']);
  t.same(tl.latest('gone-0'), { requests_per_s: null, errors_per_s: null });
  // A version that comes back starts afresh, padded to the shared time axis.
  tl.observe(event('gone-0', '1'));
  tl.sample(step++ * 1000);
  t.same((tl.view('gone-0') as any).models['gone-0'].versions['1'].requests_per_s, [null, null, 1]);
});

/** A copy of the bundled digits model with a reference profile. */
function digitsRepo(t: Tap.Test): { repository: string; stateDir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-ui-api-'));
  const state = `${dir}.state`;
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
  });
  cpSync(join(ROOT, 'models/repository/digits'), join(dir, 'digits'), { recursive: true });
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'profile', '--repo', dir, '--state-dir', state, '--model', 'digits', '--data', join(ROOT, 'models/digits.csv'), '--where', 'split=train'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return { repository: dir, stateDir: state };
}

const row = (k: number) => Array.from({ length: 64 }, (_, i) => (i * 7 + k) % 17);

t.test('server: summary, timelines, the tick stream, drift histograms, the page files', async (t) => {
  const repo = digitsRepo(t);
  // A step longer than the test: the test closes steps itself (ops.step), so nothing races the timer.
  const s = await startTestServer(t, { ...repo, workers: 1, ui: { stepMs: 100_000, maxStreams: 1 } });
  const ops = s.server.ops!;
  for (let k = 0; k < 30; k++) t.equal((await s.post('/v2/models/digits/infer', { inputs: [{ name: 'pixels', shape: [1, 64], datatype: 'FP32', data: row(k) }] })).status, 200);
  t.equal((await s.post('/v2/models/digits/infer', { inputs: [{ name: 'pixels', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] })).status, 400);
  // Answers given on I/O threads reach the core's hooks in their own messages.
  await s.server.umbra.settleEvents();

  const aborter = new AbortController();
  t.teardown(() => aborter.abort());
  const res = await fetch(`${s.url}/v2/ops/events`, { signal: aborter.signal });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'text/event-stream');
  const busy = await s.get('/v2/ops/events');
  t.equal(busy.status, 503, 'one stream more than allowed');
  t.match(busy.json.error, /event streams are open/);
  const reader = res.body!.getReader();
  let text = '';
  const until = async (what: string, cond: () => boolean) => {
    while (!cond()) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended before ${what}`);
      text += Buffer.from(value).toString('utf8');
    }
  };
  await until('the greeting', () => text.includes('retry: 2000'));
  // The core registers the stream's writer as it answers; with I/O threads the greeting may come first.
  const deadline = Date.now() + 10_000;
  while (ops.streams === 0) {
    if (Date.now() > deadline) throw new Error('the event stream never opened on the core');
    await new Promise((r) => setTimeout(r, 5));
  }
  await ops.step(1_000_000);
  await until('a tick', () => /event: tick\ndata: .*\n\n/.test(text));
  const tick = JSON.parse(/event: tick\ndata: (.*)\n\n/.exec(text)![1]!);
  t.equal(tick.point.time, 1_000_000);
  const point = tick.point.models.digits;
  t.equal(point.requests_per_s, 0.31, 'every request of the 100 s step, per second');
  t.equal(point.errors_per_s, 0.01);
  t.equal(point.versions['2'].requests_per_s, 0.31, 'the newest version served them');
  t.equal(point.versions['1'].requests_per_s, 0);

  const server = (await s.get('/v2/ops/server')).json;
  t.match(server, { name: 'umbra', ready: true, workers: 1, io_threads: s.server.ioThreads, step_seconds: 100 });
  t.same(tick.models, server.models, 'the tick carries the same summary as GET /v2/ops/server');
  const digits = server.models.find((m: { name: string }) => m.name === 'digits');
  t.match(digits, { name: 'digits', state: 'READY', primary: '2', canary: null, rollout: null, queue_depth: 0 });
  t.same(digits.versions.map((v: { version: string }) => v.version), ['1', '2']);
  t.equal(digits.requests_per_s, point.requests_per_s);

  const tl = (await s.get('/v2/models/digits/timeline')).json;
  t.same(tl.times, [1_000_000]);
  t.equal(tl.capacity, 900);
  t.same(Object.keys(tl.models), ['digits']);
  t.same(tl.models.digits.versions['2'].requests_per_s, [point.versions['2'].requests_per_s]);
  t.equal((await s.get('/v2/models/ghost/timeline')).status, 404);
  t.same(Object.keys((await s.get('/v2/ops/timeline')).json.models).sort(), ['digits']);

  const hist = (await s.get('/v2/models/digits/drift?feature=f3')).json.histogram;
  t.equal(hist.name, 'f3');
  t.equal(hist.reference.length, hist.live.length);
  t.equal(hist.live.reduce((a: number, b: number) => a + b, 0), 30, 'the 30 answered rows');
  t.ok((hist.edges ?? hist.values).length > 0);
  const badFeature = await s.get('/v2/models/digits/drift?feature=nope');
  t.equal(badFeature.status, 400);
  t.match(badFeature.json.error, /unknown feature 'nope'.*known: f0, f1/);

  const page = await s.get('/ui');
  t.equal(page.status, 200);
  t.match(page.headers.get('content-type'), /text\/html/);
  t.match(page.text, /\/ui\/assets\/uplot\.js/);
  t.equal((await s.get('/ui/models/digits')).text, page.text, 'one page for both views');
  // The page acts for the operator: no other site may frame it, and it runs only its own script.
  const csp = page.headers.get('content-security-policy') ?? '';
  t.match(csp, /frame-ancestors 'none'/, 'no framing by other sites');
  t.match(csp, /script-src 'self'(;|$)/, 'its own script only');
  t.equal(page.headers.get('x-frame-options'), 'DENY');
  t.equal(page.headers.get('x-content-type-options'), 'nosniff');
  t.equal((await s.get('/ui/assets/app.js')).headers.get('x-content-type-options'), 'nosniff');
  const uplot = await s.get('/ui/assets/uplot.js');
  t.equal(uplot.status, 200);
  t.match(uplot.headers.get('content-type'), /javascript/);
  t.match(uplot.text, /uPlot/, 'uPlot served from the package, no CDN');
  t.equal((await s.get('/ui/assets/../../package.json')).status, 404);
  t.equal((await s.get('/ui/assets/nope.js')).status, 404);
});

t.test('--ui off: no page, no series, no stream', async (t) => {
  const repo = digitsRepo(t);
  const s = await startTestServer(t, { ...repo, workers: 1, ui: false });
  t.equal(s.server.ops, undefined);
  for (const path of ['/ui', '/ui/assets/app.js', '/v2/ops/server', '/v2/ops/timeline', '/v2/ops/events', '/v2/models/digits/timeline']) t.equal((await s.get(path)).status, 404, path);
  const page = await startTestServer(t, { ...repo, workers: 1, ui: { page: false } });
  t.equal((await page.get('/ui')).status, 404, 'page: false keeps the series but not the page');
  t.equal((await page.get('/v2/ops/server')).status, 200);
});

t.test('the --ui flag, its environment variable and config key', async (t) => {
  t.equal(resolveServeSettings({ repo: 'r' }, {}).ui, undefined, 'on by default');
  t.equal(resolveServeSettings({ repo: 'r', ui: 'off' }, {}).ui, false);
  t.equal(resolveServeSettings({ repo: 'r', ui: 'on' }, {}).ui, undefined);
  t.equal(resolveServeSettings({ repo: 'r' }, { UMBRA_UI: 'off' }).ui, false);
  const dir = mkdtempSync(join(tmpdir(), 'umbra-ui-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'umbra.json'), JSON.stringify({ repo: 'r', ui: 'off' }));
  t.equal(resolveServeSettings({ config: join(dir, 'umbra.json') }, {}).ui, false);
  t.throws(() => resolveServeSettings({ repo: 'r', ui: 'maybe' }, {}), /--ui: expected on or off but received "maybe"/);
});
