// Plain TypeScript implementations of the small operators: they fold constant subgraphs at load
// and run the cheap steps (broadcast arithmetic, shape ops, ArgMax) at inference. The heavy ones
// (MatMul/Gemm, activations, Softmax) go to the native kernels in the executor instead.
import { UmbraError } from '../errors.js';
import { describeNode, floatAttribute, intAttribute, intsAttribute, stringAttribute, type GraphNode } from './graph.js';
import {
  arrayLike, broadcastDims, broadcastStrides, normalizeAxis, numberAt, sizeOf, toNumbers, type Value, type ValueData,
} from './tensor.js';

export interface OpContext {
  opset: number;
}

export type ReferenceOp = (inputs: (Value | undefined)[], node: GraphNode, ctx: OpContext) => Value[];

function need(inputs: (Value | undefined)[], i: number, node: GraphNode): Value {
  const v = inputs[i];
  if (!v) throw new UmbraError('LOAD_FAILED', `${describeNode(node)} needs input ${i}`);
  return v;
}

type Binary = (a: number, b: number) => number;

function binary(fn: Binary, intFn?: Binary): ReferenceOp {
  return (inputs, node) => {
    const a = need(inputs, 0, node);
    const b = need(inputs, 1, node);
    const dims = broadcastDims(a.dims, b.dims, describeNode(node));
    const n = sizeOf(dims);
    const f = a.data instanceof BigInt64Array || a.data instanceof Int32Array ? (intFn ?? fn) : fn;
    const ad = a.data;
    const bd = b.data;
    // Fast paths for the shapes dense networks use: equal shapes, a scalar, a row vector.
    if (ad instanceof Float32Array && bd instanceof Float32Array) {
      const out = new Float32Array(n);
      if (ad.length === n && bd.length === n) {
        for (let i = 0; i < n; i++) out[i] = fn(ad[i]!, bd[i]!);
        return [{ dims, data: out }];
      }
      if (ad.length === n && bd.length === 1) {
        const s = bd[0]!;
        for (let i = 0; i < n; i++) out[i] = fn(ad[i]!, s);
        return [{ dims, data: out }];
      }
      const last = dims[dims.length - 1] ?? 1;
      if (ad.length === n && bd.length === last && (b.dims[b.dims.length - 1] ?? 1) === last) {
        for (let i = 0; i < n; i += last) for (let j = 0; j < last; j++) out[i + j] = fn(ad[i + j]!, bd[j]!);
        return [{ dims, data: out }];
      }
    }
    const rank = dims.length;
    const sa = broadcastStrides(a.dims, rank);
    const sb = broadcastStrides(b.dims, rank);
    const values = new Float64Array(n);
    const index = new Array<number>(rank).fill(0);
    let ia = 0;
    let ib = 0;
    for (let i = 0; i < n; i++) {
      values[i] = f(numberAt(ad, ia), numberAt(bd, ib));
      for (let d = rank - 1; d >= 0; d--) {
        index[d]! += 1;
        ia += sa[d]!;
        ib += sb[d]!;
        if (index[d]! < dims[d]!) break;
        ia -= sa[d]! * dims[d]!;
        ib -= sb[d]! * dims[d]!;
        index[d] = 0;
      }
    }
    return [{ dims, data: arrayLike(ad, values) }];
  };
}

function unary(fn: (x: number) => number): ReferenceOp {
  return (inputs, node) => {
    const x = need(inputs, 0, node);
    const out = arrayLike(x.data, Array.from(x.data as ArrayLike<number | bigint>, (v) => fn(Number(v))));
    return [{ dims: [...x.dims], data: out }];
  };
}

/** erf to ~1e-7 (Abramowitz & Stegun 7.1.26 refined with one more term is not needed for fp32). */
export function erf(x: number): number {
  const sign = x < 0 ? -1 : 1;
  const z = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * z);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return sign * (1 - poly * Math.exp(-z * z));
}

function gelu(node: GraphNode): (x: number) => number {
  if (stringAttribute(node, 'approximate', 'none') === 'tanh') {
    const c = Math.sqrt(2 / Math.PI);
    return (x) => 0.5 * x * (1 + Math.tanh(c * (x + 0.044715 * x * x * x)));
  }
  return (x) => 0.5 * x * (1 + erf(x / Math.SQRT2));
}

function reshapeTo(x: Value, dims: number[]): Value {
  return { dims, data: x.data };
}

