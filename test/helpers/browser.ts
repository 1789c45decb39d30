// Real chromium for tests that act as a browser on the operator's machine: launching it, and
// another site on loopback for it to open (a page whose origin is not the server's).
import type { Test } from 'tap';
import { createServer, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import puppeteer, { type Browser } from 'puppeteer-core';

export const CHROMIUM = process.env.UMBRA_CHROMIUM ?? '/usr/bin/chromium';

/** False (and a failed assertion naming the fix) where chromium is missing: CI installs it. */
export function haveChromium(t: Test): boolean {
  if (existsSync(CHROMIUM)) return true;
  t.fail(`no browser at ${CHROMIUM}: apt-get install -y chromium (or set UMBRA_CHROMIUM)`);
  return false;
}

/** Headless chromium, closed when the test ends. */
export async function launch(t: Test, args: string[] = []): Promise<Browser> {
  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', ...args] });
  t.teardown(() => browser.close());
  return browser;
}

/** Another site on loopback: one empty page, its own origin. */
export async function otherSite(t: Test): Promise<string> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>other site</title>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return `http://localhost:${address.port}`;
}
