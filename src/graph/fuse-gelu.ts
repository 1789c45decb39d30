// PyTorch (before opset 20) exports exact GELU as five nodes:
//   d = Div(x, √2) | Mul(x, 1/√2);  e = Erf(d);  a = Add(e, 1);  then 0.5 · x · a in one of
//   Mul(Mul(x, a), 0.5), Mul(Mul(x, 0.5), a), Mul(x, Mul(a, 0.5)).
// This rewrites each match into one Gelu node, which lowers to the kernels' fused gelu.
import type { Graph, GraphNode } from './graph.js';
import { sizeOf, toNumbers } from './tensor.js';

function near(value: number, target: number): boolean {
  return Math.abs(value - target) <= 1e-4 * Math.abs(target);
}

export function fuseGelu(nodes: GraphNode[], graph: Graph): GraphNode[] {
  const producer = new Map<string, GraphNode>();
  const consumers = new Map<string, GraphNode[]>();
  for (const node of nodes) {
    for (const out of node.outputs) producer.set(out, node);
    for (const input of node.inputs) consumers.set(input, [...(consumers.get(input) ?? []), node]);
  }
  const scalar = (name: string | undefined): number | undefined => {
    const c = name === undefined ? undefined : graph.constants.get(name);
    return c && sizeOf(c.dims) === 1 ? toNumbers(c)[0] : undefined;
  };
  /** The node reading `name` when it is the only reader and `name` is not a graph output. */
  const soleConsumer = (name: string): GraphNode | undefined => {
    const list = consumers.get(name) ?? [];
    return list.length === 1 && !graph.outputs.includes(name) ? list[0] : undefined;
  };
  /** For a two-input node, the other input than `name`. */
  const other = (node: GraphNode, name: string): string | undefined =>
    node.inputs[0] === name ? node.inputs[1] : node.inputs[1] === name ? node.inputs[0] : undefined;

  const replaced = new Map<GraphNode, GraphNode | null>();
  for (const erf of nodes) {
    if (erf.op !== 'Erf') continue;
    const scale = producer.get(erf.inputs[0] ?? '');
    if (!scale || (scale.op !== 'Div' && scale.op !== 'Mul') || soleConsumer(scale.outputs[0]!) !== erf) continue;
    const x = scale.inputs[0]!;
    const factor = scalar(scale.inputs[1]);
    if (factor === undefined || !near(scale.op === 'Div' ? 1 / factor : factor, Math.SQRT1_2)) continue;
    const add = soleConsumer(erf.outputs[0]!);
    if (!add || add.op !== 'Add' || scalar(other(add, erf.outputs[0]!)) !== 1) continue;
    const a = add.outputs[0]!;
    const mul1 = soleConsumer(a);
    if (!mul1 || mul1.op !== 'Mul') continue;
    const partner = other(mul1, a)!;
    let last: GraphNode | undefined;
    const chain: GraphNode[] = [scale, erf, add, mul1];
    if (partner === x) {
      // Mul(Mul(x, a), 0.5)
      last = soleConsumer(mul1.outputs[0]!);
      if (!last || last.op !== 'Mul' || scalar(other(last, mul1.outputs[0]!)) !== 0.5) continue;
      chain.push(last);
    } else if (scalar(partner) === 0.5) {
      // Mul(x, Mul(a, 0.5))
      last = soleConsumer(mul1.outputs[0]!);
      if (!last || last.op !== 'Mul' || other(last, mul1.outputs[0]!) !== x) continue;
      chain.push(last);
    } else {
      // Mul(Mul(x, 0.5), a): partner is the half
      const half = producer.get(partner);
      if (!half || half.op !== 'Mul' || soleConsumer(partner) !== mul1 || other(half, x) === undefined || scalar(other(half, x)) !== 0.5) continue;
      last = mul1;
      chain.unshift(half);
    }
    if (chain.some((n) => replaced.has(n))) continue;
    const gelu: GraphNode = { name: `${erf.name}::gelu`, op: 'Gelu', inputs: [x], outputs: [last.outputs[0]!], attributes: new Map() };
    for (const n of chain) replaced.set(n, null);
    replaced.set(last, gelu);
  }
  const out: GraphNode[] = [];
  for (const node of nodes) {
    const r = replaced.get(node);
    if (r === undefined) out.push(node);
    else if (r !== null) out.push(r);
  }
  return out;
}
