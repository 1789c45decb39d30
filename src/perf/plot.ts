// Latency vs throughput across a sweep as a small self-contained SVG: one line per series and
// percentile (p50 solid, p99 dashed), each point tagged with its load level. A series measured at
// one level has no line to draw: its p50 and p99 are joined by a vertical bar and labelled with
// their values. The canvas grows to fit the legend, so no label is cut off at the right edge.
import type { PerfLevelResult } from './runner.js';

export interface PlotSeries {
  label: string;
  results: readonly PerfLevelResult[];
}

const PLOT_WIDTH = 500;
const PLOT_HEIGHT = 340;
const MARGIN = { left: 70, top: 30, bottom: 50, gap: 16, right: 12 };
const FONT_SIZE = 11;
const TITLE_SIZE = 14;
/** Width of a character as a share of the font size: generous for sans-serif, so estimates err wide. */
const CHAR_EM = 0.62;
const SWATCH = 34;
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Estimated rendered width of `text` at `size` px; SVG has no layout engine to ask. */
export function textWidth(text: string, size = FONT_SIZE): number {
  return Math.ceil(text.length * size * CHAR_EM);
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const levelTag = (r: PerfLevelResult) => (r.concurrency !== undefined ? `c${r.concurrency}` : r.request_rate !== undefined ? `${r.request_rate}/s` : '');
const ms = (v: number) => `${+v.toPrecision(3)} ms`;

/** An SVG of latency (y, ms) against throughput (x, req/s); p50 and p99 per series. */
export function latencyThroughputSvg(series: readonly PlotSeries[], title = 'latency vs throughput'): string {
  const lines = series.flatMap((s, i) => (['p50', 'p99'] as const).map((name, k) => ({
    label: `${s.label} ${name}`,
    colour: COLOURS[i % COLOURS.length]!,
    dash: k === 1 ? ' stroke-dasharray="5 3"' : '',
    points: s.results.map((r) => ({ x: r.throughput, y: name === 'p50' ? r.p50_ms : r.p99_ms, tag: levelTag(r) })),
  })));
  const all = lines.flatMap((l) => l.points);
  // Headroom, so a point at the largest value (a lone level, say) sits inside the frame, not on it.
  const xMax = niceMax(1.1 * Math.max(0, ...all.map((p) => p.x)));
  const yMax = niceMax(1.1 * Math.max(0, ...all.map((p) => p.y)));
  const legendX = MARGIN.left + PLOT_WIDTH + MARGIN.gap;
  const legendWidth = SWATCH + Math.max(0, ...lines.map((l) => textWidth(l.label)));
  const width = Math.max(legendX + legendWidth + MARGIN.right, textWidth(title, TITLE_SIZE) + 2 * MARGIN.right);
  const height = Math.max(MARGIN.top + PLOT_HEIGHT + MARGIN.bottom, MARGIN.top + 14 * lines.length + 12);
  const sx = (x: number) => MARGIN.left + (x / xMax) * PLOT_WIDTH;
  const sy = (y: number) => MARGIN.top + PLOT_HEIGHT - (y / yMax) * PLOT_HEIGHT;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="${FONT_SIZE}">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="${TITLE_SIZE}">${escape(title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const xv = (xMax * i) / 5;
    const yv = (yMax * i) / 5;
    out.push(`<line x1="${sx(xv)}" y1="${MARGIN.top}" x2="${sx(xv)}" y2="${MARGIN.top + PLOT_HEIGHT}" stroke="#eee"/>`);
    out.push(`<line x1="${MARGIN.left}" y1="${sy(yv)}" x2="${MARGIN.left + PLOT_WIDTH}" y2="${sy(yv)}" stroke="#eee"/>`);
    out.push(`<text x="${sx(xv)}" y="${MARGIN.top + PLOT_HEIGHT + 16}" text-anchor="middle">${+xv.toPrecision(4)}</text>`);
    out.push(`<text x="${MARGIN.left - 6}" y="${sy(yv) + 4}" text-anchor="end">${+yv.toPrecision(4)}</text>`);
  }
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${PLOT_WIDTH}" height="${PLOT_HEIGHT}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${MARGIN.left + PLOT_WIDTH / 2}" y="${MARGIN.top + PLOT_HEIGHT + 38}" text-anchor="middle">throughput (requests/s)</text>`);
  out.push(`<text transform="translate(16 ${MARGIN.top + PLOT_HEIGHT / 2}) rotate(-90)" text-anchor="middle">latency (ms)</text>`);
  // One level: the p50-p99 spread as a bar at its throughput, both ends labelled.
  series.forEach((s, i) => {
    if (s.results.length !== 1) return;
    const r = s.results[0]!;
    const colour = COLOURS[i % COLOURS.length]!;
    const x = sx(r.throughput);
    out.push(`<line x1="${x.toFixed(1)}" y1="${sy(r.p50_ms).toFixed(1)}" x2="${x.toFixed(1)}" y2="${sy(r.p99_ms).toFixed(1)}" stroke="${colour}" stroke-width="1.5"/>`);
    // Labels on the side with more room, so they stay inside the frame.
    const right = x < MARGIN.left + PLOT_WIDTH / 2;
    for (const [name, value] of [['p50', r.p50_ms], ['p99', r.p99_ms]] as const) {
      out.push(`<text x="${(right ? x + 7 : x - 7).toFixed(1)}" y="${(sy(value) + 4).toFixed(1)}" text-anchor="${right ? 'start' : 'end'}" fill="${colour}">${name} ${ms(value)} (${escape(levelTag(r))})</text>`);
    }
  });
  lines.forEach((l, i) => {
    if (l.points.length > 1) {
      const pts = l.points.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
      out.push(`<polyline points="${pts}" fill="none" stroke="${l.colour}" stroke-width="1.5"${l.dash}/>`);
    }
    for (const p of l.points) {
      out.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="2.5" fill="${l.colour}"><title>${escape(`${l.label} @ ${p.tag}: ${p.x.toFixed(1)} req/s, ${p.y.toFixed(3)} ms`)}</title></circle>`);
      // Level tags on the p99 line of a sweep (a lone level is labelled in full above).
      if (l.points.length > 1 && l.dash) out.push(`<text x="${sx(p.x).toFixed(1)}" y="${(sy(p.y) - 6).toFixed(1)}" text-anchor="middle" font-size="9" fill="#555">${escape(p.tag)}</text>`);
    }
    const ly = MARGIN.top + 14 * i + 8;
    out.push(`<line x1="${legendX}" y1="${ly}" x2="${legendX + 20}" y2="${ly}" stroke="${l.colour}" stroke-width="2"${l.dash}/>`);
    out.push(`<text x="${legendX + 24}" y="${ly + 4}">${escape(l.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
