// The human-readable report of a prune run: one table row per prunable weight, totals, and the
// evaluation and sweep results when there are any.
import type { PruneRunReport } from './index.js';
import { isLayerWeight } from './model-weights.js';

const pct = (v: number) => `${(v * 100).toFixed(2)}%`;

function table(header: string[], rows: string[][], rightAligned: boolean[]): string {
  const widths = header.map((h, j) => Math.max(h.length, ...rows.map((r) => (r[j] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, j) => (rightAligned[j] ? c.padStart(widths[j]!) : c.padEnd(widths[j]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const metricText = (metric: string, v: number) => (metric === 'accuracy' ? pct(v) : v.toPrecision(6));

export function formatReport(r: PruneRunReport): string {
  const out: string[] = [];
  if (r.layers.length > 0) {
    const how = r.method === 'nm' ? `N:M ${r.nm}` : r.method === 'structured' ? `structured (${r.norm.toUpperCase()} norm of output units)` : `${r.method} magnitude`;
    out.push(`${how} pruning of ${r.input}${r.sparsity === null ? '' : ` at sparsity ${r.sparsity}`}, ${r.threads} thread${r.threads === 1 ? '' : 's'}`);
    const rows = r.layers.map((l) => [
      l.name, l.op, `[${l.shape.join('x')}] ${l.layout}`,
      l.status === 'excluded' ? (l.excludedBy === 'output-layer' ? 'kept (output layer)' : 'excluded') : l.target === null ? (r.method === 'nm' ? r.nm ?? '' : 'global') : String(l.target),
      pct(l.sparsityBefore), pct(l.sparsityAfter), pct(l.normKept),
      l.threshold !== undefined ? l.threshold.toPrecision(4) : l.prunedOutputs !== undefined ? `${l.prunedOutputs} outputs` : '',
    ]);
    out.push(table(
      ['layer', 'op', 'shape', 'target', 'before', 'after', `${r.norm.toUpperCase()} kept`, 'cut'],
      rows, [false, false, false, false, true, true, true, true],
    ));
    if (r.totals) {
      out.push(`total: ${r.totals.weights} prunable weights, sparsity ${pct(r.totals.sparsityBefore)} -> ${pct(r.totals.sparsityAfter)}`);
    }
    const kept = r.layers.filter((l) => l.excludedBy === 'output-layer').map((l) => l.name);
    if (kept.length > 0) out.push(`kept dense: ${kept.join(', ')}, the output layer${kept.length === 1 ? '' : 's'}: structured pruning there would zero whole outputs (classes); --include-output-layer prunes ${kept.length === 1 ? 'it' : 'them'}`);
    if (r.wholeLayers.length > 0) {
      const n = r.wholeLayers.length;
      out.push(`warning: ${r.wholeLayers.join(', ')} ${n === 1 ? 'is' : 'are'} pruned whole (every weight zero): ${n === 1 ? 'its output no longer depends' : 'their outputs no longer depend'} on ${n === 1 ? 'its' : 'their'} input${r.method === 'global' ? '; --max-layer-sparsity (e.g. 0.95) keeps some of every layer' : ''}`);
    }
    // Weights a layer reads come first, each with why it was left alone (a tied weight, a left
    // operand, FP16): counted among the biases, a big layer left dense went unnoticed.
    const weights = r.skipped.filter(isLayerWeight);
    if (weights.length > 0) {
      const more = weights.length > 3 ? ` and ${weights.length - 3} more (--json lists them)` : '';
      out.push(`left alone: ${weights.length} layer weight${weights.length === 1 ? '' : 's'}: ${weights.slice(0, 3).map((w) => `"${w.name}" (${w.reason})`).join(', ')}${more}`);
    }
    const others = r.skipped.length - weights.length;
    if (others > 0) out.push(`left alone: ${others} other initializer${others === 1 ? '' : 's'} (biases, norms, constants; --json lists them with reasons)`);
  }
  if (r.sweep) {
    const metric = r.eval?.metric ?? 'value';
    const rows = [['0 (dense)', pct(r.totals?.sparsityBefore ?? 0), r.eval ? metricText(metric, r.eval.before) : '']];
    for (const p of r.sweep) rows.push([String(p.sparsity), pct(p.totalSparsity), metricText(metric, p.value)]);
    out.push(`sweep (${r.method}) on ${r.eval?.rows ?? 0} rows, output "${r.eval?.output ?? ''}":`);
    out.push(table(['sparsity', 'zeros', metric], rows, [false, true, true]));
    if (r.plot) out.push(`plot: ${r.plot}`);
  }
  if (r.eval) {
    const after = r.eval.after === null ? '' : ` -> ${metricText(r.eval.metric, r.eval.after)} after`;
    out.push(`${r.eval.metric} on ${r.eval.rows} rows (output "${r.eval.output}"): ${metricText(r.eval.metric, r.eval.before)} before${after}`);
    for (const p of r.eval.precisions ?? []) {
      const pAfter = p.after === null ? '' : ` -> ${metricText(r.eval.metric, p.after)} after`;
      out.push(`  on the GPU at ${p.precision} (native backend): ${metricText(r.eval.metric, p.before)} before${pAfter}`);
    }
  }
  if (r.files.length > 0) out.push(`wrote ${r.files.join(', ')}`);
  return `${out.join('\n')}\n`;
}
