// A browser lets a page of any site open a WebSocket to loopback and read the answers (no
// same-origin rule, no CORS), so an upgrade that carries an Origin must be the server's own or one
// listed with --ws-origins; one without (a non-browser client) is accepted as before. Checked with
// the ws package sending Origin, on the unbound and bound stream paths, over several connections so
// that each of the I/O threads takes some; and once in real chromium from another site.
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { haveChromium, launch, otherSite } from './helpers/browser.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { affineModel, tempRepo } from './helpers/repo.js';
import { resolveServeSettings } from '../dist/cli/settings.js';

const OTHER = 'http://other.example';
/** Enough connections that each of a few listening threads gets some (the kernel spreads them). */
const CONNECTIONS = 8;

async function serve(t: Test, wsOrigins?: string[]): Promise<TestServer> {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(2, 1));
  return startTestServer(t, { repository: repo.dir, monitoring: false, ...(wsOrigins ? { wsOrigins } : {}) });
}

interface Upgrade { status: number; error?: string; answer?: unknown }

/** Opens a stream with `origin` (none if undefined); refused: its status and error; accepted: one inference's answer. */
function upgrade(s: TestServer, path: string, origin: string | undefined): Promise<Upgrade> {
  const url = `${s.url.replace(/^http/, 'ws')}${path}`;
  const ws = new WebSocket(url, origin === undefined ? {} : { origin });
  return new Promise((resolve, reject) => {
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, error: (JSON.parse(body) as { error: string }).error }));
    });
    ws.on('open', () => {
      ws.send(JSON.stringify({ id: 'r', model_name: 'affine', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }));
    });
    ws.on('message', (data) => {
      ws.close();
      resolve({ status: 101, answer: (JSON.parse(String(data)) as { outputs: { data: number[] }[] }).outputs[0]!.data });
    });
    ws.on('error', (err) => { if (ws.readyState !== WebSocket.CLOSED) reject(err); });
  });
}

async function many(s: TestServer, path: string, origin: string | undefined): Promise<number[]> {
  const all = await Promise.all(Array.from({ length: CONNECTIONS }, () => upgrade(s, path, origin)));
  return [...new Set(all.map((u) => u.status))];
}

t.test('by default a browser page of another site cannot open a stream; its own origin and non-browsers can', async (t) => {
  const s = await serve(t);
  const own = s.url;
  t.same(await many(s, '/v2/stream', OTHER), [403], 'another origin is refused on /v2/stream, on every connection');
  t.same(await many(s, '/v2/models/affine/stream', OTHER), [403], 'and on a bound stream');
  t.same(await many(s, '/v2/models/affine/stream', 'null'), [403], 'an opaque origin (a sandboxed page, a file) is refused');
  t.same(await many(s, '/v2/models/affine/stream', 'http://localhost:1'), [403], 'a page on another port of the same host is another origin');
  t.match((await upgrade(s, '/v2/stream', OTHER)).error, /Origin "http:\/\/other\.example" is another site.*--ws-origins/, 'the refusal says why and names the flag');
  t.same(await many(s, '/v2/models/affine/stream', own), [101], 'the server\'s own origin is accepted');
  t.same((await upgrade(s, '/v2/models/affine/stream', own)).answer, [3, 5, 7, 9], 'and answered');
  t.same(await many(s, '/v2/stream', undefined), [101], 'an upgrade with no Origin (not a browser) is accepted');
});

t.test('--ws-origins lets the listed origins in, and * any', async (t) => {
  const listed = await serve(t, [OTHER]);
  t.same(await many(listed, '/v2/models/affine/stream', OTHER), [101], 'a listed origin is accepted');
  t.same(await many(listed, '/v2/stream', 'http://third.example'), [403], 'one not listed is still refused');
  const any = await serve(t, ['*']);
  t.same(await many(any, '/v2/stream', 'http://third.example'), [101], '* accepts any origin');
});

t.test('--ws-origins, UMBRA_WS_ORIGINS and "wsOrigins" are read as a list of origins', async (t) => {
  t.same(resolveServeSettings({ repo: '/r', wsOrigins: 'https://App.example.com, http://localhost:3000' }, {}).wsOrigins, ['https://app.example.com', 'http://localhost:3000'], 'the flag, split and written as browsers send them');
  t.same(resolveServeSettings({ repo: '/r' }, { UMBRA_WS_ORIGINS: '*' }).wsOrigins, ['*'], 'the environment');
  t.throws(() => resolveServeSettings({ repo: '/r', wsOrigins: 'https://app.example.com/path' }, {}), { message: /--ws-origins: expected origins/ }, 'an origin with a path is refused');
});


t.test('in chromium, a page of another site cannot read a stream unless its origin is listed', async (t) => {
  if (!haveChromium(t)) return;
  const site = await otherSite(t);
  const closed = await serve(t);
  const open = await serve(t, [site]);
  const browser = await launch(t);
  const page = await browser.newPage();
  await page.goto(site, { waitUntil: 'load' });
  // Resolves with the first answer's outputs, or with how the socket ended.
  const read = (url: string) => page.evaluate((u) => new Promise<unknown>((resolve) => {
    const ws = new WebSocket(u);
    ws.onopen = () => ws.send(JSON.stringify({ id: 'r', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }));
    ws.onmessage = (e) => { resolve((JSON.parse(String(e.data)) as { outputs: { data: number[] }[] }).outputs[0]!.data); ws.close(); };
    ws.onclose = (e) => resolve(`closed ${e.code}`);
  }), url);
  t.equal(await read(`${closed.url.replace(/^http/, 'ws')}/v2/models/affine/stream`), 'closed 1006', 'another site\'s page is refused');
  t.same(await read(`${open.url.replace(/^http/, 'ws')}/v2/models/affine/stream`), [3, 5, 7, 9], 'with its origin listed, it reads the answer');
});
