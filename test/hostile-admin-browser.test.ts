// A server with no admin token answers admin routes to loopback clients, and a browser on the
// operator's machine is a loopback client whatever page it shows. In real chromium: a page of
// another site must not unload a model with a form-like POST (no preflight), and a page whose name
// resolves to 127.0.0.1 (DNS rebinding, simulated with chromium's host resolver rules) must not
// read the shadow log; the ops page itself, opened at 127.0.0.1, still acts.
import t from 'tap';
import { haveChromium, launch, otherSite } from './helpers/browser.js';
import { startTestServer } from './helpers/server.js';
import { affineModel, tempRepo } from './helpers/repo.js';

const REBOUND = 'rebound.example';



t.test('a server with no admin token in a browser: other sites cannot act, the ops page can', async (t) => {
  if (!haveChromium(t)) return;
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, monitoring: false });
  const port = s.server.port;
  const browser = await launch(t, [`--host-resolver-rules=MAP ${REBOUND} 127.0.0.1`]);

  // Another site: a no-cors POST is sent without a preflight, as a form would be; its answer is
  // opaque to the page, but the request reaches the server.
  const page = await browser.newPage();
  await page.goto(await otherSite(t), { waitUntil: 'load' });
  await page.evaluate((url) => fetch(url, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: '{}' }).then(() => undefined), `${s.url}/v2/repository/models/affine/unload`);
  t.equal((await s.get('/v2/models/affine/ready')).status, 200, 'a page of another site did not unload the model');

  // DNS rebinding: the attacker's name now points at 127.0.0.1, so the page is same-origin with the server.
  await page.goto(`http://${REBOUND}:${port}/v2/health/live`, { waitUntil: 'load' });
  const read = await page.evaluate(async () => {
    const r = await fetch('/v2/models/affine/shadow');
    const post = await fetch('/v2/repository/models/affine/unload', { method: 'POST' });
    return { shadow: r.status, unload: post.status };
  });
  t.equal(read.shadow, 401, 'a rebound name cannot read the shadow log');
  t.equal(read.unload, 401, 'nor unload');
  t.equal((await s.get('/v2/models/affine/ready')).status, 200, 'the model is still loaded');

  // The ops page at the server's own address acts as before.
  await page.goto(`${s.url}/ui`, { waitUntil: 'load' });
  const own = await page.evaluate(async () => (await fetch('/v2/repository/models/affine/unload', { method: 'POST' })).status);
  t.equal(own, 200, 'the server\'s own page unloads');
  t.equal((await s.get('/v2/models/affine/ready')).status, 404, 'and the model is gone');
});

t.test('another site cannot frame the ops page (and have the operator click its buttons)', async (t) => {
  if (!haveChromium(t)) return;
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, monitoring: false });
  const browser = await launch(t);
  const page = await browser.newPage();
  await page.goto(await otherSite(t), { waitUntil: 'load' });
  // The load event comes for a framed page and for one the browser refused to frame alike.
  await page.evaluate((url) => new Promise<void>((resolve) => {
    const frame = document.createElement('iframe');
    frame.addEventListener('load', () => resolve());
    frame.src = url;
    document.body.append(frame);
  }), `${s.url}/ui/models/affine`);
  const child = page.mainFrame().childFrames()[0];
  t.ok(child, 'the iframe is there');
  const rendered = await child!.evaluate(() => document.getElementById('token-button') !== null).catch(() => false);
  t.notOk(rendered, 'the ops page did not render inside another site\'s frame');
});
