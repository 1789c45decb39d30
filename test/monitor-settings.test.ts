// `umbra serve` monitoring flags: defaults, off switches and the messages for bad values.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveServeSettings } from '../dist/cli/settings.js';
import { parseThresholds } from '../dist/monitor/settings.js';
import { LOG_DEFAULTS } from '../dist/monitor/prediction-log.js';

t.test('defaults: everything on, the log in the state directory', async (t) => {
  const s = resolveServeSettings({ repo: '/srv/models', stateDir: '/var/lib/umbra' }, {});
  t.match(s.monitoring, { log: { url: 'sqlite:/var/lib/umbra/predictions.sqlite', inputs: true }, drift: {}, stateDir: '/var/lib/umbra' });
  t.same(LOG_DEFAULTS, { sample: 1, inputsSample: 0.1, retentionDays: 30, maxRows: 10_000_000, tensorMaxValues: 65_536 }, 'as docs/monitoring.md says');
  t.equal(resolveServeSettings({ repo: '/srv/models', monitoring: 'off' }, {}).monitoring, false);
  const noLog = resolveServeSettings({ repo: '/srv/models', logDb: 'off' }, {}).monitoring;
  t.equal(noLog && noLog.log, undefined);
});

t.test('flags, environment and their checks', async (t) => {
  const s = resolveServeSettings({ repo: 'r', logDb: 'postgres://u@h/db', logSample: '0.25', logInputs: 'off', logInputsSample: '0.5', logMaxRows: '1000', metricsBuckets: '0.001,0.01', driftWindow: '500', driftThresholds: 'ks=0.01,psi=0.2', webhook: 'http://127.0.0.1:9/x', accuracyThreshold: '0.9' }, {});
  t.same(s.monitoring, {
    buckets: [0.001, 0.01],
    drift: { windowRows: 500, thresholds: { ks: 0.01, psi: 0.2 } },
    log: { url: 'postgres://u@h/db', inputs: false, sample: 0.25, inputsSample: 0.5, maxRows: 1000 },
    webhook: { url: 'http://127.0.0.1:9/x' },
    accuracyThreshold: 0.9,
    stateDir: s.stateDir,
  });
  t.match(resolveServeSettings({ repo: 'r' }, { UMBRA_LOG_DB: 'sqlite:/tmp/x.db' }).monitoring, { log: { url: 'sqlite:/tmp/x.db' } });
  t.throws(() => resolveServeSettings({ repo: 'r', logSample: '2' }, {}), /--log-sample/);
  t.throws(() => resolveServeSettings({ repo: 'r', logInputsSample: '-0.1' }, {}), /--log-inputs-sample/);
  t.throws(() => resolveServeSettings({ repo: 'r', monitoring: 'maybe' }, {}), /expected on or off for --monitoring/);
  t.throws(() => resolveServeSettings({ repo: 'r', webhook: 'ftp://x' }, {}), /--webhook/);
  t.throws(() => resolveServeSettings({ repo: 'r', metricsBuckets: '1,0.5' }, {}), /ascending/);
  t.throws(() => parseThresholds('kl=0.1'), /--drift-thresholds/);
  // A window that can never hold the minimum sample would leave drift inconclusive forever.
  t.throws(() => resolveServeSettings({ repo: 'r', driftWindow: '50' }, {}), { message: /^--drift-window 50 is smaller than --drift-min-samples 100: the window would never hold enough rows for a drift verdict/ });
  t.match(resolveServeSettings({ repo: 'r', driftWindow: '50', driftMinSamples: '20' }, {}).monitoring, { drift: { windowRows: 50, minSamples: 20 } }, 'a window at or above the minimum is taken');
  // A p-value is below 1 and a Jensen-Shannon distance at most sqrt(ln 2): beyond, every feature
  // would always drift, or none ever could.
  t.throws(() => parseThresholds('ks=2'), { message: 'expected a p-value above 0 and below 1 for ks in --drift-thresholds but received 2' });
  t.throws(() => parseThresholds('chi2=1'), /a p-value above 0 and below 1 for chi2/);
  t.throws(() => parseThresholds('js=0.9'), /at most 0\.83 \(the largest Jensen-Shannon distance\) for js/);
  t.same(parseThresholds('ks=0.01,chi2=0.2,psi=3,js=0.5'), { ks: 0.01, chi2: 0.2, psi: 3, js: 0.5 }, 'values inside the ranges pass');
});

t.test('--error-threshold: the regression alert from the flag, the environment or the config file', async (t) => {
  t.match(resolveServeSettings({ repo: 'r', errorThreshold: '2.5' }, {}).monitoring, { errorThreshold: 2.5 }, 'the flag');
  t.match(resolveServeSettings({ repo: 'r' }, { UMBRA_ERROR_THRESHOLD: '0.75' }).monitoring, { errorThreshold: 0.75 }, 'UMBRA_ERROR_THRESHOLD');
  const dir = mkdtempSync(join(tmpdir(), 'umbra-error-threshold-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'umbra.json');
  writeFileSync(file, JSON.stringify({ repo: 'r', errorThreshold: 4 }));
  t.match(resolveServeSettings({ config: file }, {}).monitoring, { errorThreshold: 4 }, 'the config file key errorThreshold');
  const unset = resolveServeSettings({ repo: 'r' }, {}).monitoring;
  t.equal(unset && unset.errorThreshold, undefined, 'unset: no error alert');
  t.throws(() => resolveServeSettings({ repo: 'r', errorThreshold: '0' }, {}), { message: '--error-threshold "0": expected a positive number (the live mean absolute error above which a regression model alerts)' }, 'zero is refused');
  t.throws(() => resolveServeSettings({ repo: 'r', errorThreshold: '-1' }, {}), { message: 'expected a number in 0..inf for --error-threshold but received "-1"' }, 'a negative error is refused');
  t.throws(() => resolveServeSettings({ repo: 'r', errorThreshold: 'Infinity' }, {}), /for --error-threshold but received "Infinity"/, 'an infinite one too');
  t.throws(() => resolveServeSettings({ repo: 'r' }, { UMBRA_ERROR_THRESHOLD: 'high' }), /UMBRA_ERROR_THRESHOLD \(environment\).*--error-threshold/, 'the environment is named where the bad value came from');
});
