// Model worker entry (run by piscina). Keeps one session per model load key, opened on first use,
// released when the main thread broadcasts an eviction.
import { BroadcastChannel, threadId, workerData } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { fastestRunMicros, hasLengthDims, outputRowsOf, placeholderInputs, PROBE_LENGTH, type Backend, type BackendSession } from './backends/backend.js';
import { onnxruntimeBackend } from './backends/onnxruntime.js';
import { nativeBackend } from './backends/native.js';
import { osThreadId } from '../core/threads.js';
import {
  SESSION_CHANNEL, TaskProgress, ownedTensor, tensorBuffers,
  type EvictMessage, type HelloMessage, type PoolWorkerData, type RunResult, type SessionSpec, type WarmResult, type WireTensor, type WorkerTask,
} from './messages.js';

const poolData = workerData as PoolWorkerData | undefined;
const progressFlags = poolData?.progress ? new Int32Array(poolData.progress) : undefined;
/** Evictions the pool has posted, and how many of them this worker has applied (PoolWorkerData.evictions). */
const posted = poolData?.evictions ? new Int32Array(poolData.evictions) : undefined;
let applied = 0;

const sessions = new Map<string, Promise<BackendSession>>();
const evicted = new Set<string>();

const backends: Record<string, Backend> = { onnxruntime: onnxruntimeBackend, native: nativeBackend };

async function backendFor(name: SessionSpec['backend']): Promise<Backend> {
  const backend = backends[name];
  if (!backend) throw new Error(`backend ${name} is not available in this build`);
  return backend;
}

function sessionFor(spec: SessionSpec): Promise<BackendSession> {
  if (evicted.has(spec.key)) throw new Error(`model load ${spec.key} was unloaded`);
  let s = sessions.get(spec.key);
  if (!s) {
    s = backendFor(spec.backend).then((b) => b.open(spec));
    sessions.set(spec.key, s);
    // A failed open must not poison the cache: the next task retries.
    s.catch(() => sessions.delete(spec.key));
  }
  return s;
}

/** While applyEvictions lets the channel in (no session in use): the releases it then waits for. */
let releasing: Promise<unknown>[] | undefined;

function releaseSession(key: string): Promise<unknown> {
  const s = sessions.get(key);
  sessions.delete(key);
  return s ? s.then((session) => session.release()).catch(() => undefined) : Promise.resolve();
}

const channel = new BroadcastChannel(SESSION_CHANNEL);
channel.onmessage = (event: unknown) => {
  const msg = (event as { data: EvictMessage }).data;
  if ((msg?.kind === 'park' || msg?.kind === 'evict') && msg.pool === poolData?.pool) applied += 1;
  if (msg?.kind === 'park') {
    const key = msg.key;
    // Inside applyEvictions nothing holds a session: released now, or an idle worker, back in
    // Atomics.wait right after, would keep it. Otherwise (a run awaiting the device) in turn
    // with the tasks: one queued before it finishes on the session, one after reopens it.
    if (releasing) releasing.push(releaseSession(key));
    else tail = tail.then(() => releaseSession(key));
    return;
  }
  if (msg?.kind !== 'evict') return;
  evicted.add(msg.key);
  const released = releaseSession(msg.key);
  releasing?.push(released);
};
channel.unref();
// Evictions posted before this worker listened are of sessions it never had (a worker started in
// place of a lost one): counted as applied. Read after the channel listens, so one posted between
// the two is counted twice at worst, and the comparisons below are "posted beyond applied".
if (posted) applied = Atomics.load(posted, 0);
if (poolData) channel.postMessage({ kind: 'hello', pool: poolData.pool, tid: osThreadId() } satisfies HelloMessage);


/** Returns `value` to the main thread with `buffers` moved, not copied. */
function transferable<T extends object>(value: T, buffers: ArrayBuffer[]): T {
  const movable = {
    get [Piscina.transferableSymbol]() { return buffers; },
    get [Piscina.valueSymbol]() { return value; },
  };
  return Piscina.move(movable as never) as unknown as T;
}

/**
 * Tasks run one at a time. A staged task is posted while this worker runs another; a synchronous
 * run keeps it unread until done, but an asynchronous one (a GPU run, a session still opening)
 * would let it start alongside.
 */
let tail: Promise<unknown> = Promise.resolve();

