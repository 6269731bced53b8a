// Tests of logic.js, natively: `node --test`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { mapOne } from './logic.js';

/** @param {unknown} body */
const upsert = (body) => ({ key: 'k1', kind: 'item', version: 1n, op: 'upsert', body: JSON.stringify(body) });

test('upper-cases the configured field', () => {
  const [out] = mapOne(upsert({ title: 'hello', n: 1 }), { field: 'title' });
  assert.deepEqual(JSON.parse(out.body), { title: 'HELLO', n: 1 });
  assert.equal(out.key, 'k1');
  assert.equal(out.version, 1n);
});

test('deletes pass through', () => {
  const r = { ...upsert(null), op: 'delete' };
  assert.deepEqual(mapOne(r, { field: 'title' }), [r]);
});

test('a body that is not an object is invalid', () => {
  assert.throws(() => mapOne(upsert([1, 2]), { field: 'title' }), { kind: 'invalid' });
});
