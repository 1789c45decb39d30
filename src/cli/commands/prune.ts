// `umbra prune IN.onnx OUT.onnx`: magnitude pruning (global, per layer, N:M, structured) with a
// per-layer report, optional accuracy before/after and an accuracy-sparsity sweep.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import cliProgress from 'cli-progress';
import { formatReport, runPrune, TargetPatternError, type LayerTarget, type PruneRunOptions, type RunProgress } from '../../prune/index.js';
import { cudaStatus } from '../../native/cuda.js';
import { UsageError } from '../settings.js';
import { sameFile } from '../../real-path.js';
import { GPU_PRECISIONS, type GpuPrecision } from '../../repository/config.js';

interface PruneFlags {
  sparsity?: string;
  method?: string;
  nm?: string;
  norm?: string;
  layer: string[];
  exclude: string[];
  includeOutputLayer?: boolean;
  minLayerSparsity?: string;
  maxLayerSparsity?: string;
  eval?: string;
  label?: string;
  evalFilter?: string;
  evalOutput?: string;
  precision?: string;
  sweep?: string;
  plot?: string;
  threads?: string;
  device?: string;
  json?: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function registerPrune(program: Command): void {
  program.command('prune')
    .description('zero the smallest-magnitude weights of an ONNX model (MatMul/Gemm/Conv weights; biases and norms are left alone)')
    .argument('<in>', 'input model (.onnx; external data next to it is read)')
    .argument('[out]', 'output model (external data goes to OUT.data); optional with --sweep')
    .option('--sparsity <s>', 'fraction of weights to zero, in [0, 1]')
    .option('--method <method>', 'global (one threshold over all weights; the default), layer (each weight at --sparsity), nm, structured')
    .option('--nm <N:M>', 'N:M pattern for --method nm: keep N of every M weights along the input dimension (default 2:4)')
    .option('--norm <l1|l2>', 'norm ranking output units for --method structured, and the norm the report says is kept', 'l2')
    .option('--layer <name=s>', 'per-layer target by initializer/node name or glob, repeatable (e.g. --layer "fc1*=0.5")', collect, [])
    .option('--exclude <pattern>', 'leave weights matching a name or glob unpruned, repeatable', collect, [])
    .option('--include-output-layer', 'structured: prune the output layer too (left dense by default: its output units are the model\'s outputs, e.g. classes)')
    .option('--min-layer-sparsity <s>', 'global method: prune at least this fraction of every layer')
    .option('--max-layer-sparsity <s>', 'global method: prune at most this fraction of any layer')
    .option('--eval <data>', 'labelled CSV or Parquet data: report accuracy (classifiers) or RMSE before and after')
    .option('--label <column>', 'label column of --eval data')
    .option('--eval-filter <column=value>', 'score only rows where column = value, e.g. split=test')
    .option('--eval-output <name>', 'model output to score (default: an integer label output, else the first)')
    .option('--precision <p1,p2,...>', 'with --eval: also score before and after on the GPU through the native backend at each precision (fp32, tf32, bf16), as a model config\'s precision serves it')
    .option('--sweep <s1,s2,...>', 'prune at each sparsity and score it (needs --eval)')
    .option('--plot <file.svg>', 'write the sweep curve as an SVG')
    .option('--threads <n>', 'threads for threshold selection and scoring (default: all cores)')
    .option('--device <cpu|cuda>', 'where global/layer magnitude selection and masking run (cuda: exact same cuts, no --min/--max-layer-sparsity)', 'cpu')
    .option('--json', 'print the report as JSON on stdout')
    .action(async (input: string, output: string | undefined, flags: PruneFlags) => prune(input, output, flags));
}

/** A sparsity in [0, 1]; `example` shows the flag as written (--layer takes NAME=S, not NAME S). */
function fraction(raw: string, flag: string, example = `${flag} 0.9`): number {
  const v = raw.trim() === '' ? Number.NaN : Number(raw);
  if (!(v >= 0 && v <= 1)) throw new UsageError(`${flag}: expected a number in [0, 1] but received ${JSON.stringify(raw)}; e.g. ${example}`);
  return v;
}

function pair(raw: string, flag: string, example: string): { key: string; value: string } {
  const eq = raw.lastIndexOf('=');
  if (eq <= 0 || eq === raw.length - 1) throw new UsageError(`${flag}: expected ${example} but received ${JSON.stringify(raw)}`);
  return { key: raw.slice(0, eq), value: raw.slice(eq + 1) };
}

const isMethod = (m: string): m is PruneRunOptions['method'] => ['global', 'layer', 'nm', 'structured'].includes(m);

/** Turns flags into run options; every mistake names its flag and the fix. */
export function pruneOptionsFromFlags(input: string, output: string | undefined, flags: PruneFlags): PruneRunOptions {
  if (!existsSync(input)) throw new UsageError(`IN: ${input} does not exist; give the path of an .onnx model`);
  const methods = ['global', 'layer', 'nm', 'structured'] as const;
  const method = flags.method ?? (flags.nm !== undefined ? 'nm' : 'global');
  if (!isMethod(method)) throw new UsageError(`--method: expected one of ${methods.join(', ')} but received ${JSON.stringify(method)}`);
  if (flags.nm !== undefined && method !== 'nm') throw new UsageError(`--nm: only applies to --method nm (received --method ${method}); drop --nm or use --method nm`);
  let nm: { n: number; m: number } | undefined;
  if (method === 'nm') {
    const match = /^(\d+):(\d+)$/.exec((flags.nm ?? '2:4').trim());
    const n = Number(match?.[1]);
    const m = Number(match?.[2]);
    if (!match || m < 1 || m > 1024 || n > m) throw new UsageError(`--nm: expected N:M with 0 <= N <= M <= 1024, e.g. --nm 2:4, but received ${JSON.stringify(flags.nm)}`);
    nm = { n, m };
  }
  const norm = flags.norm ?? 'l2';
  if (norm !== 'l1' && norm !== 'l2') throw new UsageError(`--norm: expected l1 or l2 but received ${JSON.stringify(norm)}`);

  const sweep = flags.sweep === undefined ? [] : flags.sweep.split(',').map((s) => fraction(s, '--sweep'));
  if (flags.sweep !== undefined && sweep.length === 0) throw new UsageError('--sweep: expected sparsities like 0.5,0.7,0.9');
  if (sweep.length > 0 && flags.eval === undefined) throw new UsageError('--sweep: needs --eval DATA.csv --label COLUMN to score each sparsity');
  if (sweep.length > 0 && method === 'nm') throw new UsageError('--sweep: N:M pruning has one sparsity; use --method global, layer or structured');
  if (flags.plot !== undefined && sweep.length === 0) throw new UsageError('--plot: draws the --sweep curve; add --sweep 0.5,0.7,0.9');
  if (output === undefined && sweep.length === 0) throw new UsageError('OUT: missing the output model path (umbra prune IN.onnx OUT.onnx --sparsity 0.9)');
  // A symlink or hard link to IN counts as IN (writing through it would overwrite the input): refused
  // here, before the work, as IN itself is.
  if (output !== undefined && sameFile(output, input)) {
    const link = resolve(output) === resolve(input) ? '' : ` (a link to ${input})`;
    throw new UsageError(`OUT: ${output} is the input model${link}; write the pruned model to another path (umbra prune IN.onnx OUT.onnx)`);
  }

  let sparsity = 0;
  if (method !== 'nm') {
    if (flags.sparsity === undefined) {
      if (output !== undefined) throw new UsageError(`--sparsity: required with --method ${method}; e.g. --sparsity 0.9`);
    } else {
      sparsity = fraction(flags.sparsity, '--sparsity');
    }
  } else if (flags.sparsity !== undefined) {
    throw new UsageError(`--sparsity: N:M pruning sets its own sparsity (1 - N/M); drop --sparsity or use another --method`);
  }

  const layers: LayerTarget[] = flags.layer.map((raw) => {
    const { key, value } = pair(raw, '--layer', 'NAME=S such as --layer fc1.weight=0.5');
    return { pattern: key, sparsity: fraction(value, `--layer ${key}`, `--layer "${key}=0.9"`) };
  });
  if (layers.length > 0 && method === 'nm') throw new UsageError('--layer: per-layer targets do not apply to --method nm; use --exclude to leave layers dense');
  if (flags.includeOutputLayer && method !== 'structured') {
    throw new UsageError(`--include-output-layer: only applies to --method structured (received --method ${method}), where the output layer is left dense by default`);
  }
  const bounds: Pick<PruneRunOptions, 'minLayerSparsity' | 'maxLayerSparsity'> = {};
  if (flags.minLayerSparsity !== undefined) bounds.minLayerSparsity = fraction(flags.minLayerSparsity, '--min-layer-sparsity');
  if (flags.maxLayerSparsity !== undefined) bounds.maxLayerSparsity = fraction(flags.maxLayerSparsity, '--max-layer-sparsity');
  if ((bounds.minLayerSparsity !== undefined || bounds.maxLayerSparsity !== undefined) && method !== 'global') {
    throw new UsageError(`--min-layer-sparsity/--max-layer-sparsity: only apply to --method global (received --method ${method})`);
  }
  if ((bounds.minLayerSparsity ?? 0) > (bounds.maxLayerSparsity ?? 1)) throw new UsageError('--min-layer-sparsity: must not be above --max-layer-sparsity');
  if (bounds.minLayerSparsity !== undefined && bounds.minLayerSparsity > sparsity && output !== undefined) {
    throw new UsageError(`--min-layer-sparsity: ${bounds.minLayerSparsity} is above --sparsity ${sparsity}; no layer could stay below the global target`);
  }
  if (bounds.maxLayerSparsity !== undefined && bounds.maxLayerSparsity < sparsity && output !== undefined) {
    throw new UsageError(`--max-layer-sparsity: ${bounds.maxLayerSparsity} is below --sparsity ${sparsity}; no layer could reach the global target`);
  }

  let threads = Math.max(1, availableParallelism());
  if (flags.threads !== undefined) {
    threads = Number(flags.threads);
    if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw new UsageError(`--threads: expected an integer in [1, 256] but received ${JSON.stringify(flags.threads)}`);
  }

  const device = flags.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw new UsageError(`--device: expected cpu or cuda but received ${JSON.stringify(device)}`);
  if (device === 'cuda') {
    if (method === 'nm' || method === 'structured') throw new UsageError(`--device cuda: runs --method global or layer; --method ${method} runs on the CPU (drop --device)`);
    if (bounds.minLayerSparsity !== undefined || bounds.maxLayerSparsity !== undefined) {
      throw new UsageError('--device cuda: --min-layer-sparsity/--max-layer-sparsity run on the CPU only; drop them or --device');
    }
    const status = cudaStatus();
    if (!status.available) throw new UsageError(`--device cuda: ${status.reason}; use --device cpu, or run on a host with a CUDA GPU`);
  }

  const options: PruneRunOptions = {
    input, method, sparsity, norm, layers, exclude: flags.exclude, threads, ...bounds, ...(flags.includeOutputLayer && { includeOutputLayer: true }), ...(nm && { nm }), device,
    ...(output !== undefined && { output }), ...(sweep.length > 0 && { sweep }), ...(flags.plot !== undefined && { plot: flags.plot }),
  };
  if (flags.label !== undefined && flags.eval === undefined) throw new UsageError('--label: names the label column of --eval DATA.csv; add --eval');
  if ((flags.evalFilter !== undefined || flags.evalOutput !== undefined) && flags.eval === undefined) throw new UsageError('--eval-filter/--eval-output: need --eval DATA.csv');
  if (flags.precision !== undefined && flags.eval === undefined) throw new UsageError('--precision: scores the model at each precision on --eval DATA.csv; add --eval and --label');
  if (flags.eval !== undefined) {
    if (!existsSync(flags.eval)) throw new UsageError(`--eval: ${flags.eval} does not exist`);
    if (flags.label === undefined) throw new UsageError('--eval: needs --label COLUMN (the column holding the true class or value)');
    options.eval = { data: flags.eval, label: flags.label };
    if (flags.evalFilter !== undefined) {
      const { key, value } = pair(flags.evalFilter, '--eval-filter', 'COLUMN=VALUE such as --eval-filter split=test');
      options.eval.filter = { column: key, value };
    }
    if (flags.evalOutput !== undefined) options.eval.output = flags.evalOutput;
    if (flags.precision !== undefined) options.eval.precisions = precisionList(flags.precision);
  }
  return options;
}

/** --precision fp32,bf16: GPU precisions to score at, on a host with a usable CUDA device. */
function precisionList(raw: string): GpuPrecision[] {
  const list = raw.split(',').map((p) => p.trim()).filter((p) => p !== '');
  const unknown = list.filter((p) => !(GPU_PRECISIONS as readonly string[]).includes(p));
  if (list.length === 0 || unknown.length > 0) throw new UsageError(`--precision: expected a comma-separated list of ${GPU_PRECISIONS.join(', ')} but received ${JSON.stringify(raw)}`);
  const status = cudaStatus();
  if (!status.available) throw new UsageError(`--precision: scores on a CUDA GPU through the native backend, but ${status.reason}; drop --precision to score on the CPU with onnxruntime, or run on a host with a CUDA GPU`);
  return [...new Set(list)] as GpuPrecision[];
}

const count = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : String(n));

