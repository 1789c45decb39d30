// A real Prometheus server scrapes a running Umbra: the series arrive and move with traffic.
import t from 'tap';
import { startTestServer } from './helpers/server.js';
import { tempRepo, affineModel } from './helpers/repo.js';
import { eventually, findBinary, startPrometheus } from './helpers/prometheus.js';

const PROMETHEUS = findBinary('prometheus');

t.test('Prometheus scrapes /metrics and PromQL sees the traffic', { skip: PROMETHEUS ? false : 'prometheus is not installed (apt-get install -y prometheus; .ci/run installs it)' }, async (t) => {
  const repo = tempRepo();
  t.teardown(() => repo.remove());
  repo.addVersion('affine', 1, affineModel(3, -1));
  const s = await startTestServer(t, { repository: repo.dir });
  const prom = await startPrometheus(`127.0.0.1:${s.server.port}`);
  t.teardown(() => prom.stop());

  const send = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const r = await s.post('/v2/models/affine/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: [0.5, 1.25, -2, 3, i, 1.5, 2.5, -0.75] }] });
      t.equal(r.status, 200);
    }
  };
  await send(5);
  const successes = async () => {
    const r = await prom.query('sum(umbra_requests_total{model="affine",version="1",role="primary",outcome="success"})');
    return r.length === 0 ? 0 : Number(r[0]!.value[1]);
  };
  await eventually(async () => (await successes()) === 5, 'Prometheus to ingest 5 requests');

  // The series move: more traffic, higher counter.
  await send(7);
  await eventually(async () => (await successes()) === 12, 'Prometheus to ingest 12 requests');
  const rows = await prom.query('sum(umbra_inferences_total{model="affine"})');
  t.equal(Number(rows[0]!.value[1]), 24);
  for (const name of ['umbra_request_duration_seconds_bucket', 'umbra_queue_duration_seconds_count', 'umbra_compute_duration_seconds_sum', 'umbra_executions_total', 'umbra_pending_requests', 'process_cpu_seconds_total']) {
    const r = await prom.query(name);
    t.ok(r.length > 0, `${name} is scraped`);
  }
  const up = await prom.query('up{job="umbra"}');
  t.equal(up[0]?.value[1], '1', 'the target is up');
  const avgBatch = await prom.query('sum(umbra_inferences_total) / sum(umbra_executions_total)');
  t.ok(Number(avgBatch[0]!.value[1]) >= 2, 'average batch size is derivable');
});
