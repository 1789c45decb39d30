// Windows that rotate across in-process sessions round by round, so load from elsewhere on a
// shared host falls on all of them alike. Each window gives rows per wall second and rows per
// CPU second of this process: the sessions run one at a time on one thread, so the CPU figure is
// the work itself, while the wall figure also holds the time the host gave to other processes
// (at a load of 20 on 2 cores that is most of it, and it comes in slices as long as a window).
import { cpuUsage } from 'node:process';
import { benchInputs, measureWindow } from '../dist/cli/commands/bench-model.js';

/**
 * One warm-up window per session, then `rounds` rounds in which every session runs one window,
 * the order rotating. Returns per session the wall and CPU rows/s of each round.
 */
export async function rotatingWindows(sessions, batch, rounds, seconds) {
  const inputs = sessions.map((session) => benchInputs(session, batch));
  for (const [i, session] of sessions.entries()) await measureWindow(session, inputs[i], batch, seconds / 2);
  const wall = sessions.map(() => []);
  const cpu = sessions.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (let j = 0; j < sessions.length; j++) {
      const i = (j + round) % sessions.length;
      const before = cpuUsage();
      const w = await measureWindow(sessions[i], inputs[i], batch, seconds);
      const used = cpuUsage(before);
      wall[i].push(w.rowsPerSecond);
      cpu[i].push((w.runs * batch * 1e6) / (used.user + used.system));
    }
  }
  return { wall, cpu };
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

/** Median over rounds of a / b in the same round. */
export const pairedRatio = (a, b) => median(a.map((x, r) => x / b[r]));
