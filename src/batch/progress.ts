// Progress of a batch job: a bar with rows/s and ETA on a terminal, plain periodic lines
// otherwise (logs, CI, Kubernetes), and one summary line at the end.
import cliProgress from 'cli-progress';
import type { BatchProgress, BatchSummary } from './job.js';

export interface ProgressReporter {
  update(p: BatchProgress): void;
  finish(summary: BatchSummary): void;
  stop(): void;
}

/** `intervalSeconds` paces the plain lines; 0 prints one after every stored batch. */
export function progressReporter(options: { tty: boolean; intervalSeconds: number; write: (line: string) => void }): ProgressReporter {
  if (options.tty) return barReporter(options.write);
  let last = 0;
  return {
    update(p) {
      const now = performance.now();
      if (options.intervalSeconds > 0 && now - last < options.intervalSeconds * 1000) return;
      last = now;
      options.write(progressLine(p));
    },
    finish: (s) => options.write(summaryLine(s)),
    stop: () => undefined,
  };
}

function barReporter(write: (line: string) => void): ProgressReporter {
  const bar = new cliProgress.SingleBar({
    format: 'batch |{bar}| {percentage}% | {rows} rows stored | {rate} rows/s | {rejected} rejected | ETA {eta_formatted}',
    stream: process.stderr,
    hideCursor: true,
    etaBuffer: 50,
    fps: 5,
  }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(p) {
      const payload = { rows: p.rowsStored, rate: Math.round(rate(p)), rejected: p.rejected };
      if (!started) {
        started = true;
        bar.start(Math.max(1, p.totalBytes), p.bytesRead, payload);
      } else {
        bar.update(p.bytesRead, payload);
      }
    },
    finish(s) {
      if (started) {
        bar.update(Math.max(1, s.totalBytes), { rows: s.rowsStored, rate: Math.round(s.rowsPerSecond), rejected: s.rejected });
        bar.stop();
      }
      write(summaryLine(s));
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

function rate(p: BatchProgress): number {
  return p.rowsThisRun / Math.max(1e-3, p.elapsedMs / 1000);
}

export function progressLine(p: BatchProgress): string {
  const fraction = p.totalBytes > 0 ? Math.min(1, p.bytesRead / p.totalBytes) : 0;
  const r = rate(p);
  const elapsed = p.elapsedMs / 1000;
  const eta = fraction > 0.001 ? Math.max(0, elapsed / fraction - elapsed) : undefined;
  return `stored ${p.rowsStored} rows, ${p.rejected} rejected, ${Math.round(r)} rows/s, ${(fraction * 100).toFixed(1)}% of input read, ETA ${eta === undefined ? '?' : `${Math.ceil(eta)}s`}`;
}

export function summaryLine(s: BatchSummary): string {
  if (s.alreadyFinished) return `done: job already finished earlier (${s.rowsStored} rows stored, ${s.rejected} rejected); nothing to resume`;
  const parts = [
    `done: ${s.rowsStored} rows stored for ${s.model} v${s.version}`,
    `${s.rejected} rejected${s.rejected > 0 ? ` (see ${s.rejectsPath})` : ''}`,
  ];
  if (s.empty) parts.push('the input holds no record');
  if (s.skipped > 0) parts.push(`${s.skipped} records left to other shards (shard ${s.shard})`);
  if (s.resumedFrom > 0) parts.push(`resumed after record ${s.resumedFrom}`);
  parts.push(`${s.rowsThisRun} rows in ${(s.elapsedMs / 1000).toFixed(1)}s (${Math.round(s.rowsPerSecond)} rows/s)`);
  return parts.join(', ');
}
