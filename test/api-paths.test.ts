// Request paths split into segments: empty segments dropped, percent-escapes decoded only where a
// segment has one, and a malformed escape refused as bad input (a 400, never a crash).
import t from 'tap';
import { splitPath } from '../dist/api/api.js';

t.test('a path splits into its segments, escapes decoded', async (t) => {
  t.same(splitPath('/v2/models/digits/versions/2/infer'), ['v2', 'models', 'digits', 'versions', '2', 'infer']);
  t.same(splitPath('//v2//models/digits/'), ['v2', 'models', 'digits'], 'empty segments are dropped');
  t.same(splitPath('/v2/models/a%20b/infer'), ['v2', 'models', 'a b', 'infer'], 'an escape is decoded');
  t.same(splitPath('/v2/models/a%2Fb/infer'), ['v2', 'models', 'a/b', 'infer'], 'an escaped slash stays inside its segment');
  t.same(splitPath('/v2/models/caf%C3%A9'), ['v2', 'models', 'café'], 'UTF-8 escapes decode to one character');
  t.same(splitPath('/'), []);
});

t.test('a malformed escape is bad input naming the segment', async (t) => {
  for (const path of ['/v2/models/%E0%A4%A/ready', '/v2/models/%/ready', '/v2/models/%ZZ/ready']) {
    t.throws(() => splitPath(path), { code: 'INVALID_INPUT', message: /malformed percent-encoding in path segment/ }, path);
  }
});
