// Latency vs throughput across a sweep as a small self-contained SVG: one polyline per series
// (p50 and p99 by default), points labelled with their load level.
import type { PerfLevelResult } from './runner.js';

export interface PlotSeries {
  label: string;
  results: readonly PerfLevelResult[];
}

const WIDTH = 720;
const HEIGHT = 420;
const MARGIN = { left: 70, right: 150, top: 30, bottom: 50 };
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** An SVG of latency (y, ms) against throughput (x, req/s); p50 and p99 per series. */
export function latencyThroughputSvg(series: readonly PlotSeries[], title = 'latency vs throughput'): string {
  const lines: { label: string; points: { x: number; y: number; tag: string }[] }[] = [];
  for (const s of series) {
    for (const [key, name] of [['p50_ms', 'p50'], ['p99_ms', 'p99']] as const) {
      lines.push({
        label: `${s.label} ${name}`,
        points: s.results.map((r) => ({ x: r.throughput, y: r[key], tag: String(r.concurrency ?? r.request_rate ?? '') })),
      });
    }
  }
  const all = lines.flatMap((l) => l.points);
  const xMax = niceMax(Math.max(0, ...all.map((p) => p.x)));
  const yMax = niceMax(Math.max(0, ...all.map((p) => p.y)));
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const sx = (x: number) => MARGIN.left + (x / xMax) * plotW;
  const sy = (y: number) => MARGIN.top + plotH - (y / yMax) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" font-family="sans-serif" font-size="11">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="18" text-anchor="middle" font-size="14">${escape(title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const xv = (xMax * i) / 5;
    const yv = (yMax * i) / 5;
    out.push(`<line x1="${sx(xv)}" y1="${MARGIN.top}" x2="${sx(xv)}" y2="${MARGIN.top + plotH}" stroke="#eee"/>`);
    out.push(`<line x1="${MARGIN.left}" y1="${sy(yv)}" x2="${MARGIN.left + plotW}" y2="${sy(yv)}" stroke="#eee"/>`);
    out.push(`<text x="${sx(xv)}" y="${MARGIN.top + plotH + 16}" text-anchor="middle">${+xv.toPrecision(4)}</text>`);
    out.push(`<text x="${MARGIN.left - 6}" y="${sy(yv) + 4}" text-anchor="end">${+yv.toPrecision(4)}</text>`);
  }
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 10}" text-anchor="middle">throughput (requests/s)</text>`);
  out.push(`<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">latency (ms)</text>`);
  lines.forEach((l, i) => {
    const colour = COLOURS[Math.floor(i / 2) % COLOURS.length]!;
    const dash = i % 2 === 1 ? ' stroke-dasharray="5 3"' : '';
    const pts = l.points.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${colour}" stroke-width="1.5"${dash}/>`);
    for (const p of l.points) {
      out.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="2.5" fill="${colour}"><title>${escape(`${l.label} @ ${p.tag}: ${p.x.toFixed(1)} req/s, ${p.y.toFixed(3)} ms`)}</title></circle>`);
    }
    const ly = MARGIN.top + 14 * i + 8;
    out.push(`<line x1="${WIDTH - MARGIN.right + 10}" y1="${ly}" x2="${WIDTH - MARGIN.right + 30}" y2="${ly}" stroke="${colour}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${WIDTH - MARGIN.right + 34}" y="${ly + 4}">${escape(l.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
