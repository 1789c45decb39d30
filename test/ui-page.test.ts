// The ops page in a real browser (Debian's chromium driven by puppeteer-core) against a real
// server: two versions of the bundled digits model, a rollout running its shadow step, shadow
// traffic, feedback, and a feature drifted on purpose. The page must load without console errors,
// render the API's numbers, need the admin token for actions, promote from the page, stay live and
// keep its series bounded. With UMBRA_UI_SCREENSHOTS=1 it also writes docs/images/ui-*.png.
import t, { type Test } from 'tap';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { startTestServer, type TestServer } from './helpers/server.js';
import { affineModel, tempRepo, textScoreModel } from './helpers/repo.js';

const ROOT = new URL('..', import.meta.url).pathname;
// A browser, two servers and a minute of traffic for the pictures: more than the default 120 s.
t.setTimeout(400_000);
const CHROMIUM = process.env.UMBRA_CHROMIUM ?? '/usr/bin/chromium';
const TOKEN = 'ui-admin-token';
const ADMIN = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
/** The drifted column: every live row gets the value the training rows almost never have. */
const DRIFTED = 21;
/** Steps of the test server: short, so bounds and liveness show in seconds. */
const STEP_MS = 400;
const CAPACITY = 12;

const ROWS = readFileSync(join(ROOT, 'models/digits.csv'), 'utf8').trim().split(/\r?\n/).slice(1).map((line) => {
  const c = line.split(',');
  return { x: c.slice(0, 64).map(Number), y: Number(c[64]), split: c[65]! };
});
const TEST_ROWS = ROWS.filter((r) => r.split === 'test');

