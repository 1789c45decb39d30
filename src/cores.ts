// How many cores this process may keep busy: the CPUs it may run on (os.availableParallelism),
// capped by a CPU quota when its cgroup has one. In a container with a CPU limit (a Kubernetes
// pod's limits.cpu, docker --cpus) Node still reports the node's cores, and sizing threads from
// those starts sixteen workers in a two-CPU pod. Every default that follows the host's cores
// (model workers, I/O threads, whether the core's thread reads) asks here instead.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export type ReadText = (path: string) => string | undefined;

const readText: ReadText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * Whole cores of the tightest CPU quota on this process's cgroup and its ancestors, or undefined
 * when none is set: `quota / period` rounded down, at least 1 (a 1.5-CPU limit keeps one core
 * busy, not two). cgroup v2 (`cpu.max`) and v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`).
 */
export function quotaCores(read: ReadText = readText): number | undefined {
  const cgroups = read('/proc/self/cgroup');
  if (cgroups === undefined) return undefined;
  let tightest: number | undefined;
  const consider = (quota: number, period: number): void => {
    if (!(quota > 0) || !(period > 0)) return;
    const cores = Math.max(1, Math.floor(quota / period));
    tightest = tightest === undefined ? cores : Math.min(tightest, cores);
  };
  for (const line of cgroups.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    const controllers = m[1]!.split(',');
    const own = m[2]!;
    if (m[1] === '') {
      // v2: "max 100000" (no limit) or "QUOTA PERIOD", at every level up to the mount's root.
      for (const dir of ancestors(own)) {
        const max = read(`/sys/fs/cgroup${dir}/cpu.max`)?.trim().split(/\s+/);
        if (max && max[0] !== 'max') consider(Number(max[0]), Number(max[1]));
      }
    } else if (controllers.includes('cpu')) {
      // v1: the cpu controller's mount is named after the controllers it holds.
      for (const mount of ['cpu', 'cpu,cpuacct', 'cpuacct,cpu']) {
        for (const dir of ancestors(own)) {
          const quota = read(`/sys/fs/cgroup/${mount}${dir}/cpu.cfs_quota_us`);
          const period = read(`/sys/fs/cgroup/${mount}${dir}/cpu.cfs_period_us`);
          if (quota !== undefined && period !== undefined) consider(Number(quota.trim()), Number(period.trim()));
        }
      }
    }
  }
  return tightest;
}

/** "/a/b" -> ["/a/b", "/a", ""]: a cgroup's folder and each above it ("" is the mount's root). */
function ancestors(path: string): string[] {
  const parts = path.split('/').filter(Boolean);
  const out: string[] = [];
  for (let i = parts.length; i >= 0; i--) out.push(i === 0 ? '' : `/${parts.slice(0, i).join('/')}`);
  return out;
}

let cached: number | undefined;

/** The cores this process may keep busy (see the top of this file); read once. */
export function usableCores(): number {
  if (cached === undefined) {
    const quota = quotaCores();
    cached = Math.max(1, quota === undefined ? availableParallelism() : Math.min(availableParallelism(), quota));
  }
  return cached;
}
