// `umbra perf --plot`: the legend fits the canvas whatever the labels, a sweep draws one line per
// series and percentile, and a single load level is drawn as its p50-p99 bar with the values.
import t from 'tap';
import { latencyThroughputSvg, textWidth } from '../dist/perf/plot.js';
import type { PerfLevelResult } from '../dist/perf/runner.js';

function level(concurrency: number, throughput: number, p50: number, p99: number): PerfLevelResult {
  return {
    concurrency, protocol: 'http', batch_size: 1, throughput, inferences_per_s: throughput, completed: 100, mean_ms: p50,
    p50_ms: p50, p90_ms: p99, p95_ms: p99, p99_ms: p99, max_ms: p99, errors: 0, errors_by_status: {}, error_rate: 0,
    windows: 3, stable: true, duration_s: 3, send_lag_p99_ms: null, client_cpu_pct: 40,
  };
}

const attr = (tag: string, name: string) => Number(new RegExp(`\\b${name}="([^"]+)"`).exec(tag)?.[1]);
const tags = (svg: string, name: string) => svg.match(new RegExp(`<${name}\\b[^>]*>`, 'g')) ?? [];
const texts = (svg: string) => [...svg.matchAll(/<text\b([^>]*)>([^<]*)<\/text>/g)].map((m) => ({ attrs: m[1]!, text: m[2]! }));

/** Every text's estimated extent lies inside the canvas. */
function assertInside(t: Tap.Test, svg: string): void {
  const width = attr(tags(svg, 'svg')[0]!, 'width');
  t.match(tags(svg, 'svg')[0], new RegExp(`viewBox="0 0 ${width} \\d+"`), 'a viewBox, so it scales');
  for (const { attrs, text } of texts(svg)) {
    if (attrs.includes('rotate')) continue;
    const x = attr(attrs, 'x');
    const size = Number(/font-size="(\d+)"/.exec(attrs)?.[1] ?? 11);
    const w = textWidth(text.replace(/&[a-z]+;/g, '&'), size);
    const [left, right] = attrs.includes('text-anchor="middle"') ? [x - w / 2, x + w / 2] : attrs.includes('text-anchor="end"') ? [x - w, x] : [x, x + w];
    t.ok(left >= 0 && right <= width, `"${text}" spans ${left.toFixed(0)}..${right.toFixed(0)} of ${width}`);
  }
}

t.test('a sweep: one line per series and percentile, tagged levels, the legend inside', async (t) => {
  const sweep = [level(1, 4000, 0.2, 0.5), level(4, 11000, 0.33, 0.9), level(16, 14000, 0.9, 2.6)];
  const label = 'a-model-with-a-rather-long-name (http-binary, 4 rows per request)';
  const svg = latencyThroughputSvg([{ label, results: sweep }, { label: 'Fastify+ORT', results: sweep.map((r) => ({ ...r, throughput: r.throughput / 2 })) }], 'umbra perf: a-model at http://127.0.0.1:8000');
  const lines = tags(svg, 'polyline');
  t.equal(lines.length, 4, 'p50 and p99 of each series');
  for (const l of lines) t.equal(/points="([^"]+)"/.exec(l)![1]!.split(' ').length, 3, 'a point per level');
  t.equal(tags(svg, 'circle').length, 12);
  t.ok(texts(svg).some((x) => x.text === 'c16'), 'levels are tagged');
  t.ok(texts(svg).some((x) => x.text === `${label} p99`), 'the long label is there whole');
  assertInside(t, svg);
});

t.test('one level: a p50-p99 bar with both values, not two lone dots', async (t) => {
  const svg = latencyThroughputSvg([{ label: 'digits (http)', results: [level(1, 4123.4, 0.21, 0.48)] }], 'umbra perf: digits at http://127.0.0.1:8000');
  t.equal(tags(svg, 'polyline').length, 0, 'no one-point lines');
  const circles = tags(svg, 'circle').map((c) => ({ x: attr(c, 'cx'), y: attr(c, 'cy') }));
  t.equal(circles.length, 2);
  const bar = tags(svg, 'line').find((l) => attr(l, 'x1') === circles[0]!.x && attr(l, 'x2') === circles[0]!.x && attr(l, 'y1') !== attr(l, 'y2'));
  t.ok(bar, 'a vertical bar at the level\'s throughput');
  t.same([attr(bar!, 'y1'), attr(bar!, 'y2')].sort(), circles.map((c) => c.y).sort(), 'from p50 to p99');
  t.ok(texts(svg).some((x) => x.text === 'p50 0.21 ms (c1)'));
  t.ok(texts(svg).some((x) => x.text === 'p99 0.48 ms (c1)'));
  const frame = tags(svg, 'rect')[1]!;
  const [left, top, right, bottom] = [attr(frame, 'x'), attr(frame, 'y'), attr(frame, 'x') + attr(frame, 'width'), attr(frame, 'y') + attr(frame, 'height')];
  for (const c of circles) t.ok(c.x > left && c.x < right && c.y > top && c.y < bottom, 'the point is inside the frame, not on its edge');
  assertInside(t, svg);
});