/** The page's number format (src/ui/static/app.js `fmt`). */
function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '\u2014';
  return String(Number(x.toFixed(digits)));
}
function pct(x: number | null | undefined): string {
  return x === null || x === undefined ? '\u2014' : `${fmt(x * 100, 1)}%`;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A copy of the digits model with a train-split profile in its own state directory, and a model that cannot load. */
function profiledRepo(): { dir: string; state: string } {
  const dir = mkdtempSync(join(tmpdir(), 'umbra-ui-'));
  const state = `${dir}.state`;
  cpSync(join(ROOT, 'models/repository/digits'), join(dir, 'digits'), { recursive: true });
  // A model that cannot load: the server page shows it failed, with the reason.
  mkdirSync(join(dir, 'broken', '1'), { recursive: true });
  writeFileSync(join(dir, 'broken', '1', 'model.onnx'), 'not an onnx file');
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/umbra.js'), 'profile', '--repo', dir, '--state-dir', state, '--model', 'digits', '--data', join(ROOT, 'models/digits.csv'), '--where', 'split=train'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`umbra profile failed: ${r.stderr}`);
  return { dir, state };
}

/** `n` single-row requests of test digits with the drifted column set; returns ids and labels for feedback. */
async function send(s: TestServer, n: number, from = 0): Promise<{ id: string; truth: number }[]> {
  const out: { id: string; truth: number }[] = [];
  for (let i = 0; i < n; i++) {
    const row = TEST_ROWS[(from + i) % TEST_ROWS.length]!;
    const pixels = row.x.slice();
    pixels[DRIFTED] = 16;
    const r = await s.post('/v2/models/digits/infer', { inputs: [{ name: 'pixels', shape: [1, 64], datatype: 'FP32', data: pixels }] });
    if (r.status !== 200) throw new Error(`infer answered ${r.status}: ${r.text}`);
    out.push({ id: r.json.id, truth: row.y });
  }
  return out;
}

/** 401 answers the test provokes on purpose (a wrong token): the browser logs each as an error. */
let expected401 = 0;

/**
 * Where the test itself unloads a model a page shows: a request the page already had on its way
 * for that model is answered 404, and the browser logs it; that is the race, not the page's error.
 */
let unloadedPrefix: string | undefined;

/** Console errors and uncaught exceptions of a page, collected for the whole test. */
function watchErrors(page: Page, errors: string[]): void {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // The browser logs every 4xx answer; the one a wrong token earns on purpose is expected.
    if (expected401 > 0 && /status of 401/.test(m.text())) {
      expected401--;
      return;
    }
    if (unloadedPrefix && /status of 404/.test(m.text()) && (m.location()?.url ?? '').includes(unloadedPrefix)) return;
    // A failed load names its resource in the message's location.
    errors.push(`console: ${m.text()}${m.location()?.url ? ` (${m.location().url})` : ''}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${(e as Error).message}`));
  page.on('requestfailed', (r) => {
    // The event stream is cut when the page navigates away: not an error of the page.
    if (!r.url().endsWith('/v2/ops/events')) errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`);
  });
}

/** Debian's chromium, headless, closed when the test ends. */
async function launch(t: Test): Promise<Browser> {
  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  t.teardown(() => browser.close());
  return browser;
}

async function open(browser: Browser, url: string, errors: string[], viewport = { width: 1280, height: 800 }, asked?: string[]): Promise<Page> {
  const page = await browser.newPage();
  await page.setViewport(viewport);
  watchErrors(page, errors);
  // The paths the page requests, from its first.
  if (asked) page.on('request', (r) => asked.push(new URL(r.url()).pathname));
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });
  return page;
}

// Read in one evaluation: the page re-renders on its own, so a handle taken first may be gone.
const text = (page: Page, selector: string) => page.evaluate((sel) => {
  const e = document.querySelector(sel);
  if (!e) throw new Error(`no element matches ${sel}`);
  return (e.textContent ?? '').trim();
}, selector);
const click = (page: Page, selector: string) => page.evaluate((sel) => (document.querySelector(sel) as HTMLElement).click(), selector);
const texts = (page: Page, selector: string) => page.evaluate((sel) => [...document.querySelectorAll(sel)].map((e) => (e.textContent ?? '').trim()), selector);

/** Waits for the next tick event the page receives; returns when it came. */
async function nextTick(page: Page): Promise<void> {
  const seen = await page.evaluate(() => document.body.dataset.tick ?? '');
  await page.waitForFunction((s) => (document.body.dataset.tick ?? '') !== s, { timeout: 10_000 }, seen);
}

t.test('the ops page in chromium', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`no browser at ${CHROMIUM}: apt-get install -y chromium (or set UMBRA_CHROMIUM)`);
    return;
  }
  const repo = profiledRepo();
  t.teardown(() => {
    rmSync(repo.dir, { recursive: true, force: true });
    rmSync(repo.state, { recursive: true, force: true });
  });
  const s = await startTestServer(t, {
    repository: repo.dir,
    stateDir: repo.state,
    workers: 1,
    ioThreads: Number(process.env.IOT ?? 2),
    adminToken: TOKEN,
    monitoring: { drift: { minSamples: 50, windowRows: 400 } },
    ui: { stepMs: STEP_MS, capacity: CAPACITY },
  });
  const browser = await launch(t);
  const errors: string[] = [];

  // Before any rollout: the model page says so, and asks the API for none (GET .../rollout would
  // answer 404, which the browser logs as an error at every refresh).
  {
    const asked: string[] = [];
    const page = await open(browser, `${s.url}/ui/models/digits`, errors, undefined, asked);
    await nextTick(page);
    await page.waitForFunction(() => document.querySelector('#rollout')?.textContent?.includes('No rollout'), { timeout: 10_000 });
    await page.waitForFunction(() => document.querySelector('#traffic [data-k="primary"]') !== null, { timeout: 10_000 });
    t.notOk(asked.includes('/v2/models/digits/rollout'), `the page did not ask for a rollout there is not (asked: ${[...new Set(asked)].join(', ')})`);
    t.same(errors, [], 'a model with no rollout: no console errors');
    await page.close();
  }

  // v1 serves; the rollout of v2 sits in its shadow step (a minimum it will not reach in this test).
  t.equal((await s.request('PUT', '/v2/models/digits/traffic', JSON.stringify({ primary: '1' }), ADMIN)).status, 200);
  const started = await s.post('/v2/models/digits/rollout', {
    candidate: '2',
    steps: [{ shadow: true, min_requests: 100_000, max_seconds: 3600 }, { weight: 0.5, min_requests: 50 }],
    analysis: { drift: false, min_agreement: 0.5, max_latency_ratio: 100, max_error_rate: 0.5 },
  }, ADMIN);
  t.equal(started.status, 201, started.text);
  const sent = await send(s, 240);
  const feedback = await s.post('/v2/models/digits/feedback', { feedback: sent.slice(0, 200) });
  t.equal(feedback.status, 200);
  await until(() => s.server.traffic.shadows.busy('digits') === 0 && s.server.traffic.shadows.agreementOf('digits', '2') !== undefined, 'shadow copies to finish');
  const drift = (await s.get('/v2/models/digits/drift')).json;
  // Features are listed in input column order.
  const drifted = drift.features[DRIFTED];
  t.equal(drifted?.verdict, 'drift', `the column ${DRIFTED} drifted (${JSON.stringify(drifted)})`);

  await t.test('server page: the API\'s numbers, live, bounded', async (t) => {
    const page = await open(browser, `${s.url}/ui`, errors);
    await nextTick(page);
    const api = (await s.get('/v2/ops/server')).json;
    t.equal(await text(page, '[data-k="workers"]'), String(api.workers), 'workers');
    t.equal(await text(page, '[data-k="io_threads"]'), String(api.io_threads), 'I/O threads');
    t.equal(await text(page, '[data-k="models"]'), String(api.models.length), 'models');
    t.equal(await text(page, '[data-k="version"]'), api.version, 'version');
    const digits = api.models.find((m: { name: string }) => m.name === 'digits');
    const row = '[data-model="digits"]';
    t.same(await page.$$eval(`${row} [data-version]`, (l) => l.map((e) => e.getAttribute('data-version'))), digits.versions.map((v: { version: string }) => v.version), 'versions');
    t.equal(await text(page, `${row} [data-k="primary"]`), `v${digits.primary}`, 'primary');
    t.equal(await text(page, `${row} [data-k="rollout"]`), digits.rollout, 'rollout state');
    t.equal(await text(page, `${row} [data-k="queue_depth"]`), String(digits.queue_depth), 'queue depth');
    const broken = api.models.find((m: { name: string }) => m.name === 'broken');
    t.equal(broken.state, 'UNAVAILABLE', 'the broken model failed to load');
    t.match(await text(page, '[data-model="broken"] .badge'), /failed/i, 'shown as failed');
    t.equal(await text(page, '[data-model="broken"] [data-k="reason"]'), broken.reason, 'with the API\'s reason');
    // Idle now: every tick says 0 requests/s, the page shows what the stream said.
    t.equal(await text(page, `${row} [data-k="requests_per_s"]`), '0', 'idle requests/s');

    // Live: traffic shows on the open page without a reload (the next tick, about a second; how
    // long it took is reported, not asserted: a busy host's scheduling is no property of the page).
    const sentAt = Date.now();
    await send(s, 20, 300);
    await page.waitForFunction((sel) => (document.querySelector(sel)?.textContent ?? '0') !== '0', { timeout: 15_000 }, `${row} [data-k="requests_per_s"]`);
    const liveMs = Date.now() - sentAt;
    t.pass(`traffic reached the open page ${liveMs} ms after the first request was sent`);

    const batches = (await s.get('/v2/ops/timeline')).json.models.digits.batch_sizes;
    t.ok(batches.executions.reduce((a: number, b: number) => a + b, 0) > 0, `batch sizes counted: ${JSON.stringify(batches)}`);

    // Bounded: after more than CAPACITY ticks the page holds CAPACITY points per series.
    for (let i = 0; i < CAPACITY + 2; i++) await nextTick(page);
    const sizes = await page.evaluate('[state.times.length, serverTimeline.models.digits.requests_per_s.length]') as number[];
    t.same(sizes, [CAPACITY, CAPACITY], 'page series stay at the server\'s capacity');
    const tl = (await s.get('/v2/ops/timeline')).json;
    t.equal(tl.times.length, CAPACITY, 'server series stay at capacity');
    await page.close();
  });

  await t.test('model page: rollout, shadow, drift, token, promote', async (t) => {
    const drifted = (await s.get('/v2/models/digits/drift')).json.features[DRIFTED];
    const page = await open(browser, `${s.url}/ui/models/digits`, errors);
    // No token yet: the shadow sample (production inputs) is not shown.
    t.match(await text(page, '#shadow'), /need the admin token/);
    const rollout = (await s.get('/v2/models/digits/rollout')).json;
    t.equal(rollout.state, 'running');
    t.match(await text(page, '[data-k="rollout-state"]'), rollout.state);
    t.match(await text(page, '[data-k="rollout-step"]'), `step ${rollout.step + 1} of ${rollout.steps.length}`);
    for (const rule of rollout.analysis.rules) {
      t.equal(await text(page, `[data-rule="${rule.rule}"] [data-k="samples"]`), String(rule.samples), `rule ${rule.rule}: samples`);
      t.equal(await text(page, `[data-rule="${rule.rule}"] [data-k="value"]`), fmt(rule.value, 4), `rule ${rule.rule}: value`);
    }
    t.equal(await text(page, '[data-k="primary"]'), 'v1');
    t.match(await texts(page, '[data-k="shadow"]'), [/shadow v2/], 'the candidate shadows the primary');
    // Drift: the worst feature first, scores as the API gives them, its histograms drawn.
    const report = (await s.get('/v2/models/digits/drift')).json;
    const rows = await page.evaluate(() => [...document.querySelectorAll('[data-feature]')].map((e) => ({ name: e.getAttribute('data-feature'), score: e.querySelector('[data-k="score"]')?.textContent, shift: e.querySelector('[data-k="shift"]')?.textContent })));
    t.equal(rows[0]!.name, drifted.name, 'the drifted feature is listed first');
    for (const r of rows) {
      const f = report.features.find((x: { name: string }) => x.name === r.name);
      t.equal(r.score, fmt(f.score, 4), `score of ${r.name}`);
      t.equal(r.shift, pct(f.shift), `shift of ${r.name}`);
    }
    // The first look lists the features, then asks for the worst one's histograms: wait for those.
    t.ok(await page.waitForSelector('#drift svg.hist rect.live', { timeout: 10_000 }), 'reference and live histograms of the chosen feature');

    // Promote without the token: asked for it; a wrong one is refused with the API's answer.
    await click(page, '[data-action="promote"]');
    await page.waitForSelector('#confirm[open] #token-input');
    await page.type('#token-input', 'wrong-token');
    expected401 = 1;
    await page.click('#confirm-ok');
    await page.waitForFunction(() => /refused/.test(document.getElementById('toast')?.textContent ?? ''));
    t.match(await text(page, '#toast'), /admin token/, 'the 401 answer is shown');
    t.equal(expected401, 0, 'the one 401 the browser logged was the wrong token\'s');
    t.equal((await s.get('/v2/models/digits/rollout')).json.state, 'running', 'a wrong token promotes nothing');
    // Cancelled confirmation: nothing happens.
    await click(page, '[data-action="promote"]');
    await page.waitForSelector('#confirm[open]');
    await page.click('#confirm button[value="cancel"]');
    t.equal((await s.get('/v2/models/digits/rollout')).json.state, 'running', 'cancel promotes nothing');
    // The right token: promoted, and the page shows it.
    await click(page, '[data-action="promote"]');
    await page.waitForSelector('#confirm[open] #token-input');
    await page.type('#token-input', TOKEN);
    await page.click('#confirm-ok');
    await page.waitForFunction(() => /done/.test(document.getElementById('toast')?.textContent ?? ''));
    t.equal((await s.get('/v2/models/digits/rollout')).json.state, 'promoted', 'the page promoted the rollout');
    t.equal((await s.get('/v2/models/digits/traffic')).json.primary, '2', 'v2 is the primary');
    await page.waitForFunction(() => /promoted/.test(document.querySelector('[data-k="rollout-state"]')?.textContent ?? ''));
    t.equal(await text(page, '[data-k="primary"]'), 'v2');
    // With the token in the tab: the shadow comparison and its disagreement sample.
    const shadow = (await s.get('/v2/models/digits/shadow', ADMIN)).json;
    t.equal(await text(page, '[data-shadow-version="2"] [data-k="agreement"]'), pct(shadow.versions['2'].agreement), 'agreement as the API says');
    t.equal(await page.evaluate(() => sessionStorage.getItem('umbra.adminToken')), TOKEN, 'the token is kept in the tab\'s session storage');
    await page.close();
  });

  await t.test('a model that does not serve: why, a reload, and the page follows it', async (t) => {
    const asked: string[] = [];
    const page = await open(browser, `${s.url}/ui/models/broken`, errors, undefined, asked);
    const broken = (await s.get('/v2/ops/server')).json.models.find((m: { name: string }) => m.name === 'broken');
    t.equal(broken.state, 'UNAVAILABLE');
    t.equal(await text(page, '[data-k="reason"]'), broken.reason, 'the loader\'s reason, as the API gives it');
    t.notOk(asked.some((p) => p.startsWith('/v2/models/broken/')), `nothing asked of a model that does not serve (asked: ${[...new Set(asked)].join(', ')})`);
    // The file fixed in the repository and the model loaded again from the page: the full page.
    cpSync(join(repo.dir, 'digits', '1', 'model.onnx'), join(repo.dir, 'broken', '1', 'model.onnx'));
    await click(page, '[data-action="reload-model"]');
    await page.waitForSelector('#confirm[open] #token-input');
    await page.type('#token-input', TOKEN);
    await page.click('#confirm-ok');
    // Read as it appears: the page rebuilds itself while the new version's series arrive.
    const primary = await page.waitForFunction(() => document.querySelector('#traffic [data-k="primary"]')?.textContent, { timeout: 20_000 });
    t.equal(await primary.jsonValue(), 'v1', 'loaded: the page turned into the model page');
    // Unloaded elsewhere: the page follows at the next tick.
    unloadedPrefix = '/v2/models/broken/';
    t.equal((await s.request('POST', '/v2/repository/models/broken/unload', '', ADMIN)).status, 200);
    const reason = await page.waitForFunction(() => document.querySelector('#model-state [data-k="reason"]')?.textContent, { timeout: 10_000 });
    t.equal(await reason.jsonValue(), 'unloaded', 'unloaded: the page says so');
    await page.close();
  });

  await t.test('a model of the repository that is not there', async (t) => {
    const asked: string[] = [];
    const page = await open(browser, `${s.url}/ui/models/nope`, errors, undefined, asked);
    t.match(await text(page, '[data-k="model-state"]'), /no model 'nope'/);
    t.notOk(asked.some((p) => p.startsWith('/v2/models/nope/')), 'nothing asked of it');
    await page.close();
  });

  t.same(errors, [], 'no console errors, page errors or failed requests');
});

t.test('the model page with monitoring off', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`no browser at ${CHROMIUM}: apt-get install -y chromium (or set UMBRA_CHROMIUM)`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'umbra-ui-off-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(ROOT, 'models/repository/digits'), join(dir, 'repo', 'digits'), { recursive: true });
  const s = await startTestServer(t, { repository: join(dir, 'repo'), stateDir: join(dir, 'state'), workers: 1, ioThreads: Number(process.env.IOT ?? 2), monitoring: false });
  t.equal((await s.get('/v2/ops/server')).json.monitoring, false, 'the server summary says monitoring is off');
  const browser = await launch(t);
  const errors: string[] = [];
  const asked: string[] = [];
  const page = await open(browser, `${s.url}/ui/models/digits`, errors, undefined, asked);
  await nextTick(page);
  t.match(await text(page, '#drift'), /Monitoring is off/, 'the drift panel says why it is empty');
  t.notOk(asked.includes('/v2/models/digits/drift'), 'no drift asked of a server without it');
  t.equal((await s.get('/v2/ops/server')).json.admin, 'loopback', 'no admin token: the summary says actions answer loopback clients');
  t.match(await text(page, '#actions h2'), /no admin token set: actions answer only to this host's own clients/, 'the page does not ask for a token the server has none of');
  t.ok(await page.$eval('#token-button', (b) => (b as HTMLButtonElement).hidden), 'and shows no token button');
  await page.close();
  t.same(errors, [], 'no console errors');
});

t.test('a text model\'s page: drift judged by its outputs, the input it cannot watch named', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`no browser at ${CHROMIUM}: apt-get install -y chromium (or set UMBRA_CHROMIUM)`);
    return;
  }
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('sentiment', 1, textScoreModel());
  const s = await startTestServer(t, { repository: repo.dir, workers: 1, ioThreads: Number(process.env.IOT ?? 2), monitoring: { drift: { minSamples: 50, windowRows: 100, captureRows: 100 } } });
  const words = ['good', 'bad', 'meh', 'other'];
  const statuses: number[] = [];
  for (let i = 0; i < 200; i++) {
    // Answers read on different I/O threads reach monitoring in the order their threads report
    // them, not quite the order sent: every reference row is in before the first live one is sent,
    // so the live window holds exactly the last 100.
    if (i === 100) await s.server.umbra.settleEvents();
    statuses.push((await s.post('/v2/models/sentiment/infer', { inputs: [{ name: 'text', shape: [1, 1], datatype: 'BYTES', data: [words[i % (i < 100 ? 2 : 4)]] }] })).status);
  }
  t.ok(statuses.every((status) => status === 200), 'every request answered 200');
  const report = (await s.get('/v2/models/sentiment/drift')).json;
  t.same([report.verdict, report.features, report.outputs.map((o: { name: string }) => o.name)], ['drift', [], ['score']], 'no input watched; the scores, which moved, are');
  const browser = await launch(t);
  const errors: string[] = [];
  const page = await open(browser, `${s.url}/ui/models/sentiment`, errors);
  // The features are listed first; the chosen one's histograms come with a second answer.
  await page.waitForSelector('#drift svg.hist rect.live', { timeout: 10_000 });
  t.same(await texts(page, '#drift [data-feature] td:first-child'), ['score'], 'the output is listed where the inputs would be');
  t.equal(await text(page, '#unwatched'), 'Not watched: input text (BYTES (text) tensors are not watched).');
  const labels = await page.evaluate(() => [...document.querySelectorAll('#drift svg.hist rect.live')].map((e) => e.textContent));
  t.same(labels, ['0.1: live 25%', '0.9: live 25%', 'other: live 50%'], 'the scores\' categories at float precision, the new texts in "other"');
  await page.close();
  t.same(errors, [], 'no console errors');
});

t.test('a regression model\'s page: live error from feedback, on an axis that says so', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`no browser at ${CHROMIUM}: apt-get install -y chromium (or set UMBRA_CHROMIUM)`);
    return;
  }
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  // y = 2x + 1, one value per row: a regression.
  repo.addVersion('price', 1, affineModel(2, 1, 1));
  const s = await startTestServer(t, { repository: repo.dir, workers: 1, ioThreads: Number(process.env.IOT ?? 2), ui: { stepMs: STEP_MS, capacity: CAPACITY } });
  const labels: { id: string; truth: number }[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await s.post('/v2/models/price/infer', { id: `p${i}`, inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [i] }] });
    t.equal(r.status, 200, r.text);
    // Every truth a quarter above the prediction: the mean absolute error is 0.25.
    labels.push({ id: `p${i}`, truth: 2 * i + 1 + 0.25 });
  }
  const feedback = await s.post('/v2/models/price/feedback', { feedback: labels });
  t.equal(feedback.json.accepted, 20, feedback.text);
  t.equal((await s.get('/v2/models/price/drift')).json.accuracy.meanAbsoluteError, 0.25, 'the API scores the labels as a regression');
  const browser = await launch(t);
  const errors: string[] = [];
  const page = await open(browser, `${s.url}/ui/models/price`, errors);
  await page.waitForFunction(() => document.getElementById('accuracy-title')?.textContent === 'Live error (feedback)', { timeout: 10_000 });
  await nextTick(page);
  const chart = await page.evaluate(() => {
    // The page's own chart objects (app.js keeps them in `state.charts`).
    const c = (globalThis as any).eval('state').charts.find((x: any) => x.container.id === 'chart-accuracy');
    const values = (c.plot.data[1] as (number | null)[]).filter((x) => x !== null);
    return { label: c.plot.axes[1].label, series: c.series.map((x: any) => x.label), last: values[values.length - 1] };
  });
  t.same(chart, { label: 'mean absolute error', series: ['v1'], last: 0.25 }, 'the panel draws v1\'s mean absolute error, on an axis labelled with it');
  await page.close();
  t.same(errors, [], 'no console errors');
});

// docs/ui.md's pictures: a server with the default one-second steps, a minute of uneven traffic
// (some of it malformed, so errors show), a rollout in its shadow step, feedback arriving.
t.test('screenshots for docs/ui.md', { skip: process.env.UMBRA_UI_SCREENSHOTS === '1' ? false : 'set UMBRA_UI_SCREENSHOTS=1 to write docs/images/ui-*.png' }, async (t) => {
  const repo = profiledRepo();
  t.teardown(() => {
    rmSync(repo.dir, { recursive: true, force: true });
    rmSync(repo.state, { recursive: true, force: true });
  });
  const s = await startTestServer(t, { repository: repo.dir, stateDir: repo.state, workers: 1, adminToken: TOKEN, monitoring: { drift: { minSamples: 50, windowRows: 400 } } });
  await s.request('PUT', '/v2/models/digits/traffic', JSON.stringify({ primary: '1' }), ADMIN);
  await s.post('/v2/models/digits/rollout', { candidate: '2', steps: [{ shadow: true, min_requests: 100_000, max_seconds: 3600 }, { weight: 0.1, min_requests: 200 }, { weight: 0.5, min_requests: 200 }, { weight: 1, min_requests: 200 }], analysis: { drift: false, min_agreement: 0.5 } }, ADMIN);
  const until = Date.now() + 45_000;
  let i = 0;
  while (Date.now() < until) {
    // Uneven: bursts and lulls, a malformed request now and then.
    const burst = 10 + Math.round(25 * (1 + Math.sin(i / 3)));
    const sent = await send(s, burst, i * 40);
    if (i % 4 === 0) await s.post('/v2/models/digits/infer', { inputs: [{ name: 'pixels', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] });
    await s.post('/v2/models/digits/feedback', { feedback: sent.filter((_, k) => k % 2 === 0) });
    await new Promise((r) => setTimeout(r, 250));
    i++;
  }
  const browser = await launch(t);
  const dir = join(ROOT, 'docs/images');
  mkdirSync(dir, { recursive: true });
  const errors: string[] = [];
  const shoot = async (path: string, name: string, fullPage: boolean) => {
    for (const [suffix, viewport] of [['', { width: 1280, height: 800 }], ['-narrow', { width: 390, height: 844 }]] as const) {
      const page = await open(browser, `${s.url}${path}`, errors, viewport);
      await page.evaluate((token) => sessionStorage.setItem('umbra.adminToken', token), TOKEN);
      await page.reload({ waitUntil: 'load' });
      await page.waitForSelector('body[data-ready="true"]');
      await nextTick(page);
      await page.screenshot({ path: join(dir, `${name}${suffix}.png`) as `${string}.png`, fullPage: fullPage || suffix !== '' });
      await page.close();
    }
  };
  await shoot('/ui', 'ui-server', false);
  await shoot('/ui/models/digits', 'ui-model', true);
  t.same(errors, [], 'no console errors');
});
