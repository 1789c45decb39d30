import t from 'tap';
import { ERROR_CODES, UmbraError, toErrorBody, type ErrorCode } from '../dist/errors.js';

t.test('every code answers with its registered status and the message as {"error"}', async (t) => {
  const codes = Object.keys(ERROR_CODES) as ErrorCode[];
  const bodies = codes.map((code) => toErrorBody(new UmbraError(code, `because of ${code}`)));
  t.same(bodies, codes.map((code) => ({ status: ERROR_CODES[code].status, body: { error: `because of ${code}` } })));
  t.same(toErrorBody(new UmbraError('QUEUE_FULL', 'full', { retryAfter: 1 })), { status: 503, body: { error: 'full' }, retryAfter: 1 });
  t.same(toErrorBody(new TypeError('boom')), { status: 500, body: { error: 'internal error: boom' } });
});

t.test('refusals under load carry no stack; other errors keep theirs; the stack limit is left as it was', async (t) => {
  const before = Error.stackTraceLimit;
  const shedding = (['QUEUE_FULL', 'NOT_READY', 'TIMEOUT', 'TOO_MANY_STREAMS'] as const).map((code) => new UmbraError(code, 'busy', { retryAfter: 1 }));
  t.same(shedding.map((e) => e.stack), shedding.map((e) => `UmbraError: ${e.message}`), 'only the name and message');
  const internal = new UmbraError('INTERNAL', 'a fault');
  t.match(internal.stack, /\n\s+at /, 'an internal fault keeps where it was made');
  t.equal(Error.stackTraceLimit, before);
  t.match(new Error('plain').stack, /\n\s+at /, 'errors made afterwards still collect stacks');
});
