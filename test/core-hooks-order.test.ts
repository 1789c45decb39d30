// The hooks (monitoring: drift, feedback, the prediction log) see a request after an answer bound
// for an I/O thread has been posted, so what they cost is not part of the answer's latency; and
// still before the next I/O event, so a client holding its answer finds them done.
import t from 'tap';
import { tempRepo, affineModel, slowModel } from './helpers/repo.js';
import { Inbox, Outbox, SlabWriter, packResponse } from '../dist/server/io/wire.js';

t.test('an answer posted the way the I/O hub posts it leaves before the hooks run', async (t) => {
  const r = tempRepo();
  t.teardown(() => r.remove());
  // One model run on the event loop, one on a worker thread (its answer comes back in a message event).
  r.addVersion('fast', 1, affineModel(2, 1));
  r.writeConfig('fast', { parameters: { execution: 'inline' } });
  r.addVersion('slow', 1, slowModel(256, 8));
  r.writeConfig('slow', { parameters: { execution: 'worker' } });
  const { Umbra } = await import('../dist/index.js');
  const umbra = await Umbra.open({ repository: r.dir, workers: 1 });
  t.teardown(() => umbra.close());

  const posted: number[] = [];
  // The I/O hub's outbox: replies pushed in one turn go out in one message, on the next tick.
  const inbox = new Inbox<{ id: number }>();
  const outbox = new Outbox<{ id: number }>((envelope) => { for (const m of inbox.open(envelope)) posted.push(m.id); }, process.nextTick);
  const seenAtHook: { model: string; posted: number[] }[] = [];
  umbra.hooks.use({ onResult: (e) => { seenAtHook.push({ model: e.model, posted: [...posted] }); } });
  let settled = 0;
  for (const [id, model, width] of [[1, 'fast', 4], [2, 'slow', 256]] as const) {
    const request = { parameters: {}, inputs: [{ name: 'x', datatype: 'FP32' as const, shape: [1, width], data: new Float32Array(width).fill(1) }] };
    await new Promise<void>((resolve, reject) => {
      umbra.infer(model, undefined, request).then((result) => {
        outbox.push({ id });
        packResponse(result.response, new SlabWriter());
        settled += 1;
        // A macrotask later (the next I/O event at the earliest), the hooks must have run.
        setImmediate(resolve);
      }, reject);
    });
  }
  t.equal(settled, 2);
  t.same(seenAtHook, [{ model: 'fast', posted: [1] }, { model: 'slow', posted: [1, 2] }], 'each answer was posted before the hooks saw its request, and the hooks ran before the next macrotask');
});