/** A bar on a terminal, plain lines otherwise; always on stderr so --json stdout stays clean. */
function progressPrinter(tty: boolean): { on(e: RunProgress): void; stop(): void } {
  const write = (line: string) => process.stderr.write(`${line}\n`);
  const bar = tty ? new cliProgress.SingleBar({
    format: 'prune |{bar}| {percentage}% | {what}', stream: process.stderr, hideCursor: true, fps: 5,
  }, cliProgress.Presets.shades_classic) : null;
  let barOn = false;
  let lastLine = 0;
  const stopBar = () => {
    if (barOn) bar!.stop();
    barOn = false;
  };
  return {
    on(e) {
      if (e.stage === 'prune') {
        const what = `${count(e.progress.done)} of ${count(e.progress.total)} weights${e.progress.layer ? ` (${e.progress.layer})` : ''}`;
        if (bar) {
          if (!barOn) bar.start(Math.max(1, e.progress.total), e.progress.done, { what });
          else bar.update(e.progress.done, { what });
          barOn = true;
          if (e.progress.done >= e.progress.total) stopBar();
          return;
        }
        const now = performance.now();
        if (e.progress.done === 0 || e.progress.done >= e.progress.total || now - lastLine > 1000) {
          lastLine = now;
          write(`prune: ${e.sparsity === null ? '' : `sparsity ${e.sparsity}: `}${what}`);
        }
        return;
      }
      stopBar();
      if (e.stage === 'sweep') write(`prune: sweep ${e.done}/${e.total}${e.done < e.total ? `, next sparsity ${e.sparsity}` : ' done'}`);
      else write(`prune: ${e.message}`);
    },
    stop: stopBar,
  };
}

async function prune(input: string, output: string | undefined, flags: PruneFlags): Promise<void> {
  const options = pruneOptionsFromFlags(input, output, flags);
  const printer = progressPrinter(Boolean(process.stderr.isTTY));
  options.onProgress = (e) => printer.on(e);
  try {
    const report = await runPrune(options);
    printer.stop();
    process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  } catch (err) {
    printer.stop();
    if (err instanceof TargetPatternError) throw new UsageError(`${err.flag}: ${err.message}`);
    throw err;
  }
}
