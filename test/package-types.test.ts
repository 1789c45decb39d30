// The package's declarations as a strict consumer compiles them: `"types": ["node"]` (no other
// ambient types) and `skipLibCheck: false` (every .d.ts the program reaches is checked, the
// dependencies' included). onnx-proto's declarations, reached through Umbra.manager's config
// types, named `Long` with nothing declaring it: about 25 errors before the consumer's own code.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers/cli-process.js';

t.test('a consumer with "types": ["node"] and skipLibCheck false compiles against umbra and umbra/client', async (t) => {
  const app = mkdtempSync(join(tmpdir(), 'umbra-types-'));
  t.teardown(() => rmSync(app, { recursive: true, force: true }));
  // The package as installed: node_modules/umbra is this checkout, its dependencies beside it.
  mkdirSync(join(app, 'node_modules', '@types'), { recursive: true });
  symlinkSync(ROOT, join(app, 'node_modules', 'umbra'), 'dir');
  symlinkSync(join(ROOT, 'node_modules', '@types', 'node'), join(app, 'node_modules', '@types', 'node'), 'dir');
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'], skipLibCheck: false },
    files: ['app.ts'],
  }));
  writeFileSync(join(app, 'app.ts'), [
    "import { startServer, Umbra, UmbraError, type InferResponse } from 'umbra';",
    "import { UmbraHttpClient } from 'umbra/client';",
    "const umbra = await Umbra.open({ repository: 'models' });",
    "const answer: InferResponse = await umbra.predict('digits', { pixels: { data: new Float32Array(64), shape: [1, 64] } });",
    "const versions: string[] = umbra.manager.versionsOf('digits').map((mv) => mv.version);",
    // The request object the README documents for infer(): parameters left out, data as numbers.
    "const inferred: InferResponse = (await umbra.infer('digits', undefined, { inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: new Array<number>(64).fill(0) }] })).response;",
    'await umbra.close();',
    "const server = await startServer({ repository: 'models', port: 0 });",
    'const client = new UmbraHttpClient(server.url);',
    'await server.stop();',
    'export { answer, inferred, versions, client, UmbraError };',
    '',
  ].join('\n'));
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(app, 'tsconfig.json')], { cwd: app, encoding: 'utf8', timeout: 120_000 });
  t.equal(`${tsc.stdout}${tsc.stderr}`, '', 'no errors, in the package\'s declarations or its dependencies\'');
});
