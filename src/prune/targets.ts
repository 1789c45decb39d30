// Which weights a run prunes and at what target: exclusions and per-layer targets match a weight's
// initializer name or the name of a node that reads it, exactly or by glob (* any run, ? one char).
import { UmbraError } from '../errors.js';
import type { PrunableWeight } from './model-weights.js';

/** A --layer or --exclude pattern that matches no prunable weight (a flag mistake). */
export class TargetPatternError extends UmbraError {
  readonly flag: '--exclude' | '--layer';
  constructor(flag: '--exclude' | '--layer', message: string) {
    super('INVALID_ARGUMENT', message);
    this.flag = flag;
  }
}

export interface LayerTarget {
  /** Initializer or node name, or a glob over them. */
  pattern: string;
  sparsity: number;
}

export interface TargetRules {
  exclude?: readonly string[];
  /** Later entries win when several match one weight. */
  layers?: readonly LayerTarget[];
  /** Leave output layers (PrunableWeight.outputLayer) dense unless a `layers` entry names them. */
  keepOutputLayers?: boolean;
}

export interface ResolvedTarget {
  /** Index into the model's prunable weights. */
  index: number;
  /** The per-layer target when one matched, else null (the run's default applies). */
  override: number | null;
}

export function globToRegExp(pattern: string): RegExp {
  const body = [...pattern].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('');
  return new RegExp(`^${body}$`);
}

function matcher(pattern: string): (w: PrunableWeight) => boolean {
  const re = globToRegExp(pattern);
  return (w) => re.test(w.name) || w.nodes.some((n) => re.test(n));
}

/** The weights to prune, with their per-layer targets. Throws when a pattern matches no weight. */
export function resolveTargets(weights: readonly PrunableWeight[], rules: TargetRules): { targets: ResolvedTarget[]; excluded: string[]; keptOutputLayers: string[] } {
  const excludes = (rules.exclude ?? []).map((p) => ({ pattern: p, test: matcher(p) }));
  const layers = (rules.layers ?? []).map((l) => ({ ...l, test: matcher(l.pattern) }));
  const known = weights.map((w) => w.name).join(', ') || 'none';
  for (const rule of [...excludes.map((e) => ({ flag: '--exclude' as const, ...e })), ...layers.map((l) => ({ flag: '--layer' as const, ...l }))]) {
    if (!weights.some(rule.test)) {
      throw new TargetPatternError(rule.flag, `expected ${JSON.stringify(rule.pattern)} to match a prunable weight or its node but it matches none (prunable: ${known})`);
    }
  }
  const targets: ResolvedTarget[] = [];
  const excluded: string[] = [];
  const keptOutputLayers: string[] = [];
  weights.forEach((w, index) => {
    if (excludes.some((e) => e.test(w))) {
      excluded.push(w.name);
      return;
    }
    let override: number | null = null;
    for (const l of layers) if (l.test(w)) override = l.sparsity;
    // A per-layer target that names an output layer asks for it explicitly.
    if (rules.keepOutputLayers && w.outputLayer && override === null) {
      excluded.push(w.name);
      keptOutputLayers.push(w.name);
      return;
    }
    targets.push({ index, override });
  });
  return { targets, excluded, keptOutputLayers };
}
