import t from 'tap';
import { Worker } from 'node:worker_threads';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ADDON_CANDIDATES, native } from '../dist/native/addon.js';

t.test('addon loads and answers its queries', async (t) => {
  const binding = native();
  t.match(binding.version(), /^\d+\.\d+\.\d+$/);
  t.ok(binding.listBackends().includes('cpu'));
  const f = binding.cpuFeatures();
  t.type(f.avx2, 'boolean');
  t.type(f.avx512f, 'boolean');
});

t.test('addon loads inside a worker thread and in the main thread at once', async (t) => {
  const url = new URL('../dist/native/addon.js', import.meta.url).href;
  const code = `import('${url}').then(m => { const b = m.native(); require('node:worker_threads').parentPort.postMessage(b.listBackends()); });`;
  const results = await Promise.all([0, 1].map(() => new Promise<string[]>((resolve, reject) => {
    const w = new Worker(code, { eval: true });
    w.once('message', (m: string[]) => { resolve(m); void w.terminate(); });
    w.once('error', reject);
  })));
  for (const r of results) t.ok(r.includes('cpu'));
});

t.test('a worker thread ended while it loads the addon does not take the process down', async (t) => {
  // Node-API calls fail in a thread that is being terminated; the addon's init must drop the error
  // it cannot throw there, not let it out of C++ (std::terminate: "terminate called after throwing
  // an instance of 'Napi::Error'", exit 134, as a batch job whose reader thread was ended saw).
  // Each worker is ended as it starts loading, four at a time: a build without the fix aborted
  // within the first few rounds.
  const addon = process.env.UMBRA_NATIVE_PATH ?? ADDON_CANDIDATES.find((p) => existsSync(p))!;
  const script = `
    const { Worker } = require('node:worker_threads');
    const code = "require('node:worker_threads').parentPort.postMessage(0); require(" + JSON.stringify(process.argv[1]) + ");";
    const one = () => new Promise((resolve) => {
      const w = new Worker(code, { eval: true });
      w.once('message', () => { void w.terminate(); });
      w.once('error', () => undefined);
      w.once('exit', resolve);
    });
    (async () => { for (let round = 0; round < 16; round++) await Promise.all([one(), one(), one(), one()]); })();`;
  const run = spawnSync(process.execPath, ['-e', script, addon], { encoding: 'utf8', timeout: 120_000 });
  t.same({ status: run.status, signal: run.signal }, { status: 0, signal: null }, run.stderr);
});

t.test('a missing addon fails with a message that says how to fix it', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const url = new URL('../dist/native/addon.js', import.meta.url).href;
  let message = '';
  try {
    execFileSync(process.execPath, ['--input-type=module', '-e', `import('${url}').then(m => m.native())`], {
      env: { ...process.env, UMBRA_NATIVE_PATH: '/nonexistent/umbra.node' }, stdio: 'pipe',
    });
  } catch (err) {
    message = String((err as { stderr: Buffer }).stderr);
  }
  t.match(message, /npm run build:native/);
});
