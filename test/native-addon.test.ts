import t from 'tap';
import { Worker } from 'node:worker_threads';
import { native } from '../dist/native/addon.js';

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
