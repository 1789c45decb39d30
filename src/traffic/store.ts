// Per-model traffic state: the explicit policy, the rollout record and the versions seen (for
// continuous delivery). With a state directory it lives in <stateDir>/<model>.traffic.json, written
// atomically (temporary file, then rename) so a crash leaves either the old or the new state, never
// half of one; without one (the library's default) it is kept in memory for the process's life.
// Never written into the model repository, which may be read-only.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { UmbraError } from '../errors.js';
import { parsePolicy, type TrafficPolicy } from './policy.js';
import { parseRecord, type RolloutRecord } from './rollout.js';

export interface TrafficState {
  policy: TrafficPolicy | null;
  rollout: RolloutRecord | null;
  known_versions: string[];
}

export class TrafficStore {
  private readonly memory = new Map<string, TrafficState>();

  /**
   * `stateDir` set: <stateDir>/<model>.traffic.json; else in memory. A model with no state there
   * yet is read from REPO/<model>/traffic.json, where earlier versions kept it, so an upgrade keeps
   * its policies and rollouts; `notice` says so once per model, and the next write goes to the new place.
   */
  constructor(
    private readonly repository: string,
    private readonly stateDir?: string,
    private readonly notice: (message: string) => void = (message) => process.emitWarning(message),
  ) {}

  /** The state file of a model, or undefined when state is kept in memory. */
  pathOf(model: string): string | undefined {
    return this.stateDir === undefined ? undefined : join(this.stateDir, `${model}.traffic.json`);
  }

  /** Where versions before the state directory wrote a model's traffic state. */
  legacyPathOf(model: string): string {
    return join(this.repository, model, 'traffic.json');
  }

  read(model: string): TrafficState | undefined {
    const remembered = this.memory.get(model);
    if (remembered) return remembered;
    const path = this.pathOf(model);
    if (path !== undefined && existsSync(path)) return readState(path);
    const legacy = this.legacyPathOf(model);
    if (!existsSync(legacy)) return undefined;
    const state = readState(legacy);
    this.notice(`umbra traffic: read the traffic state of model '${model}' from ${legacy}, where earlier versions kept it; `
      + `${path === undefined ? 'changes are kept in memory (set a state directory to persist them)' : `changes are saved to ${path} from now on`}; the repository file is left as it is`);
    // Remembered so the notice comes once and a reload sees the same state until the next write.
    this.memory.set(model, state);
    return state;
  }

  write(model: string, state: TrafficState): void {
    const path = this.pathOf(model);
    if (path === undefined) {
      this.memory.set(model, state);
      return;
    }
    mkdirSync(this.stateDir!, { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, `${JSON.stringify(state, null, 1)}\n`);
      renameSync(tmp, path);
    } catch (err) {
      // A write that failed (a full disk, a read-only directory) leaves the old state and no stray file.
      rmSync(tmp, { force: true });
      throw err;
    }
    this.memory.delete(model);
  }
}

function readState(path: string): TrafficState {
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
