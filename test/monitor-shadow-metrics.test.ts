// Shadow runs in the request metrics: umbra_inferences_total and umbra_executions_total count
// their rows and batches under role="shadow", as umbra_requests_total counts their requests.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { parseExposition, total } from './helpers/prometheus.js';

t.test('umbra_inferences_total{role="shadow"} counts the rows shadow runs inferred', async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.writeConfig('affine', { version_policy: { all: {} } });
  repo.addVersion('affine', 1, affineModel(2, 1));
  repo.addVersion('affine', 2, affineModel(2, 1));
  const s = await startTestServer(t, { repository: repo.dir, workers: 1 });
  const put = await s.request('PUT', '/v2/models/affine/traffic', JSON.stringify({ primary: '1', canary: null, shadows: [{ version: '2', sample: 1 }] }), { 'content-type': 'application/json' });
  t.equal(put.status, 200, put.text);
  const requests = 20;
  const rows = 3;
  for (let i = 0; i < requests; i++) {
    const r = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', shape: [rows, 4], datatype: 'FP32', data: Array.from({ length: rows * 4 }, (_, k) => k + i) }] });
    t.equal(r.status, 200);
  }
  // Shadows run after the answer; wait (bounded) until every copy has been run or dropped.
  const deadline = Date.now() + 20_000;
  let shadow: { requests: number; dropped: number } = { requests: 0, dropped: 0 };
  while (Date.now() < deadline) {
    shadow = (await s.get('/v2/models/affine/shadow')).json.versions['2'];
    if (shadow.requests + shadow.dropped >= requests) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.equal(shadow.requests + shadow.dropped, requests, 'every copy accounted for');
  const m = parseExposition((await s.get('/metrics')).text);
  const ran = total(m, 'umbra_requests_total', { model: 'affine', version: '2', role: 'shadow', outcome: 'success' });
  t.equal(ran, shadow.requests, 'requests counted');
  t.ok(ran > 0, 'some shadow runs happened');
  t.equal(total(m, 'umbra_inferences_total', { model: 'affine', version: '2', role: 'shadow' }), ran * rows, 'rows counted');
  const executions = total(m, 'umbra_executions_total', { model: 'affine', version: '2', role: 'shadow' });
  t.ok(executions > 0 && executions <= ran, `executions counted (${executions})`);
  t.equal(total(m, 'umbra_inferences_total', { model: 'affine', version: '1', role: 'primary' }), requests * rows, 'the primary as before');
  const stats = (await s.get('/v2/models/affine/versions/2/stats')).json;
  t.equal(stats.model_stats[0].inference_count, ran * rows, 'Triton statistics count the shadow rows too');
});