export default function handle(task: WorkerTask): Promise<RunResult | WarmResult | Record<string, never>> {
  const slot = task.kind === 'run' && progressFlags ? task.progressSlot : undefined;
  const run = tail.then(() => perform(task));
  // Raised with the answer in hand, before piscina posts it: lost now, it may be had again by
  // running the task elsewhere. (A task that threw stays begun: it failed, wherever it ran.)
  const turn = slot === undefined ? run : run.then((r) => {
    Atomics.store(progressFlags!, slot, TaskProgress.answered);
    if (task.kind === 'run' && task.fault === 'lose-answer' && process.env.UMBRA_FAULT_INJECTION === '1') process.exit(70);
    return r;
  });
  tail = turn.catch(() => undefined);
  return turn;
}

/** The same handler under the name the pool's balancer reads as "may wait behind a running task". */
export const staged = handle;

/**
 * Lets the session channel's messages in until this worker has applied every eviction the pool
 * posted: between tasks it blocks in Atomics.wait, where its event loop does not run.
 */
async function applyEvictions(): Promise<void> {
  const released: Promise<unknown>[] = [];
  releasing = released;
  try {
    for (let turn = 0; posted && Atomics.load(posted, 0) > applied && turn < 100; turn++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    releasing = undefined;
  }
  // Done before the task answers: the pool hands the freed memory back to the OS once the flush
  // tasks are answered (WorkerPool.release).
  await Promise.all(released);
}

async function perform(task: WorkerTask): Promise<RunResult | WarmResult | Record<string, never>> {
  if (task.kind === 'run' && task.progressSlot !== undefined && progressFlags) Atomics.store(progressFlags, task.progressSlot, TaskProgress.begun);
  if (posted && Atomics.load(posted, 0) > applied) await applyEvictions();
  if (task.kind === 'flush') return {};
  const session = await sessionFor(task.session);
  if (task.kind === 'warm') {
    // One real inference on placeholder inputs, so the first request does not pay for lazy init.
    const first = await session.run(placeholderInputs(session.inputs), []);
    const warmed: WarmResult = { inputs: session.inputs, outputs: session.outputs, threadId, outputRows: [{ rows: 1, length: 1, outputs: outputRowsOf(first) }] };
    if (task.probeRows) {
      const probe = await fastestRunMicros(session, task.probeRows);
      warmed.probeMicros = probe.micros;
      warmed.outputRows!.push({ rows: task.probeRows, length: 1, outputs: probe.outputRows });
      if (hasLengthDims(session.inputs)) {
        try {
          const long = await fastestRunMicros(session, task.probeRows, 11, PROBE_LENGTH);
          warmed.probeLength = { length: PROBE_LENGTH, micros: long.micros };
          warmed.outputRows!.push({ rows: task.probeRows, length: PROBE_LENGTH, outputs: long.outputRows });
        } catch (err) {
          warmed.probeLength = { length: PROBE_LENGTH, error: (err as Error).message.split('\n')[0]! };
        }
      }
    }
    if (session.tuned) warmed.tuned = session.tuned;
    if (session.layers) warmed.layers = session.layers();
    if (session.accuracy) warmed.accuracy = session.accuracy;
    if (session.providerNote) warmed.providerNote = session.providerNote;
    return warmed;
  }
  if ((task.fault === 'crash' || task.fault === 'throw') && process.env.UMBRA_FAULT_INJECTION === '1') {
    if (task.fault === 'crash') process.exit(70);
    throw new Error('injected fault');
  }
  const started = performance.now();
  let ran: WireTensor[];
  try {
    ran = session.runSync ? session.runSync(task.inputs, task.outputs) : await session.run(task.inputs, task.outputs);
  } catch (err) {
    // Answered, not thrown: the pool tells the backend's refusal of these inputs from a worker lost.
    return { outputs: [], computeMs: performance.now() - started, threadId, runError: err instanceof Error ? err.message : String(err) };
  }
  const computeMs = performance.now() - started;
  // Backends may answer with views (the native one carves results from shared slabs): a transfer
  // moves whole ArrayBuffers, so each output gets one of its own first.
  const outputs = ran.map(ownedTensor);
  const result: RunResult = { outputs, computeMs, threadId };
  const outputBuffers = tensorBuffers(outputs);
  // The inputs go back too, for the pool to copy later inputs into (a backend that answers with
  // an input's own buffer keeps that one: it left with the outputs).
  const spent = tensorBuffers(task.inputs).filter((b) => !outputBuffers.includes(b));
  if (spent.length > 0) result.spent = spent;
  return transferable(result, [...outputBuffers, ...spent]);
}