function reshape(inputs: (Value | undefined)[], node: GraphNode): Value[] {
  const x = need(inputs, 0, node);
  const wanted = toNumbers(need(inputs, 1, node));
  const allowZero = intAttribute(node, 'allowzero', 0) === 1;
  const dims = wanted.map((d, i) => (d === 0 && !allowZero ? (x.dims[i] ?? 0) : d));
  const unknown = dims.indexOf(-1);
  if (unknown >= 0) {
    const known = dims.reduce((p, d, i) => (i === unknown ? p : p * d), 1);
    dims[unknown] = known === 0 ? 0 : sizeOf(x.dims) / known;
  }
  if (sizeOf(dims) !== sizeOf(x.dims) || dims.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new UmbraError('INVALID_INPUT', `${describeNode(node)}: cannot reshape [${x.dims.join(', ')}] to [${wanted.join(', ')}]`);
  }
  return [reshapeTo(x, dims)];
}

function flatten(inputs: (Value | undefined)[], node: GraphNode): Value[] {
  const x = need(inputs, 0, node);
  const axis = intAttribute(node, 'axis', 1);
  const a = axis < 0 ? axis + x.dims.length : axis;
  const outer = sizeOf(x.dims.slice(0, a));
  return [reshapeTo(x, [outer, sizeOf(x.dims.slice(a))])];
}

function transpose(inputs: (Value | undefined)[], node: GraphNode): Value[] {
  const x = need(inputs, 0, node);
  const rank = x.dims.length;
  const perm = intsAttribute(node, 'perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  const dims = perm.map((p) => x.dims[p]!);
  const inStrides = new Array<number>(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) inStrides[i] = inStrides[i + 1]! * x.dims[i + 1]!;
  const strides = perm.map((p) => inStrides[p]!);
  const n = sizeOf(dims);
  const out = new (x.data.constructor as new (n: number) => ValueData)(n);
  const index = new Array<number>(rank).fill(0);
  let src = 0;
  for (let i = 0; i < n; i++) {
    (out as Float32Array)[i] = (x.data as Float32Array)[src]!;
    for (let d = rank - 1; d >= 0; d--) {
      index[d]! += 1;
      src += strides[d]!;
      if (index[d]! < dims[d]!) break;
      src -= strides[d]! * dims[d]!;
      index[d] = 0;
    }
  }
  return [{ dims, data: out }];
}

/** Unsqueeze/Squeeze axes: an attribute before opset 13, an input from 13 on. */
function axesOf(inputs: (Value | undefined)[], node: GraphNode): number[] | undefined {
  return inputs[1] ? toNumbers(inputs[1]) : intsAttribute(node, 'axes');
}

function unsqueeze(inputs: (Value | undefined)[], node: GraphNode): Value[] {
  const x = need(inputs, 0, node);
  const axes = axesOf(inputs, node) ?? [];
  const rank = x.dims.length + axes.length;
  const at = new Set(axes.map((a) => normalizeAxis(a, rank, describeNode(node))));
  const dims: number[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) dims.push(at.has(i) ? 1 : x.dims[j++]!);
  return [reshapeTo(x, dims)];
}

function squeeze(inputs: (Value | undefined)[], node: GraphNode): Value[] {
  const x = need(inputs, 0, node);
  const axes = axesOf(inputs, node);
  const drop = new Set(axes ? axes.map((a) => normalizeAxis(a, x.dims.length, describeNode(node))) : x.dims.flatMap((d, i) => (d === 1 ? [i] : [])));
  return [reshapeTo(x, x.dims.filter((_, i) => !drop.has(i)))];
}

function concat(inputs: (Value | undefined)[], node: GraphNode): Value[] {
  const parts = inputs.filter((v): v is Value => v !== undefined);
  const first = parts[0];
  if (!first) throw new UmbraError('LOAD_FAILED', `${describeNode(node)} has no inputs`);
  const axis = normalizeAxis(intAttribute(node, 'axis', 0), first.dims.length, describeNode(node));
  const outer = sizeOf(first.dims.slice(0, axis));
  const dims = [...first.dims];
  dims[axis] = parts.reduce((s, p) => s + (p.dims[axis] ?? 0), 0);
  const values: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const chunk = sizeOf(p.dims.slice(axis));
      for (let i = 0; i < chunk; i++) values.push(numberAt(p.data, o * chunk + i));
    }
  }
  return [{ dims, data: arrayLike(first.data, values) }];
}

