// The ONE module that loads the native addon. Everything else imports `native` from here.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Raw surface of build/Release/umbra.node. Kernel entry points are added as they are built. */
export interface NativeBinding {
  version(): string;
  cpuFeatures(): { avx2: boolean; fma: boolean; avx512f: boolean };
  listBackends(): string[];
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const ADDON_CANDIDATES = [
  join(packageRoot, 'build', 'Release', 'umbra.node'),
  join(packageRoot, 'build', 'Debug', 'umbra.node'),
];

function loadBinding(): NativeBinding {
  const require = createRequire(import.meta.url);
  const override = process.env.UMBRA_NATIVE_PATH;
  const candidates = override ? [override] : ADDON_CANDIDATES;
  const errors: string[] = [];
  for (const path of candidates) {
    if (!existsSync(path)) {
      errors.push(`${path}: not found`);
      continue;
    }
    try {
      return require(path) as NativeBinding;
    } catch (err) {
      errors.push(`${path}: ${(err as Error).message}`);
    }
  }
  throw new Error(
    `Umbra's native addon could not be loaded (${errors.join('; ')}). ` +
      'Build it with `npm run build:native` (needs cmake and a C++17 compiler), ' +
      'or point UMBRA_NATIVE_PATH at a built umbra.node.',
  );
}

let cached: NativeBinding | undefined;

/** Loads the addon once per thread; throws one message that says how to fix a failed load. */
export function native(): NativeBinding {
  cached ??= loadBinding();
  return cached;
}
