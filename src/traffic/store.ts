// Per-model traffic state on disk: the explicit policy, the rollout record and the versions seen
// (for continuous delivery). Written atomically (temporary file, then rename) so a crash leaves
// either the old or the new state, never half of one.
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UmbraError } from '../errors.js';
import { parsePolicy, type TrafficPolicy } from './policy.js';
import { parseRecord, type RolloutRecord } from './rollout.js';

export interface TrafficState {
  policy: TrafficPolicy | null;
  rollout: RolloutRecord | null;
  known_versions: string[];
}

export class TrafficStore {
  /** `stateDir` set: <stateDir>/<model>.traffic.json; else REPO/<model>/traffic.json. */
  constructor(private readonly repository: string, private readonly stateDir?: string) {}

  pathOf(model: string): string {
    return this.stateDir ? join(this.stateDir, `${model}.traffic.json`) : join(this.repository, model, 'traffic.json');
  }

  read(model: string): TrafficState | undefined {
    const path = this.pathOf(model);
    if (!existsSync(path)) return undefined;
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new UmbraError('INVALID_ARGUMENT', `${path}: unreadable traffic state: ${(err as Error).message}`);
    }
    const obj = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    return {
      policy: obj.policy ? parsePolicy(obj.policy, `${path} policy`) : null,
      rollout: obj.rollout ? parseRecord(obj.rollout, `${path} rollout`) : null,
      known_versions: Array.isArray(obj.known_versions) ? obj.known_versions.filter((v): v is string => typeof v === 'string') : [],
    };
  }

  write(model: string, state: TrafficState): void {
    const path = this.pathOf(model);
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(state, null, 1)}\n`);
    renameSync(tmp, path);
  }
}