function gather(inputs: (Value | undefined)[], node: GraphNode): Value[] {
  const x = need(inputs, 0, node);
  const idx = need(inputs, 1, node);
  const axis = normalizeAxis(intAttribute(node, 'axis', 0), x.dims.length, describeNode(node));
  const outer = sizeOf(x.dims.slice(0, axis));
  const inner = sizeOf(x.dims.slice(axis + 1));
  const span = x.dims[axis]!;
  const indices = toNumbers(idx).map((i) => (i < 0 ? i + span : i));
  const values: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const i of indices) {
      for (let j = 0; j < inner; j++) values.push(numberAt(x.data, (o * span + i) * inner + j));
    }
  }
  return [{ dims: [...x.dims.slice(0, axis), ...idx.dims, ...x.dims.slice(axis + 1)], data: arrayLike(x.data, values) }];
}

function cast(inputs: (Value | undefined)[], node: GraphNode): Value[] {
  const x = need(inputs, 0, node);
  const to = intAttribute(node, 'to', 1);
  const numbers = toNumbers(x);
  // ONNX element types: 1 FLOAT, 6 INT32, 7 INT64, 11 DOUBLE.
  let data: ValueData;
  if (to === 1) data = Float32Array.from(numbers);
  else if (to === 6) data = Int32Array.from(numbers.map(Math.trunc));
  else if (to === 7) data = BigInt64Array.from(numbers.map((v) => BigInt(Math.trunc(v))));
  else if (to === 11) data = Float64Array.from(numbers);
  else throw new UmbraError('LOAD_FAILED', `${describeNode(node)} casts to element type ${to}, which the native backend does not handle`);
  return [{ dims: [...x.dims], data }];
}

/** Softmax over `axis`; before opset 13 the input is coerced to 2-D at `axis` (default 1). */
export function softmaxLayout(dims: readonly number[], node: GraphNode, ctx: OpContext): { outer: number; span: number; inner: number } {
  const where = describeNode(node);
  if (ctx.opset < 13) {
    const axis = normalizeAxis(intAttribute(node, 'axis', 1), dims.length, where);
    return { outer: sizeOf(dims.slice(0, axis)), span: sizeOf(dims.slice(axis)), inner: 1 };
  }
  const axis = normalizeAxis(intAttribute(node, 'axis', -1), dims.length, where);
  return { outer: sizeOf(dims.slice(0, axis)), span: dims[axis]!, inner: sizeOf(dims.slice(axis + 1)) };
}

function softmax(inputs: (Value | undefined)[], node: GraphNode, ctx: OpContext): Value[] {
  const x = need(inputs, 0, node);
  const { outer, span, inner } = softmaxLayout(x.dims, node, ctx);
  const src = x.data;
  const out = new Float32Array(sizeOf(x.dims));
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * span * inner + i;
      let max = -Infinity;
      for (let s = 0; s < span; s++) max = Math.max(max, numberAt(src, base + s * inner));
      let sum = 0;
      for (let s = 0; s < span; s++) {
        const e = Math.exp(numberAt(src, base + s * inner) - max);
        out[base + s * inner] = e;
        sum += e;
      }
      for (let s = 0; s < span; s++) out[base + s * inner]! /= sum;
    }
  }
  return [{ dims: [...x.dims], data: out }];
}

function argmax(inputs: (Value | undefined)[], node: GraphNode): Value[] {
  const x = need(inputs, 0, node);
  const axis = normalizeAxis(intAttribute(node, 'axis', 0), x.dims.length, describeNode(node));
  const keep = intAttribute(node, 'keepdims', 1) === 1;
  const last = intAttribute(node, 'select_last_index', 0) === 1;
  const outer = sizeOf(x.dims.slice(0, axis));
  const span = x.dims[axis]!;
  const inner = sizeOf(x.dims.slice(axis + 1));
  const out = new BigInt64Array(outer * inner);
  const src = x.data;
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * span * inner + i;
      let best = 0;
      let bestValue = numberAt(src, base);
      for (let s = 1; s < span; s++) {
        const v = numberAt(src, base + s * inner);
        // NaN wins, as in onnxruntime's reduction.
        if (v > bestValue || (last && v === bestValue) || (Number.isNaN(v) && !Number.isNaN(bestValue))) {
          best = s;
          bestValue = v;
        }
      }
      out[o * inner + i] = BigInt(best);
    }
  }
  const dims = keep ? x.dims.map((d, i) => (i === axis ? 1 : d)) : x.dims.filter((_, i) => i !== axis);
  return [{ dims, data: out }];
}

