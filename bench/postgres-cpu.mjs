// CPU time of the PostgreSQL server on this host, for the batch benches: a store on the same host
// competes with the job for its cores, so its CPU per stored row is part of what a job into it costs.
import { readdirSync, readFileSync } from 'node:fs';

export const TICKS_PER_SECOND = 100;

/**
 * CPU jiffies of every PostgreSQL server process (the backends, WAL writer, checkpointer,
 * autovacuum), from /proc, with those of the backends that have ended (the postmaster's reaped
 * children); undefined off Linux.
 */
export function postgresTicks() {
  try {
    let ticks = 0;
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      let stat;
      try {
        stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      } catch {
        continue; // ended meanwhile
      }
      if (!stat.includes('(postgres)')) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    }
    return ticks;
  } catch {
    return undefined;
  }
}
