// The cores Umbra sizes its defaults from: the CPUs it may run on, capped by its cgroup's CPU quota
// (a container's CPU limit), read from cgroup v2 or v1 files as the kernel writes them.
import t from 'tap';
import { availableParallelism } from 'node:os';
import { quotaCores, usableCores, type ReadText } from '../dist/cores.js';

const files = (map: Record<string, string>): ReadText => (path) => map[path];

t.test('cgroup v2: cpu.max of the process\'s cgroup and every one above it', async (t) => {
  t.equal(quotaCores(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), undefined, 'max: no limit');
  t.equal(quotaCores(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '200000 100000\n' })), 2, 'two CPUs');
  t.equal(quotaCores(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '150000 100000\n' })), 1, 'a CPU and a half keeps one core busy');
  t.equal(quotaCores(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '50000 100000\n' })), 1, 'half a CPU: still one');
  const nested = { '/proc/self/cgroup': '0::/kubepods/pod1/c1\n', '/sys/fs/cgroup/kubepods/pod1/c1/cpu.max': 'max 100000', '/sys/fs/cgroup/kubepods/pod1/cpu.max': '400000 100000', '/sys/fs/cgroup/kubepods/cpu.max': '800000 100000' };
  t.equal(quotaCores(files(nested)), 4, 'the tightest limit on the way up (the pod\'s)');
});

t.test('cgroup v1: cfs quota and period under the cpu controller\'s mount', async (t) => {
  const v1 = (quota: string, mount = 'cpu,cpuacct', line = '4:cpu,cpuacct:/docker/abc') => files({
    '/proc/self/cgroup': `11:memory:/docker/abc\n${line}\n`,
    [`/sys/fs/cgroup/${mount}/docker/abc/cpu.cfs_quota_us`]: `${quota}\n`,
    [`/sys/fs/cgroup/${mount}/docker/abc/cpu.cfs_period_us`]: '100000\n',
  });
  t.equal(quotaCores(v1('-1')), undefined, '-1: no limit');
  t.equal(quotaCores(v1('300000')), 3, 'three CPUs');
  t.equal(quotaCores(v1('200000', 'cpu', '1:cpu:/docker/abc')), 2, 'a mount of the cpu controller alone');
});

t.test('no cgroup files, or files that say nothing usable: no quota', async (t) => {
  t.equal(quotaCores(files({})), undefined);
  t.equal(quotaCores(files({ '/proc/self/cgroup': 'garbage\n', '/sys/fs/cgroup/cpu.max': '200000 100000' })), undefined, 'no cgroup line');
  t.equal(quotaCores(files({ '/proc/self/cgroup': '0::/', '/sys/fs/cgroup/cpu.max': 'nonsense' })), undefined, 'an unreadable cpu.max');
  t.equal(quotaCores(files({ '/proc/self/cgroup': '0::/', '/sys/fs/cgroup/cpu.max': '0 100000' })), undefined, 'a zero quota');
});

t.test('usable cores: at least one, at most the CPUs the process may run on', async (t) => {
  const cores = usableCores();
  t.ok(cores >= 1 && cores <= availableParallelism(), `${cores} of ${availableParallelism()}`);
  const quota = quotaCores();
  t.equal(cores, quota === undefined ? availableParallelism() : Math.min(quota, availableParallelism()), 'the quota caps it where one is set');
});