/** Y = A · B for 2-D constants (folding only; inference uses the native gemm). */
function matmulReference(a: Value, b: Value, node: GraphNode): Value {
  const [m, k] = a.dims.length === 2 ? [a.dims[0]!, a.dims[1]!] : [1, a.dims[0] ?? 1];
  const n = b.dims[1] ?? 1;
  if ((b.dims[0] ?? 0) !== k) throw new UmbraError('LOAD_FAILED', `${describeNode(node)}: inner dimensions differ`);
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const av = numberAt(a.data, i * k + p);
      for (let j = 0; j < n; j++) out[i * n + j]! += av * numberAt(b.data, p * n + j);
    }
  }
  return { dims: a.dims.length === 2 ? [m, n] : [n], data: out };
}

function gemmReference(inputs: (Value | undefined)[], node: GraphNode): Value[] {
  let a = need(inputs, 0, node);
  let b = need(inputs, 1, node);
  if (intAttribute(node, 'transA', 0) === 1) a = transpose([a], { ...node, attributes: new Map() })[0]!;
  if (intAttribute(node, 'transB', 0) === 1) b = transpose([b], { ...node, attributes: new Map() })[0]!;
  const y = matmulReference(a, b, node);
  const alpha = floatAttribute(node, 'alpha', 1);
  const beta = floatAttribute(node, 'beta', 1);
  const scaled = { dims: y.dims, data: (y.data as Float32Array).map((v) => v * alpha) };
  const c = inputs[2];
  if (!c) return [scaled];
  const cb = { dims: c.dims, data: Float32Array.from(toNumbers(c), (v) => v * beta) };
  return binary((x, z) => x + z)([scaled, cb], node, { opset: 13 });
}

const relu = (x: number): number => (x > 0 ? x : 0);
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/** Every operator the reference can evaluate (for folding); RUNTIME_OPS is the subset served. */
export const REFERENCE_OPS: Readonly<Record<string, ReferenceOp>> = {
  Add: binary((a, b) => a + b),
  Sub: binary((a, b) => a - b),
  Mul: binary((a, b) => a * b),
  Div: binary((a, b) => a / b, (a, b) => Math.trunc(a / b)),
  Pow: binary((a, b) => a ** b),
  Relu: unary(relu),
  Sigmoid: unary(sigmoid),
  Tanh: unary(Math.tanh),
  Erf: unary(erf),
  Sqrt: unary(Math.sqrt),
  Neg: unary((x) => -x),
  Reciprocal: unary((x) => 1 / x),
  Gelu: (inputs, node) => unary(gelu(node))(inputs, node, { opset: 20 }),
  Identity: (inputs, node) => [need(inputs, 0, node)],
  Dropout: (inputs, node) => [need(inputs, 0, node)],
  Reshape: reshape,
  Flatten: flatten,
  Transpose: transpose,
  Unsqueeze: unsqueeze,
  Squeeze: squeeze,
  Concat: concat,
  Gather: gather,
  Shape: (inputs, node) => {
    const x = need(inputs, 0, node);
    return [{ dims: [x.dims.length], data: BigInt64Array.from(x.dims.map(BigInt)) }];
  },
  Cast: cast,
  Softmax: softmax,
  ArgMax: argmax,
  MatMul: (inputs, node) => [matmulReference(need(inputs, 0, node), need(inputs, 1, node), node)],
  Gemm: gemmReference,
};

/** Operators the native backend runs at inference (everything else is refused unless folded away). */
export const RUNTIME_OPS: ReadonlySet<string> = new Set([
  'MatMul', 'Gemm', 'Add', 'Sub', 'Mul', 'Div', 'Relu', 'Sigmoid', 'Tanh', 'Gelu', 'Softmax',
  'Flatten', 'Reshape', 'Identity', 'Dropout', 'ArgMax',
  // Shape arithmetic some exporters emit around Reshape (x.view(x.size(0), -1)): cheap in JS.
  'Shape', 'Gather', 'Unsqueeze', 'Squeeze', 'Concat',
]);
