// A small self-contained SVG line chart of metric against sparsity, for `umbra prune --sweep --plot`.

export interface SweepPoint {
  sparsity: number;
  value: number;
}

const W = 640;
const H = 400;
const M = { left: 70, right: 24, top: 48, bottom: 56 };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3));

/** Nice tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, count = 5): number[] {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => span / s <= count) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function sweepSvg(points: readonly SweepPoint[], options: { title: string; metric: string }): string {
  const sorted = [...points].sort((a, b) => a.sparsity - b.sparsity);
  const values = sorted.map((p) => p.value);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (options.metric === 'accuracy') { lo = Math.min(lo, 0); hi = Math.max(hi, 1); }
  if (hi === lo) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.05;
  if (options.metric !== 'accuracy') { lo -= pad; hi += pad; }
  const x = (s: number) => M.left + s * (W - M.left - M.right);
  const y = (v: number) => H - M.bottom - ((v - lo) / (hi - lo)) * (H - M.top - M.bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${esc(options.title)}</text>`,
  ];
  for (const t of ticks(0, 1, 10)) {
    parts.push(`<line x1="${x(t)}" y1="${M.top}" x2="${x(t)}" y2="${H - M.bottom}" stroke="#eee"/>`);
    parts.push(`<text x="${x(t)}" y="${H - M.bottom + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  for (const t of ticks(lo, hi)) {
    if (t < lo || t > hi) continue;
    parts.push(`<line x1="${M.left}" y1="${y(t)}" x2="${W - M.right}" y2="${y(t)}" stroke="#eee"/>`);
    parts.push(`<text x="${M.left - 6}" y="${y(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  parts.push(`<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 16}" text-anchor="middle">sparsity (fraction of prunable weights zeroed)</text>`);
  parts.push(`<text transform="translate(18 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(options.metric)}</text>`);
  const path = sorted.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.sparsity).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ');
  parts.push(`<path d="${path}" fill="none" stroke="#1f6feb" stroke-width="2"/>`);
  for (const p of sorted) {
    parts.push(`<circle cx="${x(p.sparsity).toFixed(1)}" cy="${y(p.value).toFixed(1)}" r="4" fill="#1f6feb"><title>sparsity ${p.sparsity}: ${options.metric} ${fmt(p.value)}</title></circle>`);
    parts.push(`<text x="${x(p.sparsity).toFixed(1)}" y="${(y(p.value) - 9).toFixed(1)}" text-anchor="middle" font-size="11">${fmt(p.value)}</text>`);
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
